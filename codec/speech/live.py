"""Speech-driven motion during a call: 48 kHz speech blocks in, motion token frames out, off the event loop.

Both ends use it: ``talk-send --audio-only`` turns the speech it sends into
motion packets, and ``talk-recv --animate-from-audio`` turns the speech it
receives into motion while motion packets are missing. The generator
(:class:`codec.speech.SpeechMotionStream`) costs about half a second of CPU
per second of speech, so it runs on its own thread; blocks are handed over
from the event loop without waiting, and frames come back on the loop in order.

Timing: frame ``k`` of the stream covers 16 kHz samples ``[640 k, 640 (k+1))``
of what was pushed, i.e. 40 ms of media time from the first sample pushed.
It comes out once 240 ms more speech has arrived (the generator's look-ahead),
plus compute time. Callers stamp frame ``k`` with the media time of its own
audio, so the receiver's audio/video sync lines it up with the speech.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from codec.speech.stream import SpeechMotionStream
from codec.speech.units import SpeechModelMissing

log = logging.getLogger(__name__)

SPEECH_RATE = 16_000
PCM_RATE = 48_000
FRAME_MS = 40.0
SAMPLES_PER_FRAME_16K = 640


class Downsampler:
    """48 kHz -> 16 kHz for a stream of blocks of any size, with no phase shift.

    A windowed-sinc low-pass (cut-off 7 kHz) evaluated at every third input
    sample: output ``m`` is centred on input ``3 m``, so the 16 kHz timeline
    is the 48 kHz one, exactly. It waits for ``HALF`` (1 ms) of input beyond
    a sample before giving it out.
    """

    HALF = 48
    FACTOR = 3

    def __init__(self) -> None:
        n = np.arange(-self.HALF, self.HALF + 1, dtype=np.float64)
        fc = 7000.0 / PCM_RATE
        h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(len(n))
        self._h = (h / h.sum()).astype(np.float32)
        self._buf = np.zeros(self.HALF, np.float32)  # the stream is preceded by silence
        self._start = -self.HALF  # absolute input index of _buf[0]
        self._next = 0  # next output index

    def push(self, x: np.ndarray) -> np.ndarray:
        """Adds 48 kHz samples; returns the 16 kHz samples now complete."""
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float32).reshape(-1)])
        last = (self._start + len(self._buf) - 1 - self.HALF) // self.FACTOR
        if last < self._next:
            return np.zeros(0, np.float32)
        m = np.arange(self._next, last + 1)
        idx = (self.FACTOR * m - self.HALF - self._start)[:, None] + np.arange(2 * self.HALF + 1)[None]
        y = self._buf[idx] @ self._h
        self._next = last + 1
        keep = self.FACTOR * self._next - self.HALF - self._start
        self._buf, self._start = self._buf[keep:], self._start + keep
        return y.astype(np.float32)


def new_stream(seed: int | None = None) -> SpeechMotionStream:
    """A speech-to-motion stream; the models load on the first call (about a second) and are cached.

    Raises:
        SpeechModelMissing: the speech models are not installed, or do not load.
    """
    try:
        return SpeechMotionStream(seed=seed)
    except (RuntimeError, OSError, KeyError) as e:  # weights of another build of the generator, unreadable...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpeechModelMissing(f"the speech-to-motion models do not load ({first}): "
                                 "run `talk-train speech` or reinstall") from None


def _one_thread() -> None:
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    torch.set_num_threads(1)  # the generator's matrices are small; leave the other core to the call


class SpeechMotion:
    """Runs a :class:`codec.speech.SpeechMotionStream` on its own thread.

    Args:
        on_frame: called on the event loop with ``(k, tokens [R, G])`` for each frame, in order.
        seed: the generator's seed (repeatable non-verbal motion); None draws one.
        stream: a fresh stream already made (its models loaded), instead of making one here.
        convert: applied to each frame's tokens on the generator's thread (decoding them, say);
            ``on_frame`` then gets what it returns.
        loop: the event loop to deliver on (default: the running one).
    Raises:
        SpeechModelMissing: the speech models are not installed (raised at once).
    """

    def __init__(self, on_frame: Callable[[int, Any], None], seed: int | None = None,
                 stream: SpeechMotionStream | None = None, convert: Callable[[np.ndarray], Any] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._on_frame = on_frame
        self._convert = convert
        self._stream = stream if stream is not None else new_stream(seed)
        self._down = Downsampler()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="speech-motion", initializer=_one_thread)
        self._lock = threading.Lock()
        self._queued = 0  # 16 kHz samples handed to the thread and not yet processed
        self._closed = False
        self.samples = 0  # 16 kHz samples pushed
        self.frames = 0  # frames delivered
        self.failed: str | None = None

    @property
    def backlog_ms(self) -> float:
        """Speech waiting for the generator's thread (it falls behind on a busy CPU)."""
        with self._lock:
            return self._queued * 1000.0 / SPEECH_RATE

    def push(self, pcm48: np.ndarray) -> None:
        """Hands over one block of mono float32 speech at 48 kHz (returns at once)."""
        if self._closed:
            return
        x = self._down.push(pcm48)
        if len(x) == 0:
            return
        self.samples += len(x)
        with self._lock:
            self._queued += len(x)
        self._pool.submit(self._run, self._stream.push, x)

    def push_silence(self, samples48: int) -> None:
        """Keeps the timeline over ``samples48`` samples of lost speech."""
        if samples48 > 0:
            self.push(np.zeros(samples48, np.float32))

    def flush(self) -> "asyncio.Future[None]":
        """Ends the stream: its last frames come out (the future takes the rest as silence)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self._closed:
            fut.set_result(None)
            return fut
        self._pool.submit(self._run, self._stream.flush, None, fut)
        return fut

    def _run(self, job: Callable[..., list[np.ndarray]], x: np.ndarray | None,
             done: asyncio.Future[None] | None = None) -> None:
        out: list[Any] = []
        if self.failed is None:
            try:
                out = job() if x is None else job(x)
                if self._convert is not None:
                    out = [self._convert(t) for t in out]
            except Exception as e:  # a generator failure stops generated motion, never the call
                self.failed = f"{type(e).__name__}: {e}"
                log.warning("speech-driven motion stopped: %s", self.failed)
        if x is not None:
            with self._lock:
                self._queued -= len(x)
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, out, done)
        except RuntimeError:  # the loop is closed: the call is over
            pass

    def _deliver(self, out: list[Any], done: asyncio.Future[None] | None) -> None:
        if self._closed:
            return
        for tokens in out:
            k = self.frames
            self.frames += 1
            self._on_frame(k, tokens)
        if done is not None and not done.done():
            done.set_result(None)

    def close(self) -> None:
        """Stops generating; queued speech is dropped."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def frame_media_ms(first_media_ms: float, k: int) -> float:
    """Media time of frame ``k`` of a stream whose first sample was at ``first_media_ms``."""
    return first_media_ms + k * FRAME_MS


__all__ = ["Downsampler", "SpeechMotion", "frame_media_ms", "new_stream"]
