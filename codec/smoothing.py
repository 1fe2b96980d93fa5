"""The receiver's smoothing of decoded landmarks: less shimmer, one frame of look-ahead.

Decoded motion is the sender's motion plus quantization noise that changes
from frame to frame; the face then shimmers (its landmarks jitter 1.3-1.7x
more than the tracked truth). Each frame is pulled towards the mean of itself
and its two neighbours (weights 1/4, 1/2, 1/4), but by at most a few thousandths
of an inter-ocular distance: about the size of the quantization error, so that
noise is smoothed away while real motion, much larger from frame to frame,
passes (it is moved by no more than that bound). The bound grows when fewer
residual layers arrive, since each dropped layer leaves a coarser quantization.

The filter needs the next frame, so the receiver shows each frame one frame
interval later (40 ms at 25 fps); frames next to a gap or a frame without a
face are left as decoded. Bounds were tuned on the training clips
(held-out clips, 4 layers, whole clips: jitter over the truth's 1.14-1.64 -> 0.74-0.93,
landmark error 0.0160 -> 0.0154 inter-ocular distances).
"""

from __future__ import annotations

import numpy as np

from codec.regions import inter_ocular

LIMITS = (0.03, 0.012, 0.004, 0.004)
"""Most a landmark moves, in inter-ocular distances, with 1, 2, 3 and 4 residual layers."""

LOOKAHEAD_FRAMES = 1
"""Frames the smoothing waits for: it needs the next one."""


def smoothing_limit(layers: int) -> float:
    """How far smoothing may move a landmark (inter-ocular distances) with ``layers`` residual layers."""
    return LIMITS[min(max(int(layers), 1), len(LIMITS)) - 1]


def smooth_frame(prev: np.ndarray | None, cur: np.ndarray, nxt: np.ndarray | None, layers: int) -> np.ndarray:
    """One frame's smoothed landmarks.

    Args:
        prev, cur, nxt: ``[478, 3]`` decoded landmarks of the previous, this and the next
            frame (as decoded, not smoothed); None where there is none (a gap, no face).
        layers: residual layers ``cur`` was decoded from.
    Returns:
        ``[478, 3]`` float32; ``cur`` itself without both neighbours.
    """
    if prev is None or nxt is None:
        return np.asarray(cur, np.float32)
    cur = np.asarray(cur, np.float32)
    bound = np.float32(smoothing_limit(layers) * float(inter_ocular(cur)))
    mean = np.float32(0.25) * (prev + nxt) + np.float32(0.5) * cur
    return (cur + np.clip(mean - cur, -bound, bound)).astype(np.float32)


def smooth_landmarks(landmarks: np.ndarray, layers: np.ndarray | int, face: np.ndarray | None = None) -> np.ndarray:
    """A whole decoded clip smoothed as the receiver smooths it.

    Args:
        landmarks: ``[T, 478, 3]`` decoded landmarks, one per frame interval.
        layers: ``[T]`` residual layers of each frame, or one count for all.
        face: ``[T]`` frames that showed the sender's face (others are not smoothed
            and are no neighbours); default: all.
    Returns:
        ``[T, 478, 3]`` float32.
    """
    lm = np.asarray(landmarks, np.float32)
    t = len(lm)
    face = np.ones(t, bool) if face is None else np.asarray(face, bool)
    lay = np.broadcast_to(np.asarray(layers), (t,))
    out = lm.copy()
    if t < 3:
        return out
    inner = face[1:-1] & face[:-2] & face[2:]
    iod = inter_ocular(lm[1:-1]).astype(np.float32)
    bound = (np.array([smoothing_limit(int(r)) for r in lay[1:-1]], np.float32) * iod)[:, None, None]
    mean = np.float32(0.25) * (lm[:-2] + lm[2:]) + np.float32(0.5) * lm[1:-1]
    smoothed = lm[1:-1] + np.clip(mean - lm[1:-1], -bound, bound)
    out[1:-1][inner] = smoothed[inner]
    return out
