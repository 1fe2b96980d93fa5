"""Landmark metrics: MediaPipe's mesh on decoded frames, NME against the truth.

NME is the mean 2D landmark distance over the truth's inter-ocular distance
(outer eye corners). A decoded frame where no face is found scores
:data:`NME_MISS` instead of being dropped: a codec must not gain by destroying the face.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from codec.face import FaceTracker, FaceTrackerConfig
from codec.regions import NUM_LANDMARKS, inter_ocular, region_masks

NME_MISS = 0.5
"""NME charged for a decoded frame where no face is found (in inter-ocular distances)."""


def track_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe landmarks of every frame, each detected on its own.

    Frames are treated as stills (no tracking from frame to frame) so a
    subsample of a clip gets the same landmarks as the whole clip, and a
    destroyed face is not carried along by the tracker.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
    Returns:
        landmarks ``[T, 478, 3]`` float32 pixels, NaN where no face was found;
        valid ``[T]`` bool.
    """
    out = np.full((len(frames), NUM_LANDMARKS, 3), np.nan, np.float32)
    valid = np.zeros(len(frames), bool)
    tracker = _still_tracker()
    for i, frame in enumerate(frames):
        faces = tracker.track_all(np.ascontiguousarray(frame))
        if faces:
            out[i] = faces[0]
            valid[i] = True
    return out, valid


@lru_cache(maxsize=1)
def _still_tracker() -> FaceTracker:
    # In still-image mode the mesh keeps no state between frames, so one serves every clip.
    return FaceTracker(FaceTrackerConfig(video=False))


def nme(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Normalized mean landmark error per frame, over the mesh and per region.

    Args:
        pred: ``[T, 478, 3]`` decoded landmarks, NaN rows where no face was found.
        truth: ``[T, 478, 3]`` true landmarks (frames with NaN are the caller's to drop).
    Returns:
        ``{"all", "lips", "eyes", "rest"}`` -> ``[T]``; frames without a
        decoded face get :data:`NME_MISS`.
    """
    iod = inter_ocular(truth)[:, None]
    dist = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1) / iod
    missed = np.isnan(pred).any(axis=(1, 2))
    out = {"all": dist.mean(axis=1)}
    for name, mask in region_masks().items():
        out[name] = dist[:, mask].mean(axis=1)
    for v in out.values():
        v[missed] = NME_MISS
    return out
