"""The mesh rasterizer in torch: the numba rasterizer's output, computed on any device for many frames at once.

:func:`rasterize` takes the same inputs as :func:`codec.warp._rasterize_batch`, but per frame (each frame
may come from another portrait, with its own mesh), and returns the same sampling grid and region maps.
It enumerates candidate (triangle, pixel) pairs instead of looping:

1. each triangle's bounding box gives its rows;
2. each row gives the span of pixels where the barycentric weights can pass (widened by a pixel, as the
   numba loop does), so a pair is enumerated only where the triangle nearly covers the pixel;
3. every pair is tested exactly as the numba loop tests it (same arithmetic, the same float32 and float64
   steps), and the z-buffer is resolved with two scatters: the least depth per pixel, then, among the
   pairs at that depth, the first triangle, which is the one the sequential loop keeps.

The result is the numba rasterizer's, bit for bit but for the last bit of an occasional weight. Memory
grows with the pairs (about 350 thousand a 512x512 frame, some 100 bytes each while they live), so
frames are taken in chunks of at most :attr:`RasterConfig.max_pairs` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codec.mesh import EYE, MOUTH

EPS = -1e-5  # a pixel on an edge belongs to both triangles (the numba loop's tolerance)


@dataclass(frozen=True)
class RasterConfig:
    """Settings of the torch rasterizer.

    Attributes:
        max_pairs: the most candidate (triangle, pixel) pairs held at once; frames are rasterized in
            chunks that stay under it (a single frame may exceed it).
    """

    max_pairs: int = 1 << 24


def identity_grid(size: int, device: torch.device) -> torch.Tensor:
    """``[size, size, 2]`` float32: each pixel's own position in ``grid_sample``'s coordinates."""
    t = ((torch.arange(size, device=device, dtype=torch.float64) + 0.5) * 2.0 / size - 1).float()
    return torch.stack(torch.meshgrid(t, t, indexing="xy"), -1)


def _expand(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with ``counts [N]``: each sub-item's item index ``[M]`` and its offset in ``starts``' units."""
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    return owner, starts[owner] + (torch.arange(total, device=counts.device) - first[owner])


def rasterize(tv: torch.Tensor, sv: torch.Tensor, tris: torch.Tensor, bias: torch.Tensor, kind: torch.Tensor,
              size: int, config: RasterConfig = RasterConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-buffered rasterization of each frame's mesh into a sampling grid.

    Args:
        tv: ``[B, V, 3]`` float32 target vertices (x, y in output pixels, z depth).
        sv: ``[B, V, 2]`` float32 source vertices in output pixels.
        tris: ``[B, F, 3]`` int64 vertex indices (a degenerate triangle, e.g. ``(0, 0, 0)``, draws nothing).
        bias: ``[B, F]`` float64 depth added per triangle.
        kind: ``[B, F]`` integer triangle kinds (:data:`codec.mesh.MOUTH`, :data:`codec.mesh.EYE`, ...).
        size: side of the output in pixels.
        config: chunking.
    Returns:
        grid ``[B, size, size, 2]`` float32 (where each pixel samples the source, in ``grid_sample``'s
        coordinates, ``align_corners=False``; the identity where no triangle lies) and regions
        ``[B, 3, size, size]`` float32 (mouth-opening coverage, depth into the opening, eye-opening
        coverage), all on ``tv``'s device.
    """
    n, nf = tris.shape[:2]
    dev = tv.device
    grid = identity_grid(size, dev).expand(n, -1, -1, -1).contiguous()
    regions = torch.zeros((n, 3, size, size), dtype=torch.float32, device=dev)
    if n == 0 or nf == 0:
        return grid, regions

    # Per triangle: corners (float32, as stored), the area in float32 as the numba loop computes it.
    corner = torch.gather(tv, 1, tris.reshape(n, -1, 1).expand(-1, -1, 3)).view(n, nf, 3, 3)
    ax, ay, bx, by, cx, cy = (corner[..., i, j] for i in range(3) for j in range(2))
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    inv = 1.0 / area.double()
    x_min = torch.minimum(torch.minimum(ax, bx), cx).double()
    x_max = torch.maximum(torch.maximum(ax, bx), cx).double()
    y_min = torch.minimum(torch.minimum(ay, by), cy).double()
    y_max = torch.maximum(torch.maximum(ay, by), cy).double()
    x0 = torch.floor(x_min - 0.5).clamp(min=0, max=size).long()
    x1 = torch.ceil(x_max - 0.5).clamp(min=-1, max=size - 1).long()
    y0 = torch.floor(y_min - 0.5).clamp(min=0, max=size).long()
    y1 = torch.ceil(y_max - 0.5).clamp(min=-1, max=size - 1).long()
    rows = torch.where((area.abs() >= 1e-9) & (x1 >= x0), (y1 - y0 + 1).clamp(min=0), 0).view(-1)

    # Per (triangle, row): the span where all three weights can pass, widened by a pixel.
    tri, y = _expand(y0.view(-1), rows)
    py = y.double() + 0.5
    t_inv = inv.view(-1)[tri]
    c = corner.view(-1, 3, 3)[tri]
    tax, tay, tbx, tby, tcx, tcy = (c[:, i, j] for i in range(3) for j in range(2))
    ka = (tby - tcy).double() * t_inv
    kb = (tcy - tay).double() * t_inv
    ma = (tbx.double() * (tcy.double() - py) - tcx.double() * (tby.double() - py)) * t_inv
    mb = (tcx.double() * (tay.double() - py) - tax.double() * (tcy.double() - py)) * t_inv
    lo = torch.full_like(py, -1e30)
    hi = torch.full_like(py, 1e30)
    empty = torch.zeros_like(py, dtype=torch.bool)
    for k, m in ((ka, ma), (kb, mb), (-ka - kb, 1.0 - ma - mb)):
        q = (EPS - m) / torch.where(k == 0, 1.0, k)
        lo = torch.where(k > 0, torch.maximum(lo, q), lo)
        hi = torch.where(k < 0, torch.minimum(hi, q), hi)
        empty |= (k == 0) & (m < EPS)
    keep = ~empty & (lo <= hi + 2.0)
    tx0, tx1 = x0.view(-1)[tri], x1.view(-1)[tri]
    xs = torch.where(lo > -1e29, torch.maximum(tx0, torch.floor(lo.clamp(-4.0 * size, 4.0 * size) - 0.5).long() - 1), tx0)
    xe = torch.where(hi < 1e29, torch.minimum(tx1, torch.ceil(hi.clamp(-4.0 * size, 4.0 * size) - 0.5).long() + 1), tx1)
    span = torch.where(keep, (xe - xs + 1).clamp(min=0), 0)

    # Pixels, a chunk of frames at a time.
    frame_of_row = tri // nf
    per_frame = torch.zeros(n, dtype=torch.long, device=dev).index_add_(0, frame_of_row, span).tolist()
    start = 0
    while start < n:
        stop, pairs = start + 1, per_frame[start]
        while stop < n and pairs + per_frame[stop] <= config.max_pairs:
            pairs += per_frame[stop]
            stop += 1
        sel = (frame_of_row >= start) & (frame_of_row < stop)
        _resolve(tv, sv, tris, bias, kind, tri[sel], y[sel], xs[sel], span[sel], t_inv[sel],
                 start, stop, size, grid, regions)
        start = stop
    return grid, regions


def _resolve(tv: torch.Tensor, sv: torch.Tensor, tris: torch.Tensor, bias: torch.Tensor, kind: torch.Tensor,
             tri: torch.Tensor, y: torch.Tensor, xs: torch.Tensor, span: torch.Tensor, inv: torch.Tensor,
             start: int, stop: int, size: int, grid: torch.Tensor, regions: torch.Tensor) -> None:
    """Tests every pixel of the rows' spans of frames ``start .. stop - 1`` and writes the z-buffer's winners.

    Args:
        tri, y, xs, span, inv: ``[R]`` per row: flat triangle index (frame * F + triangle), row, first
            pixel, pixel count, and the triangle's inverse area.
        grid, regions: the outputs, written in place.
    """
    nf = tris.shape[1]
    row, x = _expand(xs, span)
    t = tri[row]
    frame, f = t // nf, t % nf
    yy = y[row]
    px, py = x.double() + 0.5, yy.double() + 0.5
    vid = tris.view(-1, 3)[t]
    a, b, c = (tv[frame, vid[:, i]].double() for i in range(3))
    w_inv = inv[row]
    wa = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) * w_inv
    wb = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) * w_inv
    wc = 1.0 - wa - wb
    inside = (wa >= EPS) & (wb >= EPS) & (wc >= EPS)
    idx = torch.nonzero(inside).squeeze(1)
    frame, f, x, yy, vid, wa, wb, wc = (v[idx] for v in (frame, f, x, yy, vid, wa, wb, wc))
    a, b, c = a[idx], b[idx], c[idx]
    z = wa * a[:, 2] + wb * b[:, 2] + wc * c[:, 2] + bias[frame, f]

    pix = ((frame - start) * size + yy) * size + x
    cells = (stop - start) * size * size
    zbuf = torch.full((cells,), float("inf"), dtype=torch.float64, device=tv.device)
    zbuf.scatter_reduce_(0, pix, z, "amin")
    at_min = z == zbuf[pix]
    first = torch.full((cells,), nf, dtype=torch.long, device=tv.device)
    first.scatter_reduce_(0, pix[at_min], f[at_min], "amin")
    win = torch.nonzero(at_min & (f == first[pix])).squeeze(1)

    frame, f, x, yy, vid = frame[win], f[win], x[win], yy[win], vid[win]
    wa, wb, wc = wa[win], wb[win], wc[win]
    sa, sb, sc = (sv[frame, vid[:, i]].double() for i in range(3))
    norm = 2.0 / size
    gx = (wa * sa[:, 0] + wb * sb[:, 0] + wc * sc[:, 0]) * norm - 1
    gy = (wa * sa[:, 1] + wb * sb[:, 1] + wc * sc[:, 1]) * norm - 1
    grid[frame, yy, x] = torch.stack([gx, gy], 1).float()
    k = kind[frame, f]
    hole = k == MOUTH
    zero = torch.zeros_like(wc)
    regions[frame, 0, yy, x] = hole.float()
    regions[frame, 1, yy, x] = torch.where(hole, wc, zero).float()
    regions[frame, 2, yy, x] = (k == EYE).float()
