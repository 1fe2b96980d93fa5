"""A drawn mouth interior, for mouths that open wider than any picture of the caller shows.

Without a picture of the open mouth (the portrait's mouth closed, no keyframe
yet, or avatar mode), the opening still shows teeth and a tongue, not a dark
slot. The colours come from the portrait itself: teeth are the skin's colour
desaturated and brightened, the cavity and tongue the lips' colour darkened.
Measured on the open mouths of 22 training clips, the brightest fifth of an
open mouth (the teeth) is 1.2 times the skin's luma and the darkest fifth
(the cavity) a third of the lips'.

Two patches are drawn once per portrait (:func:`teeth_patch`, :func:`cavity_patch`),
texture coordinates ``u`` across the mouth (0 and 1 at the corners) and ``v``
down: the teeth are strips hanging from the inner lips (the warp's ``TEETH``
triangles), the cavity fills the opening behind them (its ``MOUTH`` fan).
"""

from __future__ import annotations

import cv2
import numpy as np

from codec import regions as R

TEETH_LUMA = 1.2
"""Teeth luma over the skin's."""

TEETH_SATURATION = 0.45
"""How much of the skin's colour (its difference from grey) the teeth keep."""

CAVITY = 0.32
TONGUE = 0.62
"""Cavity and tongue colours as fractions of the lips' colour."""

UPPER_TEETH = 0.11
LOWER_TEETH = 0.06
"""How far the upper and lower teeth reach into the opening, in inter-ocular distances."""

# Tooth boundaries across the visible arch, as offsets from the middle (u = 0.5): incisors, canine.
_GAPS = np.array([0.0, 0.1, 0.18, 0.25])


def face_colours(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The skin's and the lips' typical colours.

    Args:
        image: ``[H, W, 3]`` uint8 RGB; landmarks: ``[478, 3]`` its face.
    Returns:
        ``(skin, lips)``, each ``[3]`` float32 RGB in [0, 1] (medians, so highlights and shadows do not count).
    """
    shape = image.shape[:2]

    def mask(contour: np.ndarray) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(landmarks[contour, :2] - 0.5).astype(np.int32)], (1,))
        return m.astype(bool)

    lips_out, lips_in = mask(R.LIPS_OUTER), mask(R.LIPS_INNER)
    skin = mask(R.FACE_OVAL) & ~cv2.dilate(lips_out.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        skin &= ~cv2.dilate(mask(contour).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    lips = lips_out & ~lips_in
    img = image.astype(np.float32) / 255
    skin_rgb = np.median(img[skin], 0) if skin.sum() > 20 else np.array([0.75, 0.55, 0.45])
    lip_rgb = np.median(img[lips], 0) if lips.sum() > 10 else skin_rgb * np.array([0.95, 0.7, 0.7])
    return skin_rgb.astype(np.float32), lip_rgb.astype(np.float32)


def teeth_colour(skin: np.ndarray) -> np.ndarray:
    """Teeth's colour ``[3]`` from the skin's: desaturated and brighter, in [0, 1]."""
    grey = float(skin @ np.array([0.299, 0.587, 0.114]))
    return np.clip((grey + TEETH_SATURATION * (skin - grey)) * TEETH_LUMA, 0, 1).astype(np.float32)


def teeth_patch(skin: np.ndarray, upper: bool, width: int = 128, height: int = 24) -> np.ndarray:
    """A strip of teeth ``[height, width, 4]`` float32 (alpha 1), ``u`` across, ``v`` away from the lip.

    Teeth darken towards the mouth's corners (the cheeks shade them) and next to
    the lip; thin darker gaps separate them. Lower teeth are a little darker.
    """
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    side = np.abs(2 * u - 1)
    shade = 1 - 0.8 * side ** 2                                  # corners in the cheeks' shadow
    gap = np.min(np.abs(side[:, None] - 2 * _GAPS[None, :]), 1)  # distance to the nearest tooth edge
    shade = shade * (1 - 0.12 * np.exp(-(gap * width / 1.5) ** 2))
    lip = 1 - 0.35 * np.exp(-v / 0.12)                            # the lip's shadow at the gum line
    tip = 1 - 0.25 * np.clip((v - 0.8) / 0.2, 0, 1)               # translucent biting edge
    rows = (lip * tip)[:, None] * shade[None, :] * (1.0 if upper else 0.8)
    rgb = teeth_colour(skin)[None, None, :] * rows[..., None]
    return np.concatenate([rgb, np.ones((height, width, 1))], -1).astype(np.float32)


def cavity_patch(lips: np.ndarray, width: int = 64, height: int = 64) -> np.ndarray:
    """The inside of the mouth ``[height, width, 4]`` float32 (alpha 1): dark above, a tongue below.

    ``u`` across the opening, ``v`` from the upper inner lip (0) to the lower (1).
    """
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    side = (2 * u - 1) ** 2
    tongue_top = 0.62 + 0.25 * side                              # a rounded hump, lower at the sides
    t = np.clip((v[:, None] - tongue_top[None, :]) / 0.12 + 0.5, 0, 1)
    t = t * t * (3 - 2 * t)
    deep = CAVITY * (0.75 + 0.25 * side)                          # the throat, darkest in the middle
    k = (deep[None, :] + t * (TONGUE - deep[None, :])) * (1 - 0.35 * side[None, :])
    rgb = lips[None, None, :] * k[..., None]
    return np.concatenate([rgb, np.ones((height, width, 1))], -1).astype(np.float32)


TEETH_PROFILE_POWER = 0.6
"""Teeth reach ``sin(pi u) ** TEETH_PROFILE_POWER`` of their middle's length at ``u`` across the mouth."""


def teeth_profile(u: np.ndarray) -> np.ndarray:
    """How far a teeth strip reaches at ``u`` across the mouth, relative to its middle (0 at the corners)."""
    return np.clip(np.sin(np.pi * np.clip(u, 0, 1)), 0, 1) ** TEETH_PROFILE_POWER
