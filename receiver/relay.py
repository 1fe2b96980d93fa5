"""Token-mode viewers: the caller's own stream relayed to browsers that decode and render it themselves.

A page whose browser has WebGL2 offers no video; instead it gets, besides the
``status`` channel every viewer has:

* ``control`` (reliable, ordered): the sender's control messages a decoder
  needs, as the sender sent them (HELLO with the stream header, SENDER_STATS,
  BYE), and START rewritten to this receiver's wall clock; the page pings
  this receiver on it for its own clock offset and round trip;
* ``motion`` (unordered, no retransmissions): the sender's motion packets,
  byte for byte, from the first packet a page can decode on its own (a
  keyframe) after it joined;
* ``portrait`` (reliable, ordered): the portrait bundle
  (:func:`codec.webexport.portrait_bundle`) once at join, in chunks, then an
  empty message;
* the caller's keyframes, on ``control``: each one the call has received, as the
  page's renderer uses it (:func:`codec.webexport.keyframe_bundle`: the mouth, the
  closed eyes and a turned face cut out for the portrait bundle the page holds), in the picture
  messages the sender sends them in (:mod:`realtime.pictures`), paced at
  ``keyframe_kbps`` one small chunk behind each motion message, so that a page's
  motion never waits behind them. A page joining gets every keyframe so far (the
  newest :data:`~codec.render.warp.MAX_KEYFRAMES`), then each new one;
* the caller's Opus packets on an audio track, as they arrived: no decoding,
  no encoding. aiortc hands a track's RTP only to its decoder, so the relay
  taps the call's audio receiver (:func:`tap_rtp`); where that is not
  possible the page gets the speech the video viewers get (encoded once for all).

Nothing is rendered or encoded for these pages: each costs the receiver the
forwarding of about 25 motion and 50 speech packets a second.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription

from codec import bitstream
from codec.bitstream import StreamHeader
from codec.errors import StreamError
from codec.render.warp import MAX_KEYFRAMES
from codec.webexport import bundle_id
from realtime.clock import wall_us
from realtime.peer import PeerLink
from realtime.pictures import PacingConfig, PictureOutbox
from realtime.protocol import (
    Bye,
    Hello,
    MessageType,
    Ping,
    Pong,
    ProtocolError,
    SenderStats,
    Start,
    encode_message,
    parse_message,
)
from realtime.webpage import TOKEN_CHANNELS
from receiver.packet_track import AudioPacketTrack

log = logging.getLogger(__name__)

PORTRAIT_CHUNK = 16 * 1024
AUDIO_RATE = 48_000
AUDIO_FRAME = 960
# START is sent again when this receiver's estimate of the sender's clock moved this much (µs).
RESYNC_US = 2000.0
# Control messages the relay passes on; the rest (ping, pong, report, accept, refuse) belong to one link.
FORWARDED = {MessageType.HELLO, MessageType.SENDER_STATS, MessageType.BYE}
# aiortc hands each RTP packet to RTCRtpReceiver._handle_rtp_packet (a coroutine) before its
# decoder: where it does, the caller's Opus can be relayed as it came (see tap_rtp).
RTP_TAP = asyncio.iscoroutinefunction(getattr(RTCRtpReceiver, "_handle_rtp_packet", None))


MAX_PAGE_STATS = 64
"""Pages whose keyframe bytes the statistics list one by one (the newest)."""


@dataclass
class RelayStats:
    """What the relay sent token pages, over the receiver's run.

    Attributes:
        pages: pages that joined.
        keyframes: keyframes prepared for pages (for all the calls' renderers).
        keyframe_bytes: their containers' bytes, as prepared (what one page gets of each).
        keyframe_message_bytes: control-message bytes of keyframes sent to all pages (chunk headers included).
        keyframes_sent: keyframes sent whole, to all pages.
        page_keyframe_bytes: control-message bytes of keyframes each page got (the newest pages that left).
    """

    pages: int = 0
    keyframes: int = 0
    keyframe_bytes: list[int] = field(default_factory=list)
    keyframe_message_bytes: int = 0
    keyframes_sent: int = 0
    page_keyframe_bytes: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "keyframes": self.keyframes, "keyframe_bytes": list(self.keyframe_bytes),
                "keyframe_message_bytes": self.keyframe_message_bytes, "keyframes_sent": self.keyframes_sent,
                "page_keyframe_bytes": list(self.page_keyframe_bytes)}


class RelayedAudioTrack(AudioPacketTrack):
    """One page's speech: the caller's Opus packets, as ``av.Packet`` that aiortc only packetizes.

    A page that falls behind by more than :data:`~receiver.packet_track.MAX_AUDIO_BACKLOG` packets loses the oldest.
    """


class TokenPage:
    """One page in token mode: its channels and its speech track.

    Args:
        audio: the speech track to send (default: a :class:`RelayedAudioTrack` the relay feeds).
    """

    def __init__(self, pc: Any, relay: TokenRelay, audio: MediaStreamTrack | None = None) -> None:
        self.pc = pc
        self.relay = relay
        self.channels = {name: pc.createDataChannel(name, negotiated=True, **spec)
                         for name, spec in TOKEN_CHANNELS.items()}
        self.audio = audio if audio is not None else RelayedAudioTrack(relay)
        self.synced = False  # it has been sent a packet it can decode on its own
        self.packets = 0
        self.keyframes = PictureOutbox(PacingConfig(relay.keyframe_kbps), relay.clock())
        self.keyframe_bytes = 0  # control-message bytes of keyframes sent to this page
        self._queued: list[int] = []  # picture ids of the keyframes not sent whole yet
        self.control.on("open", self._joined)
        self.portrait.on("open", self.send_portrait)
        self.control.on("message", self._on_control)

    @property
    def status(self) -> Any:
        return self.channels["status"]

    @property
    def control(self) -> Any:
        return self.channels["control"]

    @property
    def motion(self) -> Any:
        return self.channels["motion"]

    @property
    def portrait(self) -> Any:
        return self.channels["portrait"]

    def send_portrait(self) -> None:
        """The relay's current portrait bundle, in chunks, then an empty message; then its keyframes."""
        bundle = self.relay.bundle
        for i in range(0, len(bundle), PORTRAIT_CHUNK):
            _send(self.portrait, bundle[i:i + PORTRAIT_CHUNK])
        _send(self.portrait, b"")
        # Keyframes of another bundle still queued are of no use to the page any more.
        self.keyframes = PictureOutbox(self.keyframes.config, self.relay.clock())
        self._queued = []
        for data in self.relay.keyframes[-MAX_KEYFRAMES:]:
            if data:
                self.add_keyframe(data)

    def add_keyframe(self, data: bytes) -> None:
        """Queues a keyframe container; it leaves paced, behind motion messages (:meth:`send_motion`)."""
        try:
            self._queued.append(self.keyframes.add(data))
        except ValueError as e:  # larger than a picture may be: the page goes without it
            log.warning("a keyframe for token pages was not sent: %s", e)

    def _joined(self) -> None:
        """A page joining mid-call gets the call's header and media time first."""
        for data in self.relay.call_state():
            _send(self.control, data)

    def _on_control(self, data: bytes | str) -> None:
        try:
            msg = parse_message(data)
        except ProtocolError:
            return
        if isinstance(msg, Ping):
            t1 = wall_us()
            _send(self.control, encode_message(Pong(msg.t0_us, t1, wall_us())))

    def send_control(self, data: bytes) -> None:
        _send(self.control, data)

    def send_motion(self, data: bytes, decodable: bool) -> None:
        if not self.synced:
            if not decodable or self.control.readyState != "open":
                return
            self.synced = True
        self.packets += 1
        _send(self.motion, data)
        self._send_keyframe_chunk()

    def _send_keyframe_chunk(self) -> None:
        """One paced picture message of the queued keyframes, if the rate allows one now: sent right
        behind a motion message, it has left before the next one (as the sender paces its pictures)."""
        if not self._queued or self.control.readyState != "open":
            return
        msg = self.keyframes.next_message(self.relay.clock())
        if msg is None:
            return
        _send(self.control, msg)
        self.keyframe_bytes += len(msg)
        self.relay.stats.keyframe_message_bytes += len(msg)
        done = [i for i in self._queued if not self.keyframes.has(i)]
        self.relay.stats.keyframes_sent += len(done)
        self._queued = [i for i in self._queued if i not in done]


class TokenRelay:
    """Forwards the current call's stream to every token-mode page.

    Args:
        bundle: the portrait bundle pages get at join (the receiver's portrait, or its placeholder's).
        make_bundle: a renderer's portrait bundle (:func:`codec.webexport.portrait_bundle`), for the
            caller's own picture once it has arrived; None when the receiver animates one portrait for all.
        make_keyframe: what a renderer takes from a keyframe, for a page holding that renderer's bundle
            (:func:`codec.webexport.keyframe_bundle` ``(renderer, keyframe, bundle id, index in the call)``,
            None when it takes nothing); None: pages get no keyframes (the receiver animates a
            ``--portrait``: the caller's keyframes do not fit it).
        keyframe_kbps: the pace of keyframes to each page, kilobits per second of control messages.
        clock: seconds, monotonic (the pacing's time; tests pass their own).
    """

    def __init__(self, bundle: bytes, make_bundle: Callable[[Any], bytes] | None = None,
                 make_keyframe: Callable[[Any, Any, str, int], bytes | None] | None = None,
                 keyframe_kbps: float = PacingConfig().kbps,
                 clock: Callable[[], float] = time.monotonic) -> None:
        PacingConfig(keyframe_kbps)  # checks the rate
        self.clock = clock
        self.bundle = self.first_bundle = bundle
        self._make_bundle = make_bundle
        self._make_keyframe = make_keyframe
        self.keyframe_kbps = keyframe_kbps
        self._building: asyncio.Task[None] | None = None
        self._renderer: Any = None      # the caller's renderer, once its bundle is the pages'
        self._call_keyframes: list[Any] = []  # this call's keyframes, in arrival order
        self.keyframes: list[bytes] = []     # those prepared for the current bundle, in the same order
        # (b"" for one the renderer takes nothing from: a head turn, say)
        self._preparing: asyncio.Task[None] | None = None
        self.stats = RelayStats()
        self.pages: dict[Any, TokenPage] = {}
        self._link: PeerLink | None = None
        self._hello: bytes | None = None
        self._header: StreamHeader | None = None
        self._stats: bytes | None = None
        self._epoch_us: int | None = None
        self._sent_offset_us: float | None = None
        self._audio_base = 0       # pts of this call's first speech packet on the pages' timeline
        self._audio_first: int | None = None  # the caller's RTP timestamp of it
        self._audio_next = 0       # pts after the last packet relayed
        self.audio_passthrough = False
        self.motion_packets = 0
        self.audio_packets = 0

    def __len__(self) -> int:
        return len(self.pages)

    # -- pages --------------------------------------------------------------

    def add(self, pc: Any, audio: MediaStreamTrack | None = None) -> TokenPage:
        """A new page's channels and speech track on ``pc`` (before its offer is applied).

        Args:
            audio: the speech track where the caller's Opus cannot be relayed (:data:`RTP_TAP` false).
        """
        page = TokenPage(pc, self, audio)
        self.pages[pc] = page
        self.stats.pages += 1
        pc.addTransceiver(page.audio, direction="sendonly")
        return page

    def remove(self, pc: Any) -> None:
        page = self.pages.pop(pc, None)
        if page is not None:
            page.audio.stop()
            self.stats.page_keyframe_bytes.append(page.keyframe_bytes)
            del self.stats.page_keyframe_bytes[:-MAX_PAGE_STATS]

    def stats_dict(self) -> dict[str, Any]:
        """:class:`RelayStats` as a dict; ``page_keyframe_bytes`` lists pages that left, then those watching."""
        out = self.stats.to_dict()
        out["page_keyframe_bytes"] += [p.keyframe_bytes for p in self.pages.values()]
        return out

    def unsubscribe(self, track: Any) -> None:
        """A page's speech track stopped (its page is removed with :meth:`remove`)."""

    def call_state(self) -> list[bytes]:
        """What a page needs to join the call in progress: its header and media time."""
        return [m for m in (self._start_message(), self._hello, self._stats) if m is not None]

    # -- the call -----------------------------------------------------------

    def attach(self, link: PeerLink) -> None:
        """Relays this call (a new sender) from now on."""
        self.detach()
        self._link = link
        link.motion.on("message", self.on_motion)
        link.control.on("message", self.on_control)
        link.pc.on("track", lambda track: self._tap(link.pc, track))

    def use_renderer(self, renderer: Any) -> None:
        """The call's renderer changed (the caller's picture arrived): pages get its portrait bundle.

        The bundle is made on a worker thread (it encodes three PNGs); pages switch when it arrives.
        """
        if self._make_bundle is None:
            return
        make, link = self._make_bundle, self._link

        async def build() -> None:
            bundle = await asyncio.to_thread(make, renderer)
            if self._link is link:  # still this call
                self._set_bundle(bundle, renderer)

        self._building = asyncio.create_task(build(), name="portrait-bundle")

    def add_keyframe(self, keyframe: Any) -> None:
        """A keyframe the call gave its renderer (:class:`codec.render.keyframes.Keyframe`): pages get it too.

        It is prepared (on a worker thread) for the caller's renderer once pages hold that renderer's
        bundle, and queued to every page; keyframes keep their order.
        """
        if self._make_keyframe is None or self._link is None:
            return
        self._call_keyframes.append(keyframe)
        self._prepare()

    def _prepare(self) -> None:
        if self._renderer is not None and (self._preparing is None or self._preparing.done()):
            self._preparing = asyncio.create_task(self._prepare_keyframes(), name="page-keyframes")

    async def _prepare_keyframes(self) -> None:
        assert self._make_keyframe is not None
        while self._renderer is not None and len(self.keyframes) < len(self._call_keyframes):
            renderer, bundle = self._renderer, self.bundle
            index = len(self.keyframes)
            keyframe = self._call_keyframes[index]
            try:
                data = await asyncio.to_thread(self._make_keyframe, renderer, keyframe, bundle_id(bundle),
                                               index) or b""
            except Exception as e:  # a keyframe that cannot be cut out: pages go without it, as the renderer does
                log.warning("a keyframe for token pages could not be prepared: %s: %s", type(e).__name__, e)
                data = b""
            if self._renderer is not renderer or self.bundle is not bundle:
                continue  # the call's renderer changed meanwhile: prepare again for the new one
            self.keyframes.append(data)
            if not data:
                continue
            self.stats.keyframes += 1
            self.stats.keyframe_bytes.append(len(data))
            for page in list(self.pages.values()):
                page.add_keyframe(data)

    def _set_bundle(self, bundle: bytes, renderer: Any = None) -> None:
        self.bundle = bundle
        self._renderer = renderer
        self.keyframes = []
        for page in list(self.pages.values()):
            if page.portrait.readyState == "open":
                page.send_portrait()
        self._prepare()

    def detach(self) -> None:
        """The call ended: pages hear so, go back to the first portrait, and wait for the next call."""
        if self._link is None:
            return
        self._link = None
        if self._building is not None:
            self._building.cancel()
            self._building = None
        if self._preparing is not None:
            self._preparing.cancel()
            self._preparing = None
        self._call_keyframes = []
        if self.bundle is not self.first_bundle:
            self._set_bundle(self.first_bundle)
        if self._hello is not None:
            self._broadcast(encode_message(Bye("the sender left")))
        self._hello = self._header = self._stats = None
        self._epoch_us = self._sent_offset_us = None
        self._audio_first = None
        self._audio_base = self._audio_next
        for page in self.pages.values():
            page.synced = False

    def on_control(self, data: bytes | str) -> None:
        """A control message from the sender (raw, as it arrived)."""
        try:
            msg = parse_message(data)
        except ProtocolError:
            return
        raw = bytes(data) if not isinstance(data, str) else b""
        if isinstance(msg, Start):
            self._epoch_us = msg.epoch_us
            self._sent_offset_us = None
            self.resync_clock()
            return
        if isinstance(msg, Hello):
            if self._hello is not None:
                return  # the header is fixed for a call
            self._hello = raw
            try:
                self._header = StreamHeader.from_bytes(msg.header)
            except StreamError:
                self._header = None  # the pages say why; nothing to parse packets with
        elif isinstance(msg, SenderStats):
            self._stats = raw
        if MessageType(raw[3]) in FORWARDED:
            self._broadcast(raw)

    def _start_message(self) -> bytes | None:
        if self._epoch_us is None or self._link is None:
            return None
        offset = self._link.clock.offset_us  # the sender's clock minus this receiver's
        self._sent_offset_us = offset
        return encode_message(Start(max(0, int(round(self._epoch_us - offset)))))

    def resync_clock(self) -> None:
        """Sends START again (in this receiver's clock) when the estimate of the sender's clock moved."""
        if self._epoch_us is None or self._link is None:
            return
        if self._sent_offset_us is not None and abs(self._link.clock.offset_us - self._sent_offset_us) < RESYNC_US:
            return
        start = self._start_message()
        if start is not None:
            self._broadcast(start)

    def _broadcast(self, data: bytes) -> None:
        for page in list(self.pages.values()):
            page.send_control(data)

    def on_motion(self, data: bytes | str) -> None:
        """A motion message (one or more frames) from the sender: to every page, once it can decode from there."""
        if not isinstance(data, bytes) or not self.pages:
            return
        self.motion_packets += 1
        decodable = False
        if self._header is not None:
            cfg = self._header.tokenizer
            try:
                # A message decodes on its own when its first frame does (the others follow from it).
                first = bitstream.parse_message(data, cfg.groups, cfg.codebook_size, self._header.version)[0]
                decodable = first.keyframe or not first.face
            except StreamError:
                pass
        for page in list(self.pages.values()):
            page.send_motion(data, decodable)

    # -- speech -------------------------------------------------------------

    def _tap(self, pc: Any, track: Any) -> None:
        if track.kind != "audio":
            return
        receiver = next((t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None)
        payload_types: set[int] = set()

        def on_packet(packet: Any) -> None:
            if not payload_types:  # the track is announced before the negotiated SDP is stored
                payload_types.update(_opus_payload_types(pc))
            if packet.payload_type in payload_types:
                self.on_rtp(packet)

        if not RTP_TAP or receiver is None or not tap_rtp(receiver, on_packet):
            log.warning("cannot relay the caller's Opus to token-mode pages: they get re-encoded speech")
            return
        self.audio_passthrough = True

    def on_rtp(self, packet: Any) -> None:
        """One RTP packet of the caller's Opus speech: its payload to every page, on a continuous timeline."""
        if not packet.payload or not self.pages:
            return
        if self._audio_first is None:
            self._audio_first = packet.timestamp
        pts = self._audio_base + ((packet.timestamp - self._audio_first) & 0xFFFFFFFF)
        self._audio_next = max(self._audio_next, pts + AUDIO_FRAME)
        self.audio_packets += 1
        for page in list(self.pages.values()):
            if isinstance(page.audio, RelayedAudioTrack):
                out = av.Packet(bytes(packet.payload))
                out.pts = pts
                out.time_base = fractions.Fraction(1, AUDIO_RATE)
                page.audio.push(out)

    def publish(self, status: bytes) -> None:
        """The status line every viewer gets (JSON text), to the token pages."""
        for page in self.pages.values():
            if page.status.readyState == "open":
                try:
                    page.status.send(status.decode())
                except Exception:  # closing under us
                    pass


def tap_rtp(receiver: Any, on_packet: Callable[[Any], None]) -> bool:
    """Calls ``on_packet(rtp_packet)`` for every RTP packet ``receiver`` gets, before aiortc decodes it.

    aiortc's transport hands packets to ``RTCRtpReceiver._handle_rtp_packet``;
    the tap wraps that method on this one receiver. Returns False (and taps
    nothing) where aiortc has no such method.
    """
    original = getattr(receiver, "_handle_rtp_packet", None)
    if original is None or not asyncio.iscoroutinefunction(original):
        return False

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        try:
            on_packet(packet)
        except Exception as e:  # relaying must never cost the call its own speech
            log.debug("relaying a speech packet failed: %r", e)
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle
    return True


def _opus_payload_types(pc: Any) -> set[int]:
    """The payload types the call's Opus speech comes in (from the negotiated SDP)."""
    desc = pc.remoteDescription
    if desc is None:
        return set()
    return {int(c.payloadType) for m in SessionDescription.parse(desc.sdp).media if m.kind == "audio"
            for c in m.rtp.codecs if c.mimeType.lower() == "audio/opus" and c.payloadType is not None}


def _send(channel: Any, data: bytes) -> None:
    if channel.readyState == "open":
        try:
            channel.send(data)
        except Exception:  # closing under us: the page is dropped by its state change
            pass
