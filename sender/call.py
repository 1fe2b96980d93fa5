"""One outgoing call: signaling, then frames -> packets on the motion channel, speech as Opus.

The order of events::

    signal (token) -> ICE/DTLS -> channels open -> START (media time 0)
    -> first face: HELLO(stream header) -> ACCEPT -> motion packets flow
                                                  -> the caller's picture, paced behind them (or NO_PICTURE)
                                        -> REFUSE -> the call ends with the reason

Face tracking runs on the call's own encoder thread, one frame at a time;
when it falls behind the camera, the newest frame is encoded and older ones
are skipped, which keeps latency down instead of building a queue. A source
of generated motion (``talk-send --audio-only``, :mod:`sender.speech`) brings
its own encoder and has every frame sent (``keep_all``).

Each frame's way through the sender is timed (:mod:`realtime.timing`:
capture, queue, tracking, tokenizing, send); the totals go to the receiver
every few seconds (:class:`realtime.protocol.Timing`) for its latency
breakdown, and each frame's lateness to the rate controller, which thereby
tells a busy CPU from a lossy link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCSessionDescription

from codec.api import EncoderConfig, FrameEncoder
from codec.bitstream import PACKET_HEADER_BYTES, bundle
from codec.container import write_tok
from codec.errors import TalkcodecError
from codec.face import FaceTracker
from codec.tokenizer import LIVE_REFINE_BUDGET_MS, LIVE_REFINE_STEPS
from realtime import signaling
from realtime.clock import MediaClock
from realtime.netem import LinkShaper, Netem, NetemConfig, ShapedLink
from realtime.peer import (
    IceConfig,
    PeerLink,
    gathered_description,
    new_peer_connection,
    prefer_short_srtp_tags,
    strip_audio_header_extensions,
)
from realtime.protocol import (
    Accept,
    Hello,
    NoPicture,
    NoPictureReason,
    Refuse,
    Report,
    SenderStats,
    Start,
    Timing,
)
from realtime.ratecontrol import RateConfig, RateController
from realtime.status import StatusLine, format_status
from realtime.timing import SENDER_STAGES, Histogram, StageSums, StageTimes
from realtime.wire import SENT
from sender.pictures import PictureConfig, SenderPictures
from sender.sources import CapturedFrame, FrameSource, OpusTrack, PcmSource

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
FRAME_INTERVAL_S = 0.04
# Picture bytes that may wait in the data channel's own buffer: more means the link is slower than the pacing,
# and another chunk would only queue in front of motion packets.
MAX_BUFFERED_PICTURE_BYTES = 512
# Motion packets flow every frame (a no-face packet when the face is out of view); only when none has gone for
# this long (the encoder stalled) do pictures go on their own, where they might meet the next one on the link.
PICTURES_ALONE_AFTER_S = 0.5
# A motion packet that left this much later than usual after its capture is followed by the next one sooner
# than a frame interval: no picture chunk behind it.
LATE_FOR_PICTURES_MS = 4.0
# SenderStats go every this many status ticks (each costs ~120 bytes on the wire), and once more at the end.
SENDER_STATS_EVERY = 2
# How often the sender's stage timings go to the receiver (a 60-byte message; a final one at the end).
TIMING_INTERVAL_S = 5.0


class CallRefused(TalkcodecError):
    """The receiver refused the stream (incompatible codec, busy, ...)."""


class PeerLost(TalkcodecError):
    """The receiver went away during the call."""


@dataclass(frozen=True)
class SenderConfig:
    """Settings of one call.

    Attributes:
        url: the receiver's signaling address, ``ws://HOST:PORT``.
        token: the room secret.
        duration_s: end the call after this much media time (None: when the source ends).
        layers: residual layers at most (1..4).
        max_kbps: cap on the motion rate (packets, headers included), None for none.
        max_wire_kbps: cap on the motion's rate on the wire (SCTP, DTLS and UDP/IP headers included).
        frames_per_packet: frames per message, or None to let the wire cap choose (1..3).
        entropy: range-code the tokens (smaller, but a lost packet spoils frames until the next keyframe).
        refine_steps: steps refining each frame's tokens against the decoder (:class:`codec.api.EncoderConfig`).
        refine_budget_ms: at most this long refining a frame (the steps left are skipped on a slow or busy
            machine, so the refinement adds a bounded latency).
        netem: loss/jitter injected on the motion channel (testing).
        audio_bitrate: Opus bitrate, bits/s.
        audio_frame_ms: speech per Opus packet (20, 40, 60 ms).
        wait_s: keep trying to reach the receiver this long (it may still be starting).
        pictures: what the call shows of the caller (reference picture, keyframes; see :mod:`sender.pictures`).
        link_kbps: testing: send every data-channel message through a simulated link of this rate
            (:class:`realtime.netem.LinkShaper`), None for none.
        link_overhead: bytes the simulated link adds to each message (headers below the data channel).
        ice: STUN/TURN servers and the relay-only policy.
        save_stream: also write every motion packet sent (before impairment) to this ``.tok``, or None.
    """

    url: str
    token: str
    duration_s: float | None = None
    layers: int = 4
    max_kbps: float | None = None
    max_wire_kbps: float | None = None
    frames_per_packet: int | None = 1
    entropy: bool = False
    refine_steps: int = LIVE_REFINE_STEPS
    refine_budget_ms: float | None = LIVE_REFINE_BUDGET_MS
    netem: NetemConfig = field(default_factory=NetemConfig)
    audio_bitrate: int = 24_000
    audio_frame_ms: int = 20
    wait_s: float = 0.0
    pictures: PictureConfig = field(default_factory=PictureConfig)
    link_kbps: float | None = None
    link_overhead: int = 0
    ice: IceConfig = field(default_factory=IceConfig)
    save_stream: Path | None = None


@dataclass
class SenderTotals:
    """What the call sent.

    Attributes:
        frames_captured: frames the source delivered.
        frames_encoded: frames that went through face tracking.
        frames_sent: motion frames handed to the channel.
        frames_no_face: of those, frames in which no face was found (sent as frames saying so,
            or, before the first face, not sent at all).
        messages_sent: data-channel messages they went in (one per frame, or fewer when bundled).
        motion_bytes: bytes of those messages (headers included).
        payload_bytes: of those, token payload bytes.
        frames_skipped: captured frames the encoder never took (it was busy with an older one).
        layers: residual layers sent at the end.
        frames_per_packet: frames per message at the end.
        send_delay_ms: per packet, capture to hand-off to the channel (face tracking and queueing).
        stages: per packet, the milliseconds of each sender stage.
        layer_changes: ``(media s, from, to, why)`` for each change of the layer count.
        layer_seconds: media seconds spent sending each layer count.
    """

    frames_captured: int = 0
    frames_encoded: int = 0
    frames_sent: int = 0
    frames_no_face: int = 0
    messages_sent: int = 0
    frames_skipped: int = 0
    motion_bytes: int = 0
    payload_bytes: int = 0
    layers: int = 4
    frames_per_packet: int = 1
    send_delay_ms: Histogram = field(default_factory=Histogram)
    stages: StageTimes = field(default_factory=lambda: StageTimes(SENDER_STAGES))
    layer_changes: list[tuple[float, int, int, str]] = field(default_factory=list)
    layer_seconds: dict[int, float] = field(default_factory=dict)


@dataclass
class _Frame:
    """A captured frame on its way through the sender, with its times (media ms)."""

    frame: Any
    handed_ms: float
    start_ms: float = 0.0
    end_ms: float = 0.0
    tracking_ms: float = 0.0


class TimedTracker:
    """A face tracker that remembers how long its last frame took (the tracking stage)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.last_ms = 0.0

    def track(self, frame: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._inner.track(frame)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1000.0

    def close(self) -> None:
        self._inner.close()


class CameraEncoder:
    """Camera frames -> packets: :class:`codec.api.FrameEncoder` (face tracking) behind the call's encoder interface.

    The interface, which a frame source with a ``make_encoder(EncoderConfig)``
    method provides itself: ``header`` (None until the reference is set),
    ``encode_frame(frame) -> bytes | None``, ``set_layers(n)``, ``close()``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self._tracker = TimedTracker(FaceTracker())
        self._inner = FrameEncoder(config, tracker=self._tracker)  # type: ignore[arg-type]

    @property
    def header(self) -> Any:
        return self._inner.header

    @property
    def reference_landmarks(self) -> Any:
        """``[478, 3]`` of the reference frame, None until it is set."""
        return self._inner.reference_landmarks

    @property
    def last_landmarks(self) -> Any:
        """``[478, 3]`` of the last frame encoded, None without a face."""
        return self._inner.last_landmarks

    @property
    def tracking_ms(self) -> float:
        """How long face tracking took on the last frame (the rest of encode_frame is tokenizing)."""
        return self._tracker.last_ms

    def encode_frame(self, frame: CapturedFrame) -> bytes | None:
        return self._inner.encode(frame.rgb, frame.media_ms)

    def set_layers(self, layers: int) -> None:
        self._inner.set_layers(layers)

    def close(self) -> None:
        self._inner.close()


class Sender:
    """Runs one call from a frame source (and optionally speech) to a receiver.

    Args:
        config: the call's settings.
        video: where frames come from: a camera or file (face tracked here), or a
            source with its own ``make_encoder`` (generated motion, :mod:`sender.speech`).
        pcm: where speech comes from, or None to send none.
        status: the live status line.
    """

    def __init__(self, config: SenderConfig, video: FrameSource, pcm: PcmSource | None,
                 status: StatusLine | None = None) -> None:
        self.config = config
        self.video = video
        self.pcm = pcm
        self.status = status or StatusLine(enabled=False)
        self.totals = SenderTotals(layers=config.layers)
        counts = (1, 2, 3) if config.frames_per_packet is None else (config.frames_per_packet,)
        self.rate = RateController(RateConfig(max_layers=config.layers, max_kbps=config.max_kbps,
                                              max_wire_kbps=config.max_wire_kbps, frames_per_packet=counts))
        self.totals.frames_per_packet = self.rate.frames_per_packet
        self._interval = StageSums()  # stage times since the last Timing message
        self._sent: list[bytes] | None = [] if config.save_stream is not None else None
        self._layers_since_ms = 0.0
        self._encoding: _Frame | None = None
        self.link: PeerLink | None = None
        self.loss = 0.0
        self._clock: MediaClock | None = None
        self._accepted = asyncio.Event()
        self._refused: str | None = None
        # Frames waiting for the encoder: a camera's newest only (older ones are stale), or all of them.
        self._keep_all = bool(getattr(video, "keep_all", False))
        self._pending: deque[_Frame] = deque(maxlen=None if self._keep_all else 1)
        self._frame_ready = asyncio.Event()
        self._capture_done = asyncio.Event()
        self._hello_sent = False
        self._held: list[bytes] = []
        self._bundle: list[bytes] = []  # frames waiting for the rest of their message
        self._bundle_items: list[_Frame] = []  # their frames, for the timing of each
        self._bundle_late_ms, self._bundle_timed = 0.0, False  # of the last frame held
        self._bundle_timer: asyncio.TimerHandle | None = None
        self._track: OpusTrack | None = None
        self._netem: Netem | None = None
        self._encoder: Any = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-encoder")
        self.pictures = SenderPictures(config.pictures, time.monotonic)
        self.shaped: ShapedLink | None = None
        self._last_motion_s = 0.0
        self._last_picture_s = 0.0
        self._recent_delays: deque[float] = deque(maxlen=25)  # capture -> send, ms, of the last packets

    @property
    def accepted(self) -> bool:
        """The receiver accepted the stream: motion flows."""
        return self._accepted.is_set()

    @property
    def audio_bytes(self) -> int:
        """Opus payload bytes sent so far."""
        return self._track.bytes_sent if self._track is not None else 0

    def wire_stats(self) -> dict[str, Any]:
        """The call's datagrams, ICE path and silences as ``--stats-json`` reports them."""
        if self.link is None:
            return {"wire": None, "ice": None, "peer_silences": None}
        return {"wire": self.link.wire.totals.report(SENT), "ice": self.link.ice_pair,
                "peer_silences": self.link.silence_report()}

    @property
    def netem_dropped(self) -> int:
        """Motion packets the test hook dropped."""
        return self._netem.dropped if self._netem is not None else 0

    def stats(self) -> dict[str, Any]:
        """What the call sent and how long each frame took on the way out (``talk-send --stats-json``)."""
        t, rc, n = self.totals, self.rate, self._netem
        return {
            "frames_captured": t.frames_captured, "frames_encoded": t.frames_encoded,
            "frames_skipped": t.frames_skipped, "frames_sent": t.frames_sent, "frames_no_face": t.frames_no_face,
            "messages_sent": t.messages_sent, "frames_per_packet": t.frames_per_packet,
            "motion_bytes": t.motion_bytes, "payload_bytes": t.payload_bytes, "layers": t.layers,
            "audio_bytes": self.audio_bytes, "netem_dropped": self.netem_dropped,
            "netem": None if n is None or not n.config.active else {
                "random": n.dropped_random, "burst": n.dropped_burst, "outage": n.dropped_outage,
                "bursts": n.bursts},
            "send_delay_ms": t.send_delay_ms.summary(),
            "latency_breakdown_ms": t.stages.summary(),
            "rate_control": {
                "reports": rc.reports, "lossy_reports": rc.lossy_reports, "held_for_cpu": rc.held_for_cpu,
                "layer_changes": [{"at_s": at, "from": a, "to": b, "why": why} for at, a, b, why in t.layer_changes],
                "layer_seconds": {str(k): round(v, 2) for k, v in sorted(t.layer_seconds.items(), reverse=True)},
            },
        }

    async def run(self, stop: asyncio.Event) -> str:
        """Places the call and runs it to its end.

        Args:
            stop: set to end the call (Ctrl-C).
        Returns:
            why the call ended, for the user.
        Raises:
            SignalingError: the receiver is unreachable or refused the token.
            CallRefused: the receiver refused the stream.
            PeerLost: the receiver vanished mid-call.
        """
        make = getattr(self.video, "make_encoder", CameraEncoder)
        loop = asyncio.get_running_loop()
        self._encoder = await loop.run_in_executor(
            self._pool, lambda: make(EncoderConfig(layers=self.config.layers, entropy=self.config.entropy,
                                             refine_steps=self.config.refine_steps,
                                             refine_budget_ms=self.config.refine_budget_ms)))
        if self.config.pictures.send and self.config.pictures.photo is not None:
            await self.pictures.start_photo()
        self._apply_layers(self.rate.layers)  # a rate cap applies from the first frame
        pc = new_peer_connection(self.config.ice)
        link = self.link = PeerLink(pc)
        if self.config.link_kbps is not None:
            link.shaped = self.shaped = ShapedLink(LinkShaper(self.config.link_kbps, self.config.link_overhead))
        started = asyncio.Event()
        if self.pcm is not None:
            self._track = OpusTrack(self.pcm, lambda: self._clock, started, self.config.audio_bitrate,
                                    self.config.audio_frame_ms)
            pc.addTrack(self._track)
        prefer_short_srtp_tags(pc)
        tasks: list[asyncio.Task[Any]] = []
        reason = "the call ended"
        try:
            answer = await self._signal_unless(stop, pc)
            if answer is None:
                return "stopped before the receiver answered"
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            try:
                await link.wait_open()
            except (asyncio.TimeoutError, TimeoutError):
                raise signaling.SignalingError(
                    "no media path to the receiver (ICE/DTLS failed): check that UDP is open "
                    "between the machines") from None
            link.start()
            self._netem = Netem(self.config.netem, link.send_motion)
            self._layers_since_ms = 0.0
            clock = self._clock = MediaClock()
            self.pictures.call_started()
            started.set()
            link.send(Start(clock.epoch_wall_us))
            self.status.message(f"connected to {self.config.url}")
            tasks = [asyncio.create_task(self._capture(clock), name="capture"),
                     asyncio.create_task(self._encode(), name="encode"),
                     asyncio.create_task(self._control(link), name="control"),
                     asyncio.create_task(self._report(link, clock), name="stats"),
                     asyncio.create_task(self._picture_timer(), name="pictures")]
            waits = {asyncio.create_task(stop.wait()): "stopped", asyncio.create_task(link.ended.wait()): "peer",
                     asyncio.create_task(self._capture_done.wait()): "done"}
            try:
                done, _ = await asyncio.wait(list(waits) + tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            for t in done:
                if t in tasks and t.exception() is not None:
                    raise t.exception()
            if self._refused is not None:
                raise CallRefused(f"the receiver refused the stream: {self._refused}")
            if link.ended.is_set():
                if link.end_reason.startswith("the peer left"):  # a bye: the receiver hung up
                    return link.end_reason
                raise PeerLost(f"call lost: {link.end_reason}")
            reason = "stopped" if stop.is_set() else "the source ended"
            return reason
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._flush()
            self._send_stats(link)  # the receiver's totals, exact at the end
            if self._netem is not None:
                self._netem.close()
            self._send_timing(link)
            self._count_layer_time()
            await link.close("sender finished" if self._refused is None else "refused")
            if self._track is not None:
                self._track.stop()
            self.pictures.close()
            self.video.close()
            encoder, self._encoder = self._encoder, None
            if self._sent is not None and encoder is not None and encoder.header is not None:
                assert self.config.save_stream is not None
                write_tok(self.config.save_stream, encoder.header, self._sent)
            if encoder is not None:
                await asyncio.get_running_loop().run_in_executor(self._pool, encoder.close)
            self._pool.shutdown(wait=True)
            self.status.clear()

    async def _signal_unless(self, stop: asyncio.Event, pc: Any) -> str | None:
        """The receiver's answer, or None when ``stop`` comes first (Ctrl-C while it waits for a receiver)."""
        signal_task = asyncio.ensure_future(self._signal(pc))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({signal_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not signal_task.done():
                signal_task.cancel()
                await asyncio.gather(signal_task, return_exceptions=True)
        return None if signal_task.cancelled() else signal_task.result()

    async def _signal(self, pc: Any) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.wait_s
        while True:
            try:
                return await signaling.call(self.config.url, self.config.token, lambda: self._offer(pc))
            except signaling.ReceiverUnreachable:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _offer(self, pc: Any) -> str:
        return strip_audio_header_extensions(await gathered_description(pc, offer=True))

    async def _capture(self, clock: MediaClock) -> None:
        limit = None if self.config.duration_s is None else self.config.duration_s * 1000.0
        async for frame in self.video.frames(clock):
            if limit is not None and frame.media_ms >= limit:
                break
            self.totals.frames_captured += 1
            now = clock.now_ms()
            if not self._keep_all and self._pending and self._pending[0] is not self._encoding:
                # From a camera, an older frame the encoder has not taken yet is stale: skipped.
                self.totals.frames_skipped += 1
                self.rate.on_frame(now, None)
            self._pending.append(_Frame(frame, now))
            self._frame_ready.set()
        # Let the last frame through the encoder before ending the call.
        while self._pending:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        self._capture_done.set()

    async def _encode(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._frame_ready.wait()
            self._frame_ready.clear()
            while self._pending:
                item = self._encoding = self._pending[0]
                try:
                    packet = await loop.run_in_executor(self._pool, self._timed_encode, item)
                finally:
                    self._encoding = None
                if self._pending and self._pending[0] is item:
                    self._pending.popleft()
                self.totals.frames_encoded += 1
                if isinstance(self._encoder, CameraEncoder):
                    self.pictures.on_frame(item.frame.rgb, item.frame.media_ms, self._encoder.reference_landmarks,
                                           self._encoder.last_landmarks)
                if packet is None or len(packet) == PACKET_HEADER_BYTES:  # None: no reference face yet
                    self.totals.frames_no_face += 1
                if packet is not None:
                    self._packet(packet, item)

    def _timed_encode(self, item: _Frame) -> bytes | None:
        """Encodes one frame on the encoder's thread, noting when it began and ended."""
        assert self._clock is not None
        item.start_ms = self._clock.now_ms()
        try:
            return self._encoder.encode_frame(item.frame)
        finally:
            item.end_ms = self._clock.now_ms()
            item.tracking_ms = float(getattr(self._encoder, "tracking_ms", 0.0))

    def _packet(self, packet: bytes, item: _Frame) -> None:
        if not self._hello_sent and self._encoder.header is not None and self.link is not None:
            self.link.send(Hello(self._encoder.header.to_bytes()))
            self._hello_sent = True
        if not self._accepted.is_set() or self._netem is None:
            # Fixed-mode packets stand alone: those from before the receiver accepted are
            # stale and dropped. Entropy-coded ones predict from each other: keep the chain.
            if self.config.entropy:
                self._held.append(packet)
            return
        for held in self._held:
            self._send(held, None)
        self._held.clear()
        self._send(packet, item)

    def _send(self, packet: bytes, item: _Frame | None) -> None:
        """One frame's packet: sent at once, or held until its message has ``frames_per_packet`` frames."""
        late_ms = 0.0
        media_ms = None if item is None else item.frame.media_ms
        if self._sent is not None:
            self._sent.append(packet)
        if self._clock is not None and item is not None:
            now = self._clock.now_ms()
            delay = now - item.frame.media_ms
            self.totals.send_delay_ms.add(delay)
            # The sender's own lateness, before any bundling: what tells a busy CPU from a lossy link.
            self.rate.on_frame(now, delay)
            if len(self._recent_delays) >= 5:
                late_ms = delay - float(np.median(self._recent_delays))
            self._recent_delays.append(delay)
            self._bundle_items.append(item)
        self.totals.frames_sent += 1
        self.totals.payload_bytes += len(packet) - PACKET_HEADER_BYTES
        self._bundle.append(packet)
        self._bundle_late_ms, self._bundle_timed = late_ms, media_ms is not None
        if len(self._bundle) >= self.rate.frames_per_packet:
            self._flush()
        elif self._bundle_timer is None:
            # Frames come every 40 ms; should they stop (a stalled camera), the message goes anyway.
            wait = self.rate.frames_per_packet * FRAME_INTERVAL_S
            self._bundle_timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        """Sends the frames held as one message (as single ones, should they not go together)."""
        if self._bundle_timer is not None:
            self._bundle_timer.cancel()
            self._bundle_timer = None
        frames, self._bundle = self._bundle, []
        if not frames or self._netem is None:
            return
        try:
            messages = [bundle(frames)]
        except ValueError:  # not consecutive, or too far apart in time
            messages = frames
        for m in messages:
            self._netem.send(m)
            self.totals.messages_sent += 1
            self.totals.motion_bytes += len(m)
        items, self._bundle_items = self._bundle_items, []
        if self._clock is not None:
            now = self._clock.now_ms()
            for item in items:  # a frame's "send" stage includes its wait for the rest of its message
                self._note_times(item, now)
        self._last_motion_s = time.monotonic()
        # A picture chunk rides right behind the motion message, in the gap before the next one. Not
        # when that gap will be short: another frame already waits for the encoder, or the last frame left late
        # (the next, on time, follows sooner than a frame interval); but at least every other frame, so that a
        # busy encoder does not starve the pictures.
        short_gap = bool(self._pending) or self._bundle_late_ms > LATE_FOR_PICTURES_MS
        starved = self._last_motion_s - self._last_picture_s >= 2 * FRAME_INTERVAL_S
        if self._bundle_timed and (starved or not short_gap):
            self._send_picture()

    def _send_picture(self) -> None:
        """Sends the next picture message if the pacing allows one and the channel is not backed up."""
        link = self.link
        if link is None or not self._accepted.is_set():
            return
        if link.control.bufferedAmount > MAX_BUFFERED_PICTURE_BYTES:
            return
        raw = self.pictures.next_message()
        if raw is not None:
            link.send_encoded(raw, "picture")
            self._last_picture_s = time.monotonic()

    async def _picture_timer(self) -> None:
        """Sends picture messages while no motion packets carry them along (no face in view, say)."""
        await self._accepted.wait()
        while True:
            await self.pictures.ready.wait()
            await asyncio.sleep(max(self.pictures.wait_s() or 0.0, FRAME_INTERVAL_S))
            if time.monotonic() - self._last_motion_s > PICTURES_ALONE_AFTER_S:
                self._send_picture()

    def _note_times(self, item: _Frame, sent_ms: float) -> None:
        """One sent frame's stage times: into the totals, the next Timing message and the rate controller."""
        media_ms = float(item.frame.media_ms)
        work = max(0.0, item.end_ms - item.start_ms)
        tracking = min(work, item.tracking_ms)
        times = {"capture": item.handed_ms - media_ms, "queue": item.start_ms - item.handed_ms,
                 "tracking": tracking, "tokenizing": work - tracking, "send": sent_ms - item.end_ms}
        for stage, ms in times.items():
            self.totals.stages.add(stage, ms)
        self._interval.add_frame(times)

    def _send_timing(self, link: PeerLink) -> None:
        if self._interval.frames:
            link.send(Timing.of(self._interval))
            self._interval = StageSums()

    async def _control(self, link: PeerLink) -> None:
        while True:
            msg = await link.messages.get()
            if isinstance(msg, Accept):
                self._accepted.set()
                self.status.message("the receiver accepted the stream")
                if not self.config.pictures.send:
                    link.send(NoPicture(NoPictureReason.PRIVATE))
                elif self.config.pictures.photo is None and not isinstance(self._encoder, CameraEncoder):
                    link.send(NoPicture(NoPictureReason.NO_CAMERA))
            elif isinstance(msg, Refuse):
                self._refused = msg.reason
                link.end("refused")
                return
            elif isinstance(msg, Report):
                self.loss = msg.loss
                now = None if self._clock is None else self._clock.now_ms()
                self._apply_layers(self.rate.on_loss(msg.loss, now))

    def _count_layer_time(self) -> None:
        """Adds the media time since the last change to the current layer count's total."""
        if self._clock is None:
            return
        now = self._clock.now_ms()
        t = self.totals
        t.layer_seconds[t.layers] = t.layer_seconds.get(t.layers, 0.0) + max(0.0, now - self._layers_since_ms) / 1000
        self._layers_since_ms = now

    def _apply_layers(self, layers: int) -> None:
        cap = f", cap {self.config.max_kbps:g} kbps" if self.config.max_kbps else ""
        if self.config.max_wire_kbps:
            cap += f", wire cap {self.config.max_wire_kbps:g} kbps"
        if layers != self.totals.layers:
            self.status.message(f"motion layers {self.totals.layers} -> {layers} (loss {self.loss * 100:.1f}%{cap})")
            self._count_layer_time()
            at = 0.0 if self._clock is None else self._clock.now_ms() / 1000
            self.totals.layer_changes.append((round(at, 2), self.totals.layers, layers, self.rate.last_reason))
            self.totals.layers = layers
            self._encoder.set_layers(layers)
        per = self.rate.frames_per_packet
        if per != self.totals.frames_per_packet:
            self.status.message(f"frames per message {self.totals.frames_per_packet} -> {per}{cap}")
            self.totals.frames_per_packet = per

    def _send_stats(self, link: PeerLink) -> None:
        t = self.totals
        link.send(SenderStats(t.frames_sent, t.motion_bytes, self.audio_bytes, t.layers))

    async def _report(self, link: PeerLink, clock: MediaClock) -> None:
        last_bytes, last_frames, last_audio = 0, 0, 0
        tick = 0
        last_timing = clock.now_ms()
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            tick += 1
            t = self.totals
            audio = self.audio_bytes
            if tick % SENDER_STATS_EVERY == 0:
                self._send_stats(link)
            if clock.now_ms() - last_timing >= TIMING_INTERVAL_S * 1000:
                self._send_timing(link)
                last_timing = clock.now_ms()
            kbps = (t.motion_bytes - last_bytes) * 8 / 1000 / STATS_INTERVAL_S
            fps = (t.frames_sent - last_frames) / STATS_INTERVAL_S
            audio_kbps = (audio - last_audio) * 8 / 1000 / STATS_INTERVAL_S
            if t.frames_sent > last_frames:
                self._apply_layers(self.rate.on_rate(kbps, t.layers))
            last_bytes, last_frames, last_audio = t.motion_bytes, t.frames_sent, audio
            state = "" if self._accepted.is_set() else ("waiting for a face" if not self._hello_sent
                                                        else "waiting for the receiver")
            self.status.update(format_status(fps, kbps, link.clock.rtt_ms, self.loss,
                                             extra=f"{t.layers} layers | audio {audio_kbps:4.1f} kbps"
                                             + (f" | {state}" if state else "")))
