"""The torch rasterizer against the numba one, on random meshes (edges, folds, depth ties, chunks)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.render.mesh import EYE, MOUTH
from codec.render.raster import rasterize_batch
from codec.render.raster_torch import RasterConfig, identity_grid, rasterize

SIZE = 24


def _numba(tv: np.ndarray, sv: np.ndarray, tris: np.ndarray, bias: np.ndarray,
           kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sources = np.ascontiguousarray(np.broadcast_to(sv, (len(tv), *sv.shape)))  # per frame
    return rasterize_batch(tv, sources, tris.astype(np.int32), bias, kind.astype(np.int8), SIZE)


def _torch(tv: np.ndarray, sv: np.ndarray, tris: np.ndarray, bias: np.ndarray, kind: np.ndarray,
           max_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(tv)
    return rasterize(torch.from_numpy(tv), torch.from_numpy(sv).expand(n, -1, -1),
                     torch.from_numpy(tris).long().expand(n, -1, -1), torch.from_numpy(bias).expand(n, -1),
                     torch.from_numpy(kind).long().expand(n, -1), SIZE, RasterConfig(max_pairs=max_pairs))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 3), snap=st.booleans(),
       max_pairs=st.sampled_from([1, 1 << 20]))
def test_random_meshes_rasterize_as_numba_does(seed: int, frames: int, snap: bool, max_pairs: int) -> None:
    rng = np.random.default_rng(seed)
    verts, faces = 10, 14
    tv = rng.uniform(-6, SIZE + 6, (frames, verts, 3)).astype(np.float32)
    tv[..., 2] = rng.choice([0.0, 1.0, 2.0], (frames, verts))  # equal depths: the first triangle must win
    if snap:  # vertices on pixel centres and corners: pixels on shared edges
        tv[..., :2] = np.round(tv[..., :2] * 2) / 2
    sv = rng.uniform(0, SIZE, (verts, 2)).astype(np.float32)
    tris = rng.integers(0, verts, (faces, 3))
    bias = rng.choice([0.0, 0.5, 1e6], faces)
    kind = rng.integers(0, 5, faces)  # every kind, the teeth (4) included
    grid_n, reg_n = _numba(tv, sv, tris, bias, kind)
    grid_t, reg_t = _torch(tv, sv, tris, bias, kind, max_pairs)
    np.testing.assert_allclose(grid_t.numpy(), grid_n, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(reg_t.numpy()[:, [0, 2]], reg_n[:, [0, 2]])
    np.testing.assert_allclose(reg_t.numpy()[:, 1], reg_n[:, 1], rtol=0, atol=1e-6)


def test_nearer_triangle_covers_and_kinds_mark_regions() -> None:
    # Two triangles over the same pixels: the mouth one is nearer, so it wins and marks the opening.
    tv = np.array([[[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [0, 0, 0], [SIZE, 0, 0], [0, SIZE, 0]]], np.float32)
    sv = np.zeros((6, 2), np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    kinds = np.array([EYE, MOUTH])
    grid, reg = _torch(tv, sv, tris, np.zeros(2), kinds, 1 << 20)
    covered = reg[0, 0] > 0
    assert covered[2, 2] and not covered[SIZE - 2, SIZE - 2]
    assert (reg[0, 2][covered] == 0).all()  # the eye triangle lies behind
    # Uncovered pixels keep the identity grid; covered ones sample the source's corner (0, 0).
    ident = identity_grid(SIZE, torch.device("cpu"))
    assert torch.equal(grid[0][~covered], ident[~covered])
    assert torch.allclose(grid[0][covered], torch.tensor([-1.0, -1.0]))


def test_degenerate_and_offscreen_triangles_draw_nothing() -> None:
    tv = np.array([[[5, 5, 0], [5, 5, 0], [9, 9, 0], [-50, -50, 0], [-40, -50, 0], [-50, -40, 0]]], np.float32)
    grid, reg = _torch(tv, np.zeros((6, 2), np.float32), np.array([[0, 1, 2], [3, 4, 5], [0, 0, 0]]),
                       np.zeros(3), np.full(3, MOUTH), 1 << 20)
    assert reg.abs().sum() == 0
    assert torch.equal(grid[0], identity_grid(SIZE, torch.device("cpu")))
