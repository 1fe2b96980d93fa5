"""The batched refiner (repair mask drawn with torch, a crop per frame) against codec.render.refiner.refine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.metrics.pixels import ssim
from codec.render.batch import DeviceWarp
from codec.render.refine_batch import refine_batch, repair_crops
from codec.render.refiner import RENDERER_PATH, load_refiner, refine, repair_mask
from codec.render.warp import GeometricWarp


def test_repair_mask_matches_opencv(targets: np.ndarray) -> None:
    want = repair_mask(targets, 512)
    crops = repair_crops(torch.from_numpy(targets), 512)
    got = crops.put(torch.zeros(len(targets), 1, 512, 512), crops.mask).numpy()
    assert np.abs(got - want).max() < 0.05  # pixels on a hull's edge only
    assert np.abs(got.sum((1, 2, 3)) / want.sum((1, 2, 3)) - 1).max() < 0.02
    # Each crop holds its whole mask, on the 8-pixel grid the refiner needs.
    assert np.abs(got - want).sum() < 0.02 * want.sum()
    assert crops.mask.shape[-1] % 8 == 0 and crops.mask.shape[-2] % 8 == 0
    assert (crops.y0 % 8 == 0).all() and (crops.x0 % 8 == 0).all()


@pytest.mark.skipif(not RENDERER_PATH.exists(), reason="no refiner weights")
def test_refined_frames_match_the_cpu_refiner(cpu_warp: GeometricWarp, targets: np.ndarray) -> None:
    model = load_refiner()
    device = DeviceWarp(cpu_warp)
    with torch.inference_mode():
        want = torch.cat([refine(model, cpu_warp.warp(t[None]), cpu_warp.image[:, :3], t[None]) for t in targets])
        got = refine_batch(model, device.warp(targets), device.image, torch.from_numpy(targets),
                           torch.zeros(len(targets), dtype=torch.long))
    to_u8 = lambda f: (f * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    assert ssim(to_u8(got), to_u8(want)).min() >= 0.99
    assert (got - want).abs().mean() < 1e-4
    # The refiner changed something: the comparison is not of two plain warps.
    assert (want - cpu_warp.warp(targets).frames).abs().max() > 0.01
