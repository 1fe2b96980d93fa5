"""From the jitter buffer's decision to the landmarks of one render tick.

A tick shows the sender's face at one media time. The jitter buffer says
which decoded frames to use (:class:`realtime.jitterbuffer.Playout`); this
module turns that into target landmarks, blending for interpolation and
falling back to the portrait at rest where the sender saw no face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.paths import atomic_output
from realtime.jitterbuffer import Playout, PlayoutKind


@dataclass(frozen=True)
class Tick:
    """One render tick.

    Attributes:
        index: ticks since the call's playout began.
        media_ms: sender media time shown.
        landmarks: ``[478, 3]`` target landmarks in the portrait's pixels.
        kind: fresh, interpolated, held, or empty (nothing received yet).
        face: the sender saw a face at that time.
        due_ms: local monotonic time the tick was due.
        generated: weight of motion generated from speech in ``landmarks`` (``--animate-from-audio``),
            0 for the received motion alone.
        fired_ms: local monotonic time the playout loop actually served the tick (``due_ms`` plus its lateness).
        arrived_ms, decoded_ms: FRESH ticks: when the frame's packet arrived and was decoded (local monotonic).
    """

    index: int
    media_ms: float
    landmarks: np.ndarray
    kind: PlayoutKind
    face: bool
    due_ms: float
    generated: float = 0.0
    fired_ms: float = 0.0
    arrived_ms: float | None = None
    decoded_ms: float | None = None


def tick_landmarks(playout: Playout[np.ndarray | None], rest: np.ndarray) -> tuple[np.ndarray, bool]:
    """Target landmarks for a jitter-buffer decision.

    Args:
        playout: the decision; frame values are ``[478, 3]`` landmarks or None (no face).
        rest: ``[478, 3]`` the portrait at rest.
    Returns:
        ``[478, 3]`` landmarks and whether they show the sender's face.
    """
    if playout.kind is PlayoutKind.EMPTY or playout.frame is None:
        return rest, False
    a = playout.frame.value
    if playout.kind is PlayoutKind.INTERPOLATED and playout.after is not None:
        b = playout.after.value
        if a is not None and b is not None:
            w = np.float32(playout.alpha)
            return ((1 - w) * a + w * b).astype(np.float32), True
        nearest = a if playout.alpha < 0.5 else b
        return (rest, False) if nearest is None else (nearest, True)
    return (rest, False) if a is None else (a, True)


KIND_CODES = {PlayoutKind.FRESH: 0, PlayoutKind.INTERPOLATED: 1, PlayoutKind.HELD: 2, PlayoutKind.EMPTY: 3}


class MotionLog:
    """Every tick's target landmarks, to compare what was shown with what was sent (``talk-recv --save-motion``).

    Memory grows with the call (5.7 kB a tick): meant for measurements, not for long calls.
    """

    def __init__(self) -> None:
        self._calls = 0
        self._rows: list[tuple[int, float, int, bool, np.ndarray]] = []

    def begin_call(self) -> None:
        self._calls += 1

    def add(self, tick: Tick) -> None:
        self._rows.append((self._calls, tick.media_ms, KIND_CODES[tick.kind], tick.face,
                           np.asarray(tick.landmarks, np.float32)))

    def save(self, path: str | Path) -> None:
        """Writes ``call`` [T], ``media_ms`` [T], ``kind`` [T] (0 fresh, 1 interpolated, 2 held, 3 empty),
        ``face`` [T] and ``landmarks`` [T, 478, 3] to an ``.npz``."""
        rows = self._rows
        with atomic_output(path) as tmp, open(tmp, "wb") as f:  # a file object: np adds no ".npz" to the name
            np.savez_compressed(f, call=np.array([r[0] for r in rows], np.int32),
                                media_ms=np.array([r[1] for r in rows], np.float64),
                                kind=np.array([r[2] for r in rows], np.int8),
                                face=np.array([r[3] for r in rows], bool),
                                landmarks=np.stack([r[4] for r in rows]) if rows else np.zeros((0, 478, 3),
                                                                                              np.float32))
