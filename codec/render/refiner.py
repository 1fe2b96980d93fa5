"""The neural rendering stage: a small network that refines the warped frame.

The geometric warp (:mod:`codec.render.warp`) gets the shapes right but can only move
the portrait's pixels: it cannot draw teeth the portrait does not show, shade
a stretched cheek, or blend seams. :class:`Refiner` adds a correction to the
warped frame from what the warp knows: the warped frame, the portrait, the
flow, and the region maps (mouth interior, eye openings, person alpha). Its
last layer starts at zero, so an untrained refiner is the warp itself.

The correction is confined to where the warp is weakest and a viewer looks:
the lips and the eyes (:func:`repair_mask`, a feathered hull around each,
drawn on the target landmarks). Everywhere else the frame is the warp's,
pixel for pixel, so the refiner cannot make the rest of the face worse, and
it only has to run on a crop around those regions (:func:`refine`): a few
times cheaper than the whole frame.

Weights: ``codec/data/renderer.pt`` (``talk-train renderer``), holding the
:class:`RefinerConfig` beside the state dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec import regions as R
from codec.checkpoint import half_state, load_checkpoint
from codec.paths import DATA_DIR, atomic_output
from codec.render.warp import WarpResult

RENDERER_PATH = DATA_DIR / "renderer.pt"
IN_CHANNELS = 3 + 3 + 2 + 4  # warped, portrait, flow, regions
FLOW_SCALE = 8.0  # flow in grid units is small: scale it towards unit range
# Repair mask: each region's hull grown by this share of the inter-ocular
# distance, then feathered with a Gaussian of this share.
MASK_GROW = 0.25
MASK_FEATHER = 0.08
# Context kept around the mask when cropping: the U-Net sees this far (pixels, a multiple of 8).
CROP_MARGIN = 48


@dataclass(frozen=True)
class RefinerConfig:
    """Size of the refiner.

    Attributes:
        widths: channels at 1/2, 1/4 and 1/8 of the frame size.
    """

    widths: tuple[int, int, int] = (16, 32, 48)


def _block(i: int, o: int, stride: int = 1) -> nn.Sequential:
    # No normalization layer: the refiner trains on patches and runs on whole
    # frames, and per-image statistics would differ between the two.
    k = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(i, o, k, stride, padding=1), nn.SiLU())


class Refiner(nn.Module):
    """A three-level U-Net predicting a correction of the warped frame.

    Works on any frame size divisible by 8; the full-resolution work is one
    3x3 convolution, so most of the cost is at 1/2 size and below.
    """

    def __init__(self, config: RefinerConfig = RefinerConfig()) -> None:
        super().__init__()
        self.config = config
        w1, w2, w3 = config.widths
        self.down1 = nn.Sequential(_block(IN_CHANNELS, w1, 2), _block(w1, w1))
        self.down2 = nn.Sequential(_block(w1, w2, 2), _block(w2, w2))
        self.down3 = nn.Sequential(_block(w2, w3, 2), _block(w3, w3), _block(w3, w3))
        self.up2 = _block(w3 + w2, w2)
        self.up1 = _block(w2 + w1, w1)
        self.out = nn.Conv2d(w1 + 3, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: ``[B, 12, H, W]`` inputs from :func:`refiner_inputs`.
            warped: ``[B, 3, H, W]`` the warped frame in [0, 1].
            mask: ``[B, 1, H, W]`` where the correction applies (:func:`repair_mask`); None: everywhere.
        Returns:
            ``[B, 3, H, W]`` refined frame (not clamped).
        """
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        u2 = self.up2(torch.cat([F.interpolate(d3, size=d2.shape[-2:], mode="bilinear", align_corners=False), d2], 1))
        u1 = self.up1(torch.cat([F.interpolate(u2, size=d1.shape[-2:], mode="bilinear", align_corners=False), d1], 1))
        up = F.interpolate(u1, size=x.shape[-2:], mode="bilinear", align_corners=False)
        correction = self.out(torch.cat([up, warped], 1))
        return warped + (correction if mask is None else mask * correction)


def repair_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Where the refiner may change the warp: lips and eyes, grown and feathered.

    Args:
        landmarks: ``[B, 478, 2 or 3]`` target landmarks in the frame's pixels.
        size: frame side.
    Returns:
        ``[B, 1, size, size]`` float32 in [0, 1].
    """
    lm = np.asarray(landmarks, np.float32)
    out = np.zeros((len(lm), 1, size, size), np.float32)
    for i, face in enumerate(lm):
        img = np.zeros((size, size), np.uint8)
        for idx in (R.LIPS_OUTER, R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
            cv2.fillConvexPoly(img, cv2.convexHull(np.round(face[idx, :2]).astype(np.int32)), (255,))
        iod = float(R.inter_ocular(face))
        k = max(1, int(MASK_GROW * iod)) | 1
        grown = cv2.dilate(img, np.ones((k, k), np.uint8))
        out[i, 0] = cv2.GaussianBlur(grown.astype(np.float32) * (1 / 255), (0, 0), max(0.5, MASK_FEATHER * iod))
    return out


def mask_box(mask: np.ndarray, margin: int = CROP_MARGIN) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the box around every mask's nonzero pixels plus ``margin``, on the 8-pixel grid."""
    size_y, size_x = mask.shape[-2:]
    ys, xs = np.nonzero(mask.reshape(-1, size_y, size_x).max(0) > 1e-3)
    if len(ys) == 0:
        return 0, 0, 0, 0
    y0, x0 = max(0, (ys.min() - margin) // 8 * 8), max(0, (xs.min() - margin) // 8 * 8)
    y1 = min(size_y, -(-(ys.max() + 1 + margin) // 8) * 8)
    x1 = min(size_x, -(-(xs.max() + 1 + margin) // 8) * 8)
    return int(y0), int(y1), int(x0), int(x1)


def refine(model: Refiner, result: WarpResult, portrait: torch.Tensor, target_landmarks: np.ndarray) -> torch.Tensor:
    """The refined frames: the warp, corrected inside :func:`repair_mask` only.

    The network runs on the crop around the mask (plus :data:`CROP_MARGIN`
    of context), not on the whole frame.

    Args:
        result: the warp's output for ``B`` frames.
        portrait: ``[1, 3, H, W]`` the portrait in [0, 1].
        target_landmarks: ``[B, 478, 3]`` the warp's targets in the frame's pixels.
    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    frames = result.frames
    mask = repair_mask(target_landmarks, frames.shape[-1])
    y0, y1, x0, x1 = mask_box(mask)
    out = frames.clone()
    if y1 - y0 < 8 or x1 - x0 < 8:
        return out.clamp_(0, 1)
    box = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
    x = refiner_inputs(result, portrait)[box]
    m = torch.from_numpy(np.ascontiguousarray(mask[box])).to(frames.device)
    out[box] = model(x, frames[box], m)
    return out.clamp_(0, 1)


def refiner_inputs(result: WarpResult, portrait: torch.Tensor) -> torch.Tensor:
    """The refiner's input stack.

    Args:
        result: the warp's output for ``B`` frames.
        portrait: ``[1 or B, 3, H, W]`` the portrait in [0, 1].
    Returns:
        ``[B, 12, H, W]``: warped frame, portrait, flow (grid minus identity,
        scaled), and the four region maps.
    """
    b, _, h, w = result.frames.shape
    ys = (torch.arange(h, device=portrait.device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1
    xs = (torch.arange(w, device=portrait.device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1
    ident = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0)[None]
    flow = (result.grid.permute(0, 3, 1, 2) - ident) * FLOW_SCALE
    return torch.cat([result.frames, portrait.expand(b, -1, -1, -1), flow, result.regions], 1)


def save_refiner(model: Refiner, path: Path = RENDERER_PATH, meta: dict | None = None) -> None:
    """Writes weights (as float16, to keep the file small) with the config and ``meta``."""
    state = half_state(model.state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save({"config": asdict(model.config), "state": state, "meta": meta or {}}, tmp)


def load_refiner(path: Path = RENDERER_PATH, device: torch.device | str = "cpu") -> Refiner:
    """Reads a refiner written by :func:`save_refiner`.

    Raises:
        FileNotFoundError: no weights (run ``talk-train renderer``).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train renderer`, or use renderer='warp'")
    ckpt = load_checkpoint(path)
    model = Refiner(RefinerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()}))
    model.load_state_dict(ckpt["state"])
    return model.eval().to(device)
