"""One incoming call: packets -> jitter buffer -> ticks at 25 fps -> render stage and sinks.

The order of events::

    START (sender's media time 0) -> HELLO(stream header) -> checked:
        compatible   -> ACCEPT, a decoder for the portrait; motion flows
                        -> the caller's picture (chunks): the portrait from then on
                           (a placeholder until it has arrived), keyframes later
        incompatible -> REFUSE with the reason; the call ends

Motion packets are decoded as they arrive (on the event loop: it takes about
a millisecond) and go into the jitter buffer with their arrival time; the playout loop then
takes one frame per 40 ms tick, concealing what is missing. A fresh frame is
smoothed with its neighbours (:mod:`codec.smoothing`), so each tick is shown
one frame interval after it is due, when the next frame is normally here.
Speech frames go to the recording, stamped with the same media time. Each fresh frame's
receiver stages (decode, jitter buffer, pacing, then the render stage's) are
timed for the latency breakdown, and the sender's own stages arrive in
:class:`realtime.protocol.Timing` messages. With a
:class:`receiver.fallback.MotionFallback` (``--animate-from-audio``), the
speech also drives generated motion, shown while motion packets are missing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError

from codec.api import FrameDecoder
from codec.bitstream import StreamHeader
from codec.errors import StreamError
from codec.picture import Picture
from codec.render.keyframes import Keyframe
from codec.render.portrait import Portrait, portrait_from_picture
from codec.smoothing import LOOKAHEAD_FRAMES, smooth_frame
from realtime.clock import monotonic_ms, wall_us
from realtime.drops import Drops, error_kind
from realtime.jitterbuffer import JitterBuffer, Playout, PlayoutKind, PushResult
from realtime.peer import AUDIO_JITTER_MS, PeerLink, fit_audio_jitter_buffer
from realtime.protocol import (
    Accept,
    Hello,
    NoPicture,
    PictureBegin,
    PictureData,
    Refuse,
    Report,
    SenderStats,
    Start,
    Timing,
)
from receiver.fallback import FallbackConfig, MotionFallback
from receiver.pictures import NO_PICTURE_HINT, CallPictures
from receiver.placeholder import WAITING, PlaceholderRenderer
from receiver.playout import MotionLog, Tick, tick_landmarks
from receiver.recording import RecordingProcess
from receiver.rendering import RenderStage, RenderTiming
from receiver.sinks import CallStats

log = logging.getLogger(__name__)

FRAME_INTERVAL_MS = 40.0
# The jitter buffer's head room: at least this (it grows to the spread of recent transits), at most
# MAX_HEADROOM_MS. 20 ms, not the 40 it was: on loopback the spread above the fastest transit is 5-15 ms on a
# quiet machine, and whatever more a busy sender adds the spread term covers; the 20 ms saved come off every
# frame. The most stays 250 ms: a sender generating motion from speech (talk-send --audio-only) spreads its
# frames over hundreds of ms, and a tighter cap made most of them late (bench.measure.latency, test_call).
DEFAULT_JITTER_MS = 20.0
MAX_HEADROOM_MS = 250.0
REPORT_INTERVAL_S = 1.0
# A playout loop this far behind its schedule (the process was stopped, say) jumps ahead;
# less than that, it catches up tick by tick, which costs little and keeps the recording whole.
MAX_BEHIND_MS = 5000.0


class Call:
    """Runs one call until the link ends.

    Args:
        link: the call's channels.
        portrait_landmarks: ``[478, 3]`` the portrait at rest (also the decoder's target).
        render: the shared render stage.
        stats: the receiver's running statistics.
        recorder: the recording, or None.
        jitter_ms: the jitter buffer's target delay.
        on_audio: also receives each decoded ``av.AudioFrame`` of speech (browser viewers).
        fallback: animate from the received speech while motion packets are missing, or None.
        make_renderer: renders the caller's own picture once it arrives (``portrait -> renderer``); None when
            the receiver animates a ``--portrait`` of its own.
        placeholder: the placeholder the render stage starts on, when there is one (its caption says why).
        frames_wanted: whether anyone needs rendered frames now (a window, a recording, a video
            viewer); ticks nobody needs are not rendered. None: always.
        on_renderer: told of the caller's renderer once the caller's picture has arrived (browsers that
            render the call themselves need that portrait too).
        on_keyframe: told of each keyframe given to the caller's renderer (browsers need them too).
        smoothing: smooth decoded motion with the next frame (one frame interval more latency).
        save_motion: also keeps every tick's landmarks (``talk-recv --save-motion``), or None.
    """

    def __init__(self, link: PeerLink, portrait_landmarks: np.ndarray, render: RenderStage, stats: CallStats,
                 recorder: RecordingProcess | None = None, jitter_ms: float = DEFAULT_JITTER_MS,
                 on_audio: Callable[[Any], None] | None = None, fallback: FallbackConfig | None = None,
                 make_renderer: Callable[[Portrait], Any] | None = None,
                 placeholder: PlaceholderRenderer | None = None,
                 frames_wanted: Callable[[], bool] | None = None,
                 on_renderer: Callable[[Any], None] | None = None, smoothing: bool = True,
                 save_motion: MotionLog | None = None, on_keyframe: Callable[[Keyframe], None] | None = None) -> None:
        self.link = link
        self.frames_wanted = frames_wanted
        self.on_renderer = on_renderer
        self.on_keyframe = on_keyframe
        self.lookahead_ms = LOOKAHEAD_FRAMES * FRAME_INTERVAL_MS if smoothing else 0.0
        self._layers = 4  # of the latest decoded frame: how coarse its quantization is
        self.save_motion = save_motion
        self.on_audio = on_audio
        self.rest = np.asarray(portrait_landmarks, np.float32)
        self.fallback = None if fallback is None else MotionFallback(fallback, self.rest)
        self.render = render
        self.stats = stats
        self.recorder = recorder
        self.buffer: JitterBuffer[np.ndarray | None] = JitterBuffer(
            jitter_ms, FRAME_INTERVAL_MS, max_delay_ms=MAX_HEADROOM_MS)
        self.drops = Drops(log, "motion packet")
        self.epoch_wall_us: int | None = None
        self._decoder: Any = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="motion-decode")
        self._tasks: list[asyncio.Task[Any]] = []
        self._first_ts: int | None = None
        self._last_ts: int | None = None
        self._sender_audio_bytes = 0
        self._arrived = asyncio.Event()
        self._make_renderer = make_renderer
        self.placeholder = placeholder
        self.pictures = CallPictures(make_renderer is not None, self._use_picture, self._keyframe, self._media_now_ms)
        self._max_decoded_ts = -1  # newest timestamp decoded so far
        self._last_played_ms = -1.0  # media time of the last tick handed to the render stage
        self._pending_face: tuple[int, Portrait, Any] | None = None  # (after timestamp, portrait, renderer)
        self._face_after_ms: float | None = None  # ticks later than this show the caller's own face
        self.time_to_face_ms: float | None = None
        render.reset()
        if placeholder is not None:
            self._caption(WAITING)
        self._times: dict[int, tuple[float, float]] = {}  # timestamp -> (arrived, decoded), until played
        link.motion.on("message", self._on_motion)
        link.pc.on("track", self._on_track)

    # -- arrivals -----------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        """Starts one of the call's tasks; a task that fails ends the call and says why."""
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("the call's %s task failed: %r", name, t.exception())
                self.link.end(f"internal error in {name}: {t.exception()!r}")

        task.add_done_callback(done)
        self._tasks.append(task)

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            # Hold one packet until the first says how long they are: a buffer that starts deeper
            # than it needs never drains (aiortc hands out one frame per packet that arrives).
            fit_audio_jitter_buffer(self.link.pc, track, AUDIO_JITTER_MS)
            self._spawn(self._audio(track), "audio")

    async def _audio(self, track: Any) -> None:
        packet_ms = 0.0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            ms = frame.samples * 1000.0 / frame.sample_rate
            if ms != packet_ms:  # the sender's Opus packets are this long (--audio-ms)
                packet_ms = ms
                fit_audio_jitter_buffer(self.link.pc, track, ms)
            if frame.pts is not None:
                captured = self.capture_wall_us(frame.pts * 1000.0 / frame.sample_rate)
                if captured is not None:
                    self.stats.audio_latency_ms.add((wall_us() - captured) / 1000.0)
            self.stats.audio_frames += 1
            self.stats.audio_media_ms += frame.samples * 1000.0 / frame.sample_rate
            if self.fallback is not None:
                self.fallback.on_audio(frame)
            if self.on_audio is not None:
                self.on_audio(frame)
            if self.recorder is not None:
                self.recorder.add_audio(frame)

    def _on_motion(self, data: bytes | str) -> None:
        if not isinstance(data, bytes):
            self.drops.note("text message", "motion packets are binary")
            return
        if self._decoder is None:
            self.drops.note("before the stream header", "no accepted stream header yet")
            return
        arrived, arrived_wall = monotonic_ms(), wall_us()
        # Decoded here, on the event loop (about a millisecond a frame): a hop to a decoder thread and back
        # cost two thread wake-ups, which on a busy machine took longer than the decoding.
        try:
            frames = self._decoder.decode_message(data, self.sender_media_ms())
        except StreamError as e:
            self.drops.note(error_kind(e), str(e))
            return
        except Exception as e:  # a bug in decoding must not end the call: drop and say so once
            self.drops.note(f"decoder failure {type(e).__name__}", str(e))
            return
        # A frame is here when it is decoded: the jitter buffer's transit includes decoding,
        # so its delay covers a slow decoder too.
        decoded = monotonic_ms()
        self.stats.motion_packet_bytes += len(data)
        self.stats.motion_messages += 1
        for frame in frames:  # a message holds one frame, or several (--frames-per-packet)
            if isinstance(frame, StreamError):  # predicts from a lost frame: concealed like a lost one
                self.drops.note(error_kind(frame), str(frame))
                continue
            self._max_decoded_ts = max(self._max_decoded_ts, int(frame.timestamp_ms))
            self._arrived_frame(frame, arrived, arrived_wall, decoded)

    def sender_media_ms(self) -> float | None:
        """The sender's media clock now, as estimated here (None before its START)."""
        if self.epoch_wall_us is None:
            return None
        return (wall_us() - self.epoch_wall_us + self.link.clock.offset_us) / 1000.0

    def _arrived_frame(self, frame: Any, arrived: float, arrived_wall: int, decoded: float) -> None:
        self._layers = frame.layers or self._layers
        value = frame.landmarks.astype(np.float32) if frame.face and frame.landmarks is not None else None
        result = self.buffer.push(frame.seq, frame.timestamp_ms, value, decoded)
        if result is PushResult.OUT_OF_RANGE:
            self.drops.note("timestamp out of range", f"timestamp {frame.timestamp_ms} ms")
            return
        if result is PushResult.DUPLICATE:
            return
        self._times[frame.timestamp_ms] = (arrived, decoded)
        captured = self.capture_wall_us(frame.timestamp_ms)
        if captured is not None:
            self.stats.transit_ms.add((arrived_wall - captured) / 1000.0)
        self.stats.frames_received += 1
        self.stats.frames_no_face += 0 if frame.face else 1
        self.stats.motion_payload_bytes += frame.payload_bytes
        ts = frame.timestamp_ms
        self._first_ts = ts if self._first_ts is None else min(self._first_ts, ts)
        self._last_ts = ts if self._last_ts is None else max(self._last_ts, ts)
        self._arrived.set()

    # -- control ------------------------------------------------------------

    async def _control(self) -> None:
        while True:
            msg = await self.link.messages.get()
            if isinstance(msg, Start):
                self.epoch_wall_us = msg.epoch_us
            elif isinstance(msg, Hello):
                await self._hello(msg)
            elif isinstance(msg, SenderStats):
                self._sender_audio_bytes = msg.audio_bytes
            elif isinstance(msg, Timing):
                msg.add_to(self.stats.sender_stages)
            elif isinstance(msg, (PictureBegin, PictureData, NoPicture)):
                self.pictures.on_message(msg)
                if isinstance(msg, NoPicture) and self.placeholder is not None and self._make_renderer is not None:
                    self._caption(NO_PICTURE_HINT[msg.reason].split(" (")[0])

    # -- the caller's picture -----------------------------------------------

    def _caption(self, message: str) -> None:
        """The placeholder's caption, on the live view and in the recording."""
        assert self.placeholder is not None
        self.placeholder.set_message(message)
        if self.recorder is not None:
            self.recorder.caption(message)

    def _media_now_ms(self) -> float | None:
        """Media time now: how long ago, on this clock, the sender's call started."""
        start = self.capture_wall_us(0.0)
        return None if start is None else (wall_us() - start) / 1000.0

    async def _use_picture(self, picture: Picture) -> None:
        """The caller's reference picture arrived: from the next decoded frame on, render the caller on it."""
        assert self._make_renderer is not None
        portrait = await asyncio.to_thread(portrait_from_picture, picture)
        renderer = await asyncio.to_thread(self._make_renderer, portrait)
        # Packets are decoded on this loop, so this falls between two of them: every packet after it decodes
        # onto the new portrait, and the frames before (up to the newest timestamp decoded) onto the placeholder.
        # The render stage switches at the first tick that shows one of the new frames (_switch_when_due):
        # ticks before it, a concealed one running ahead of the frames included, hold placeholder landmarks.
        self._pending_face = (self._set_portrait(portrait.landmarks), portrait, renderer)

    def _switch_when_due(self, decision: Playout[np.ndarray | None]) -> None:
        """At the first tick showing a frame decoded onto the caller's picture, the render stage switches to it."""
        if self._pending_face is None or decision.frame is None or decision.frame.timestamp_ms <= self._pending_face[0]:
            return
        _, portrait, renderer = self._pending_face
        self._pending_face = None
        self.rest = np.asarray(portrait.landmarks, np.float32)
        if self.fallback is not None:
            self.fallback.set_portrait(self.rest)
        assert self._make_renderer is not None
        self._face_after_ms = self._last_played_ms
        # The recording process builds its own renderer of the same picture.
        self.render.switch(renderer, self._last_played_ms, functools.partial(self._make_renderer, portrait))
        if self.on_renderer is not None:
            self.on_renderer(renderer)

    def _set_portrait(self, landmarks: np.ndarray) -> int:
        if self._decoder is not None:
            self._decoder.set_portrait(landmarks)
        return self._max_decoded_ts

    def _keyframe(self, picture: Picture) -> None:
        keyframe = Keyframe(picture.image, picture.landmarks, picture.kind.label)
        self.render.add_keyframe(keyframe)
        if self.on_keyframe is not None:
            self.on_keyframe(keyframe)

    async def _hello(self, msg: Hello) -> None:
        if self._decoder is not None:
            return  # the stream header is fixed for the call
        try:
            header = StreamHeader.from_bytes(msg.header)
            loop = asyncio.get_running_loop()
            # The current portrait at rest: the caller's picture may have come first (a hostile sender's order).
            self._decoder = await loop.run_in_executor(self._pool, lambda: FrameDecoder(header, self.rest))
        except Exception as e:  # StreamError says why; anything else still must not hang the call
            if not isinstance(e, StreamError):
                e = StreamError(f"this receiver cannot decode the stream ({type(e).__name__}: {e})")
            log.warning("refused the sender's stream: %s", e)
            self.link.send(Refuse(str(e)))
            self.stats.calls_refused += 1
            await asyncio.sleep(0.2)  # let the refusal reach the sender before the call is torn down
            self.link.end(f"refused the sender's stream: {e}")
            return
        self.link.send(Accept())
        log.info("accepted a stream: %s mode, %d layers", header.mode, header.layers)

    async def _report(self) -> None:
        last = (0, 0, 0)
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            s = self.buffer.stats
            now = (s.expected, s.received, s.late)
            if now[0] > last[0]:
                self.link.send(Report(now[0] - last[0], now[1] - last[1], now[2] - last[2]))
            last = now

    # -- playout ------------------------------------------------------------

    def capture_wall_us(self, media_ms: float) -> float | None:
        """When the sender captured media time ``media_ms``, on this machine's wall clock."""
        if self.epoch_wall_us is None:
            return None
        return self.epoch_wall_us + media_ms * 1000.0 - self.link.clock.offset_us

    async def _playout(self) -> None:
        await self._arrived.wait()
        first = self.buffer.first_timestamp_ms
        p = float(first if first is not None else self._first_ts or 0)
        index = 0
        previous: np.ndarray | None = None  # the last tick's decoded landmarks, when fresh with a face
        while True:
            due = self.buffer.playout_time(p) + self.lookahead_ms
            wait = due - monotonic_ms()
            if wait > 0:
                await asyncio.sleep(wait / 1000.0)
            elif -wait > MAX_BEHIND_MS:
                skip = int(-wait // FRAME_INTERVAL_MS)
                self.stats.frames_skipped += skip
                p += skip * FRAME_INTERVAL_MS
                continue
            fired = monotonic_ms()
            decision = self.buffer.pop(p)
            self._switch_when_due(decision)
            landmarks, face = tick_landmarks(decision, self.rest)
            fresh = landmarks if decision.kind is PlayoutKind.FRESH and face else None
            if fresh is not None and self.lookahead_ms:
                landmarks = smooth_frame(previous, fresh, self._next_landmarks(p), self._layers)
            previous = fresh if not self._switch_between(p, p + FRAME_INTERVAL_MS) else None
            generated = 0.0
            if self.fallback is not None:
                landmarks, generated = self.fallback.mix(p, decision.kind, landmarks)
                face = face or generated > 0
            arrived = decoded = None
            if decision.kind is PlayoutKind.FRESH and decision.frame is not None:
                arrived, decoded = self._times.pop(decision.frame.timestamp_ms, (None, None))
            tick = Tick(index, p, landmarks, decision.kind, face, due, generated, fired, arrived, decoded)
            self._forget_times(p)
            index += 1
            self.stats.frames_played += 1
            if decision.kind is PlayoutKind.FRESH:
                self.stats.frames_fresh += 1
                captured = self.capture_wall_us(p)
                if captured is not None:
                    self.stats.playout_latency_ms.add((wall_us() - captured) / 1000.0)
                if arrived is not None and decoded is not None:
                    stages = self.stats.stages
                    stages.add("decode", decoded - arrived)
                    buffered = due - self.lookahead_ms  # due but for the wait for the next frame (smoothing)
                    stages.add("jitter_buffer", max(0.0, buffered - decoded))
                    stages.add("smoothing", max(0.0, due - max(buffered, decoded)))
                    stages.add("pacing", fired - max(due, decoded))
            elif decision.concealed:
                self.stats.frames_concealed += 1
            wanted = self.frames_wanted is None or self.frames_wanted()
            if wanted:
                self.render.submit(tick)
            self._last_played_ms = p
            if not wanted or not self.render.live:
                # Nothing renders it live (a recording alone renders later, in its own process; token-mode
                # pages draw it themselves): the caller's face is "shown" when its tick is due.
                self._note_face(tick, wall_us())
            if self.save_motion is not None:
                self.save_motion.add(tick)
            p += FRAME_INTERVAL_MS

    def _next_landmarks(self, p: float) -> np.ndarray | None:
        """The next frame's decoded landmarks, when it is here, follows ``p`` and is on the same portrait."""
        nxt = self.buffer.peek_after(p)
        if nxt is None or nxt.timestamp_ms - p > 1.5 * FRAME_INTERVAL_MS or self._switch_between(p, nxt.timestamp_ms):
            return None
        return nxt.value

    def _switch_between(self, a: float, b: float) -> bool:
        """Whether the portrait changed between media times ``a`` and ``b`` (frames from either side do not mix)."""
        return self._face_after_ms is not None and a <= self._face_after_ms < b

    def _note_face(self, tick: Tick, shown_wall_us: float) -> None:
        """Notes when the first tick showing the caller's own picture was shown."""
        if self.time_to_face_ms is None and self._face_after_ms is not None and tick.media_ms > self._face_after_ms:
            start = self.capture_wall_us(0.0)
            if start is not None:
                self.time_to_face_ms = (shown_wall_us - start) / 1000.0
                log.info("the caller's face is on screen %.1f s after the call began", self.time_to_face_ms / 1000)

    def _forget_times(self, played_ms: float) -> None:
        """Drops the arrival times of frames at or before the tick just played (late, or never shown)."""
        if len(self._times) > 8:
            for ts in [t for t in self._times if t <= played_ms]:
                del self._times[ts]

    def on_rendered(self, tick: Tick, frame: np.ndarray, timing: RenderTiming, shown_ms: float) -> None:
        """The live render stage's report of one of this call's frames, shown at ``shown_ms`` (monotonic)."""
        self.stats.frames_rendered += 1
        self._note_face(tick, timing.end_wall_us)
        if tick.kind is not PlayoutKind.FRESH:
            return
        captured = self.capture_wall_us(tick.media_ms)
        if captured is not None:
            self.stats.render_latency_ms.add((timing.end_wall_us - captured) / 1000.0)
            shown_wall = timing.end_wall_us + (shown_ms - timing.end_ms) * 1000.0
            self.stats.shown_latency_ms.add((shown_wall - captured) / 1000.0)
        if tick.arrived_ms is not None:
            stages = self.stats.stages
            stages.add("render_queue", timing.start_ms - tick.fired_ms)
            stages.add("render", timing.end_ms - timing.start_ms)
            stages.add("display", shown_ms - timing.end_ms)

    # -- lifetime -----------------------------------------------------------

    def live_status(self) -> dict[str, float | None]:
        """Figures for the status line."""
        s = self.buffer.stats
        # Rendering in the background (recording only) says nothing about the call's latency.
        lat = self.stats.render_latency_ms if self.render.live and self.stats.render_latency_ms.recent else None
        lat = lat or self.stats.playout_latency_ms
        return {"loss": s.loss, "rtt_ms": self.link.clock.rtt_ms, "latency_ms": lat.median_recent()}

    async def run(self) -> str:
        """Runs the call until the link ends; returns why it ended."""
        self.stats.calls += 1
        if self.recorder is not None:
            self.recorder.begin_call()
        self.link.start()
        self._spawn(self._control(), "control")
        self._spawn(self._report(), "report")
        self._spawn(self._playout(), "playout")
        try:
            await self.link.ended.wait()
            if self.link.end_reason.startswith("the peer left"):
                await self._play_out_the_rest()
            return self.link.end_reason
        finally:
            await self.close()

    async def _play_out_the_rest(self) -> None:
        """After a bye, shows the frames still buffered (their playout times are near)."""
        deadline = monotonic_ms() + self.buffer.delay_ms + self.lookahead_ms + 2 * FRAME_INTERVAL_MS + 100
        while len(self.buffer) and monotonic_ms() < deadline:
            await asyncio.sleep(FRAME_INTERVAL_MS / 1000)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.pictures.close()
        self.stats.add_pictures(self.pictures.stats, self.time_to_face_ms, self._face_after_ms)
        s = self.buffer.stats
        self.stats.packets_expected += s.expected
        self.stats.packets_late += s.late
        self.stats.packets_duplicate += s.duplicates
        for kind, n in self.drops.counts.items():
            self.stats.packets_dropped[kind] = self.stats.packets_dropped.get(kind, 0) + n
        if self._first_ts is not None and self._last_ts is not None:
            self.stats.motion_media_ms += self._last_ts - self._first_ts + FRAME_INTERVAL_MS
        self.stats.audio_bytes += self._sender_audio_bytes
        self.stats.rtt_ms = self.link.clock.rtt_ms
        if self.fallback is not None:
            fb = self.fallback.stats
            self.fallback.close()
            self.stats.frames_generated += fb.frames_generated
            self.stats.fallback_switch_ms.extend(fb.switch_ms)
            self.stats.generated_lag_ms.extend(fb.lag_ms)
            self.stats.generator_restarts += fb.restarts
        self.stats.clock_offset_ms = self.link.clock.offset_us / 1000.0
        self.stats.wire.merge(self.link.wire.stop(monotonic_ms() / 1000.0))
        self.stats.ice = self.link.ice_pair or self.stats.ice
        self.stats.peer_silences = self.link.silence_report()
        await self.link.close(self.link.end_reason)
        self._pool.shutdown(wait=True)
