"""The integer CDFs exported for other decoders (the browser's) decode exactly what constriction decodes.

A plain integer range decoder (constriction's queue ``RangeDecoder``: 32-bit
words, 64-bit state) over :meth:`EntropyModel.quantized_cdfs` must agree with
constriction symbol for symbol, on real payloads and on arbitrary bytes.
"""

from __future__ import annotations

import bisect

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.entropy import CDF_PRECISION, EntropyModel, _words, layer_context, load_entropy_model
from codec.errors import StreamError
from tests.codec.token_walks import random_walk, walk_model

MASK = (1 << 64) - 1


class IntRangeDecoder:
    """constriction's range decoder in integers only: what the browser's port does."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = [int(w) for w in words]
        self.pos = 0
        self.lower, self.range = 0, MASK
        self.point = 0
        n = 0
        while n < 2 and self.pos < len(self.words):
            self.point = (self.point << 32) | self.words[self.pos]
            self.pos += 1
            n += 1
        if n == 1:
            self.point <<= 32

    def decode(self, cdf: np.ndarray) -> int:
        scale = self.range >> CDF_PRECISION
        quantile = ((self.point - self.lower) & MASK) // scale
        if quantile >= 1 << CDF_PRECISION:
            raise StreamError("invalid data")
        row = [int(c) for c in cdf]
        sym = bisect.bisect_right(row, quantile) - 1
        self.lower = (self.lower + scale * row[sym]) & MASK
        self.range = scale * (row[sym + 1] - row[sym])
        if self.range < 1 << 32:
            self.lower = (self.lower << 32) & MASK
            self.range <<= 32
            word = self.words[self.pos] if self.pos < len(self.words) else 0
            self.pos += 1
            self.point = ((self.point << 32) | word) & MASK
        return sym


def int_decode(model: EntropyModel, data: bytes, layers: int, prev: np.ndarray | None) -> np.ndarray:
    """:meth:`EntropyModel.decode` over the integer CDFs."""
    cfg = model.config
    base, ndig = model.probs.shape[-1], len(cfg.levels)
    cdfs = model.quantized_cdfs()
    dec = IntRangeDecoder(_words(data))
    pd = None if prev is None else (np.asarray(prev)[..., None] // base ** np.arange(ndig)) % base
    d = np.zeros((layers, cfg.groups, ndig), np.int64)
    cell = np.arange(cfg.groups * ndig).reshape(cfg.groups, ndig) * (base + 1) ** 2
    per_layer = cfg.groups * ndig * (base + 1) ** 2
    for k in range(layers):
        rows = k * per_layer + cell + layer_context(k, d[k - 1] if k else None, pd, base)
        for g in range(cfg.groups):
            for i in range(ndig):
                d[k, g, i] = dec.decode(cdfs[rows[g, i]])
    return d @ base ** np.arange(ndig)


def test_cdfs_are_well_formed() -> None:
    model = load_entropy_model()
    cdf = model.quantized_cdfs().astype(np.int64)
    base = model.probs.shape[-1]
    assert cdf.shape == (model.probs.size // base, base + 1)
    assert (cdf[:, 0] == 0).all() and (cdf[:, -1] == 2**CDF_PRECISION).all()
    assert (np.diff(cdf, axis=1) >= 1).all()
    # Close to the float probabilities they quantize.
    p = model.probs.reshape(-1, base).astype(np.float64)
    assert np.abs(np.diff(cdf, axis=1) / 2**CDF_PRECISION - p / p.sum(1, keepdims=True)).max() < 1e-5


def test_integer_decoder_matches_constriction_on_real_frames() -> None:
    model = load_entropy_model()
    rng = np.random.default_rng(3)
    seq = random_walk(rng, 60)
    prev = None
    for t, tokens in enumerate(seq):
        layers = 1 + t % 4
        keyframe = t % 10 == 0
        p = None if keyframe else prev
        payload = model.encode(tokens[:layers], p)
        expected = model.decode(payload, layers, p)
        assert np.array_equal(int_decode(model, payload, layers, p), expected)
        prev = tokens[:layers]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=40), layers=st.integers(1, 4), keyframe=st.booleans())
def test_integer_decoder_matches_constriction_on_any_bytes(data: bytes, layers: int, keyframe: bool) -> None:
    model = walk_model()
    prev = None if keyframe else random_walk(np.random.default_rng(len(data)), 1)[0]
    try:
        expected = model.decode(data, layers, prev)
    except StreamError:
        expected = None
    try:
        got = int_decode(model, data, layers, prev)
    except StreamError:
        got = None
    if expected is None:
        assert got is None
    else:
        assert got is not None and np.array_equal(got, expected)
