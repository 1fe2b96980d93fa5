"""The recording, made apart from the live view: its own process, at a lower priority.

The live view shows the newest frame and skips the others
(:mod:`receiver.rendering`); a recording wants every tick. So every tick goes
to a recording process, in order, with the frame the live view rendered for
it when there is one (most ticks on a machine that keeps up), and without
one when the live view skipped it: the recording process then renders it
itself, in batches (on a CPU a batch costs less per frame). That process
runs niced (:data:`BACKGROUND_NICE`), with its own interpreter, so it never
holds the call's GIL and takes only the CPU the call leaves; when it falls
behind it catches up later, after the call if it must, and the recording
still gets every frame.

Main side: :class:`RecordingProcess` (ordering, bounded frames in flight,
progress). Child side: :func:`_run_worker` (renderer + :class:`receiver.sinks.Recorder`).
Messages between them are plain tuples over multiprocessing queues.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codec.errors import MediaError
from receiver.playout import Tick
from receiver.renderers import Renderers

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10
MAX_BATCH = 8
# Live frames handed to the recording but not written yet (~0.8 MB each at 512 px). Past this
# (the recording process is far behind) further ticks go without their frame, to be rendered there.
MAX_FRAMES_IN_FLIGHT = 64
PROGRESS_INTERVAL_S = 0.5
# Once the recording catches up after at least this many ticks waiting (10 s), its heap is trimmed.
TRIM_AFTER_BACKLOG = 250
START_TIMEOUT_S = 120.0


def check_writable(path: str | Path) -> Path:
    """Creates (empties) ``path`` now, so a bad path is a one-line error at start, not a failure later.

    Raises:
        MediaError: the file cannot be created.
    """
    p = Path(path)
    try:
        p.open("wb").close()
    except OSError as e:
        raise MediaError(f"{p}: cannot be written ({e.strerror or e})") from None
    return p


@dataclass(frozen=True)
class AudioChunk:
    """A received ``av.AudioFrame`` as plain data, to cross into the recording process.

    Attributes:
        pcm: the samples as ``frame.to_ndarray()`` gives them.
        format, layout: PyAV names (``"s16"``, ``"stereo"``).
        rate: samples per second.
        pts: media time in samples at ``rate``, or None.
    """

    pcm: np.ndarray
    format: str
    layout: str
    rate: int
    pts: int | None

    @classmethod
    def of(cls, frame: Any) -> AudioChunk:
        return cls(frame.to_ndarray(), frame.format.name, frame.layout.name, int(frame.sample_rate),
                   None if frame.pts is None else int(frame.pts))

    def to_frame(self) -> Any:
        import fractions

        import av

        f = av.AudioFrame.from_ndarray(self.pcm, format=self.format, layout=self.layout)
        f.sample_rate = self.rate
        f.pts = self.pts
        f.time_base = fractions.Fraction(1, self.rate)
        return f


@dataclass(frozen=True)
class RecordingConfig:
    """What the recording process needs.

    Attributes:
        path: the ``.mp4`` to write.
        size: frame side in pixels.
        make_renderer: builds the renderer in the child (picklable: a class or a ``functools.partial``);
            ``render([B, 478, 3]) -> [B, size, size, 3]`` uint8.
        nice: how much lower the child's priority is.
    """

    path: Path
    size: int
    make_renderer: Callable[[], Any]
    nice: int = BACKGROUND_NICE


@dataclass
class RecordingStats:
    """How the recording went.

    Attributes:
        ticks: ticks handed to the recording.
        written: video frames written so far.
        from_live: of those, frames the live view had rendered.
        rendered_apart: frames the recording process rendered itself.
        failures: ticks the recording process could not render or write.
        behind_max: the most ticks the recording was behind the call.
        finished_after_s: how long after the last call ended the file was finished (None: not yet).
        error: why the recording process stopped, if it failed.
    """

    ticks: int = 0
    written: int = 0
    from_live: int = 0
    rendered_apart: int = 0
    failures: int = 0
    behind_max: int = 0
    finished_after_s: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "frames": self.written, "from_live": self.from_live,
                "rendered_apart": self.rendered_apart, "failures": self.failures,
                "complete": round(self.written / self.ticks, 4) if self.ticks else None,
                "behind_max_frames": self.behind_max, "finished_after_s": self.finished_after_s,
                "error": self.error}


class RecordingProcess:
    """The main side of the recording: hands ticks over in order and follows the child's progress.

    Ticks are announced in playout order (:meth:`add`) and resolved later
    with the live view's frame or None (:meth:`resolve`); they go to the child
    in order once resolved. All methods run on the event loop's thread.
    """

    def __init__(self, config: RecordingConfig) -> None:
        self.config = config
        self.stats = RecordingStats()
        ctx = mp.get_context("spawn")  # never fork a process that holds torch and aiortc threads
        self._inbox: Any = ctx.Queue()
        self._outbox: Any = ctx.Queue()
        self._proc = ctx.Process(target=_run_worker, args=(config, self._inbox, self._outbox),
                                 name="talk-recv-recording", daemon=True)
        self._slots: deque[list[Any]] = deque()  # [tick, frame, resolved]
        self._sent = 0  # ticks handed to the child
        self._frames_sent = 0  # of those, with a live frame
        self._ready = False
        self._done = False
        self._ended_at: float | None = None

    def start(self) -> None:
        self._proc.start()

    @property
    def pid(self) -> int | None:
        """The recording process's id (None before :meth:`start`)."""
        return self._proc.pid

    async def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Waits until the child has its renderer and file.

        Raises:
            MediaError: the child failed to start (its reason).
        """
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            self.poll()
            if self.stats.error is not None:
                raise MediaError(f"the recording cannot start: {self.stats.error}")
            if time.monotonic() > deadline or not self._proc.is_alive():
                raise MediaError("the recording process did not start")
            await asyncio.sleep(0.05)

    def begin_call(self) -> None:
        self._put(("call",))

    def add(self, tick: Tick) -> None:
        """Announces the next tick (playout order)."""
        self.stats.ticks += 1
        self._slots.append([tick, None, False])

    def resolve(self, tick: Tick, frame: np.ndarray | None) -> None:
        """Gives a tick announced before its live frame (None: not rendered live)."""
        for slot in self._slots:
            if slot[0] is tick:
                slot[1], slot[2] = frame, True
                break
        self._flush()

    def switch(self, make_renderer: Callable[[], Any], after_media_ms: float) -> None:
        """Ticks after ``after_media_ms`` are rendered with ``make_renderer()`` (built in the child)."""
        self._put(("switch", make_renderer, float(after_media_ms)))

    def reset(self) -> None:
        """Back to the first renderer (a new call)."""
        self._put(("reset",))

    def add_keyframe(self, keyframe: Any) -> None:
        """Another picture of the caller's face for the renderers switched to."""
        self._put(("keyframe", keyframe))

    def caption(self, message: str) -> None:
        """A new caption for the first renderer, when it is the placeholder (it says why there is no face)."""
        self._put(("caption", message))

    def add_audio(self, frame: Any) -> None:
        """Queues one received ``av.AudioFrame`` of speech."""
        if frame.pts is not None:
            self._put(("audio", AudioChunk.of(frame)))

    def _flush(self) -> None:
        self.poll()
        while self._slots and self._slots[0][2]:
            tick, frame, _ = self._slots.popleft()
            if frame is not None and self._frames_sent - self.stats.from_live >= MAX_FRAMES_IN_FLIGHT:
                frame = None  # the child is far behind: it renders this one itself, memory stays bounded
            self._frames_sent += frame is not None
            self._sent += 1
            self._put(("tick", float(tick.media_ms), np.asarray(tick.landmarks, np.float32), frame))
        self.stats.behind_max = max(self.stats.behind_max, self.behind)

    def _put(self, item: tuple[Any, ...]) -> None:
        if self.stats.error is None:
            self._inbox.put(item)

    @property
    def behind(self) -> int:
        """Ticks not yet written (announced, in flight, or waiting in the child)."""
        return self.stats.ticks - self.stats.written - self.stats.failures

    def poll(self) -> None:
        """Takes the child's progress reports (never blocks)."""
        while True:
            try:
                msg = self._outbox.get_nowait()
            except queue.Empty:
                break
            kind = msg[0]
            if kind == "ready":
                self._ready = True
            elif kind in ("progress", "done"):
                _, self.stats.written, self.stats.from_live, self.stats.rendered_apart, self.stats.failures = msg
                self._done = self._done or kind == "done"
            elif kind == "error":
                self.stats.error = msg[1]
                log.error("the recording failed: %s", msg[1])
        if not self._done and self.stats.error is None and not self._proc.is_alive() and self._proc.exitcode:
            self.stats.error = f"the recording process died (exit {self._proc.exitcode})"
            log.error("%s", self.stats.error)

    def call_ended(self) -> None:
        """Notes when a call ended: the recording is finished that long after it (see :attr:`RecordingStats`)."""
        self._ended_at = time.monotonic()
        for slot in self._slots:  # ticks the live view never got to: the child renders them
            slot[2] = True
        self._flush()

    async def close(self, timeout_s: float, on_progress: Callable[[int], None] | None = None) -> None:
        """Lets the child write every tick and finish the file, waiting at most ``timeout_s``.

        Args:
            on_progress: called now and then with the ticks still to write.
        """
        for slot in self._slots:
            slot[2] = True
        self._flush()
        self._put(("close",))
        deadline = time.monotonic() + timeout_s
        last_said = 0.0
        while self._proc.is_alive() and time.monotonic() < deadline:
            self.poll()
            if on_progress is not None and time.monotonic() - last_said > 5.0:
                on_progress(self.behind)
                last_said = time.monotonic()
            await asyncio.sleep(0.1)
        self.poll()
        if self._proc.is_alive():
            log.error("the recording did not finish within %.0f s: %d frames left out and the file is "
                      "unfinished", timeout_s, self.behind)
            self.stats.error = self.stats.error or "not finished in time"
            self._proc.kill()
        self._proc.join(timeout=10)
        if self._ended_at is not None and self._done:
            self.stats.finished_after_s = round(time.monotonic() - self._ended_at, 2)
        self._inbox.cancel_join_thread()
        self._inbox.close()
        self._outbox.close()


# Frames (0.8 MB at 512 px) bigger than this get their own mapping, returned to the system when freed.
HEAP_MMAP_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def bound_heap() -> bool:
    """Keeps this process's heap from ratcheting up with every backlog; True where it took effect (glibc).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which frames come
    from the heap and a catch-up (tens of frames alive at once) leaves it fragmented: in a stress of the
    recording process (512 px, a 5 s stall every 20 s) its memory went 490 -> 727 MB and up and down between,
    and stayed at 528-529 MB with the threshold fixed, as here.
    """
    import ctypes

    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    mapped = mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
    trimmed = mallopt(_M_TRIM_THRESHOLD, HEAP_MMAP_THRESHOLD)
    return bool(mapped and trimmed)


def trim_heap() -> bool:
    """Gives the heap's free pages back to the system (glibc's ``malloc_trim``); True where it did.

    Ticks waiting in a backlog are small blocks (5.7 kB of landmarks each) that the mmap threshold
    does not cover; once a long backlog has drained, their pages are free but stay resident until trimmed.
    """
    import ctypes

    trim = _libc_function("malloc_trim", [ctypes.c_size_t])
    return trim is not None and bool(trim(0))


def _libc_function(name: str, argtypes: list[Any]) -> Any:
    """The C library's function ``name`` (returning int), or None where there is none (not glibc)."""
    import ctypes
    import ctypes.util

    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        function = getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):  # macOS, musl: no mallopt / malloc_trim
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


def _lower_priority(nice: int) -> None:
    try:
        os.nice(nice)
    except (AttributeError, OSError):
        pass


def _run_worker(config: RecordingConfig, inbox: Any, outbox: Any) -> None:
    """The recording process: ticks (with or without a frame) and speech in, an MP4 out."""
    _lower_priority(config.nice)  # first: threads started from here on inherit it
    bound_heap()  # before torch and the renderer allocate
    try:
        import torch

        torch.set_num_threads(1)
        from receiver.sinks import Recorder

        renderer = config.make_renderer()
        recorder = Recorder(config.path, config.size)
    except Exception as e:  # says why to the main process, which reports it in one line
        outbox.put(("error", f"{type(e).__name__}: {e}"))
        return
    worker = _Worker(renderer, recorder, outbox)
    outbox.put(("ready",))
    try:
        worker.run(inbox)
    except Exception as e:
        outbox.put(("error", f"{type(e).__name__}: {e}"))
    finally:
        recorder.close()
        worker.report("done")


class _Worker:
    """The child's loop: batches ticks without a frame through the renderer; writes all in order."""

    def __init__(self, renderer: Any, recorder: Any, outbox: Any) -> None:
        self.renderers = Renderers(renderer)
        self.recorder = recorder
        self.outbox = outbox
        self.pending: deque[tuple[float, np.ndarray, np.ndarray | None]] = deque()
        self.written = 0
        self.from_live = 0
        self.rendered = 0
        self.failures = 0
        self._last_report = 0.0
        self._parent = os.getppid()
        self.backlog_max = 0  # the most ticks waiting here since the heap was last trimmed

    def report(self, kind: str = "progress") -> None:
        self.outbox.put((kind, self.written, self.from_live, self.rendered, self.failures))
        self._last_report = time.monotonic()

    def take(self, item: tuple[Any, ...]) -> bool:
        """Handles one message; False at the end of the input."""
        kind = item[0]
        if kind == "tick":
            self.pending.append((item[1], item[2], item[3]))
        elif kind == "audio":
            self.recorder.add_audio(item[1].to_frame())
        elif kind == "call":
            self.recorder.begin_call()
        elif kind == "switch":
            try:
                self.renderers.install(item[2], item[1]())
            except Exception as e:  # the recording goes on with the renderer it has
                log.error("the recording cannot switch the portrait: %s: %s", type(e).__name__, e)
        elif kind == "reset":
            self.renderers.reset()
        elif kind == "caption":
            set_message = getattr(self.renderers.first, "set_message", None)
            if set_message is not None:
                set_message(item[1])
        elif kind == "keyframe":
            try:
                self.renderers.add_keyframe(item[1])
            except Exception as e:
                log.error("the recording's renderer refused a keyframe: %s: %s", type(e).__name__, e)
        elif kind == "close":
            return False
        return True

    def run(self, inbox: Any) -> None:
        open_ = True
        while open_ or self.pending:
            if open_ and os.getppid() != self._parent:
                # The receiver died without saying so: what came is written and the file finished.
                log.warning("the receiver is gone: finishing the recording with what arrived")
                open_ = False
            # Everything that has arrived first (speech is cheap and never waits for video), then one step.
            block = open_ and not self.pending
            while open_:
                try:
                    item = inbox.get(block=block, timeout=PROGRESS_INTERVAL_S if block else None)
                except queue.Empty:
                    break
                open_ = self.take(item)
                block = False
            if self.pending:
                self.backlog_max = max(self.backlog_max, len(self.pending))
                self.step()
                if not self.pending and self.backlog_max >= TRIM_AFTER_BACKLOG:
                    trim_heap()  # caught up after a long backlog: its memory goes back
                    self.backlog_max = 0
            if time.monotonic() - self._last_report > PROGRESS_INTERVAL_S:
                self.report()

    def step(self) -> None:
        """Writes the head tick's frame, or renders a run of frameless ticks and writes them."""
        media_ms, landmarks, frame = self.pending[0]
        if frame is not None:
            self.pending.popleft()
            self.recorder.add_video(frame, media_ms)
            self.written += 1
            self.from_live += 1
            return
        run: list[tuple[float, np.ndarray, np.ndarray | None]] = []
        renderer = self.renderers.for_tick(media_ms)
        while (self.pending and self.pending[0][2] is None and len(run) < MAX_BATCH
               and self.renderers.for_tick(self.pending[0][0]) is renderer):
            run.append(self.pending.popleft())
        try:
            frames = renderer.render(np.stack([lm for _, lm, _ in run]).astype(np.float32))
        except Exception as e:  # a batch that cannot be rendered is lost, not the recording
            log.warning("the recording could not render %d frames: %s", len(run), e)
            self.failures += len(run)
            return
        for (media_ms, _, _), f in zip(run, frames):
            self.recorder.add_video(f, media_ms)
        self.rendered += len(run)
        self.written += len(run)
