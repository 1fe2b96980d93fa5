"""The warp's one texture: the portrait, padded past its edges, with patches packed below it.

Every triangle of the warp samples one RGBA texture (colour and the person's
alpha), so a frame stays one rasterization and one ``grid_sample``:

* the portrait, padded by a margin on every side (:func:`pad_portrait`), so
  that a head or body moving away from the frame's edge brings in a soft
  continuation of the body, and elsewhere the background plate, instead of the
  photo's edge pixels smeared into stripes (what lies past the photo is
  unknown; a plain continuation is the plausible guess that shows no false detail);
* patches below it: the drawn mouth interior, keyframes' mouths and eyes.

Source positions are given in the portrait's pixels (a patch's texels lie at
negative or large coordinates); :meth:`Atlas.grid_transform` maps the
rasterizer's sampling grid, in the portrait's ``grid_sample`` coordinates, to
the texture's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from codec.render.composite import continue_outside

PAD_SHARE = 0.25
"""Margin added on each side of the portrait, as a share of its side. The warp keeps the body's motion
within it, so nothing past the margin (the patches) is sampled for the portrait."""

GUTTER = 2
"""Texels between patches, so that bilinear sampling at a patch's edge reads only its own texels."""


def pad_portrait(rgba: np.ndarray, margin: int, smooth: bool = True, body_from: float | None = None) -> np.ndarray:
    """The portrait extended by ``margin`` on every side, for sampling past the photo's edges.

    Past the edge the photo's edge colours continue, blurred along the edge more and
    more with the distance (:func:`codec.render.composite.continue_outside`: a soft
    continuation of the clothes, the hair or the background, with no texture to smear
    into stripes). The person's alpha goes on below the photo and beside the body (the
    body continues); above the photo and beside the head it fades out within a quarter
    of the margin, so the background plate shows there, not a band of hair.

    Args:
        rgba: ``[H, W, 4]`` float32 (RGB and the person's alpha, in [0, 1]).
        margin: texels added on each side.
        smooth: otherwise the edge pixels are repeated as they are (stripes; for comparison).
        body_from: the row (the portrait's pixels) below which the body lies (default: none does).
    Returns:
        ``[H + 2 margin, W + 2 margin, 4]`` float32; the middle is ``rgba`` exactly.
    """
    m = margin
    out = np.asarray(cv2.copyMakeBorder(rgba, m, m, m, m, cv2.BORDER_REPLICATE), np.float32)
    if not smooth or m <= 0:
        return out
    h, w = rgba.shape[:2]
    reach = max(4.0, m / 4)
    out = continue_outside(out, (m, m, m + w, m + h), m / 6, reach)
    ys, xs = np.arange(h + 2 * m) - m, np.arange(w + 2 * m) - m
    above = np.maximum(-ys, 0)[:, None].astype(np.float32)
    aside = np.maximum(np.maximum(-xs, xs - (w - 1)), 0)[None, :].astype(np.float32)
    body = np.clip((ys - (h if body_from is None else body_from)) / reach, 0, 1)[:, None].astype(np.float32)
    out[..., 3] *= np.clip(1 - np.maximum(above, aside * (1 - body)) / reach, 0, 1)
    out[m:m + h, m:m + w] = rgba
    return out


@dataclass
class Patch:
    """One rectangle of the texture: its texels and where they are placed."""

    texels: np.ndarray  # [h, w, 4] float32
    x: int = 0
    y: int = 0

    def origin(self, margin: int) -> np.ndarray:
        """Texel (0, 0)'s top-left corner in the portrait's pixel coordinates."""
        return np.array([self.x - margin, self.y - margin], np.float64)


class Atlas:
    """The padded portrait and named patches below it (shelves, left to right).

    Args:
        rgba: ``[S, S, 4]`` float32 portrait with its alpha.
        smooth: fill the margin as :func:`pad_portrait` does (otherwise by repeating the edge, for comparison).
        body_from: the row below which the body lies (see :func:`pad_portrait`).
    """

    def __init__(self, rgba: np.ndarray, smooth: bool = True, body_from: float | None = None) -> None:
        self.size = int(rgba.shape[0])
        self.margin = int(round(PAD_SHARE * self.size))
        self.base = pad_portrait(np.ascontiguousarray(rgba, np.float32), self.margin, smooth, body_from)
        self.width = int(self.base.shape[1])
        self.patches: dict[str, Patch] = {}
        self.height = int(self.base.shape[0])

    def put(self, name: str, texels: np.ndarray) -> Patch:
        """Adds (or replaces) a patch and lays out all patches again.

        Args:
            texels: ``[h, w, 4]`` float32, ``w`` at most the texture's width.
        Returns:
            the placed patch (its position may change when patches are added later:
            read positions again after every :meth:`put`).
        """
        if texels.shape[1] + 2 * GUTTER > self.width:
            raise ValueError(f"patch {name!r} is {texels.shape[1]} texels wide, the texture {self.width}")
        self.patches[name] = Patch(np.ascontiguousarray(texels, np.float32))
        self._layout()
        return self.patches[name]

    def _layout(self) -> None:
        x, y, shelf = GUTTER, self.base.shape[0] + GUTTER, 0
        for p in self.patches.values():
            h, w = p.texels.shape[:2]
            if x + w + GUTTER > self.width:
                x, y, shelf = GUTTER, y + shelf + GUTTER, 0
            p.x, p.y = x, y
            x += w + GUTTER
            shelf = max(shelf, h)
        self.height = y + shelf + GUTTER if self.patches else self.base.shape[0]

    def texture(self) -> np.ndarray:
        """The whole texture ``[height, width, 4]`` float32 (gutters repeat their patch's edge texels)."""
        tex = np.zeros((self.height, self.width, 4), np.float32)
        tex[: self.base.shape[0]] = self.base
        g = GUTTER
        for p in self.patches.values():
            h, w = p.texels.shape[:2]
            tex[p.y - g:p.y + h + g, p.x - g:p.x + w + g] = cv2.copyMakeBorder(p.texels, g, g, g, g,
                                                                              cv2.BORDER_REPLICATE)
        return tex

    def grid_transform(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, offset)``, each ``[2]`` float32 (x, y): texture grid = portrait grid * scale + offset.

        A portrait pixel coordinate ``p = (g + 1) S / 2`` lies at ``p + margin`` in the texture,
        whose grid coordinate is ``2 (p + margin) / side - 1``.
        """
        side = np.array([self.width, self.height], np.float64)
        return (self.size / side).astype(np.float32), ((self.size + 2 * self.margin) / side - 1).astype(np.float32)
