"""The neural rendering stage: a small network that refines the warped frame.

The geometric warp (:mod:`codec.warp`) gets the shapes right but can only move
the portrait's pixels: it cannot draw teeth the portrait does not show, shade
a stretched cheek, or blend seams. :class:`Refiner` adds a correction to the
warped frame from what the warp knows: the warped frame, the portrait, the
flow, and the region maps (mouth interior, eye openings, person alpha). Its
last layer starts at zero, so an untrained refiner is the warp itself.

Weights: ``codec/data/renderer.pt`` (``talk-train renderer``), holding the
:class:`RefinerConfig` beside the state dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codec.checkpoint import half_state, load_checkpoint
from codec.warp import WarpResult

RENDERER_PATH = Path(__file__).parent / "data" / "renderer.pt"
IN_CHANNELS = 3 + 3 + 2 + 4  # warped, portrait, flow, regions
FLOW_SCALE = 8.0  # flow in grid units is small: scale it towards unit range


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
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[B, 12, H, W]`` inputs from :func:`refiner_inputs`.
            warped: ``[B, 3, H, W]`` the warped frame in [0, 1].
        Returns:
            ``[B, 3, H, W]`` refined frame (not clamped).
        """
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        u2 = self.up2(torch.cat([F.interpolate(d3, size=d2.shape[-2:], mode="bilinear", align_corners=False), d2], 1))
        u1 = self.up1(torch.cat([F.interpolate(u2, size=d1.shape[-2:], mode="bilinear", align_corners=False), d1], 1))
        up = F.interpolate(u1, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return warped + self.out(torch.cat([up, warped], 1))


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
    torch.save({"config": asdict(model.config), "state": state, "meta": meta or {}}, path)


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
