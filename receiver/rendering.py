"""The live view's render stage: ticks in, the newest rendered, 512x512 frames out.

Someone watching (a window, browsers) wants the newest frame now, never a
queue: each tick replaces the one waiting, and the renderer, on its own
thread, always takes the newest. A slow renderer (a busy CPU) therefore
shows a lower frame rate, not a growing delay. The ticks it skips are not
lost to a recording: every tick goes to the recording process
(:mod:`receiver.recording`) in order, with the live frame when there is one,
and that process renders the rest itself, at a lower priority, apart from
the live view. Without anyone watching (a recording alone), nothing is
rendered here at all.

A call can change the renderer mid-way: the receiver starts on a placeholder
and :meth:`RenderStage.switch` moves to the caller's picture when it has
arrived, from a given media time on; :meth:`RenderStage.reset` goes back to
the first renderer for the next call; keyframes go to the call's renderer
(:meth:`RenderStage.add_keyframe`). All three reach the live renderer between
frames and the recording process in order (:mod:`receiver.renderers`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from realtime.clock import monotonic_ms, wall_us
from realtime.drops import Drops
from receiver.playout import Tick
from receiver.recording import RecordingProcess
from receiver.renderers import Renderers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderTiming:
    """When one live frame went through the renderer (local monotonic ms, and wall µs at the end).

    Attributes:
        submitted_ms: the tick was handed to the stage.
        start_ms, end_ms: the renderer began and finished it (on its thread).
        end_wall_us: ``end_ms`` on the wall clock (for capture -> rendered latency).
    """

    submitted_ms: float
    start_ms: float
    end_ms: float
    end_wall_us: int


# Called on the event loop for each live frame: the tick, [size, size, 3] uint8, its timing.
FrameCallback = Callable[[Tick, np.ndarray, RenderTiming], None]


class RenderStage:
    """Renders the newest tick for the live view; hands every tick to the recording.

    Args:
        renderer: anything with ``render([B, 478, 3]) -> [B, H, W, 3]`` uint8.
        on_frame: receives each live frame, on the event loop.
        live: someone watches; False renders nothing here (a recording alone).
        recording: the recording process, or None.

    Attributes:
        rendered: live frames rendered.
        skipped: ticks the live view skipped (a newer one came first).
    """

    def __init__(self, renderer: Any, on_frame: FrameCallback, live: bool = True,
                 recording: RecordingProcess | None = None) -> None:
        self._renderers = Renderers(renderer)
        self._commands: list[Callable[[], None]] = []  # applied by the render thread between frames
        self._switched = False
        self._on_frame = on_frame
        self.live = live
        self.recording = recording
        self._cv = threading.Condition()
        self._next: tuple[Tick, float] | None = None
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.skipped = 0
        self.rendered = 0
        self.failures = Drops(log, "frame the renderer failed on")

    @property
    def renderer(self) -> Any:
        """The renderer a call starts with."""
        return self._renderers.first

    def start(self) -> None:
        """Starts the renderer's thread (call on the event loop)."""
        self._loop = asyncio.get_running_loop()
        if self.live:
            self._thread = threading.Thread(target=self._run, name="render", daemon=True)
            self._thread.start()

    def submit(self, tick: Tick) -> None:
        """The next tick (playout order). Never blocks."""
        if self.recording is not None:
            self.recording.add(tick)
        if not self.live:
            if self.recording is not None:
                self.recording.resolve(tick, None)
            return
        with self._cv:
            replaced, self._next = self._next, (tick, monotonic_ms())
            self._cv.notify()
        if replaced is not None:
            self.skipped += 1
            if self.recording is not None:
                self.recording.resolve(replaced[0], None)

    def switch(self, renderer: Any, after_media_ms: float, make_renderer: Callable[[], Any] | None = None) -> None:
        """Renders ticks later than ``after_media_ms`` (this call's media time) with another renderer (the
        caller's picture arrived).

        Args:
            renderer: the new renderer, ready to render (the live view's).
            after_media_ms: ticks at or before this media time keep the renderer they had.
            make_renderer: builds the same renderer again in the recording process (it must pickle: a class
                or a ``functools.partial``); without it the recording keeps the renderer it had.
        """
        self._switched = True
        if self.recording is not None:
            if make_renderer is not None:
                self.recording.switch(make_renderer, after_media_ms)
            else:
                log.warning("the recording keeps its portrait: no way to build the new renderer there")
        self._command(lambda: self._renderers.install(after_media_ms, renderer))

    @property
    def switched(self) -> bool:
        """A renderer of this call has replaced the first one."""
        return self._switched

    def reset(self) -> None:
        """A new call: back to the first renderer (see :class:`receiver.renderers.Renderers`)."""
        self._switched = False
        if self.recording is not None:
            self.recording.reset()
        self._command(self._renderers.reset)

    def add_keyframe(self, keyframe: Any) -> None:
        """Another picture of the caller's face for the renderers switched to in this call."""
        if self.recording is not None:
            self.recording.add_keyframe(keyframe)
        self._command(lambda: self._renderers.add_keyframe(keyframe))

    def _command(self, fn: Callable[[], None]) -> None:
        if self._thread is None:  # no render thread (no live view, or not started): apply now
            fn()
            return
        with self._cv:
            self._commands.append(fn)
            self._cv.notify()

    @property
    def backlog(self) -> int:
        """Ticks waiting for the live renderer (at most one) and the one being rendered."""
        return int(self._next is not None) + int(self._busy)

    def _run(self) -> None:
        """The renderer's thread: newest tick in, frame out to the event loop."""
        while True:
            job: tuple[Tick, float] | None = None
            with self._cv:
                while self._next is None and not self._stop and not self._commands:
                    self._cv.wait()
                if self._stop:
                    return
                commands, self._commands = self._commands, []
                job, self._next = self._next, None
                self._busy = job is not None
            for fn in commands:
                self._apply(fn)
            if job is None:
                continue
            tick, submitted = job
            start = monotonic_ms()
            try:
                renderer = self._renderers.for_tick(tick.media_ms)
                frame = renderer.render(np.asarray(tick.landmarks, np.float32)[None])[0]
            except Exception as e:  # a frame that cannot be rendered is lost to the live view, not the call
                self._post(self._failed, tick, e)
                continue
            finally:
                self._busy = False
            end = monotonic_ms()
            self._post(self._deliver, tick, frame, RenderTiming(submitted, start, end, wall_us()))

    def _apply(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # a keyframe the renderer refuses must not stop the live view
            log.error("the renderer refused a change: %s: %s", type(e).__name__, e)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed while a frame was being rendered
            pass

    def _deliver(self, tick: Tick, frame: np.ndarray, timing: RenderTiming) -> None:
        self.rendered += 1
        if self.recording is not None:
            self.recording.resolve(tick, frame)
        self._on_frame(tick, frame, timing)

    def _failed(self, tick: Tick, error: Exception) -> None:
        self.failures.note(type(error).__name__, f"{type(error).__name__}: {error}")
        if self.recording is not None:
            self.recording.resolve(tick, None)

    async def close(self) -> None:
        """Stops the renderer's thread (the frame being rendered is finished first)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
