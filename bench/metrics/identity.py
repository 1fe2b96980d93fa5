"""Identity distance: does the decoded face still look like the same person?

Uses dlib's 128-d face descriptor (a ResNet trained for face verification;
two photos of one person are usually below 0.6 apart). Both models ship inside
the ``face_recognition_models`` wheel; we read its ``models/`` folder directly
because importing that package needs ``pkg_resources``.

The face box comes from the truth's MediaPipe landmarks, not from a detector
run on the decoded frame, so a destroyed face still gets a descriptor (and a
large distance) instead of being skipped.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics.reference import Reference
from codec.errors import TalkcodecError

_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_FACE_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


class IdentityUnavailable(TalkcodecError):
    """dlib or its face models are not installed."""


def models_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package.

    Raises:
        IdentityUnavailable: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise IdentityUnavailable("identity distance needs: pip install dlib-bin face_recognition_models")
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not (d / _FACE_MODEL).exists():
        raise IdentityUnavailable(f"face_recognition_models has no {_FACE_MODEL}")
    return d


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any]:
    try:
        # lazy: optional (bench extra), slow to import; only identity scores need it
        import dlib
    except ImportError:
        raise IdentityUnavailable("identity distance needs: pip install dlib-bin face_recognition_models") from None
    d = models_dir()
    return dlib.shape_predictor(str(d / _SHAPE_MODEL)), dlib.face_recognition_model_v1(str(d / _FACE_MODEL))


def face_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """A dlib-detector-like square face box from MediaPipe landmarks.

    dlib's frontal detector boxes run from about the brows to the chin and
    are square; the mesh's top reaches the hairline, so we take the box's
    lower part.

    Args:
        landmarks: ``[478, 3]`` pixels.
    Returns:
        ``(left, top, right, bottom)``.
    """
    x0, y0 = landmarks[:, :2].min(0)
    x1, y1 = landmarks[:, :2].max(0)
    side = max(x1 - x0, (y1 - y0) * 0.85)
    cx = (x0 + x1) / 2
    cy = y1 - side / 2
    return int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)


def descriptor(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 128-d face descriptor of the face in ``box``.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
        box: ``(left, top, right, bottom)`` pixels.
    Returns:
        ``[128]`` float32.
    """
    # lazy: optional (bench extra), slow to import; only identity scores need it
    import dlib

    shape_predictor, facerec = _models()
    img = np.ascontiguousarray(frame)
    shape = shape_predictor(img, dlib.rectangle(*box))
    return np.asarray(facerec.compute_face_descriptor(img, shape), dtype=np.float32)


def descriptors(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Descriptors of several frames, each in the box of its landmarks.

    Args:
        frames: ``[N, H, W, 3]`` uint8 RGB.
        landmarks: ``[N, 478, 3]`` (the truth's, for decoded frames).
    Returns:
        ``[N, 128]`` float32.
    """
    return np.stack([descriptor(f, face_box(lm)) for f, lm in zip(frames, landmarks)])


def identity_distance(decoded: np.ndarray, ref: Reference, stride: int = 5) -> float:
    """Mean Euclidean distance between decoded and true descriptors.

    Measured on every ``stride``-th frame that has a face in the truth; the
    truth's descriptors are computed once and kept on ``ref``.

    Args:
        decoded: ``[T, H, W, 3]`` uint8 RGB.
        ref: the truth.
        stride: frame step.
    Returns:
        the mean distance (same person: about 0.2-0.4; another person: about 0.8);
        NaN if the truth has no face in the sampled frames.
    """
    idx = np.flatnonzero(ref.valid)[::stride]
    if idx.size == 0:
        return math.nan
    key = ("identity", stride, len(ref.frames))
    if key not in ref.memo:
        ref.memo[key] = descriptors(ref.frames[idx], ref.landmarks[idx])
    truth = ref.memo[key]
    dec = descriptors(decoded[idx], ref.landmarks[idx])
    return float(np.linalg.norm(dec - truth, axis=1).mean())
