"""The render stage: ticks in, 512x512 frames out, on the renderer's own thread.

Two policies, chosen by what the frames are for:

* live (window only): render the newest tick and skip older ones, so a slow
  renderer shows a lower frame rate rather than a growing delay;
* complete (recording): render every tick in order, in batches when behind;
  the recording gets every frame even where the renderer is slower than
  real time (a CPU without a GPU), and :meth:`RenderStage.drain` finishes
  the backlog at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from realtime.clock import wall_us
from receiver.playout import Tick

log = logging.getLogger(__name__)

MAX_BATCH = 8

# Called on the event loop for each rendered frame: the tick, [size, size, 3] uint8, wall time done (µs).
FrameCallback = Callable[[Tick, np.ndarray, int], None]


class RenderStage:
    """Renders ticks with a :class:`codec.render.Renderer`.

    Args:
        renderer: anything with ``render([B, 478, 3]) -> [B, H, W, 3] uint8``.
        keep_all: render every tick (recording) instead of only the newest.
        on_frame: receives each rendered frame.
    """

    def __init__(self, renderer: Any, keep_all: bool, on_frame: FrameCallback) -> None:
        self._renderer = renderer
        self.keep_all = keep_all
        self._on_frame = on_frame
        self._queue: deque[Tick] = deque()
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="render")
        self._task: asyncio.Task[None] | None = None
        self._busy = 0
        self.skipped = 0
        self.rendered = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="render")

    def submit(self, tick: Tick) -> None:
        if not self.keep_all and self._queue:
            self.skipped += len(self._queue)
            self._queue.clear()
        self._queue.append(tick)
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Ticks waiting for the renderer, the batch being rendered included."""
        return len(self._queue) + self._busy

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            landmarks = np.stack([t.landmarks for t in batch]).astype(np.float32)
            self._busy = len(batch)
            try:
                frames = await loop.run_in_executor(self._pool, self._renderer.render, landmarks)
            finally:
                self._busy = 0
            done = wall_us()
            for tick, frame in zip(batch, frames):
                self.rendered += 1
                self._on_frame(tick, frame, done)

    async def drain(self, timeout_s: float) -> None:
        """Waits until every queued tick is rendered, for at most ``timeout_s``."""
        deadline = loop_time() + timeout_s
        while (self._queue or self._busy) and loop_time() < deadline:
            await asyncio.sleep(0.02)
        if self._queue:
            log.warning("%d frames were still waiting for the renderer at exit and are left out",
                        len(self._queue))
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


def loop_time() -> float:
    return asyncio.get_running_loop().time()
