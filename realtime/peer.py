"""One WebRTC call: the peer connection, its two data channels, and the control link.

Both ends create the same two channels (negotiated, fixed ids), so neither
waits for the other to announce them:

* ``control`` (id 0): reliable and ordered; carries :mod:`realtime.protocol`
  messages. Pings every 2 s give the round trip and the clock offset, and
  double as a heartbeat: a peer silent for ``timeout_s`` is gone.
* ``motion`` (id 1): unordered, no retransmission (``maxRetransmits=0``); a
  late motion packet is worth less than the next one.

Speech goes as an Opus audio track beside them. Media is encrypted by
DTLS/SRTP as in every WebRTC call; the signaling MACs tie the DTLS
fingerprints to the room secret.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from aiortc.rtcicetransport import parse_stun_turn_uri

from realtime.clock import OffsetEstimator, monotonic_ms, offset_sample, wall_us
from realtime.drops import Drops, error_kind
from realtime.netem import ShapedLink
from realtime.protocol import Bye, Message, Ping, Pong, ProtocolError, encode_message, parse_message
from realtime.sctp import DelayedSack, install_delayed_sack
from realtime.wire import WireMeter, selected_pair

log = logging.getLogger(__name__)

CONTROL_LABEL, CONTROL_ID = "control", 0
MOTION_LABEL, MOTION_ID = "motion", 1
# aiortc's receiver holds 4 speech packets (80 ms of 20 ms packets) before it decodes; with longer
# packets the same count would hold 160-240 ms, so the count is fitted to keep about 80 ms.
AUDIO_JITTER_MS = 80.0
# Each control message costs ~110 bytes on the wire (~0.9 kbps at one a second): a ping every 2 s
# (and the peer's pong) hears a live peer twice within PEER_SILENT_S. A peer's own stalls are forgiven
# (stall_ms); the other end's cannot be told from a peer that is gone, nor can a link that drops out for a
# few seconds. So silence is said (a warning, counted) after PEER_SILENT_S, and the call ends only after
# PEER_TIMEOUT_S, as a browser's ICE consent gives up after some 30 s: with a 4 s end, 30-minute soaks
# at 512 px were ended after 3-13 minutes on a loaded 2-core machine (load 8-19) while both ends ran.
PING_INTERVAL_S = 2.0
PEER_SILENT_S = 4.0
PEER_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 15.0


# A wake-up later than this is this process's own stall, not the network's.
STALL_MS = 500.0


def stall_ms(slept_ms: float, asked_ms: float) -> float:
    """How much of a sleep was a stall of this process: what it overslept beyond :data:`STALL_MS`, else 0."""
    late = slept_ms - asked_ms
    return late if late > STALL_MS else 0.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.x``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def restrict_ice_to_loopback() -> None:
    """Makes ICE offer only 127.0.0.1 as this process's host candidate.

    aioice never gathers loopback addresses, so without this a call between
    two programs on one machine would go through a network interface, and on
    a machine without one (a CI box) it could not connect at all. Call it
    when signaling itself is on loopback: then both ends are here. It
    applies to the whole process.
    """
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


@dataclass(frozen=True)
class IceConfig:
    """How ICE finds a path: the STUN and TURN servers it may use.

    Without servers ICE offers host candidates only (one LAN, or loopback). A
    STUN server adds the address a NAT maps this host to; a TURN server a
    relayed address, the path that works through any NAT. aiortc uses the
    first ``stun:`` and the first ``turn:`` URL given.

    Attributes:
        servers: ``stun:HOST[:PORT]`` / ``turn:HOST[:PORT][?transport=udp|tcp]`` URLs.
        username, password: credentials of the TURN server(s).
        relay_only: offer relayed candidates only (the TURN path, or none).
    Raises:
        ValueError: a malformed URL, a TURN server without credentials, or
            ``relay_only`` without a TURN server.
    """

    servers: tuple[str, ...] = ()
    username: str | None = None
    password: str | None = None
    relay_only: bool = False

    def __post_init__(self) -> None:
        turn = False
        for url in self.servers:
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError:
                raise ValueError(f"--ice-server {url!r} is not a stun:HOST[:PORT] or turn:HOST[:PORT] URL") from None
            if parsed["scheme"] in ("turn", "turns"):
                turn = True
                if not self.username or self.password is None:
                    raise ValueError(f"the TURN server {url} needs --ice-user and --ice-password")
            elif parsed["scheme"] != "stun":
                raise ValueError(f"--ice-server {url!r}: only stun: and turn: URLs are supported")
        if self.relay_only and not turn:
            raise ValueError("--relay-only needs a TURN server (--ice-server turn:HOST:PORT)")

    def rtc_configuration(self) -> Any:
        """The aiortc configuration of these servers."""
        servers = []
        for url in self.servers:
            if url.startswith("turn"):
                servers.append(RTCIceServer(urls=url, username=self.username, credential=self.password))
            else:
                servers.append(RTCIceServer(urls=url))
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def add_ice_arguments(p: argparse.ArgumentParser) -> None:
    """The NAT-traversal flags both talk-send and talk-recv take."""
    g = p.add_argument_group("NAT traversal (ICE)")
    g.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="a STUN or TURN server, stun:HOST[:PORT] or turn:HOST[:PORT][?transport=tcp] "
                   "(repeatable; the first of each kind is used)")
    g.add_argument("--ice-user", metavar="NAME", help="the TURN server's user name")
    g.add_argument("--ice-password", metavar="SECRET", help="the TURN server's password")
    g.add_argument("--relay-only", action="store_true",
                   help="send everything through the TURN server (hides this host's addresses)")


def ice_config(args: argparse.Namespace) -> IceConfig:
    """The :class:`IceConfig` of :func:`add_ice_arguments`'s flags. Raises ValueError with the flag's name."""
    return IceConfig(tuple(args.ice_server), args.ice_user, args.ice_password, args.relay_only)


def new_peer_connection(ice: IceConfig | None = None) -> Any:
    """A peer connection; without ICE servers, ICE uses host candidates only (LAN or loopback)."""
    return RTCPeerConnection((ice or IceConfig()).rtc_configuration())


def fit_audio_jitter_buffer(pc: Any, track: Any, packet_ms: float) -> int | None:
    """Makes aiortc's jitter buffer of ``track`` hold about :data:`AUDIO_JITTER_MS` of ``packet_ms`` packets.

    Returns:
        the packets it now holds, or None when the track is not this connection's.
    """
    for t in pc.getTransceivers():
        receiver = t.receiver
        if receiver.track is track:
            jb = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)  # aiortc keeps it private
            if jb is None:
                return None
            jb._prefetch = max(1, round(AUDIO_JITTER_MS / max(packet_ms, 1.0)))
            return int(jb._prefetch)
    return None


def strip_audio_header_extensions(sdp: str) -> str:
    """An offer without RTP header extensions for audio, so none are negotiated.

    aiortc puts a MID and an audio level on every speech packet (8 bytes, about
    1 kbps at 60 ms packets, 3 at 20 ms). The receiver routes packets by SSRC,
    which the offer declares, so a call needs neither.
    """
    out, audio = [], False
    for line in sdp.splitlines(keepends=True):
        if line.startswith("m="):
            audio = line.startswith("m=audio")
        if audio and line.startswith("a=extmap:"):
            continue
        out.append(line)
    return "".join(out)


def prefer_short_srtp_tags(pc: Any) -> None:
    """Offers SRTP with AES-CM and an 80-bit HMAC-SHA1 tag only (WebRTC's mandatory profile).

    aiortc prefers AES-GCM, whose tag is 16 bytes against 10: 6 bytes more on
    every speech packet. Call it on both ends before the DTLS handshake
    (before the offer, or once the offer is set as the remote description).
    """
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if getattr(pc, "sctp", None) is not None:
        transports.append(pc.sctp.transport)
    for t in transports:
        t._srtp_profiles = [SRTP_AES128_CM_SHA1_80]  # aiortc's list of profiles it offers, in order


async def gathered_description(pc: Any, offer: bool) -> str:
    """Creates the offer (or answer), gathers ICE, and returns the SDP with candidates."""
    desc = await (pc.createOffer() if offer else pc.createAnswer())
    await pc.setLocalDescription(desc)
    return str(pc.localDescription.sdp)


class PeerLink:
    """The channels of one call and the control link's housekeeping.

    Control messages other than ping, pong and bye land in :attr:`messages`.
    :attr:`ended` is set once when the call is over for any reason: a bye,
    the connection failing, the control channel closing, or silence.

    SCTP acknowledges lazily (:mod:`realtime.sctp`): every second packet or
    within 200 ms, riding on outgoing data where there is some.

    Args:
        pc: a fresh ``RTCPeerConnection`` (before the offer or answer).
        timeout_s: silence after which the peer counts as gone.
        delayed_sack: False keeps aiortc's ack for every packet (to measure the difference).

    Attributes:
        shaped: when set (testing, ``talk-send --link-kbps``), every message this end sends on either
            channel crosses a simulated narrow link first.
    """

    def __init__(self, pc: Any, timeout_s: float = PEER_TIMEOUT_S, delayed_sack: bool = True) -> None:
        self.pc = pc
        self.timeout_s = timeout_s
        self.shaped: ShapedLink | None = None
        self.control = pc.createDataChannel(CONTROL_LABEL, negotiated=True, id=CONTROL_ID)
        self.motion = pc.createDataChannel(MOTION_LABEL, negotiated=True, id=MOTION_ID,
                                           ordered=False, maxRetransmits=0)
        self.sack: DelayedSack | None = install_delayed_sack(pc.sctp) if delayed_sack else None
        self.clock = OffsetEstimator()
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.drops = Drops(log, "control message")
        self.wire = WireMeter(MOTION_ID)
        self.ice_pair: dict[str, str] | None = None
        self.wire_window_us: list[int] = []  # wall clock when counting started (and stopped)
        self._last_heard = monotonic_ms()
        self.silences = 0  # times the peer went silent for PEER_SILENT_S or more and came back (or not)
        self.longest_silence_ms = 0.0
        self._silent_since: float | None = None  # the silence said, not yet over
        self._bye_received = False
        self._task: asyncio.Task[None] | None = None
        self.control.on("message", self._on_control)
        self.control.on("close", lambda: self.end("the control channel closed"))
        pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.end(f"the connection {self.pc.connectionState}")

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()

    async def wait_open(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Waits until both channels are open.

        Raises:
            TimeoutError: no media path was established in time.
        """
        async def opened(ch: Any) -> None:
            if ch.readyState == "open":
                return
            ev = asyncio.Event()
            ch.on("open", ev.set)
            await ev.wait()

        await asyncio.wait_for(asyncio.gather(opened(self.control), opened(self.motion)), timeout_s)
        # From here on the call's own traffic flows: count it, and note the path ICE chose.
        self.ice_pair = selected_pair(self.pc)
        if not self.wire.counting:
            self.wire.start(self.pc, monotonic_ms() / 1000.0)
            self.wire_window_us = [wall_us()]

    def start(self) -> None:
        """Starts the heartbeat (pings and the silence check)."""
        self._last_heard = monotonic_ms()
        self._task = asyncio.create_task(self._heartbeat(), name="peer-heartbeat")

    def send(self, msg: Message) -> bool:
        """Sends a control message; False if the channel is no longer open."""
        return self.send_encoded(encode_message(msg))

    def send_encoded(self, data: bytes, kind: str = "control") -> bool:
        """Sends an already encoded control message (``kind`` names it in the link's statistics)."""
        if self.control.readyState != "open":
            return False
        try:
            self._put(self.control, kind, data)
        except Exception:  # closed under us: the heartbeat notices
            return False
        return True

    def send_motion(self, packet: bytes) -> None:
        if self.motion.readyState == "open":
            self._put(self.motion, "motion", packet)

    def _put(self, channel: Any, kind: str, data: bytes) -> None:
        if self.shaped is None:
            channel.send(data)
            return

        def deliver(d: bytes) -> None:
            if channel.readyState == "open":
                channel.send(d)

        self.shaped.send(kind, data, deliver)

    @property
    def silent_ms(self) -> float:
        return monotonic_ms() - self._last_heard

    def _on_control(self, data: bytes | str) -> None:
        try:
            msg = parse_message(data)
        except ProtocolError as e:
            self.drops.note(error_kind(e), str(e))
            return
        self._heard()
        if isinstance(msg, Ping):
            t1 = wall_us()
            self.send(Pong(msg.t0_us, t1, wall_us()))
        elif isinstance(msg, Pong):
            self.clock.add(offset_sample(msg.t0_us, msg.t1_us, msg.t2_us, wall_us()))
        elif isinstance(msg, Bye):
            self._bye_received = True
            self.end(f"the peer left ({msg.reason})" if msg.reason else "the peer left")
        else:
            self.messages.put_nowait(msg)

    def silence_report(self) -> dict[str, float | int]:
        """The stats' ``"peer_silences"``: silences of :data:`PEER_SILENT_S` or more, and the longest (s)."""
        return {"count": self.silences, "longest_s": round(self.longest_silence_ms / 1000, 1)}

    def _heard(self) -> None:
        if self._silent_since is not None:
            log.warning("the peer is back after %.1f s of silence", self.silent_ms / 1000)
            self._silent_since = None
        self._last_heard = monotonic_ms()

    def _check_silence(self) -> bool:
        """Says a silence once it lasts :data:`PEER_SILENT_S`; True once it lasts ``timeout_s`` (the peer is gone)."""
        silent = self.silent_ms
        if silent >= min(PEER_SILENT_S, self.timeout_s) * 1000:
            self.longest_silence_ms = max(self.longest_silence_ms, silent)
            if self._silent_since is None:
                self._silent_since = self._last_heard
                self.silences += 1
                log.warning("no word from the peer for %.0f s: waiting up to %.0f s for it", silent / 1000,
                            self.timeout_s)
        return silent > self.timeout_s * 1000

    async def _heartbeat(self) -> None:
        while not self.ended.is_set():
            self.send(Ping(wall_us()))
            await self._nap(PING_INTERVAL_S / 2)
            if self._check_silence():
                self.end(f"the peer went silent for {self.timeout_s:.0f} s")
                return
            await self._nap(PING_INTERVAL_S / 2)

    async def _nap(self, seconds: float) -> None:
        """Sleeps; a stall of this process (no CPU for it on a starved machine) does not count as the peer's
        silence: what the peer sent meanwhile waits, unread, in the socket."""
        t0 = monotonic_ms()
        await asyncio.sleep(seconds)
        self._last_heard += stall_ms(monotonic_ms() - t0, seconds * 1000)

    async def close(self, reason: str = "") -> None:
        """Says bye (unless the peer already did, or cannot hear it), stops the heartbeat, closes."""
        self.end(reason or "closed")
        shaped, self.shaped = self.shaped, None  # the bye goes at once; what is still on the simulated link is lost
        if shaped is not None:
            shaped.close()
        if self.wire.counting:
            self.wire.stop(monotonic_ms() / 1000.0)
            self.wire_window_us.append(wall_us())
        if self.sack is not None:
            self.sack.close()
        if not self._bye_received and self.send(Bye(reason or self.end_reason)):
            # Give SCTP a moment to put the bye on the wire before DTLS closes.
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.pc.close()
