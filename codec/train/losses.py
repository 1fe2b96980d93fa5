"""The refiner's training losses, shared by the CPU and GPU recipes (:mod:`codec.train.refiner`,
:mod:`codec.train.refiner_gpu`): SSIM at several scales, the loss weights on the mouth and eyes, and a
patch discriminator."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec import regions as R


def weight_map(lm: np.ndarray, x0: int, y0: int, patch: int) -> np.ndarray:
    """Loss weight of each patch pixel: 4 on the mouth, 3 on the eyes, 1 elsewhere."""
    w = np.ones((patch, patch), np.float32)
    for idx, val, pad in ((R.LIPS_OUTER, 4.0, 0.3), (R.RIGHT_EYE_CONTOUR, 3.0, 0.4), (R.LEFT_EYE_CONTOUR, 3.0, 0.4)):
        lo, hi = lm[idx, :2].min(0), lm[idx, :2].max(0)
        m = pad * (hi - lo).max()
        a = np.floor(lo - m - (x0, y0)).astype(int).clip(0, patch)
        b = np.ceil(hi + m - (x0, y0)).astype(int).clip(0, patch)
        w[a[1]:b[1], a[0]:b[0]] = np.maximum(w[a[1]:b[1], a[0]:b[0]], val)
    return w


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of ``[B, C, H, W]`` images in [0, 1] (Gaussian window 11, sigma 1.5)."""
    g = _gaussian().to(a)
    c = a.shape[1]
    kx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a**2
    vb = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))).mean()


def ms_ssim_loss(a: torch.Tensor, b: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """One minus the mean of SSIM over ``scales`` halvings."""
    total = a.new_zeros(())
    for s in range(scales):
        if s:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        total = total + ssim(a, b)
    return 1 - total / scales


class PatchDiscriminator(nn.Module):
    """Real or rendered, judged per ~46-pixel patch."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)
