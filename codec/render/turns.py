"""Head turns from keyframes: the face of a turned head from a picture taken turned.

A frontal portrait warped to a head turned far shows its near cheek stretched
from the few pixels the portrait has of it, and no shading of the turn. The
sender also sends frames with the head turned left and right
(:mod:`codec.keyframe_select`); when a target pose is turned towards one of
them, the warp takes the face from it (:class:`codec.render.warp.GeometricWarp`):

* the same target mesh is rasterized a second time with the face's vertices
  (the landmarks, the eyes' centres and iris rings) sampling the keyframe's
  landmarks instead of the portrait's: targets are computed as always
  (relative transfer onto the portrait), only the source picture changes; the
  mouth's interior and teeth keep their sources, and a closing lid samples the
  skin above it in the keyframe as it does in the portrait;
* the two renders are mixed inside the face only, by a mask drawn in the
  portrait (the face oval, feathered inwards by :data:`FEATHER` inter-ocular
  distances) and sampled where the first render sampled the portrait: hair,
  ears, neck and background stay the portrait's, so they never jump;
* by pose, smoothly (:func:`turn_weights`): along the target's side, the
  portrait (yaw 0) and that side's turn pictures are ordered by yaw; a target
  between two of them takes the nearer one, with a smoothstep over the middle
  of the interval (:data:`BLEND`), so no frame pops; past the farthest
  picture, that picture. The rest of the pose must agree too: a picture
  whose pitch and roll differ from the target's by more than
  :data:`TILT_FREE` degrees gives way to the portrait, fully at
  ``TILT_FREE + TILT_SPAN`` (a head turned as far but tilted otherwise is not
  near in pose: on a held-out clip whose only turn keyframe was tilted 12-18
  degrees from the frames turned like it, taking it made landmarks and identity worse).

Only keyframes turned at least :data:`MIN_TURN_DEG` with both eyes open
(:data:`EYES_OPEN`) serve as turn pictures, whatever kind the sender gave them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from codec import regions as R

MIN_TURN_DEG = 8.0
"""Least head turn (yaw from the portrait, degrees) of a keyframe that serves as a turn picture."""

EYES_OPEN = 0.7
"""A turn picture's lids are open at least this share of the portrait's (else its eyes would show half shut)."""

BLEND = (0.3, 0.7)
"""Where a target between two pictures' yaws (0: the nearer to the portrait, 1: the farther) starts and ends
crossing over from the one to the other (a smoothstep)."""

TILT_FREE, TILT_SPAN = 6.0, 6.0
"""Pitch and roll difference (degrees, combined) up to which a turn picture serves fully, and over which more it
gives way to the portrait (a smoothstep)."""

MIN_WEIGHT = 0.02
"""A picture's weight below this is taken as none (its face is not rendered): 2% of a face, never seen, costs a
second rasterization."""

FEATHER = 0.3
"""Width of the face mask's soft edge inside the face oval, in inter-ocular distances."""


@dataclass
class TurnPicture:
    """A keyframe of the head turned, as the warp samples it.

    Attributes:
        yaw: its head turn from the portrait, degrees (positive: the nose towards the image's left, as
            :func:`codec.keyframe_select.yaw_degrees`).
        tilt: ``[2]`` its pitch and roll from the portrait, degrees (:func:`poses`).
        patch: its texture patch (the face, cropped around the face oval).
        sources: ``[V, 2]`` float64 where each mesh vertex samples in it, relative to the patch's origin, in
            texels; NaN for vertices that keep the first render's sources (the mouth's, the rings').
        lift: ``[2, 7, 2]`` how far each upper lid's margin samples upwards when closed, in texels.
    """

    yaw: float
    tilt: np.ndarray
    patch: str
    sources: np.ndarray
    lift: np.ndarray


def poses(rotation: np.ndarray, portrait_rotation: np.ndarray) -> np.ndarray:
    """Yaw, pitch and roll ``[..., 3]`` in degrees of head rotations ``[..., 3, 3]`` from the portrait's ``[3, 3]``:
    the yaw and pitch of where the face looks (yaw's sign as :func:`codec.keyframe_select.yaw_degrees`), the roll
    of its left-right axis in the image."""
    rel = rotation @ portrait_rotation.T
    look = rel[..., :, 2]
    return np.degrees(np.stack([np.arctan2(look[..., 0], look[..., 2]), np.arcsin(np.clip(look[..., 1], -1, 1)),
                                np.arctan2(rel[..., 1, 0], rel[..., 0, 0])], -1))


def yaws(rotation: np.ndarray, portrait_rotation: np.ndarray) -> np.ndarray:
    """Head turns ``[...]`` in degrees of rotations ``[..., 3, 3]`` from the portrait's ``[3, 3]`` (sign as
    :func:`codec.keyframe_select.yaw_degrees`)."""
    return poses(rotation, portrait_rotation)[..., 0]


def tilt_gate(target: np.ndarray, pictures: np.ndarray) -> np.ndarray:
    """``[B, K]`` share of its weight each picture keeps for pitch and roll: targets' ``[B, 2]``, pictures'
    ``[K, 2]``."""
    diff = np.hypot(target[:, None, 0] - pictures[None, :, 0], target[:, None, 1] - pictures[None, :, 1])
    x = np.clip((diff - TILT_FREE) / TILT_SPAN, 0.0, 1.0)
    return 1.0 - x * x * (3 - 2 * x)


def turn_weights(target: np.ndarray, pictures: np.ndarray, target_tilt: np.ndarray | None = None,
                 picture_tilt: np.ndarray | None = None) -> np.ndarray:
    """How much of each frame's face comes from each turn picture (the rest from the portrait).

    Args:
        target: ``[B]`` the frames' yaws from the portrait, degrees.
        pictures: ``[K]`` the pictures' yaws (NaN: no picture).
        target_tilt, picture_tilt: ``[B, 2]`` and ``[K, 2]`` pitch and roll (:func:`poses`); None: not gated by them.
    Returns:
        ``[B, K]`` float64 weights in [0, 1], at most two non-zero per frame, summing to at most 1 (none
        below :data:`MIN_WEIGHT`).
    """
    t = np.asarray(target, np.float64)[:, None]
    y = np.asarray(pictures, np.float64)[None, :]
    if not y.shape[1]:
        return np.zeros((len(t), 0))
    same = np.isfinite(y) & (np.sign(y) == np.sign(t)) & (t != 0)
    s, a = np.abs(t), np.where(same, np.abs(y), np.nan)
    below = same & (a <= s)
    above = same & (a > s)
    lo = np.where(below, a, -np.inf).max(1, initial=-np.inf)              # [B] nearest picture below (or none)
    hi = np.where(above, a, np.inf).min(1, initial=np.inf)                # [B] nearest above
    lo_k = np.where(np.isfinite(lo), np.argmax(np.where(below, a, -np.inf), 1), -1)
    hi_k = np.where(np.isfinite(hi), np.argmin(np.where(above, a, np.inf), 1), -1)
    base = np.where(np.isfinite(lo), lo, 0.0)
    u = (s[:, 0] - base) / np.where(np.isfinite(hi), hi - base, 1.0)
    x = np.clip((u - BLEND[0]) / (BLEND[1] - BLEND[0]), 0.0, 1.0)
    w_hi = np.where(np.isfinite(hi), x * x * (3 - 2 * x), 0.0)
    w_lo = 1.0 - w_hi
    out = np.zeros((len(t), y.shape[1]), np.float64)
    rows = np.arange(len(t))
    has_lo, has_hi = lo_k >= 0, hi_k >= 0
    out[rows[has_lo], lo_k[has_lo]] += w_lo[has_lo]
    out[rows[has_hi], hi_k[has_hi]] += w_hi[has_hi]
    if target_tilt is not None and picture_tilt is not None:
        out *= tilt_gate(np.asarray(target_tilt, np.float64), np.asarray(picture_tilt, np.float64))
    return np.where(out >= MIN_WEIGHT, out, 0.0)


def face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` float32: 1 inside the face oval, falling to 0 at the oval over :data:`FEATHER`
    inter-ocular distances (a smoothstep), 0 outside."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[R.FACE_OVAL, :2] - 0.5).astype(np.int32)], (1,))
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    x = np.clip(dist / max(FEATHER * float(R.inter_ocular(landmarks)), 1.0), 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def is_turn_picture(yaw: float, blink: np.ndarray, portrait_blink: np.ndarray) -> bool:
    """Whether a keyframe turned by ``yaw`` degrees, lids open ``blink [2]``, serves as a turn picture."""
    return abs(yaw) >= MIN_TURN_DEG and bool((blink >= EYES_OPEN * np.maximum(portrait_blink, 1e-6)).all())
