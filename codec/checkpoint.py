"""Shipped weight files: state dicts stored in float16, read back in float32.

Every checkpoint in ``codec/data`` is ``{"config": ..., "state": ..., ...}``
written by ``torch.save``; halving the floating-point tensors keeps the files
small, and they are widened again on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def half_state(state: dict[str, torch.Tensor], keep: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``state`` with its floating-point tensors in float16, except those named in ``keep``."""
    return {k: v.half() if v.is_floating_point() and k not in keep else v for k, v in state.items()}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read on the CPU, its ``"state"`` widened back to float32."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["state"] = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()}
    return ckpt
