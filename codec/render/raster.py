"""The warp's rasterizer: a target mesh -> a dense backward sampling grid, on the CPU (numba).

Each output pixel gets its source position in the portrait by the barycentric
coordinates of the target triangle it falls in. Rasterizing is z-buffered, so
the lids cover the eyes and the lips the mouth, and done at the output size:
full size keeps the seams sharp where lips or lids meet, and costs about what
upsampling a coarser flow would (about 5 ms a frame at 512x512).
"""

from __future__ import annotations

import numba
import numpy as np

from codec.render.mesh import EYE, MOUTH, TEETH


@numba.njit(cache=True, nogil=True)
def rasterize(tv: np.ndarray, sv: np.ndarray, tris: np.ndarray, bias: np.ndarray, kind: np.ndarray,
               grid: np.ndarray, regions: np.ndarray, zbuf: np.ndarray) -> None:
    """Z-buffered rasterization of one frame's mesh into a sampling grid.

    Args:
        tv: ``[V, 3]`` target vertices (x, y in output pixels, z depth).
        sv: ``[V, 2]`` source vertices in output pixels.
        tris: ``[F, 3]``; bias: ``[F]`` depth added per triangle; kind: ``[F]``.
        grid: ``[H, W, 2]`` written where a triangle is nearest: the source
            position in ``grid_sample``'s coordinates (``align_corners=False``).
        regions: ``[3, H, W]`` written likewise: mouth-opening coverage (its fan and
            teeth), depth into the opening (0 at the lips and on the teeth, 1 at its
            centre), eye-opening coverage.
        zbuf: ``[H, W]`` scratch, filled with +inf by the caller.
    """
    size = grid.shape[0]
    norm = 2.0 / size
    eps = -1e-5
    for f in range(tris.shape[0]):
        a, b, c = tris[f, 0], tris[f, 1], tris[f, 2]
        ax, ay, bx, by, cx, cy = tv[a, 0], tv[a, 1], tv[b, 0], tv[b, 1], tv[c, 0], tv[c, 1]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-9:
            continue
        inv = 1.0 / area
        # Pixel centres lie at k + 0.5.
        x0 = max(int(np.floor(min(ax, bx, cx) - 0.5)), 0)
        x1 = min(int(np.ceil(max(ax, bx, cx) - 0.5)), size - 1)
        y0 = max(int(np.floor(min(ay, by, cy) - 0.5)), 0)
        y1 = min(int(np.ceil(max(ay, by, cy) - 0.5)), size - 1)
        za, zb, zc = tv[a, 2], tv[b, 2], tv[c, 2]
        fan = kind[f] == MOUTH  # the fan's third vertex is the opening's centre
        hole = fan or kind[f] == TEETH  # the teeth lie in the opening too
        eye = 1.0 if kind[f] == EYE else 0.0
        for y in range(y0, y1 + 1):
            py = y + 0.5
            # The barycentric weights are linear in px along the row: the span where all three
            # pass, widened by a pixel, so that the exact test below decides every pixel as before.
            ka = (by - cy) * inv
            kb = (cy - ay) * inv
            ma = (bx * (cy - py) - cx * (by - py)) * inv
            mb = (cx * (ay - py) - ax * (cy - py)) * inv
            lo, hi, empty = -1e30, 1e30, False
            for k, m in ((ka, ma), (kb, mb), (-ka - kb, 1.0 - ma - mb)):
                if k > 0:
                    lo = max(lo, (eps - m) / k)
                elif k < 0:
                    hi = min(hi, (eps - m) / k)
                elif m < eps:
                    empty = True
            if empty or lo > hi + 2.0:
                continue
            xs = max(x0, int(np.floor(lo - 0.5)) - 1) if lo > -1e29 else x0
            xe = min(x1, int(np.ceil(hi - 0.5)) + 1) if hi < 1e29 else x1
            for x in range(xs, xe + 1):
                px = x + 0.5
                wa = ((bx - px) * (cy - py) - (by - py) * (cx - px)) * inv
                wb = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) * inv
                wc = 1.0 - wa - wb
                if wa < eps or wb < eps or wc < eps:
                    continue
                z = wa * za + wb * zb + wc * zc + bias[f]
                if z >= zbuf[y, x]:
                    continue
                zbuf[y, x] = z
                grid[y, x, 0] = (wa * sv[a, 0] + wb * sv[b, 0] + wc * sv[c, 0]) * norm - 1
                grid[y, x, 1] = (wa * sv[a, 1] + wb * sv[b, 1] + wc * sv[c, 1]) * norm - 1
                regions[0, y, x] = 1.0 if hole else 0.0
                regions[1, y, x] = wc if fan else 0.0
                regions[2, y, x] = eye


@numba.njit(cache=True, nogil=True)
def rasterize_batch(tv: np.ndarray, sv: np.ndarray, tris: np.ndarray, bias: np.ndarray, kind: np.ndarray,
                     size: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rasterize` over frames ``tv [B, V, 3]`` with their sources ``sv [B, V, 2]``.

    Returns:
        grid ``[B, size, size, 2]`` (the identity where no triangle lies) and
        regions ``[B, 3, size, size]``, float32.
    """
    n = tv.shape[0]
    grid = np.empty((n, size, size, 2), np.float32)
    for y in range(size):
        for x in range(size):
            grid[0, y, x, 0] = (x + 0.5) * 2.0 / size - 1
            grid[0, y, x, 1] = (y + 0.5) * 2.0 / size - 1
    for i in range(1, n):
        grid[i] = grid[0]
    regions = np.zeros((n, 3, size, size), np.float32)
    zbuf = np.empty((size, size), np.float64)
    for i in range(n):
        zbuf[:] = np.inf
        rasterize(tv[i], sv[i], tris, bias, kind, grid[i], regions[i], zbuf)
    return grid, regions
