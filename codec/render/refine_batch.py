"""The neural refinement of many frames at once, on the device: :func:`codec.render.refiner.refine` for a batch.

:func:`codec.render.refiner.refine` draws the repair mask with OpenCV on the CPU and runs the network on one
box around every frame's mask. Here each frame gets its own crop (one crop size for the batch, the
largest frame's box), and the mask is drawn on the device, inside the crop:

* each region's convex hull (lips, each eye; rounded landmarks, as OpenCV fills it), grown by the
  dilation's square, is the set of pixels on the inner side of every hull edge pushed out by the
  square's reach along its normal (the Minkowski sum of two convex polygons);
* the union is feathered with each frame's Gaussian (OpenCV's kernel size and weights).

The mask matches OpenCV's but for pixels on a hull's edge; the refined frames match
:func:`codec.render.refiner.refine`'s to within what that and the crops' borders change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from codec import regions as R
from codec.render.refiner import CROP_MARGIN, FLOW_SCALE, MASK_FEATHER, MASK_GROW, Refiner
from codec.render.warp import WarpResult

MASK_REGIONS = (R.LIPS_OUTER, R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR)
TAIL = 3.1  # the feathered mask falls below 1e-3 about this many sigmas outside the hull


@dataclass(frozen=True)
class RepairCrops:
    """Where each frame's refiner runs.

    Attributes:
        mask: ``[B, 1, h, w]`` float32 the repair mask inside each crop.
        y0, x0: ``[B]`` int64 each crop's top-left pixel in the frame (multiples of 8).
    """

    mask: torch.Tensor
    y0: torch.Tensor
    x0: torch.Tensor

    def take(self, t: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The crops of ``t [N, C, H, W]`` -> ``[B, C, h, w]``; frame ``b`` reads ``t[index[b]]`` (default ``t[b]``)."""
        b = torch.arange(len(self.y0), device=t.device) if index is None else index
        ys, xs = self._coords(t.device)
        return t[b[:, None, None], :, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)

    def put(self, frames: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """``frames [B, C, H, W]`` with each crop replaced by ``patch [B, C, h, w]`` (in place)."""
        b = torch.arange(len(self.y0), device=frames.device)
        ys, xs = self._coords(frames.device)
        frames[b[:, None, None], :, ys[:, :, None], xs[:, None, :]] = patch.permute(0, 2, 3, 1).to(frames.dtype)
        return frames

    def _coords(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.mask.shape[-2:]
        return (self.y0.to(device)[:, None] + torch.arange(h, device=device),
                self.x0.to(device)[:, None] + torch.arange(w, device=device))


def _hull_edges(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One supporting edge per point of each point set, where the point is a hull vertex.

    Args:
        p: ``[B, K, 2]`` float32 integer-valued points.
    Returns:
        start ``[B, K, 2]``, direction ``[B, K, 2]``, and ``[B, K]`` bool: point k's edge exists (every
        point lies on its left or on it). The sets' hulls are the intersections of these half-planes.
    """
    e = p[:, None, :, :] - p[:, :, None, :]                                     # [B, i, j, 2]: p_j - p_i
    w = p[:, None, None, :, :] - p[:, :, None, None, :]                         # [B, i, 1, k, 2]: p_k - p_i
    cross = e[:, :, :, None, 0] * w[..., 1] - e[:, :, :, None, 1] * w[..., 0]   # [B, i, j, k]
    length = (e**2).sum(-1)
    score = torch.where((cross >= 0).all(-1) & (length > 0), length, -1.0)
    best, j = score.max(-1)
    return p, torch.gather(e, 2, j[..., None, None].expand(-1, -1, 1, 2))[:, :, 0], best > 0


def repair_crops(landmarks: torch.Tensor, size: int, margin: int = CROP_MARGIN,
                 shape: tuple[int, int] | None = None) -> RepairCrops:
    """The repair mask of :func:`codec.render.refiner.repair_mask`, drawn inside each frame's crop.

    Args:
        landmarks: ``[B, 478, 2 or 3]`` target landmarks in the frame's pixels, on the device.
        size: frame side (a multiple of 8).
        margin: context kept around the mask (pixels).
        shape: ``(h, w)`` crop size to use (multiples of 8), or None: the largest frame's box.
    Returns:
        the :class:`RepairCrops`, one crop size for the batch.
    """
    dev = landmarks.device
    lm = landmarks[..., :2].float()
    iod = (lm[:, R.RIGHT_EYE_CORNERS[0]] - lm[:, R.LEFT_EYE_CORNERS[0]]).norm(dim=-1)
    grow = (torch.floor(MASK_GROW * iod).clamp(min=1).long() | 1) // 2          # the dilation's reach
    sigma = (MASK_FEATHER * iod.double()).clamp(min=0.5)
    pts = [torch.round(lm[:, idx]) for idx in MASK_REGIONS]
    reach = grow[:, None].float() + torch.ceil(TAIL * sigma).float()[:, None]
    lo = torch.stack([p.amin(1) for p in pts]).amin(0) - reach                   # [B, 2] (x, y)
    hi = torch.stack([p.amax(1) for p in pts]).amax(0) + reach
    start = (torch.div(lo - margin, 8, rounding_mode="floor") * 8).clamp(min=0).long()
    stop = (torch.ceil((hi + 1 + margin) / 8) * 8).clamp(max=size).long()
    h, w = shape or (int((stop[:, 1] - start[:, 1]).max()), int((stop[:, 0] - start[:, 0]).max()))
    y0 = torch.minimum(start[:, 1], torch.full_like(start[:, 1], size - h))
    x0 = torch.minimum(start[:, 0], torch.full_like(start[:, 0], size - w))

    qy = (y0[:, None] + torch.arange(h, device=dev)).float()[:, :, None]       # [B, h, 1]
    qx = (x0[:, None] + torch.arange(w, device=dev)).float()[:, None, :]       # [B, 1, w]
    g = grow.float()[:, None, None]
    mask = torch.zeros((len(lm), h, w), dtype=torch.bool, device=dev)
    for p in pts:
        inside = ((qx >= p[:, None, None, :, 0].amin(-1) - g) & (qx <= p[:, None, None, :, 0].amax(-1) + g)
                  & (qy >= p[:, None, None, :, 1].amin(-1) - g) & (qy <= p[:, None, None, :, 1].amax(-1) + g))
        origin, e, has = _hull_edges(p)
        for k in range(p.shape[1]):
            ex, ey = e[:, k, 0, None, None], e[:, k, 1, None, None]
            side = ex * (qy - origin[:, k, 1, None, None]) - ey * (qx - origin[:, k, 0, None, None])
            inside &= (side >= -g * (ex.abs() + ey.abs())) | ~has[:, k, None, None]
        mask |= inside
    return RepairCrops(_feather(mask.float()[:, None], sigma), y0, x0)


def _feather(mask: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``mask [B, 1, h, w]`` blurred with each frame's Gaussian ``sigma [B]`` as
    ``cv2.GaussianBlur(mask, (0, 0), sigma)`` does on float32 (kernel of ``round(8 sigma + 1) | 1`` taps)."""
    taps = torch.round(sigma * 8 + 1).long() | 1  # rounded half to even, as OpenCV's cvRound
    width = int(taps.max())
    x = torch.arange(width, device=mask.device, dtype=torch.float64) - (width - 1) / 2
    kernel = torch.exp(-(x**2)[None] / (2 * sigma[:, None] ** 2))
    kernel = torch.where(x.abs()[None] <= (taps[:, None] - 1) / 2, kernel, 0.0)
    kernel = (kernel / kernel.sum(1, keepdim=True)).float()
    b, _, h, w = mask.shape
    pad = width // 2
    out = F.conv2d(mask.view(1, b, h, w), kernel.view(b, 1, 1, width), padding=(0, pad), groups=b)
    out = F.conv2d(out, kernel.view(b, 1, width, 1), padding=(pad, 0), groups=b)
    return out.view(b, 1, h, w)


def crop_inputs(result: WarpResult, portraits: torch.Tensor, crops: RepairCrops,
                index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The refiner's inputs (:func:`codec.render.refiner.refiner_inputs`) inside each crop.

    Args:
        result: the warp of ``B`` frames.
        portraits: ``[N, 3 or more, H, W]`` portraits in [0, 1]; frame ``b`` reads ``portraits[index[b]]``
            (default: ``portraits[b]``), its first three channels.
        crops: from :func:`repair_crops`.
        index: ``[B]`` int64 or None.
    Returns:
        inputs ``[B, 12, h, w]`` and the warped crops ``[B, 3, h, w]``.
    """
    size_y, size_x = result.frames.shape[-2:]
    h, w = crops.mask.shape[-2:]
    dev = result.frames.device
    ys = (crops.y0.to(dev)[:, None] + torch.arange(h, device=dev)).float()
    xs = (crops.x0.to(dev)[:, None] + torch.arange(w, device=dev)).float()
    ident_y = ((ys + 0.5) * (2.0 / size_y) - 1)[:, :, None].expand(-1, -1, w)
    ident_x = ((xs + 0.5) * (2.0 / size_x) - 1)[:, None, :].expand(-1, h, -1)
    flow = (crops.take(result.grid.permute(0, 3, 1, 2)) - torch.stack([ident_x, ident_y], 1)) * FLOW_SCALE
    warped = crops.take(result.frames)
    regions = crops.take(torch.cat([result.raster[:, :1] * result.newness, result.raster[:, 1:], result.alpha], 1))
    portrait = crops.take(portraits, index)[:, :3]
    return torch.cat([warped, portrait, flow, regions], 1), warped


def refine_batch(model: Refiner, result: WarpResult, portraits: torch.Tensor, landmarks: torch.Tensor,
                 index: torch.Tensor | None = None) -> torch.Tensor:
    """The refined frames: the warp, corrected inside each frame's repair mask only.

    Args:
        model: the refiner, on the frames' device.
        result: the warp of ``B`` frames.
        portraits: ``[N, 3 or more, H, W]`` in [0, 1] (see :func:`crop_inputs` for ``index``).
        landmarks: ``[B, 478, 3]`` the warp's targets in the frame's pixels, on the device.
        index: ``[B]`` int64 portrait of each frame, or None.
    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    crops = repair_crops(landmarks, result.frames.shape[-1])
    x, warped = crop_inputs(result, portraits, crops, index)
    return crops.put(result.frames.clone(), model(x, warped, crops.mask)).clamp_(0, 1)

