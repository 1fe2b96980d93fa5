"""Portrait preparation: any photo of one face -> the receiver's square portrait.

The receiver re-renders every frame from one still image of the caller. This
module turns a user's photo (any size, PNG or JPEG) into that image: it finds
the single face, crops a square around it with room for hair and neck, resizes
it to the rendering size and records the face's landmarks and motion state in
the cropped image's pixels. Nothing here touches the renderer's networks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from codec.errors import MediaError, NoFaceError, PortraitError
from codec.face import detect_landmarks
from codec.media import read_image
from codec.motion import MotionState, motion_from_landmarks
from codec.picture import Picture
from codec.render.composite import continue_outside

# The crop's side over the larger side of the landmarks' box, and how far the
# crop's centre sits above the box's centre (in crop sides): the corpus frames a
# face this way, so a prepared portrait looks like the frames the models saw.
CROP_SCALE = 2.0
CROP_SHIFT_UP = 0.05
# A photo smaller than this holds no face worth animating; one whose crop is enlarged more than
# MAX_ENLARGEMENT times to the portrait's size works but looks blurred, which a user is told.
MIN_PORTRAIT_SIDE = 64
MAX_ENLARGEMENT = 4.0

log = logging.getLogger(__name__)

OUTSIDE_BLUR = 0.03
"""Where a crop reaches past the photo, the blur along its edge (a share of the crop's side) that replaces stripes."""


@dataclass
class Portrait:
    """The still image the receiver animates.

    Attributes:
        image: ``[size, size, 3]`` uint8 RGB.
        landmarks: ``[478, 3]`` float32, x and y in ``image``'s pixels, z in the same scale.
        state: the face's :class:`MotionState` in ``image``.
        box: ``(x0, y0, x1, y1)`` the square crop in the original photo's pixels
            (may reach past its edges: there the edge continues softly, see
            :func:`codec.render.composite.continue_outside`).
    """

    image: np.ndarray
    landmarks: np.ndarray
    state: MotionState
    box: tuple[float, float, float, float]

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def _load(image_or_path: np.ndarray | str | Path) -> tuple[np.ndarray, str]:
    """The photo as ``[H, W, 3]`` uint8 RGB and a name for messages."""
    if isinstance(image_or_path, np.ndarray):
        img = image_or_path
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise PortraitError(f"portrait must be an [H, W, 3] uint8 RGB image, got {img.shape} {img.dtype}")
        return np.ascontiguousarray(img), "the portrait"
    try:
        return read_image(image_or_path), str(image_or_path)
    except MediaError as e:
        raise PortraitError(f"cannot use as a portrait: {e}") from None


def _landmarks(image: np.ndarray, name: str) -> np.ndarray:
    try:
        return detect_landmarks(image)
    except NoFaceError:
        raise PortraitError(f"{name}: no face found; use a photo showing one face from the front") from None
    except ValueError as e:
        raise PortraitError(f"{name}: {e}; use a photo showing only the caller") from None


def crop_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The square crop around a face.

    Args:
        landmarks: ``[478, 3]`` pixels of the photo.
    Returns:
        ``(x0, y0, x1, y1)`` in the photo's pixels, ``x1 - x0 == y1 - y0``.
    """
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    side = CROP_SCALE * float((hi - lo).max())
    cx, cy = (lo + hi) / 2
    cy -= CROP_SHIFT_UP * side
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def prepare_portrait(image_or_path: np.ndarray | str | Path, size: int = 512, crop: bool = True) -> Portrait:
    """Finds the one face in a photo and makes it the receiver's portrait.

    Args:
        image_or_path: an ``[H, W, 3]`` uint8 RGB image or an image file's path.
        size: side of the prepared square portrait in pixels.
        crop: crop a square around the face (with margin for hair and neck) and
            resize it to ``size``; ``False`` keeps the image as it is (it must then
            be ``size`` x ``size`` already, e.g. a corpus frame).
    Returns:
        the :class:`Portrait`.
    Raises:
        PortraitError: unreadable file, no face, several faces, or (``crop=False``)
            an image of another size.
    """
    image, name = _load(image_or_path)
    check_portrait_image(image, name)
    lm = _landmarks(image, name)
    if not crop:
        if image.shape[:2] != (size, size):
            raise PortraitError(f"{name}: is {image.shape[1]}x{image.shape[0]}, expected {size}x{size} "
                                "(or prepare it with crop=True)")
        box = (0.0, 0.0, float(size), float(size))
        return Portrait(image, lm, motion_from_landmarks(lm), box)

    box = crop_box(lm)
    side = box[2] - box[0]
    if side * MAX_ENLARGEMENT < size:
        log.warning("%s: the face is only %.0f px across, so the %d px portrait enlarges it %.0fx and will look "
                    "blurred (a face of %.0f px or more looks sharp)", name, side / CROP_SCALE, size, size / side,
                    size / (MAX_ENLARGEMENT * CROP_SCALE))
    return crop_to_box(image, lm, box, size)


def check_portrait_image(image: np.ndarray, name: str) -> None:
    """Refuses a photo too small to hold a face worth animating.

    Raises:
        PortraitError: a side under :data:`MIN_PORTRAIT_SIDE` pixels.
    """
    h, w = image.shape[:2]
    if min(h, w) < MIN_PORTRAIT_SIDE:
        raise PortraitError(f"{name}: is {w}x{h} pixels; a portrait needs at least {MIN_PORTRAIT_SIDE}x"
                            f"{MIN_PORTRAIT_SIDE} (use a photo where the face is {MIN_PORTRAIT_SIDE} px or more)")


def crop_to_box(image: np.ndarray, landmarks: np.ndarray, box: tuple[float, float, float, float],
                size: int = 512) -> Portrait:
    """Crops a photo or camera frame to a square box and resizes it, as :func:`prepare_portrait` does.

    The sender cuts its reference and keyframes this way (keyframes in the reference's box, so all of a
    call's pictures are framed alike).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        landmarks: ``[478, 3]`` the face's landmarks in ``image``'s pixels.
        box: ``(x0, y0, x1, y1)`` square, in ``image``'s pixels (may reach past its edges).
        size: side of the result in pixels.
    Returns:
        the :class:`Portrait`, its landmarks moved into the crop.
    """
    k = size / (box[2] - box[0])
    # Maps continuous photo coordinates to the crop's: pixel centres stay centres.
    m = np.array([[k, 0.0, -box[0] * k], [0.0, k, -box[1] * k]])
    m_cv = m.copy()
    m_cv[:, 2] += (k - 1) / 2  # cv2 addresses pixel centres as integers
    src = image
    if k < 1:  # shrinking: low-pass first so fine texture does not alias
        src = cv2.GaussianBlur(image, (0, 0), sigmaX=0.45 / k)
    out = cv2.warpAffine(src, m_cv, (size, size), flags=cv2.INTER_LINEAR if k < 1 else cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REPLICATE)
    # Where the box reaches past the photo: its edge continued softly, not repeated in stripes.
    h, w = image.shape[:2]
    seen = (int(np.ceil(-box[0] * k)), int(np.ceil(-box[1] * k)),
            int(np.floor((w - box[0]) * k)), int(np.floor((h - box[1]) * k)))
    out = continue_outside(out, seen, OUTSIDE_BLUR * size, 2 * OUTSIDE_BLUR * size)
    lm = np.asarray(landmarks)
    moved = lm.copy()
    moved[:, :2] = lm[:, :2] * k + m[:, 2]
    moved[:, 2] = lm[:, 2] * k
    moved = moved.astype(np.float32)
    return Portrait(np.ascontiguousarray(out), moved, motion_from_landmarks(moved), box)


def inside_of_crop(box: tuple[float, float, float, float], frame_size: tuple[int, int],
                   size: int) -> tuple[int, int, int, int]:
    """The part of a :func:`crop_to_box` crop that shows the frame itself, not its padding.

    Args:
        box: the crop box in the frame's pixels.
        frame_size: ``(width, height)`` of the frame.
        size: side of the crop.
    Returns:
        ``(x0, y0, x1, y1)`` in the crop's pixels, rounded outwards and clipped to the crop.
    """
    k = size / (box[2] - box[0])
    x0, y0 = (0 - box[0]) * k, (0 - box[1]) * k
    x1, y1 = (frame_size[0] - box[0]) * k, (frame_size[1] - box[1]) * k
    c = [int(np.clip(np.floor(x0), 0, size - 1)), int(np.clip(np.floor(y0), 0, size - 1)),
         int(np.clip(np.ceil(x1), 1, size)), int(np.clip(np.ceil(y1), 1, size))]
    return c[0], c[1], max(c[2], c[0] + 1), max(c[3], c[1] + 1)


def portrait_from_picture(picture: Picture) -> Portrait:
    """The receiver's portrait from the caller's picture (its landmarks as the sender tracked them)."""
    lm = np.asarray(picture.landmarks, np.float32)
    size = float(picture.size)
    return Portrait(np.ascontiguousarray(picture.image), lm, motion_from_landmarks(lm), (0.0, 0.0, size, size))
