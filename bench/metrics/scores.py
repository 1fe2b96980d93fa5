"""A decoded clip's every score against the truth (:class:`ClipScores`), as talk-bench reports it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bench.metrics.identity import identity_distance
from bench.metrics.landmarks import nme, track_frames
from bench.metrics.pixels import check_pair, mouth_ssim, mse, psnr_from_mse, ssim
from bench.metrics.reference import Reference
from bench.metrics.sharpness import cpbd, laplacian_variance


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
        id_dist: dlib identity distance (see :mod:`bench.metrics.identity`); NaN if not measured.
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
    check_pair(decoded, truth)
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
