"""The true clip and what every comparison needs from it, computed once per clip."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.metrics.landmarks import track_frames
from bench.metrics.sharpness import face_oval_mask, laplacian_variance


@dataclass
class Reference:
    """The true clip and what every comparison needs from it, computed once.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        landmarks: ``[T, 478, 3]`` MediaPipe landmarks, NaN where no face.
        valid: ``[T]`` a face was found in the truth.
        detail: ``[T]`` Laplacian variance in the face oval (NaN without a face).
    """

    frames: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    detail: np.ndarray
    memo: dict[tuple[object, ...], np.ndarray] = field(default_factory=dict, repr=False)
    """Values derived from the truth by metrics that compute them once (e.g. identity descriptors)."""

    @classmethod
    def of(cls, frames: np.ndarray) -> "Reference":
        """Tracks and measures the true frames ``[T, H, W, 3]``."""
        landmarks, valid = track_frames(frames)
        ref = cls(frames, landmarks, valid, np.full(len(frames), np.nan))
        ref.detail = laplacian_variance(frames, ref.face_masks())
        return ref

    def subset(self, idx: np.ndarray) -> "Reference":
        """The reference restricted to frames ``idx``."""
        return Reference(self.frames[idx], self.landmarks[idx], self.valid[idx], self.detail[idx])

    def face_masks(self) -> np.ndarray:
        """``[T, H, W]`` face-oval masks (empty where the truth has no face)."""
        masks = np.zeros(self.frames.shape[:3], bool)
        for i in np.flatnonzero(self.valid):
            masks[i] = face_oval_mask(self.landmarks[i], (self.frames.shape[1], self.frames.shape[2]))
        return masks
