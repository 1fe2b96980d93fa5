"""Quality of decoded frames against the truth: pixels, structure, landmarks, sharpness.

Every metric compares a decoded clip with the true clip frame by frame, both
``[T, H, W, 3]`` uint8 RGB of the same size (512x512 in the bench). Landmark
metrics use MediaPipe's face mesh on both clips; the truth's landmarks are
computed once per clip (:class:`Reference`) and reused for every codec setting.

Choices worth knowing when reading the numbers:

- PSNR of a clip comes from the clip's mean squared error, so one identical
  frame does not make the clip's PSNR infinite.
- SSIM is Wang et al.'s, on BT.601 luma, with an 11x11 Gaussian window
  (sigma 1.5) and the usual constants K1=0.01, K2=0.03.
- NME is the mean 2D landmark distance over the truth's inter-ocular distance
  (outer eye corners). A decoded frame where no face is found scores
  :data:`NME_MISS` (half an inter-ocular distance, far above any frame where a
  face is found) instead of being dropped: a codec must not gain by destroying
  the face. ``face_detected`` reports how often that happened. Frames where
  the truth itself has no face are left out of every landmark metric.
- Detail kept is the variance of the Laplacian of luma inside the truth's
  face oval, decoded over truth (1 = as much fine detail as the truth; a
  blurred face is below 1, ringing or noise can push it above).
- CPBD is Narvekar and Karam's no-reference sharpness (2011), computed on the
  decoded frames alone; higher is sharper.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from codec.regions import FACE_OVAL, LIPS, NUM_LANDMARKS, inter_ocular, region_masks

if TYPE_CHECKING:
    from codec.face import FaceTracker

NME_MISS = 0.5
"""NME charged for a decoded frame where no face is found (in inter-ocular distances)."""

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_SIGMA = 1.5
_SSIM_WIN = 11

MOUTH_MARGIN = 0.25
"""Margin around the truth's lip landmarks, as a share of the lip box's larger side."""


@dataclass
class ClipScores:
    """Quality of one decoded clip against the truth (means over frames).

    Attributes:
        psnr: dB, from the clip's mean squared error over RGB (inf if identical).
        ssim: mean luma SSIM.
        nme: landmark NME over all 478 points (with :data:`NME_MISS` penalties).
        nme_lips, nme_eyes, nme_rest: NME over the regions of
            :func:`codec.regions.region_masks`.
        mouth_ssim: luma SSIM in a box around the truth's lips.
        detail: Laplacian variance in the face oval, decoded over truth.
        cpbd: CPBD sharpness of the decoded frames (0..1, higher is sharper;
            the truth's own is not 1, compare codecs with each other).
        face_detected: share of frames (with a face in the truth) where a face
            was found in the decoded frame.
        id_dist: dlib identity distance (see :mod:`bench.identity`); NaN if not measured.
        frames: frames scored.
    """

    psnr: float
    ssim: float
    nme: float
    nme_lips: float
    nme_eyes: float
    nme_rest: float
    mouth_ssim: float
    detail: float
    cpbd: float
    face_detected: float
    id_dist: float = math.nan
    frames: int = 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# --- pixels and structure -------------------------------------------------------------------


def _check_pair(decoded: np.ndarray, truth: np.ndarray) -> None:
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
    _check_pair(decoded, truth)
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
    _check_pair(decoded, truth)
    yd, yt = luma(decoded), luma(truth)
    return np.array([float(ssim_map(d, t).mean()) for d, t in zip(yd, yt)])


# --- landmarks ------------------------------------------------------------------------------


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
def _still_tracker() -> "FaceTracker":
    # In still-image mode the mesh keeps no state between frames, so one serves every clip.
    from codec.face import FaceTracker, FaceTrackerConfig

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
    _check_pair(decoded, truth)
    out = np.empty(len(decoded))
    for i in range(len(decoded)):
        x0, y0, x1, y1 = lip_box(truth_landmarks[i], decoded.shape[1:3])
        out[i] = ssim_map(luma(decoded[i, y0:y1, x0:x1]), luma(truth[i, y0:y1, x0:x1])).mean()
    return out


# --- detail and sharpness -------------------------------------------------------------------


def face_oval_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the face oval.

    Args:
        landmarks: ``[478, 3]`` pixels.
        shape: ``(H, W)``.
    Returns:
        ``[H, W]`` bool.
    """
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[FACE_OVAL, :2]).astype(np.int32)], 1)
    return mask.astype(bool)


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


# --- a clip's score -------------------------------------------------------------------------


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
    _identity: object | None = field(default=None, repr=False)

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
            masks[i] = face_oval_mask(self.landmarks[i], self.frames.shape[1:3])
        return masks


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def score_landmarks(decoded: np.ndarray, ref: Reference) -> tuple[dict[str, float], float]:
    """Landmark NME (overall and per region) and the face-detection share.

    Args:
        decoded: ``[T, H, W, 3]`` uint8 RGB.
        ref: the truth.
    Returns:
        ``({"all", "lips", "eyes", "rest"} -> mean NME, face_detected)``.
    """
    keep = ref.valid
    if not keep.any():
        return {k: math.nan for k in ("all", "lips", "eyes", "rest")}, math.nan
    pred, found = track_frames(decoded[keep])
    errs = nme(pred, ref.landmarks[keep])
    return {k: float(v.mean()) for k, v in errs.items()}, float(found.mean())


def score_clip(decoded: np.ndarray, ref: Reference, identity: bool = True, stride: int = 5) -> ClipScores:
    """Every metric of a decoded clip against the truth.

    Args:
        decoded: ``[T, H, W, 3]`` uint8 RGB, same size as ``ref.frames``.
        ref: the truth (see :meth:`Reference.of`).
        identity: also measure the dlib identity distance (needs dlib).
        stride: the two slow metrics, identity and CPBD, are measured on every
            ``stride``-th frame; the others on every frame.
    Returns:
        the clip's :class:`ClipScores`.
    """
    truth = ref.frames
    _check_pair(decoded, truth)
    m = mse(decoded, truth)
    s = ssim(decoded, truth)
    errs, detected = score_landmarks(decoded, ref)
    keep = ref.valid
    if keep.any():
        ms = float(mouth_ssim(decoded[keep], truth[keep], ref.landmarks[keep]).mean())
        dec_detail = laplacian_variance(decoded, ref.face_masks())
        detail = _nanmean(dec_detail) / _nanmean(ref.detail)
    else:
        ms = detail = math.nan
    sharp = _nanmean(np.array([cpbd(f) for f in decoded[::stride]]))
    id_dist = math.nan
    if identity and keep.any():
        from bench.identity import identity_distance

        id_dist = identity_distance(decoded, ref, stride=stride)
    return ClipScores(
        psnr=float(psnr_from_mse(m.mean())),
        ssim=float(s.mean()),
        nme=errs["all"],
        nme_lips=errs["lips"],
        nme_eyes=errs["eyes"],
        nme_rest=errs["rest"],
        mouth_ssim=ms,
        detail=detail,
        cpbd=sharp,
        face_detected=detected,
        id_dist=id_dist,
        frames=len(decoded),
    )
