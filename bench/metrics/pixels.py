"""Pixel and structure metrics: PSNR, SSIM (whole frame and around the mouth), on ``[T, H, W, 3]`` uint8 RGB.

PSNR of a clip comes from the clip's mean squared error, so one identical frame
does not make the clip's PSNR infinite. SSIM is Wang et al.'s, on BT.601 luma,
with an 11x11 Gaussian window (sigma 1.5) and the usual constants K1=0.01, K2=0.03.
"""

from __future__ import annotations

import cv2
import numpy as np

from codec.regions import LIPS

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_SIGMA = 1.5
_SSIM_WIN = 11

MOUTH_MARGIN = 0.25
"""Margin around the truth's lip landmarks, as a share of the lip box's larger side."""


def polygon_mask(points: np.ndarray, shape: tuple[int, int], offset: float = 0.0) -> np.ndarray:
    """Pixels inside a polygon.

    Args:
        points: ``[N, >=2]`` vertices in pixels (x, y first).
        shape: ``(H, W)``.
        offset: added to the vertices before rounding (-0.5: pixel centres at integer + 0.5).
    Returns:
        ``[H, W]`` bool.
    """
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2] + offset).astype(np.int32)], (1,))
    return mask.astype(bool)


def check_pair(decoded: np.ndarray, truth: np.ndarray) -> None:
    if decoded.shape != truth.shape:
        raise ValueError(f"decoded {decoded.shape} and truth {truth.shape} differ in shape")
    if decoded.ndim != 4 or decoded.shape[-1] != 3 or decoded.dtype != np.uint8 or truth.dtype != np.uint8:
        raise ValueError(f"expected [T, H, W, 3] uint8 RGB clips, got {decoded.shape} {decoded.dtype}")


def luma(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma.

    Args:
        frames: ``[..., 3]`` uint8 RGB.
    Returns:
        ``[...]`` float32 in 0..255.
    """
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return frames.astype(np.float32) @ w


def mse(decoded: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error per frame over all pixels and channels.

    Args:
        decoded, truth: ``[T, H, W, 3]`` uint8.
    Returns:
        ``[T]`` float64.
    """
    check_pair(decoded, truth)
    n = decoded[0].size
    return np.array([cv2.norm(d, t, cv2.NORM_L2SQR) / n for d, t in zip(decoded, truth)])


def psnr_from_mse(m: np.ndarray | float) -> np.ndarray:
    """PSNR in dB for 8-bit data; inf where the error is 0."""
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / m)


def psnr(decoded: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR per frame.

    Args:
        decoded, truth: ``[T, H, W, 3]`` uint8.
    Returns:
        ``[T]`` dB; inf for identical frames.
    """
    return psnr_from_mse(mse(decoded, truth))


def _blur(x: np.ndarray) -> np.ndarray:
    # 'valid'-like border handling does not matter at this window size; reflect like MATLAB's ssim.
    return cv2.GaussianBlur(x, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM index map of two single-channel images.

    Args:
        a, b: ``[H, W]`` float32 in 0..255.
    Returns:
        ``[H, W]`` float32 SSIM map.
    """
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    mu_a, mu_b = _blur(a), _blur(b)
    aa, bb, ab = _blur(a * a), _blur(b * b), _blur(a * b)
    va = aa - mu_a * mu_a
    vb = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (va + vb + _SSIM_C2)
    return num / den


def ssim(decoded: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Luma SSIM per frame.

    Args:
        decoded, truth: ``[T, H, W, 3]`` uint8 RGB.
    Returns:
        ``[T]`` mean SSIM of each frame (1 for identical frames).
    """
    check_pair(decoded, truth)
    yd, yt = luma(decoded), luma(truth)
    return np.array([float(ssim_map(d, t).mean()) for d, t in zip(yd, yt)])


def lip_box(landmarks: np.ndarray, shape: tuple[int, int], margin: float = MOUTH_MARGIN) -> tuple[int, int, int, int]:
    """Box around the lips with a margin, clipped to the image.

    Args:
        landmarks: ``[478, 3]`` pixels.
        shape: ``(H, W)`` of the image.
    Returns:
        ``(x0, y0, x1, y1)``, at least 16 pixels a side where the image allows.
    """
    pts = landmarks[LIPS, :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = margin * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw = max((x1 - x0) / 2 + pad, 8)
    hh = max((y1 - y0) / 2 + pad, 8)
    h, w = shape
    return (int(max(0, cx - hw)), int(max(0, cy - hh)), int(min(w, cx + hw + 1)), int(min(h, cy + hh + 1)))


def mouth_ssim(decoded: np.ndarray, truth: np.ndarray, truth_landmarks: np.ndarray) -> np.ndarray:
    """Luma SSIM in a box around the truth's lips, per frame.

    Args:
        decoded, truth: ``[T, H, W, 3]`` uint8 RGB.
        truth_landmarks: ``[T, 478, 3]`` with a face in every frame.
    Returns:
        ``[T]``.
    """
    check_pair(decoded, truth)
    out = np.empty(len(decoded))
    for i in range(len(decoded)):
        x0, y0, x1, y1 = lip_box(truth_landmarks[i], (decoded.shape[1], decoded.shape[2]))
        out[i] = ssim_map(luma(decoded[i, y0:y1, x0:x1]), luma(truth[i, y0:y1, x0:x1])).mean()
    return out
