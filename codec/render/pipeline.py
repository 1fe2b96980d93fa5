"""The receiver's renderer: target landmarks -> frames of the caller.

    portrait ──prepare_portrait──> Portrait ──Renderer(portrait, config)──┐
    keyframes (optional, any time) ──────────────> add_keyframe() ──────┤
    target landmarks [B, 478, 3] ─────────────────────────> render() ──> frames [B, 512, 512, 3] uint8

:class:`Renderer` wires the stages: the geometric warp (:mod:`codec.render.warp`),
always available and needing no weights, and optionally the neural refinement
(:mod:`codec.render.refiner`). Everything that depends only on the portrait is
computed once when the renderer is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numba
import numpy as np
import torch

from codec.render.batch import DeviceWarp
from codec.render.keyframes import Keyframe
from codec.render.portrait import Portrait
from codec.render.refiner import RENDERER_PATH, load_refiner, refine
from codec.render.warp import GeometricWarp, WarpConfig

RENDERERS = ("warp", "neural")
RASTERS = ("auto", "numba", "torch")


@dataclass(frozen=True)
class RenderConfig:
    """Settings of the renderer.

    Attributes:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cuda"``, ``"cpu"``
            or any ``torch.device`` string.
        size: side of the rendered frames in pixels.
        renderer: ``"warp"``, the geometric stage alone (the default: it needs no
            weights and is real time on a CPU), or ``"neural"``, the warp refined
            by the network in ``codec/data/renderer.pt`` (see :mod:`codec.render.refiner`).
        warp: settings of the geometric stage.
        raster: who rasterizes the mesh: ``"numba"`` on the CPU, ``"torch"`` on the device
            (:mod:`codec.render.batch`), or ``"auto"``: torch on a GPU, numba otherwise.
        refiner_path: weights of the neural stage; empty: the shipped ``codec/data/renderer.pt``.
    """

    device: str = "auto"
    size: int = 512
    renderer: str = "warp"
    warp: WarpConfig = WarpConfig()
    raster: str = "auto"
    refiner_path: str = ""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name as torch reads it.

    Raises:
        ValueError: ``"cuda"`` asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch finds no CUDA GPU; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but this machine has none; use --device cpu or auto")
    return device


class Renderer:
    """Renders frames of one portrait's face moved to target landmarks.

    Example:
        >>> renderer = Renderer(prepare_portrait("me.jpg"), RenderConfig(device="auto"))
        >>> frames = renderer.render(target_landmarks)   # [B, 512, 512, 3] uint8
    """

    def __init__(self, portrait: Portrait, config: RenderConfig = RenderConfig()) -> None:
        """
        Args:
            portrait: the prepared portrait; target landmarks are given in its pixels.
            config: settings.
        Raises:
            ValueError: unknown renderer, or an unavailable device.
            FileNotFoundError: ``renderer="neural"`` without trained weights.
        """
        if config.renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {config.renderer!r}; choose from {', '.join(RENDERERS)}")
        if config.raster not in RASTERS:
            raise ValueError(f"unknown raster {config.raster!r}; choose from {', '.join(RASTERS)}")
        self.config = config
        self.device = resolve_device(config.device)
        self.portrait = portrait
        # Targets arrive in the portrait's pixels; render at config.size.
        self._scale = config.size / portrait.size
        image, landmarks = portrait.image, portrait.landmarks
        if portrait.size != config.size:
            interp = cv2.INTER_AREA if self._scale < 1 else cv2.INTER_CUBIC
            image = cv2.resize(image, (config.size, config.size), interpolation=interp)
            landmarks = landmarks * np.float32(self._scale)
        self.warp = GeometricWarp(image, landmarks, self.device, config.warp)
        # The torch rasterizer renders from the same prepared portrait (self.warp keeps it).
        self.device_warp = None
        if config.raster == "torch" or (config.raster == "auto" and self.device.type == "cuda"):
            self.device_warp = DeviceWarp(self.warp)
        self.refiner = None
        if config.renderer == "neural":
            self.refiner = load_refiner(Path(config.refiner_path or RENDERER_PATH), device=self.device)

    def add_keyframe(self, keyframe: Keyframe) -> None:
        """Gives the renderer another picture of the portrait's face (see :mod:`codec.render.keyframes`).

        From then on, mouths open about as wide as the keyframe's show its teeth and
        tongue, blinks its lids when its eyes are closed, and heads turned towards its
        pose its face (:mod:`codec.render.turns`). Call it between
        :meth:`render` calls (not concurrently); it takes a few milliseconds.

        Args:
            keyframe: a picture of the same person as the portrait, in any size
                (its landmarks in its own pixels). Never pass another person's
                picture (avatar mode): the renderer would paste their mouth in.
        """
        self.warp.add_keyframe(keyframe)
        if self.device_warp is not None:  # the torch rasterizer renders from the warp's prepared texture
            self.device_warp = DeviceWarp(self.warp)

    @torch.inference_mode()
    def render_tensor(self, target_landmarks: np.ndarray) -> torch.Tensor:
        """Like :meth:`render`, but ``[B, 3, size, size]`` float in [0, 1] on the device."""
        target = np.asarray(target_landmarks, np.float32)
        if target.ndim == 2:
            target = target[None]
        if target.ndim != 3 or target.shape[1:] != (478, 3):
            raise ValueError(f"target landmarks must be [478, 3] or [B, 478, 3], got {target.shape}")
        warp = self.device_warp or self.warp
        if self.refiner is None:
            return warp(target * np.float32(self._scale))

        target = target * np.float32(self._scale)
        return refine(self.refiner, warp.warp(target), warp.image[:, :3], target)

    @torch.inference_mode()
    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """Frames of the portrait's face at the target landmarks.

        Args:
            target_landmarks: ``[478, 3]`` or ``[B, 478, 3]`` in the portrait's pixels.
        Returns:
            ``[B, size, size, 3]`` uint8 RGB.
        """
        frames = self.render_tensor(target_landmarks)
        if frames.device.type != "cpu":
            # Frames lie in [0, 1] (blends of the portrait), so +0.5 and truncation round to nearest.
            frames = frames.mul_(255).add_(0.5).to(torch.uint8)
            return np.ascontiguousarray(frames.permute(0, 2, 3, 1).cpu().numpy())
        return planar_to_rgb8(frames.contiguous().numpy())


@numba.njit(cache=True, nogil=True)
def planar_to_rgb8(frames: np.ndarray) -> np.ndarray:
    """``[B, 3, H, W]`` float in [0, 1] -> ``[B, H, W, 3]`` uint8, rounded to nearest, in one pass.

    The same values as ``(x * 255 + 0.5).to(uint8)`` then a transposing copy, in a third of the time.
    """
    b, c, h, w = frames.shape
    out = np.empty((b, h, w, c), np.uint8)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                for k in range(c):
                    v = frames[i, k, y, x] * np.float32(255) + np.float32(0.5)
                    out[i, y, x, k] = 0 if v < 1 else (255 if v >= 255 else np.uint8(v))
    return out
