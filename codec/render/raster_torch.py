"""The mesh rasterizer in torch: the numba rasterizer's output, computed on any device for many frames at once.

:func:`rasterize` takes the same inputs as :func:`codec.render.raster.rasterize_batch`, but per frame (each frame
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

from codec.render.mesh import EYE, MOUTH, TEETH

EPS = -1e-5  # a pixel on an edge belongs to both triangles (the numba loop's tolerance)


@dataclass(frozen=True)
class RasterConfig:
    """Settings of the torch rasterizer.

    Attributes:
        max_pairs: the most candidate (triangle, pixel) pairs held at once; frames are rasterized in
            chunks that stay under it (a single frame may exceed it). None: 16 million on a GPU (some
            40 frames of 512x512, a couple of GB), half a million on a CPU (its caches favour a frame at a time).
    """

    max_pairs: int | None = None

    def pairs_on(self, device: torch.device) -> int:
        """:attr:`max_pairs` on ``device``."""
        if self.max_pairs is not None:
            return self.max_pairs
        return 1 << 24 if device.type == "cuda" else 1 << 19


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
        kind: ``[B, F]`` integer triangle kinds (:data:`codec.render.mesh.MOUTH`, :data:`codec.render.mesh.EYE`, ...).
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
    lo_c, hi_c = lo.clamp(-4.0 * size, 4.0 * size), hi.clamp(-4.0 * size, 4.0 * size)
    xs = torch.where(lo > -1e29, torch.maximum(tx0, torch.floor(lo_c - 0.5).long() - 1), tx0)
    xe = torch.where(hi < 1e29, torch.minimum(tx1, torch.ceil(hi_c - 0.5).long() + 1), tx1)
    span = torch.where(keep, (xe - xs + 1).clamp(min=0), 0)

    # Pixels, a chunk of frames at a time. What a pixel needs of its triangle is gathered by one flat index.
    source = torch.gather(sv, 1, tris.reshape(n, -1, 1).expand(-1, -1, 2)).view(n * nf, 6)
    per_tri = torch.cat([corner.view(n * nf, 9).double(), bias.reshape(-1, 1).double(), inv.view(-1, 1),
                         kind.reshape(-1, 1).double(), source.double()], 1)
    frame_of_row = torch.div(tri, nf, rounding_mode="floor")
    per_frame = torch.zeros(n, dtype=torch.long, device=dev).index_add_(0, frame_of_row, span).tolist()
    max_pairs = config.pairs_on(dev)
    start = 0
    while start < n:
        stop, pairs = start + 1, per_frame[start]
        while stop < n and pairs + per_frame[stop] <= max_pairs:
            pairs += per_frame[stop]
            stop += 1
        sel = torch.nonzero((frame_of_row >= start) & (frame_of_row < stop)).squeeze(1)
        _resolve(per_tri, nf, tri[sel], y[sel], xs[sel], span[sel], start, stop, size, grid, regions)
        start = stop
    return grid, regions


def _resolve(per_tri: torch.Tensor, nf: int, tri: torch.Tensor, y: torch.Tensor, xs: torch.Tensor,
             span: torch.Tensor, start: int, stop: int, size: int, grid: torch.Tensor, regions: torch.Tensor) -> None:
    """Tests every pixel of the rows' spans of frames ``start .. stop - 1`` and writes the z-buffer's winners.

    Args:
        per_tri: ``[B * F, 17]`` float64 per triangle: corners (x, y, z) x 3, depth bias, inverse area,
            kind, source corners (x, y) x 3.
        nf: triangles per frame.
        tri, y, xs, span: ``[R]`` per row: flat triangle index (frame * F + triangle), row, first pixel,
            pixel count.
        grid, regions: the outputs, written in place.
    """
    row, x = _expand(xs, span)
    t = tri.index_select(0, row)
    yy = y.index_select(0, row)
    del row
    px, py = x.double() + 0.5, yy.double() + 0.5
    c = per_tri[:, :11].index_select(0, t)
    ax, ay, az, bx, by, bz, cx, cy, cz, bias, inv = c.unbind(1)
    wa = ((bx - px) * (cy - py) - (by - py) * (cx - px)) * inv
    wb = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) * inv
    wc = 1.0 - wa - wb
    idx = torch.nonzero((wa >= EPS) & (wb >= EPS) & (wc >= EPS)).squeeze(1)
    t, x, yy, wa, wb, wc = (v.index_select(0, idx) for v in (t, x, yy, wa, wb, wc))
    az, bz, cz, bias = (v.index_select(0, idx) for v in (az, bz, cz, bias))
    z = wa * az + wb * bz + wc * cz + bias

    frame = torch.div(t, nf, rounding_mode="floor")
    pix = ((frame - start) * size + yy) * size + x
    cells = (stop - start) * size * size
    zbuf = torch.full((cells,), float("inf"), dtype=torch.float64, device=z.device)
    zbuf.scatter_reduce_(0, pix, z, "amin")
    at_min = z == zbuf.index_select(0, pix)
    first = torch.full((cells,), nf * (stop + 1), dtype=torch.long, device=z.device)
    first.scatter_reduce_(0, pix[at_min], t[at_min], "amin")
    win = torch.nonzero(at_min & (t == first.index_select(0, pix))).squeeze(1)

    t, frame, x, yy = t[win], frame[win], x[win], yy[win]
    wa, wb, wc = wa[win], wb[win], wc[win]
    k, sax, say, sbx, sby, scx, scy = per_tri[:, 11:].index_select(0, t).unbind(1)
    norm = 2.0 / size
    gx = (wa * sax + wb * sbx + wc * scx) * norm - 1
    gy = (wa * say + wb * sby + wc * scy) * norm - 1
    flat = (frame * size + yy) * size + x
    grid.view(-1, 2).index_copy_(0, flat, torch.stack([gx, gy], 1).float())
    fan = k == MOUTH
    hole = fan | (k == TEETH)  # the teeth lie in the mouth's opening too (depth 0 there)
    plane = size * size
    base = frame * (3 * plane) + yy * size + x
    regions.view(-1).index_copy_(0, base, hole.float())
    regions.view(-1).index_copy_(0, base + plane, torch.where(fan, wc, 0.0).float())
    regions.view(-1).index_copy_(0, base + 2 * plane, (k == EYE).float())
