"""Synthetic token streams for the byte-format tests: FSQ digits that drift slowly, as faces do."""

from __future__ import annotations

import numpy as np

from codec.entropy import EntropyModel
from codec.train.entropy import fit_entropy_model


def random_walk(rng: np.random.Generator, frames: int, layers: int = 4) -> np.ndarray:
    """``[T, layers, 12]`` tokens whose FSQ digits step by at most one per frame."""
    d = np.empty((frames, layers, 12, 4), np.int64)
    d[0] = rng.integers(0, 5, d.shape[1:])
    steps = rng.choice([-1, 0, 1], p=[0.1, 0.8, 0.1], size=d.shape)
    for t in range(1, frames):
        d[t] = np.clip(d[t - 1] + steps[t], 0, 4)
    return d @ 5 ** np.arange(4)


def walk_model() -> EntropyModel:
    """An entropy model fitted on random walks (independent of the shipped tables)."""
    rng = np.random.default_rng(0)
    return fit_entropy_model([random_walk(rng, 200) for _ in range(4)])
