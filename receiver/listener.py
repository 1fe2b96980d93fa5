"""The receiver's lifetime: listen, take one call at a time, go back to waiting.

A sender that knows the room token gets a peer connection and a
:class:`receiver.call.Call`; a second sender meanwhile is told the receiver
is busy. When a call ends (bye, silence, failure, refusal) the receiver
waits for the next one, unless it was asked to take only one. With
:class:`receiver.viewers.Viewers`, browsers that know the token watch the
rendered call (any number, the same frames for all) on the same port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCSessionDescription

from codec.render.portrait import Portrait
from realtime.clock import monotonic_ms
from realtime.peer import IceConfig, PeerLink, gathered_description, new_peer_connection, prefer_short_srtp_tags
from realtime.signaling import SignalingError, SignalingServer
from realtime.status import StatusLine, format_status
from realtime.webpage import VIEWER_PAGE, Files
from receiver.call import DEFAULT_JITTER_MS, Call
from receiver.fallback import FallbackConfig
from receiver.placeholder import PlaceholderRenderer
from receiver.playout import MotionLog, Tick
from receiver.recording import RecordingProcess
from receiver.rendering import RenderStage, RenderTiming
from receiver.sinks import CallStats, Window
from receiver.viewers import Viewers

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 0.5
# Speech to browsers waits for the rendered avatar at most this long.
MAX_LIPSYNC_MS = 1000.0
# How long the recording may take to catch up and finish at exit (it renders what the live view skipped).
FINISH_TIMEOUT_S = 1800.0
# The status line's words for a call still on the placeholder.
PICTURE_STATES = {"waiting": "waiting for the caller's picture", "private": "the caller's picture is private",
                  "none": "the caller sends no picture"}


@dataclass(frozen=True)
class ReceiverConfig:
    """Settings of a receiver run.

    Attributes:
        host, port: where signaling listens.
        token: the room secret.
        jitter_ms: the jitter buffer's target delay.
        once: exit when the first call ends.
        duration_s: exit this long after the first call starts.
        fallback: animate from the received speech while motion packets are missing
            (``--animate-from-audio``), or None.
        ice: STUN/TURN servers and the relay-only policy.
        smoothing: smooth the decoded motion with one frame of look-ahead (``--no-smoothing`` turns it off).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    jitter_ms: float = DEFAULT_JITTER_MS
    once: bool = False
    duration_s: float | None = None
    fallback: FallbackConfig | None = None
    ice: IceConfig = field(default_factory=IceConfig)
    smoothing: bool = True


class Receiver:
    """Listens for senders and runs their calls one at a time.

    Args:
        config: settings.
        portrait_landmarks: ``[478, 3]`` the portrait at rest.
        renderer: the portrait's renderer.
        recorder: the recording process (started here), or None.
        window: the window, or None.
        status: the live status line.
        viewers: browsers watching (served on the signaling port), or None to serve none.
        make_renderer: renders a caller's own picture (``portrait -> renderer``); None when ``renderer`` animates
            a ``--portrait`` for every caller.
        placeholder: ``renderer`` when it is the placeholder shown until a caller's picture arrives.
        save_motion: keeps every tick's landmarks (``--save-motion``), or None.
    """

    def __init__(self, config: ReceiverConfig, portrait_landmarks: np.ndarray, renderer: Any,
                 recorder: RecordingProcess | None = None, window: Window | None = None,
                 status: StatusLine | None = None, viewers: Viewers | None = None,
                 make_renderer: Callable[[Portrait], Any] | None = None,
                 placeholder: PlaceholderRenderer | None = None, files: Files | None = None,
                 save_motion: MotionLog | None = None) -> None:
        self.config = config
        self.make_renderer = make_renderer
        self.placeholder = placeholder
        self.portrait_landmarks = portrait_landmarks
        self.recorder = recorder
        self.window = window
        self.viewers = viewers
        self.status = status or StatusLine(enabled=False)
        self.save_motion = save_motion
        self.stats = CallStats()
        # Rendered live unless a recording is the only output: with no output at all the frames go nowhere,
        # but the statistics still time the whole path.
        live = window is not None or viewers is not None or recorder is None
        self.render = RenderStage(renderer, on_frame=self._on_frame, live=live, recording=recorder)
        self.server = SignalingServer(config.host, config.port, config.token, self._on_offer,
                                      on_watch=None if viewers is None else viewers.on_watch,
                                      page=None if viewers is None else VIEWER_PAGE, files=files)
        self.call: Call | None = None
        self._call_task: asyncio.Task[str] | None = None
        self._calls_done = asyncio.Event()
        self._first_call = asyncio.Event()
        self._renders_since = 0
        self._last_bytes = 0
        self._closing = False

    async def _on_offer(self, sdp: str) -> str:
        if self.call is not None:
            raise SignalingError("busy: another sender is connected")
        pc = new_peer_connection(self.config.ice)
        link = PeerLink(pc)
        relay = None if self.viewers is None else self.viewers.relay
        call = Call(link, self.portrait_landmarks, self.render, self.stats, self.recorder, self.config.jitter_ms,
                    on_audio=None if self.viewers is None else self.viewers.audio.push,
                    fallback=self.config.fallback, make_renderer=self.make_renderer, placeholder=self.placeholder,
                    frames_wanted=self._frames_wanted,
                    on_renderer=None if relay is None else relay.use_renderer,
                    smoothing=self.config.smoothing, save_motion=self.save_motion,
                    on_keyframe=None if relay is None else relay.add_keyframe)
        self.call = call
        if relay is not None:
            relay.attach(link)  # before the offer is applied: the caller's tracks come with it
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            prefer_short_srtp_tags(pc)
            answer = await gathered_description(pc, offer=False)
        except Exception as e:  # an offer aiortc cannot use: this call fails, the receiver goes on
            self.call = None
            await pc.close()
            raise SignalingError(f"unusable offer ({type(e).__name__})") from None
        self._call_task = asyncio.create_task(self._run_call(call), name="call")
        return answer

    async def _run_call(self, call: Call) -> str:
        self._first_call.set()
        self.status.message("a sender connected")
        try:
            try:
                await call.link.wait_open()
            except (asyncio.TimeoutError, TimeoutError):
                call.link.end("no media path (ICE/DTLS failed)")
            if self.save_motion is not None:
                self.save_motion.begin_call()
            reason = await call.run()
            if self.recorder is not None:
                self.recorder.call_ended()  # what the live view did not render goes to the recording now
            closing = self._closing or self.config.once
            self.status.message(f"call ended: {reason}" + ("" if closing else "; waiting for a sender"))
            return reason
        finally:
            self.call = None
            if self.viewers is not None and self.viewers.relay is not None:
                self.viewers.relay.detach()
            if self.viewers is not None:
                self.viewers.video.show_rest()
                self.viewers.audio.delay_ms = 0.0
            if self.config.once:
                self._calls_done.set()

    def _frames_wanted(self) -> bool:
        """Someone needs rendered frames: a window, a recording, or a browser watching video.

        Token-mode pages decode and draw the call themselves: while only they watch, nothing is
        rendered. With nobody watching yet the receiver renders live as it always has, so that a
        video viewer has frames at once (and ``bench.loopback`` times them).
        """
        if self.window is not None or self.recorder is not None or self.viewers is None:
            return True
        return self.viewers.video_viewers > 0 or len(self.viewers) == 0

    def _on_frame(self, tick: Tick, frame: np.ndarray, timing: RenderTiming) -> None:
        self._renders_since += 1
        if self.window is not None:
            self.window.show(frame)
        if self.viewers is not None and self.call is not None:
            self.viewers.video.show(frame)
        if self.call is not None:
            self.call.on_rendered(tick, frame, timing, monotonic_ms())

    async def _status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            call = self.call
            fps = self._renders_since / STATUS_INTERVAL_S
            self._renders_since = 0
            if call is None:
                if self.viewers is not None:
                    self.viewers.publish({"sender": False})
                watching = "" if self.viewers is None else f" ({len(self.viewers)} watching)"
                self.status.update(f"waiting for a sender on ws://{self.config.host}:{self.server.bound_port}"
                                   + watching)
                continue
            s = call.live_status()
            total = self.stats.motion_packet_bytes
            kbps = max(0, total - self._last_bytes) * 8 / 1000 / STATUS_INTERVAL_S
            self._last_bytes = total
            picture = call.pictures.stats.state
            if self.viewers is not None:
                if s["latency_ms"] is not None and self.render.live:
                    # Speech waits for the avatar; its own transit is about half the round trip.
                    transit = (s["rtt_ms"] or 0.0) / 2
                    self.viewers.audio.delay_ms = min(MAX_LIPSYNC_MS, max(0.0, s["latency_ms"] - transit))
                self.viewers.publish({"sender": True, "render_fps": fps, "latency_ms": s["latency_ms"],
                                      "loss": s["loss"], "motion_kbps": kbps, "picture": picture})
                if self.viewers.relay is not None:
                    self.viewers.relay.resync_clock()
                    self.stats.token_pages = self.viewers.relay.stats_dict()
            watching = "" if self.viewers is None else f" | {len(self.viewers)} watching"
            recording = ""
            if self.recorder is not None:
                self.recorder.poll()
                recording = f" | recording {self.recorder.behind} frames behind"
            shown = "" if picture in ("caller", "portrait") else f" | placeholder ({PICTURE_STATES[picture]})"
            self.status.update(format_status(fps, kbps, s["rtt_ms"], s["loss"] or 0.0, s["latency_ms"],
                                             extra=f"live skipped {self.render.skipped}{recording}{watching}{shown}"))

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set (or per ``once`` / ``duration_s``)."""
        if self.recorder is not None:
            self.recorder.start()  # it warms up while the receiver waits for a caller
        await self.server.start()
        self.render.start()
        status = asyncio.create_task(self._status(), name="status")
        ends: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait()),
                                         asyncio.create_task(self._calls_done.wait())]
        if self.config.duration_s is not None:
            ends.append(asyncio.create_task(self._deadline(self.config.duration_s)))
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._closing = True
            for t in ends + [status]:
                t.cancel()
            await asyncio.gather(*ends, status, return_exceptions=True)
            await self.server.close()
            if self._call_task is not None and not self._call_task.done():
                if self.call is not None:
                    self.call.link.end("the receiver is closing")
                await asyncio.gather(self._call_task, return_exceptions=True)
            if self.viewers is not None:
                if self.viewers.relay is not None:
                    self.stats.token_pages = self.viewers.relay.stats_dict()
                await self.viewers.close()
            await self.render.close()
            if self.recorder is not None:
                await self.recorder.close(FINISH_TIMEOUT_S, self._finishing)
                self.stats.recording = self.recorder.stats.to_dict()
            self.stats.frames_live_skipped = self.render.skipped
            self.stats.frames_not_rendered = self.render.skipped if self.recorder is None else self.recorder.behind
            self.stats.render_failures = self.render.failures.total
            self.status.clear()

    def _finishing(self, frames_left: int) -> None:
        self.status.message(f"finishing the recording: {frames_left} frames to go")

    async def _deadline(self, seconds: float) -> None:
        await self._first_call.wait()
        await asyncio.sleep(seconds)
