"""Metrics of single facial features: the mouth's interior, the eyes when closed, and motion jitter.

The whole-frame metrics (:mod:`bench.metrics.pixels`) barely move when only
the inside of an open mouth or a blink is wrong, because those are a few
hundred pixels of a 512x512 frame. These look there:

- :func:`mouth_interior_luma`: mean luma inside the inner lips (teeth and
  tongue are bright, a flat dark slot is not), compared on the frames where the
  true mouth is widest open (:func:`widest_open`);
- :func:`eye_ssim`: luma SSIM in boxes around the eyes, on the frames where the
  true eyes are closed (:func:`closed_eyes`);
- :func:`jitter`: the mean size of landmarks' frame-to-frame second
  difference, the shimmer a viewer sees; a decoder's over the truth's is its
  jitter ratio.

All regions come from the truth's landmarks, so a decoder is scored where the
feature really is.
"""

from __future__ import annotations

import numpy as np

from bench.metrics.pixels import check_pair, luma, polygon_mask, ssim_map
from codec import regions as R
from codec.motion import motion_from_landmarks

WIDEST_SHARE = 0.2
"""Share of frames, widest-open mouth first, on which the mouth interior is compared."""

CLOSED_BLINK = 0.5
"""Eyes count as closed below this share of the clip's median lid opening."""

EYE_MARGIN = 0.35
"""Margin around an eye's contour for :func:`eye_ssim`, in eye widths (takes in the lids and the brow's underside)."""


def inner_lip_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels inside the inner-lip contour.

    Args:
        landmarks: ``[478, 3]`` pixels.
        shape: ``(H, W)``.
    Returns:
        ``[H, W]`` bool.
    """
    return polygon_mask(landmarks[R.LIPS_INNER], shape, -0.5)


def mouth_interior_luma(frames: np.ndarray, landmarks: np.ndarray, min_pixels: int = 12) -> np.ndarray:
    """Mean luma inside the inner lips, per frame.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        landmarks: ``[T, 478, 3]`` the truth's landmarks (the region to look at).
        min_pixels: frames whose opening covers fewer pixels get NaN.
    Returns:
        ``[T]`` in 0..255, NaN where the mouth is (nearly) closed.
    """
    out = np.full(len(frames), np.nan)
    for i, (f, lm) in enumerate(zip(frames, landmarks)):
        m = inner_lip_mask(lm, f.shape[:2])
        if m.sum() >= min_pixels:
            out[i] = float(luma(f[m]).mean())
    return out


def widest_open(landmarks: np.ndarray, share: float = WIDEST_SHARE) -> np.ndarray:
    """Indices of the ``share`` of frames where the mouth is widest open (at least one).

    Args:
        landmarks: ``[T, 478, 3]``.
    """
    opening = R.mouth_opening(landmarks)
    k = max(1, int(round(share * len(opening))))
    return np.sort(np.argsort(-opening, kind="stable")[:k])


def closed_eyes(landmarks: np.ndarray, reference: np.ndarray | None = None,
                threshold: float = CLOSED_BLINK) -> np.ndarray:
    """Indices of frames whose eyes are closed: both lids below ``threshold`` of the usual opening.

    Args:
        landmarks: ``[T, 478, 3]`` the frames to classify.
        reference: ``[N, 478, 3]`` frames whose median opening is "usual" (default: ``landmarks``).
    """
    blink = motion_from_landmarks(landmarks).blink.mean(-1)
    ref = blink if reference is None else motion_from_landmarks(reference).blink.mean(-1)
    return np.flatnonzero(blink < threshold * float(np.median(ref)))


def eye_boxes(landmarks: np.ndarray, shape: tuple[int, int],
              margin: float = EYE_MARGIN) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` around each eye's contour, ``margin`` eye widths wider, clipped to the image."""
    h, w = shape
    out = []
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        pts = landmarks[contour, :2]
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        pad = margin * (x1 - x0)
        out.append((int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(w, x1 + pad + 1)),
                    int(min(h, y1 + pad + 1))))
    return out


def eye_ssim(decoded: np.ndarray, truth: np.ndarray, truth_landmarks: np.ndarray) -> np.ndarray:
    """Luma SSIM in boxes around the truth's eyes (the two eyes' mean), per frame.

    Args:
        decoded, truth: ``[T, H, W, 3]`` uint8 RGB.
        truth_landmarks: ``[T, 478, 3]``.
    Returns:
        ``[T]``.
    """
    check_pair(decoded, truth)
    out = np.empty(len(decoded))
    for i in range(len(decoded)):
        scores = []
        for x0, y0, x1, y1 in eye_boxes(truth_landmarks[i], (decoded.shape[1], decoded.shape[2])):
            scores.append(ssim_map(luma(decoded[i, y0:y1, x0:x1]), luma(truth[i, y0:y1, x0:x1])).mean())
        out[i] = float(np.mean(scores))
    return out


def jitter(landmarks: np.ndarray) -> float:
    """Mean length of the landmarks' frame-to-frame second difference, in inter-ocular distances.

    Args:
        landmarks: ``[T, 478, 3]`` consecutive frames (T >= 3), x and y used.
    Returns:
        the mean over frames and landmarks of ``|p[t+1] - 2 p[t] + p[t-1]|`` over the clip's mean inter-ocular
        distance.
    """
    if len(landmarks) < 3:
        raise ValueError(f"jitter needs at least 3 consecutive frames, got {len(landmarks)}")
    lm = np.asarray(landmarks, np.float64)[..., :2]
    d2 = lm[2:] - 2 * lm[1:-1] + lm[:-2]
    return float(np.linalg.norm(d2, axis=-1).mean() / R.inter_ocular(lm).mean())
