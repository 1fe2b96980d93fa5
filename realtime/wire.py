"""What a call really puts on the wire: UDP datagrams counted per direction and kind.

The token payload is a small part of a call's bytes: every data-channel
message also carries SCTP, DTLS and UDP/IP headers, every speech packet RTP
and SRTP's, and the receiver acknowledges what it gets. :class:`WireMeter`
counts the datagrams themselves, on the sockets of the call's ICE
connection (the TURN server's socket when the path is relayed, so TURN's own
framing is counted too), and classifies each by its first bytes as RFC 7983
demultiplexes them::

    0..3     STUN (connectivity and consent checks, TURN control)
    20..63   DTLS: the data channels (motion packets, control messages, SCTP acks)
    64..79   TURN ChannelData: classified by the datagram it carries
    128..191 RTP (speech) or RTCP (its reports)

A datagram's wire size adds the UDP and IP headers (28 bytes over IPv4, 48
over IPv6) to its payload, as a link carries it. Inside DTLS the meter also
counts SCTP chunks (in the plaintext SCTP packets the DTLS transport is
handed, and hands up), so acknowledgements can be told from data, also
when one rides in a packet with data (:mod:`realtime.sctp`).

The meter reads no clock of its own: callers say when counting starts and
stops (:meth:`WireMeter.start`, :meth:`WireMeter.stop`) with their times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aioice.turn import TurnTransport
from aiortc.rtcsctptransport import (
    DataChunk,
    ForwardTsnChunk,
    HeartbeatAckChunk,
    HeartbeatChunk,
    SackChunk,
    parse_packet,
)

KINDS = ("stun", "dtls", "rtp", "rtcp", "other")
SCTP_KINDS = ("motion", "control", "sack", "forward_tsn", "heartbeat", "other")
UDP_IPV4_BYTES = 8 + 20
UDP_IPV6_BYTES = 8 + 40
SENT, RECEIVED = "sent", "received"


def classify(data: bytes) -> str:
    """The kind of one UDP payload (RFC 7983), looking through TURN ChannelData.

    Returns:
        one of :data:`KINDS`.
    """
    if not data:
        return "other"
    first = data[0]
    if first <= 3:
        return "stun"
    if 20 <= first <= 63:
        return "dtls"
    if 64 <= first <= 79:
        return classify(bytes(data[4:])) if len(data) > 4 else "other"
    if 128 <= first <= 191:
        # RTCP packet types 192..223 sit where RTP has marker bit + payload type (RFC 5761).
        return "rtcp" if len(data) > 1 and 192 <= data[1] <= 223 else "rtp"
    return "other"


def sctp_kind(chunk: Any, motion_stream: int) -> str:
    """The kind of one SCTP chunk: motion or control data (by stream id), an ack, or housekeeping."""
    if isinstance(chunk, DataChunk):
        return "motion" if chunk.stream_id == motion_stream else "control"
    if isinstance(chunk, SackChunk):
        return "sack"
    if isinstance(chunk, ForwardTsnChunk):
        return "forward_tsn"
    if isinstance(chunk, (HeartbeatChunk, HeartbeatAckChunk)):
        return "heartbeat"
    return "other"


@dataclass
class Count:
    """Datagrams (or chunks) and their bytes."""

    packets: int = 0
    bytes: int = 0

    def add(self, n: int) -> None:
        self.packets += 1
        self.bytes += n


@dataclass
class Direction:
    """One direction's datagrams by kind (wire bytes, UDP/IP headers included) and SCTP chunks by kind."""

    datagrams: dict[str, Count] = field(default_factory=lambda: {k: Count() for k in KINDS})
    chunks: dict[str, Count] = field(default_factory=lambda: {k: Count() for k in SCTP_KINDS})

    @property
    def total(self) -> Count:
        return Count(sum(c.packets for c in self.datagrams.values()), sum(c.bytes for c in self.datagrams.values()))

    def merge(self, other: "Direction") -> None:
        for mine, theirs in ((self.datagrams, other.datagrams), (self.chunks, other.chunks)):
            for k, c in theirs.items():
                mine[k].packets += c.packets
                mine[k].bytes += c.bytes


@dataclass
class WireTotals:
    """What one end counted over ``seconds``: ``sent`` and ``received`` by kind."""

    seconds: float = 0.0
    sent: Direction = field(default_factory=Direction)
    received: Direction = field(default_factory=Direction)

    def merge(self, other: "WireTotals") -> None:
        self.seconds += other.seconds
        self.sent.merge(other.sent)
        self.received.merge(other.received)

    def report(self, forward: str) -> dict[str, Any]:
        """The ``"wire"`` figures of ``--stats-json``.

        Args:
            forward: :data:`SENT` at the sender (its sent datagrams are the call's
                forward direction), :data:`RECEIVED` at the receiver.
        Returns:
            ``motion_kbps`` (data channels: motion packets, control messages and
            the acks that travel forward), ``audio_kbps`` (RTP and RTCP of speech),
            ``total_kbps`` (every forward datagram), ``reverse_kbps`` (every
            datagram the other way), and per-kind counts of both directions.
        """
        fwd, rev = (self.sent, self.received) if forward == SENT else (self.received, self.sent)
        s = self.seconds

        def kbps(n: int) -> float | None:
            return round(n * 8 / 1000 / s, 3) if s > 0 else None

        def table(d: Direction) -> dict[str, Any]:
            return {"datagrams": {k: {"packets": c.packets, "bytes": c.bytes} for k, c in d.datagrams.items()},
                    "sctp_chunks": {k: c.packets for k, c in d.chunks.items()}}

        return {
            "motion_kbps": kbps(fwd.datagrams["dtls"].bytes),
            "audio_kbps": kbps(fwd.datagrams["rtp"].bytes + fwd.datagrams["rtcp"].bytes),
            "total_kbps": kbps(fwd.total.bytes),
            "reverse_kbps": kbps(rev.total.bytes),
            "seconds": round(s, 3),
            "forward": table(fwd), "reverse": table(rev),
        }


class WireMeter:
    """Counts one peer connection's datagrams and SCTP chunks while started.

    Args:
        motion_stream: the SCTP stream id of the motion channel.
    """

    def __init__(self, motion_stream: int = 1) -> None:
        self.motion_stream = motion_stream
        self.totals = WireTotals()
        self._started_at: float | None = None
        self._hooked: set[int] = set()

    @property
    def counting(self) -> bool:
        return self._started_at is not None

    def start(self, pc: Any, now_s: float) -> None:
        """Hooks the sockets of ``pc``'s ICE connections and its SCTP transport, and starts counting.

        Call it once the channels are open (ICE has gathered and chosen): the
        connection set-up itself is not counted.
        """
        for conn in ice_connections(pc):
            for protocol in list(getattr(conn, "_protocols", [])):
                self._hook_protocol(protocol)
        sctp = getattr(pc, "sctp", None)
        if sctp is not None and id(sctp) not in self._hooked:
            self._hooked.add(id(sctp))
            _wrap_async(sctp.transport, "_send_data", lambda data: self._sctp_packet(SENT, data))
            _wrap_async(sctp, "_handle_data", lambda data: self._sctp_packet(RECEIVED, data))
        self._started_at = now_s

    def stop(self, now_s: float) -> WireTotals:
        """Stops counting; returns the totals (also kept in :attr:`totals`)."""
        if self._started_at is not None:
            self.totals.seconds += max(0.0, now_s - self._started_at)
            self._started_at = None
        return self.totals

    def _datagram(self, direction: str, data: bytes, header: int) -> None:
        if self._started_at is None:
            return
        d = self.totals.sent if direction == SENT else self.totals.received
        d.datagrams[classify(data)].add(len(data) + header)

    def _sctp_packet(self, direction: str, data: bytes) -> None:
        if self._started_at is None:
            return
        try:
            chunks = parse_packet(data)[3]
        except ValueError:  # aiortc drops it too
            return
        d = self.totals.sent if direction == SENT else self.totals.received
        for chunk in chunks:
            d.chunks[sctp_kind(chunk, self.motion_stream)].add(len(bytes(chunk)))

    def _hook_protocol(self, protocol: Any) -> None:
        """Wraps the real UDP socket under an aioice protocol: its own, or its TURN client's."""
        transport = getattr(protocol, "transport", None)
        receiver = protocol
        if isinstance(transport, TurnTransport):
            receiver = transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]  # aioice keeps it private
            transport = getattr(receiver, "transport", None)
        if transport is None or id(transport) in self._hooked:
            return
        self._hooked.add(id(transport))
        sockname = transport.get_extra_info("sockname")
        header = UDP_IPV6_BYTES if isinstance(sockname, tuple) and len(sockname) == 4 else UDP_IPV4_BYTES
        send = transport.sendto

        def sendto(data: bytes, addr: Any = None) -> None:
            self._datagram(SENT, data, header)
            if addr is None:
                send(data)
            else:
                send(data, addr)

        transport.sendto = sendto
        received = receiver.datagram_received

        def datagram_received(data: bytes, addr: Any) -> None:
            self._datagram(RECEIVED, data, header)
            received(data, addr)

        receiver.datagram_received = datagram_received


def _wrap_async(obj: Any, name: str, before: Callable[[Any], None]) -> None:
    """Replaces ``obj.name(x)`` (a coroutine method) by one that calls ``before(x)`` first."""
    inner = getattr(obj, name)

    async def wrapped(arg: Any) -> None:
        before(arg)
        await inner(arg)

    setattr(obj, name, wrapped)


def ice_connections(pc: Any) -> list[Any]:
    """The aioice connections under a peer connection (one when audio and data are bundled)."""
    found: dict[int, Any] = {}
    transports = []
    sctp = getattr(pc, "sctp", None)
    if sctp is not None:
        transports.append(sctp.transport)
    for t in pc.getTransceivers():
        transports.append(t.sender.transport)
    for dtls in transports:
        conn = getattr(getattr(dtls, "transport", None), "_connection", None)
        if conn is not None:
            found[id(conn)] = conn
    return list(found.values())


def selected_pair(pc: Any) -> dict[str, str] | None:
    """The candidate types of the ICE pair the call uses: ``{"local": "host"|"srflx"|"relay", "remote": ...}``."""
    for conn in ice_connections(pc):
        pair = getattr(conn, "_nominated", {}).get(1)
        if pair is not None:
            return {"local": pair.local_candidate.type, "remote": pair.remote_candidate.type}
    return None

