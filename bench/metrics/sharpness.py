"""Detail and sharpness: Laplacian variance inside the face oval, and CPBD.

Detail kept is the variance of the Laplacian of luma inside the truth's face
oval, decoded over truth (1 = as much fine detail as the truth). CPBD is
Narvekar and Karam's no-reference sharpness (2011); higher is sharper.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from bench.metrics.pixels import luma, polygon_mask
from codec.regions import FACE_OVAL


def face_oval_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the face oval.

    Args:
        landmarks: ``[478, 3]`` pixels.
        shape: ``(H, W)``.
    Returns:
        ``[H, W]`` bool.
    """
    return polygon_mask(landmarks[FACE_OVAL], shape)


def laplacian_variance(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Variance of the luma Laplacian inside a mask, per frame.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        masks: ``[T, H, W]`` bool.
    Returns:
        ``[T]`` float64 (NaN for an empty mask).
    """
    y = luma(frames)
    out = np.full(len(frames), np.nan)
    for i in range(len(frames)):
        if masks[i].any():
            out[i] = float(cv2.Laplacian(y[i], cv2.CV_32F, ksize=3)[masks[i]].var())
    return out


_CPBD_BLOCK = 64
_CPBD_EDGE_SHARE = 0.002
_CPBD_BETA = 3.6
_CPBD_P_JNB = 0.63


def _next_true(cond: np.ndarray) -> np.ndarray:
    """For each pixel, the nearest column at or right of it where ``cond`` holds (W if none).

    Args:
        cond: ``[H, W]`` bool.
    Returns:
        ``[H, W]`` int32.
    """
    w = cond.shape[1]
    idx = np.where(cond, np.arange(w, dtype=np.int32), np.int32(w))
    return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]


def _prev_true(cond: np.ndarray) -> np.ndarray:
    """For each pixel, the nearest column at or left of it where ``cond`` holds (-1 if none)."""
    w = cond.shape[1]
    idx = np.where(cond, np.arange(w, dtype=np.int32), np.int32(-1))
    return np.maximum.accumulate(idx, axis=1)


def edge_widths(y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano edge widths of vertical edges, measured along rows.

    At each edge pixel whose gradient is mostly horizontal, the width is the
    distance between the local intensity extrema on either side (the local
    minimum and maximum that bound the rising or falling slope).

    Args:
        y: ``[H, W]`` float32 luma.
        edges: ``[H, W]`` bool edge map.
    Returns:
        ``[H, W]`` float32 widths, 0 where no width was measured.
    """
    y = y.astype(np.float32, copy=False)
    gy, gx = np.gradient(y)
    d = np.diff(y, axis=1)  # d[:, x] = y[x+1] - y[x]
    h, w = y.shape
    pad = np.zeros((h, 1), np.float32)
    right = np.concatenate([d, pad], axis=1)  # slope to the right of x
    left = np.concatenate([pad, d], axis=1)  # slope to the left of x
    # Rising edge: extends right while y keeps increasing, left while y keeps decreasing going left.
    rising = gx > 0
    # One pass per side: a rising slope ends where y stops increasing, a falling one where it stops falling.
    r_end = _next_true(np.where(rising, right <= 0, right >= 0))
    l_end = _prev_true(np.where(rising, left <= 0, left >= 0))
    cols = np.arange(w)[None, :]
    r_end = np.minimum(r_end, w - 1)
    l_end = np.maximum(l_end, 0)
    width = (r_end - cols) + (cols - l_end)
    measured = edges & (np.abs(gx) >= np.abs(gy)) & (gx != 0)
    return np.where(measured, width, 0).astype(np.float32)


def cpbd(frame: np.ndarray) -> float:
    """Cumulative probability of blur detection (Narvekar and Karam, 2011).

    Canny edges pick 64x64 edge blocks (more than 0.2% edge pixels); in each,
    the just-noticeable-blur width is 5 for block contrast <= 50 and 3 above;
    each edge's probability of blur detection is ``1 - exp(-(w/w_jnb)^3.6)``;
    CPBD is the share of edges whose probability is at most 63%.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
    Returns:
        CPBD in 0..1 (higher is sharper); NaN when the frame has no edge block.
    """
    y = luma(frame)
    y8 = np.clip(np.round(y), 0, 255).astype(np.uint8)
    # The reference implementation's edges: skimage's canny (sigma 1, thresholds 0.1 and 0.2 of the
    # [0, 1] range, unnormalized Sobel), i.e. about 25 and 51 in 8-bit units.
    edges = cv2.Canny(cv2.GaussianBlur(y8, (0, 0), 1.0), 25, 51, L2gradient=True) > 0
    widths = edge_widths(y, edges)
    h, w = y.shape
    hb, wb = h // _CPBD_BLOCK, w // _CPBD_BLOCK
    if hb == 0 or wb == 0:
        return math.nan
    crop = (slice(0, hb * _CPBD_BLOCK), slice(0, wb * _CPBD_BLOCK))

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[crop].reshape(hb, _CPBD_BLOCK, wb, _CPBD_BLOCK).swapaxes(1, 2).reshape(hb * wb, -1)

    e, wd, yy = blocks(edges), blocks(widths), blocks(y8)
    edge_block = e.sum(1) > _CPBD_EDGE_SHARE * _CPBD_BLOCK * _CPBD_BLOCK
    contrast = yy.max(1).astype(np.int32) - yy.min(1).astype(np.int32)
    w_jnb = np.where(contrast <= 50, 5.0, 3.0)
    wd = wd[edge_block]
    keep = wd > 0
    if not keep.any():
        return math.nan
    p_blur = 1.0 - np.exp(-np.abs(wd / w_jnb[edge_block][:, None]) ** _CPBD_BETA)
    p_blur = p_blur[keep]
    # The reference histograms P_BLUR in 1% bins and sums the bins up to 63%.
    return float(np.mean(np.round(p_blur * 100) <= _CPBD_P_JNB * 100))
