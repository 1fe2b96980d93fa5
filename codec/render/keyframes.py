"""Keyframes: extra pictures of the caller that show what the portrait does not.

One photo has one mouth shape, open eyes and one head pose. During a call the
sender can send a few more frames (:class:`Keyframe`): the mouth open with the
teeth showing, the eyes closed, the head turned. The sender picks them
(:mod:`codec.keyframe_select`) and sends them as pictures (:mod:`codec.picture`);
the renderer (:meth:`codec.render.pipeline.Renderer.add_keyframe`) takes from
them what the portrait lacks: the inside of the mouth from the keyframe whose
mouth shape is nearest the target's, and real lids for a blink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec import regions as R
from codec.errors import NoFaceError, PortraitError
from codec.face import detect_landmarks
from codec.motion import MotionState, load_template

MOUTH_WIDTH_WEIGHT = 0.5
"""A mouth shape's distance: |opening difference| + this times |width difference| (+ the pose's share)."""

MOUTH_POSE_WEIGHT = 0.3
"""And this times the angle, in radians, between the head's rotation in the target and in the picture: lips
seen from another side, or lit from another one, look unlike the target's even when their shape is the same.
On the 7 held-out clips, with a mouth picture every 5th frame of the first 5 s, mouth SSIM 0.839 without it,
0.844 with 0.3 and 0.45, 0.842 with 0.6."""


@dataclass(frozen=True)
class Keyframe:
    """A picture of the caller beside the portrait.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB; best the reference's crop (the portrait's
            box and size); a smaller crop is fine, the renderer uses what lies inside it.
        landmarks: ``[478, 3]`` float32 in ``image``'s pixels.
        kind: what it was picked for (a :class:`codec.picture.PictureKind` label, or empty);
            informational: the renderer picks per frame by mouth shape and lid opening.
    """

    image: np.ndarray
    landmarks: np.ndarray
    kind: str = ""

    def __post_init__(self) -> None:
        img, lm = self.image, self.landmarks
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"a keyframe's image must be [H, W, 3] uint8 RGB, got {getattr(img, 'shape', img)}")
        if not (isinstance(lm, np.ndarray) and lm.shape == (R.NUM_LANDMARKS, 3) and np.isfinite(lm).all()):
            raise ValueError(f"a keyframe's landmarks must be a finite [478, 3] array, got {getattr(lm, 'shape', lm)}")

    @staticmethod
    def from_image(image: np.ndarray, kind: str = "") -> "Keyframe":
        """A keyframe of a picture, its landmarks found by the face tracker.

        Raises:
            PortraitError: no face, or several.
        """
        try:
            lm = detect_landmarks(np.ascontiguousarray(image))
        except NoFaceError:
            raise PortraitError("keyframe: no face found") from None
        except ValueError as e:
            raise PortraitError(f"keyframe: {e}") from None
        return Keyframe(np.ascontiguousarray(image), lm.astype(np.float32), kind)


def canonical_mouth(state: MotionState) -> np.ndarray:
    """Mouth shape in the head's own frame, free of pose and scale.

    Args:
        state: motion states ``[...]``.
    Returns:
        ``[..., 2]``: inner-lip opening and mouth-corner width, in inter-ocular distances.
    """
    canon = load_template().shape + state.expression
    up, lo = R.MOUTH_INNER_LIPS
    left, right = R.MOUTH_CORNERS
    opening = np.maximum(canon[..., lo, 1] - canon[..., up, 1], 0.0)
    width = canon[..., right, 0] - canon[..., left, 0]
    return np.stack([opening, width], -1)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in radians between rotations ``a [B, 3, 3]`` and ``b [K, 3, 3]``: ``[B, K]``."""
    trace = np.einsum("bij,kij->bk", a, b)  # trace(a b^T)
    return np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0))


def mouth_distance(shape: np.ndarray, rotation: np.ndarray, shapes: np.ndarray,
                   rotations: np.ndarray) -> np.ndarray:
    """How unlike each picture's mouth is each target's: the renderer takes the lips of the nearest.

    Args:
        shape: ``[B, 2]`` the targets' :func:`canonical_mouth`; rotation: ``[B, 3, 3]`` their heads'.
        shapes: ``[K, 2]`` the pictures'; rotations: ``[K, 3, 3]``.
    Returns:
        ``[B, K]``: |opening difference| + :data:`MOUTH_WIDTH_WEIGHT` |width difference| +
        :data:`MOUTH_POSE_WEIGHT` times the angle between the head rotations.
    """
    return (np.abs(shape[:, None, 0] - shapes[None, :, 0])
            + MOUTH_WIDTH_WEIGHT * np.abs(shape[:, None, 1] - shapes[None, :, 1])
            + MOUTH_POSE_WEIGHT * rotation_angle(rotation, rotations))
