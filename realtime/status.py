"""The one-line live status both command-line tools show.

On a terminal the line is rewritten in place; into a pipe or a log file a
line every few seconds is written instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import numpy as np

PIPE_INTERVAL_S = 5.0


class StatusLine:
    """Shows a status line.

    Args:
        stream: where to write (stderr by default).
        enabled: False shows nothing (``--quiet``).
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._shown = False
        self._last_pipe = 0.0

    def update(self, text: str) -> None:
        if not self._enabled:
            return
        if self._tty:
            self._stream.write("\r" + text + "\x1b[K")
            self._shown = True
        else:
            now = time.monotonic()
            if now - self._last_pipe < PIPE_INTERVAL_S:
                return
            self._last_pipe = now
            self._stream.write(text + "\n")
        self._stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (an event), leaving the status line below it."""
        self.clear()
        self._stream.write(text + "\n")
        self._stream.flush()

    def clear(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def percentiles(values: list[float]) -> dict[str, float | None]:
    """``{"p50", "p95", "mean", "n"}`` of a list of samples (None where empty)."""
    if not values:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    a = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "mean": round(float(a.mean()), 1), "n": int(a.size)}


def format_status(fps: float, kbps: float, rtt_ms: float | None, loss: float,
                  latency_ms: float | None = None, extra: str = "") -> str:
    """``25.0 fps | 12.6 kbps | RTT 3 ms | loss 0.0% | latency 96 ms``."""
    parts = [f"{fps:4.1f} fps", f"{kbps:5.1f} kbps",
             "RTT  -- ms" if rtt_ms is None else f"RTT {rtt_ms:3.0f} ms", f"loss {loss * 100:4.1f}%"]
    if latency_ms is not None:
        parts.append(f"latency {latency_ms:3.0f} ms")
    if extra:
        parts.append(extra)
    return " | ".join(parts)
