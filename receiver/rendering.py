"""The render stage: ticks in, 512x512 frames out, on the renderer's own thread.

Two policies, chosen by what the frames are for:

* live (window only): render the newest tick and skip older ones, so a slow
  renderer shows a lower frame rate rather than a growing delay;
* complete (recording without a window): render every tick in order, in
  batches of :data:`MAX_BATCH` (on a CPU a batch costs less than half as
  much per frame) and at a lower OS priority, since nobody watches: on a
  machine that also runs the sender (a loopback call) face tracking comes
  first. The recording gets every frame even where the renderer is slower
  than real time, and :meth:`RenderStage.drain` finishes the backlog at the end;
* complete and live (recording and a window): every tick, rendered as soon
  as it is due.

A call can change the renderer mid-way: the receiver starts on a placeholder
and :meth:`RenderStage.switch` moves to the caller's picture when it has
arrived, from a given media time on; :meth:`RenderStage.reset` goes back to
the first renderer for the next call. Keyframes go to the call's renderer
between batches (:meth:`RenderStage.add_keyframe`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from realtime.clock import wall_us
from realtime.drops import Drops
from receiver.playout import Tick

log = logging.getLogger(__name__)

MAX_BATCH = 8
BACKGROUND_NICE = 10

# Called on the event loop for each rendered frame: the tick, [size, size, 3] uint8, wall time done (µs).
FrameCallback = Callable[[Tick, np.ndarray, int], None]


class RenderStage:
    """Renders ticks with a :class:`codec.render.Renderer`.

    Args:
        renderer: anything with ``render([B, 478, 3]) -> [B, H, W, 3] uint8``.
        keep_all: render every tick (recording) instead of only the newest.
        on_frame: receives each rendered frame.
        live: someone watches: render each tick as soon as it is due, not in full batches.
    """

    def __init__(self, renderer: Any, keep_all: bool, on_frame: FrameCallback, live: bool = True) -> None:
        self._renderer = renderer
        self._switch: tuple[float, Any] | None = None  # (after media ms, renderer) for this call
        self._keyframes: list[Any] = []  # this call's, for a renderer still being built
        self.keep_all = keep_all
        self._min_batch = 1 if live or not keep_all else MAX_BATCH
        self._flush = False
        self._on_frame = on_frame
        self._queue: deque[Tick] = deque()
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="render",
                                        initializer=None if live else _lower_priority)
        self._task: asyncio.Task[None] | None = None
        self._busy = 0
        self.skipped = 0
        self.rendered = 0
        self.failures = Drops(log, "frame the renderer failed on")

    @property
    def live(self) -> bool:
        """Frames are rendered as soon as they are due (someone watches)."""
        return self._min_batch == 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="render")

    def submit(self, tick: Tick) -> None:
        if not self.keep_all and self._queue:
            self.skipped += len(self._queue)
            self._queue.clear()
        self._queue.append(tick)
        self._wake.set()

    def switch(self, renderer: Any, after_media_ms: float) -> None:
        """Renders ticks later than ``after_media_ms`` with another renderer (the caller's picture arrived).

        Args:
            renderer: the new renderer, ready to render.
            after_media_ms: ticks at or before this media time keep the renderer they had.
        """
        self._switch = (after_media_ms, renderer)
        for kf in self._keyframes:
            self._pool.submit(_add_keyframe, renderer, kf)

    def reset(self) -> None:
        """Back to the first renderer (a new call begins)."""
        self._switch = None
        self._keyframes = []

    def add_keyframe(self, keyframe: Any) -> None:
        """Gives a keyframe (:class:`codec.render.keyframes.Keyframe`) to the renderer :meth:`switch` set, on
        the render thread between batches; kept for one set later in the call."""
        self._keyframes.append(keyframe)
        if self._switch is not None:
            self._pool.submit(_add_keyframe, self._switch[1], keyframe)

    @property
    def switched(self) -> bool:
        """A renderer of this call has replaced the first one."""
        return self._switch is not None

    def _renderer_for(self, tick: Tick) -> Any:
        if self._switch is not None and tick.media_ms > self._switch[0]:
            return self._switch[1]
        return self._renderer

    @property
    def backlog(self) -> int:
        """Ticks waiting for the renderer, the batch being rendered included."""
        return len(self._queue) + self._busy

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue or (len(self._queue) < self._min_batch and not self._flush):
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            renderer = self._renderer_for(batch[0])
            if any(self._renderer_for(t) is not renderer for t in batch):  # a switch within: render up to it
                n = next(i for i, t in enumerate(batch) if self._renderer_for(t) is not renderer)
                self._queue.extendleft(reversed(batch[n:]))
                batch = batch[:n]
            landmarks = np.stack([t.landmarks for t in batch]).astype(np.float32)
            self._busy = len(batch)
            try:
                frames = await loop.run_in_executor(self._pool, renderer.render, landmarks)
            except Exception as e:  # a frame that cannot be rendered is lost, not the call
                self.failures.note(type(e).__name__, f"{type(e).__name__}: {e}")
                continue
            finally:
                self._busy = 0
            done = wall_us()
            for tick, frame in zip(batch, frames):
                self.rendered += 1
                self._on_frame(tick, frame, done)

    async def drain(self, timeout_s: float) -> None:
        """Waits until every queued tick is rendered, for at most ``timeout_s``."""
        deadline = loop_time() + timeout_s
        self._flush = True
        self._wake.set()
        try:
            while (self._queue or self._busy) and loop_time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            self._flush = False
        if self._queue:
            log.warning("%d frames were still waiting for the renderer at exit and are left out",
                        len(self._queue))
            self.skipped += len(self._queue)
            self._queue.clear()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._pool.shutdown(wait=True)


def _add_keyframe(renderer: Any, keyframe: Any) -> None:
    add = getattr(renderer, "add_keyframe", None)  # a renderer without keyframe support ignores them
    if add is None:
        return
    try:
        add(keyframe)
    except Exception as e:  # a keyframe the renderer cannot use is left out, the call goes on
        log.warning("the renderer refused a keyframe: %s: %s", type(e).__name__, e)


def _lower_priority() -> None:
    """Nices the calling thread (and the compute threads it starts) on Linux; elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):
        pass


def loop_time() -> float:
    return asyncio.get_running_loop().time()
