"""Group Residual Finite Scalar Quantization (GRFSQ).

A 120-d motion latent is split into 12 groups of 10 dimensions. Each group is
quantized by 4 residual stages; a stage projects the group's remaining
residual to 4 dimensions, bounds each with ``tanh`` and rounds it to one of 5
levels (FSQ), so a stage's code is one of 5⁴ = 625 indices, and projects the
rounded value back. Later stages quantize what earlier ones left, at a finer
scale, so any prefix of stages decodes (coarse to fine): a receiver that got
only the first ``r`` layers sums ``r`` stages.

Tokens are integer arrays shaped ``[..., R, G]`` (residual layers, groups),
values ``0 .. 624``, everywhere in talkcodec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GRFSQConfig:
    """Shape of the quantizer; serialized into checkpoints and stream headers.

    Attributes:
        dim: latent size, split evenly into ``groups``.
        groups: independent groups (tokens per layer).
        residuals: residual stages (layers), coarse to fine.
        levels: FSQ levels per code dimension; the codebook has their product.
    """

    dim: int = 120
    groups: int = 12
    residuals: int = 4
    levels: tuple[int, ...] = (5, 5, 5, 5)

    def __post_init__(self) -> None:
        if self.dim % self.groups:
            raise ValueError(f"dim {self.dim} is not divisible by groups {self.groups}")
        if any(lv < 2 for lv in self.levels):
            raise ValueError(f"FSQ levels must be >= 2, got {self.levels}")

    @property
    def group_dim(self) -> int:
        return self.dim // self.groups

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def bits_per_frame(self, layers: int | None = None) -> float:
        """Information in one frame's tokens with ``layers`` layers (default all)."""
        r = self.residuals if layers is None else layers
        return r * self.groups * math.log2(self.codebook_size)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @staticmethod
    def from_dict(d: dict) -> "GRFSQConfig":
        return GRFSQConfig(dim=int(d["dim"]), groups=int(d["groups"]), residuals=int(d["residuals"]),
                           levels=tuple(int(x) for x in d["levels"]))


class FSQ(nn.Module):
    """Finite scalar quantization of ``[..., len(levels)]`` vectors with a straight-through gradient."""

    levels: torch.Tensor
    basis: torch.Tensor
    _half_l: torch.Tensor
    _offset: torch.Tensor
    _shift: torch.Tensor
    _half_w: torch.Tensor
    _levels_i: torch.Tensor

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor((1,) + tuple(levels[:-1]), dtype=torch.int64), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = math.prod(levels)
        # Even level counts need a half-step shift so that rounding yields L values.
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("_half_w", lv // 2, persistent=False)
        self.register_buffer("_levels_i", lv.to(torch.int64), persistent=False)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizes ``z``.

        Returns:
            codes ``[..., D]`` in ``[-1, 1]`` (gradient passes straight through the
            rounding), and indices ``[...]`` int64 in ``0 .. codebook_size - 1``.
        """
        bounded = self._bound(z)
        digits = torch.round(bounded)
        rounded = bounded + (digits - bounded).detach() if z.requires_grad else digits
        indices = ((digits + self._half_w).to(torch.int64) * self.basis).sum(-1)
        return rounded / self._half_w, indices

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        digits = torch.round(codes * self._half_w + self._half_w).to(torch.int64)
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        digits = (indices[..., None] // self.basis) % self._levels_i
        return (digits.to(torch.float32) - self._half_w) / self._half_w


class GroupResidualFSQ(nn.Module):
    """Quantizes ``[B, dim]`` latents into ``[B, R, G]`` tokens and back.

    Projections are held as batched weights ``[G, R, ...]`` so that all groups
    of a stage quantize in one tensor operation.
    """

    scales: torch.Tensor

    def __init__(self, config: GRFSQConfig = GRFSQConfig()) -> None:
        super().__init__()
        self.config = config
        g, r, d, c = config.groups, config.residuals, config.group_dim, len(config.levels)
        self.fsq = FSQ(config.levels)
        self.w_in = nn.Parameter(torch.randn(r, g, c, d) / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(r, g, c))
        self.w_out = nn.Parameter(torch.randn(r, g, d, c) / math.sqrt(c))
        self.b_out = nn.Parameter(torch.zeros(r, g, d))
        # Stage k works on residuals ~(L-1)^-k the size of the first: one FSQ step per stage.
        step = 1.0 / (max(config.levels) - 1)
        self.register_buffer("scales", step ** torch.arange(r, dtype=torch.float32), persistent=False)

    def _stage_out(self, k: int, codes: torch.Tensor) -> torch.Tensor:
        """Stage ``k``'s contribution ``[B, G, d]`` from its codes ``[B, G, c]``."""
        # Broadcast matmul over groups: [B, G, 1, c] @ [G, c, d] (cheaper than einsum at batch 1).
        out = (codes.unsqueeze(-2) @ self.w_out[k].transpose(-1, -2)).squeeze(-2)
        return (out + self.b_out[k]) * self.scales[k]

    def forward(self, z: torch.Tensor, layers: torch.Tensor | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantizes latents.

        Args:
            z: ``[B, dim]``.
            layers: keep only the first ``layers`` stages in the output, an int
                or a ``[B]`` tensor (quantizer dropout while training).
        Returns:
            the quantized latent ``[B, dim]`` and tokens ``[B, R, G]`` (all R stages).
        """
        cfg = self.config
        residual = z.view(z.shape[0], cfg.groups, cfg.group_dim)
        out = torch.zeros_like(residual)
        tokens = []
        for k in range(cfg.residuals):
            h = ((residual / self.scales[k]).unsqueeze(-2) @ self.w_in[k].transpose(-1, -2)).squeeze(-2) + self.b_in[k]
            codes, idx = self.fsq(h)
            q = self._stage_out(k, codes)
            residual = residual - q
            if layers is None:
                out = out + q
            else:
                keep = torch.as_tensor(layers, device=z.device) > k
                out = out + q * keep.to(q.dtype).reshape(-1, 1, 1)
            tokens.append(idx)
        return out.reshape(z.shape[0], cfg.dim), torch.stack(tokens, 1)

    def quantize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The quantized latent ``[B, dim]`` alone, as :meth:`forward` gives it with all stages, the gradient
        passing straight through the rounding: for searching latents (few operations, no token indices)."""
        cfg, fsq = self.config, self.fsq
        # Groups first, so that each stage is one batched matmul per projection.
        residual = z.view(z.shape[0], cfg.groups, cfg.group_dim).transpose(0, 1)
        out = torch.zeros_like(residual)
        for k in range(cfg.residuals):
            h = torch.baddbmm(self.b_in[k].unsqueeze(1), residual / self.scales[k], self.w_in[k].transpose(1, 2))
            bounded = fsq._bound(h)
            digits = bounded + (torch.round(bounded) - bounded).detach()
            q = torch.baddbmm(self.b_out[k].unsqueeze(1), digits / fsq._half_w, self.w_out[k].transpose(1, 2))
            q = q * self.scales[k]
            residual = residual - q
            out = out + q
        return out.transpose(0, 1).reshape(z.shape[0], cfg.dim)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, dim]`` from tokens ``[B, r, G]`` with any ``r <= R`` first layers."""
        r = tokens.shape[1]
        if r < 1 or r > self.config.residuals or tokens.shape[2] != self.config.groups:
            raise ValueError(f"tokens must be [B, 1..{self.config.residuals}, {self.config.groups}], "
                             f"got {list(tokens.shape)}")
        out = self._stage_out(0, self.fsq.indices_to_codes(tokens[:, 0]))
        for k in range(1, r):
            out = out + self._stage_out(k, self.fsq.indices_to_codes(tokens[:, k]))
        return out.reshape(tokens.shape[0], self.config.dim)
