"""From the jitter buffer's decision to the landmarks of one render tick.

A tick shows the sender's face at one media time. The jitter buffer says
which decoded frames to use (:class:`realtime.jitterbuffer.Playout`); this
module turns that into target landmarks, blending for interpolation and
falling back to the portrait at rest where the sender saw no face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """

    index: int
    media_ms: float
    landmarks: np.ndarray
    kind: PlayoutKind
    face: bool
    due_ms: float
    generated: float = 0.0


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
