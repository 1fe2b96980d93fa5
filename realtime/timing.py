"""Where a frame's milliseconds go: per-stage timings, kept in bounded memory.

A frame's path from camera to screen is cut into stages, each timed on the
machine that runs it:

* sender: ``capture`` (frame taken -> handed to the call), ``queue`` (waiting
  for the face tracker), ``tracking`` (face mesh), ``tokenizing`` (motion,
  tokenizer, packing), ``send`` (packet made -> handed to the data channel);
* receiver: ``network`` (handed over on the sender -> message here; derived
  from the capture time the packet carries), ``decode``, ``jitter_buffer``
  (decoded -> the tick it is due at), ``smoothing`` (the one frame the
  receiver waits for the next one, to smooth with it: 40 ms, 0 with
  ``--no-smoothing``), ``pacing`` (due -> the playout loop
  woke), ``render_queue`` (tick -> the renderer took it), ``render``,
  ``display`` (rendered -> handed to the window and the browsers).

:class:`Histogram` keeps percentiles of a stream of samples in fixed memory
(a 30-minute call is 45,000 frames), and :class:`StageTimes` one histogram per
stage. Nothing here reads a clock: callers pass the times they measured.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

SENDER_STAGES = ("capture", "queue", "tracking", "tokenizing", "send")
RECEIVER_STAGES = ("network", "decode", "jitter_buffer", "smoothing", "pacing", "render_queue", "render", "display")
STAGES = SENDER_STAGES + RECEIVER_STAGES

# Samples are rounded to 0.1 ms up to 1 s, to 10 ms up to 120 s; anything longer lands in the last bin.
_FINE_MS, _FINE_STEP = 1000.0, 0.1
_COARSE_MS, _COARSE_STEP = 120_000.0, 10.0
_FINE_BINS = int(round(_FINE_MS / _FINE_STEP))
_BINS = _FINE_BINS + int(round((_COARSE_MS - _FINE_MS) / _COARSE_STEP)) + 1


def _bin(ms: float) -> int:
    if ms < _FINE_MS:
        return max(0, int(round(ms / _FINE_STEP)))
    return min(_BINS - 1, _FINE_BINS + int(round((ms - _FINE_MS) / _COARSE_STEP)))


def _bin_value(i: int) -> float:
    """The value bin ``i`` holds (ms)."""
    if i < _FINE_BINS:
        return i * _FINE_STEP
    return _FINE_MS + (i - _FINE_BINS) * _COARSE_STEP


class Histogram:
    """Percentiles of non-negative millisecond samples in fixed memory (0.1 ms resolution below 1 s).

    Negative samples (clock offset error between two machines) count as 0 in
    the percentiles but keep their sign in the mean.
    """

    def __init__(self) -> None:
        self._counts = np.zeros(_BINS, np.int64)
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        if not math.isfinite(ms):
            return
        self._counts[_bin(ms)] += 1
        self.n += 1
        self.total += ms
        self.max = max(self.max, ms)

    def merge(self, other: Histogram) -> None:
        self._counts += other._counts
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return None if self.n == 0 else self.total / self.n

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100), to the bin's resolution."""
        if self.n == 0:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.n))
        return _bin_value(int(np.searchsorted(np.cumsum(self._counts), rank)))

    def summary(self) -> dict[str, float | None]:
        """``{"p50", "p95", "mean", "n"}`` as :func:`realtime.status.percentiles` gives them."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 1)

        return {"p50": r(self.percentile(50)), "p95": r(self.percentile(95)), "mean": r(self.mean), "n": self.n}


class Samples:
    """A :class:`Histogram` plus the most recent samples (for a live median)."""

    def __init__(self, recent: int = 25) -> None:
        self.hist = Histogram()
        self.recent: deque[float] = deque(maxlen=recent)

    def add(self, ms: float) -> None:
        self.hist.add(ms)
        self.recent.append(ms)

    def __len__(self) -> int:
        return self.hist.n

    def median_recent(self) -> float | None:
        """The median of the most recent samples (a live figure)."""
        return float(np.median(self.recent)) if self.recent else None

    def summary(self) -> dict[str, float | None]:
        return self.hist.summary()


class StageTimes:
    """One histogram per stage.

    Args:
        stages: the stage names, in path order.
    """

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.stages = stages
        self._hist = {s: Histogram() for s in stages}

    def add(self, stage: str, ms: float) -> None:
        self._hist[stage].add(ms)

    def __getitem__(self, stage: str) -> Histogram:
        return self._hist[stage]

    def summary(self) -> dict[str, dict[str, float | None]]:
        """``{stage: {"p50", "p95", "mean", "n"}}`` in path order."""
        return {s: self._hist[s].summary() for s in self.stages}


class StageSums:
    """Per-stage sums and maxima over an interval: what :class:`realtime.protocol.Timing` carries.

    The sender adds each frame's stage times; once an interval it hands the
    totals over and starts again. The receiver adds up what it hears, which
    gives it the sender's stage means.
    """

    def __init__(self, stages: tuple[str, ...] = SENDER_STAGES) -> None:
        self.stages = stages
        self.frames = 0
        self.sum_ms = {s: 0.0 for s in stages}
        self.max_ms = {s: 0.0 for s in stages}

    def add_frame(self, times_ms: dict[str, float]) -> None:
        """One frame's stage times (every stage of :attr:`stages`)."""
        self.frames += 1
        for s in self.stages:
            v = max(0.0, times_ms.get(s, 0.0))
            self.sum_ms[s] += v
            self.max_ms[s] = max(self.max_ms[s], v)

    def add_totals(self, frames: int, sum_ms: dict[str, float], max_ms: dict[str, float]) -> None:
        """Totals of another interval (from a Timing message)."""
        self.frames += frames
        for s in self.stages:
            self.sum_ms[s] += sum_ms.get(s, 0.0)
            self.max_ms[s] = max(self.max_ms[s], max_ms.get(s, 0.0))

    def means(self) -> dict[str, float | None]:
        return {s: (None if self.frames == 0 else self.sum_ms[s] / self.frames) for s in self.stages}

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{stage: {"mean", "max", "n"}}`` (the sender's stages as the receiver heard them)."""
        out: dict[str, dict[str, Any]] = {}
        for s in self.stages:
            mean = None if self.frames == 0 else round(self.sum_ms[s] / self.frames, 1)
            out[s] = {"mean": mean, "max": round(self.max_ms[s], 1), "n": self.frames}
        return out
