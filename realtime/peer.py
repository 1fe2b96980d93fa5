"""One WebRTC call: the peer connection, its two data channels, and the control link.

Both ends create the same two channels (negotiated, fixed ids), so neither
waits for the other to announce them:

* ``control`` (id 0): reliable and ordered; carries :mod:`realtime.protocol`
  messages. Pings every second give the round trip and the clock offset, and
  double as a heartbeat: a peer silent for ``timeout_s`` is gone.
* ``motion`` (id 1): unordered, no retransmission (``maxRetransmits=0``); a
  late motion packet is worth less than the next one.

Speech goes as an Opus audio track beside them. Media is encrypted by
DTLS/SRTP as in every WebRTC call; the signaling MACs tie the DTLS
fingerprints to the room secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

from realtime.clock import OffsetEstimator, monotonic_ms, offset_sample, wall_us
from realtime.drops import Drops, error_kind
from realtime.netem import ShapedLink
from realtime.protocol import Bye, Message, Ping, Pong, ProtocolError, encode_message, parse_message

log = logging.getLogger(__name__)

CONTROL_LABEL, CONTROL_ID = "control", 0
MOTION_LABEL, MOTION_ID = "motion", 1
PING_INTERVAL_S = 1.0
PEER_TIMEOUT_S = 4.0
CONNECT_TIMEOUT_S = 15.0


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


def new_peer_connection() -> Any:
    """A peer connection with no STUN server: ICE uses host candidates only (LAN or loopback)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


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

    Args:
        pc: a fresh ``RTCPeerConnection`` (before the offer or answer).
        timeout_s: silence after which the peer counts as gone.

    Attributes:
        shaped: when set (testing, ``talk-send --link-kbps``), every message this end sends on either
            channel crosses a simulated narrow link first.
    """

    def __init__(self, pc: Any, timeout_s: float = PEER_TIMEOUT_S) -> None:
        self.pc = pc
        self.timeout_s = timeout_s
        self.shaped: ShapedLink | None = None
        self.control = pc.createDataChannel(CONTROL_LABEL, negotiated=True, id=CONTROL_ID)
        self.motion = pc.createDataChannel(MOTION_LABEL, negotiated=True, id=MOTION_ID,
                                           ordered=False, maxRetransmits=0)
        self.clock = OffsetEstimator()
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.drops = Drops(log, "control message")
        self._last_heard = monotonic_ms()
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
        self._last_heard = monotonic_ms()
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

    async def _heartbeat(self) -> None:
        while not self.ended.is_set():
            self.send(Ping(wall_us()))
            await asyncio.sleep(PING_INTERVAL_S / 2)
            if self.silent_ms > self.timeout_s * 1000:
                self.end(f"the peer went silent for {self.timeout_s:.0f} s")
                return
            await asyncio.sleep(PING_INTERVAL_S / 2)

    async def close(self, reason: str = "") -> None:
        """Says bye (unless the peer already did, or cannot hear it), stops the heartbeat, closes."""
        self.end(reason or "closed")
        shaped, self.shaped = self.shaped, None  # the bye goes at once; what is still on the simulated link is lost
        if shaped is not None:
            shaped.close()
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
