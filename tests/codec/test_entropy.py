"""Entropy mode: exact round trips, compression on slowly moving tokens, the shipped tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.bitstream import fixed_payload_bytes
from codec.entropy import ENTROPY_PATH, EntropyModel, load_entropy_model, token_digits
from codec.errors import StreamError
from codec.grfsq import GRFSQConfig
from codec.train.entropy import fit_entropy_model, measure_kbps
from tests.codec.token_walks import random_walk, walk_model


@pytest.fixture(scope="module")
def model() -> EntropyModel:
    return walk_model()


def test_digits_match_the_fsq_index_order():
    cfg = GRFSQConfig()
    d = token_digits(np.array([[0, 1, 5, 624]]), cfg)
    assert d.tolist() == [[[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [4, 4, 4, 4]]]


@given(layers=st.integers(1, 4), prev_layers=st.sampled_from([None, 1, 2, 3, 4]), seed=st.integers(0, 2**32 - 1),
       slow=st.booleans())
@settings(max_examples=150, deadline=None)
def test_round_trip_is_exact_for_any_tokens(model, layers, prev_layers, seed, slow):
    rng = np.random.default_rng(seed)
    if slow:
        walk = random_walk(rng, 2)
        prev, tokens = walk[0, :prev_layers or 1], walk[1, :layers]
    else:
        prev, tokens = rng.integers(0, 625, (prev_layers or 1, 12)), rng.integers(0, 625, (layers, 12))
    prev = None if prev_layers is None else prev
    data = model.encode(tokens, prev)
    assert np.array_equal(model.decode(data, layers, prev), tokens)


def test_slow_tokens_cost_far_less_than_the_fixed_packing(model):
    test = random_walk(np.random.default_rng(11), 250)
    for layers in range(1, 5):
        m = measure_kbps(model, [test], layers)
        assert m["fixed_kbps"] == pytest.approx(fixed_payload_bytes(layers) * 25 * 8 / 1000)
        assert m["ideal_kbps"] <= m["payload_kbps"] < 0.5 * m["fixed_kbps"]


@pytest.mark.parametrize("layers", [1, 4])
def test_coder_overhead_is_about_a_byte_per_frame(model, layers):
    walk = random_walk(np.random.default_rng(12), 200)[:, :layers]
    extra = [len(model.encode(t, p)) * 8 - model.cross_entropy_bits(t, p) for p, t in zip(walk[:-1], walk[1:])]
    # The shortened seal costs ~2.5 bits on average; constriction's own seal ~16.
    assert 0 < np.mean(extra) < 6 and max(extra) <= 12


@given(st.binary(max_size=80), st.integers(1, 4), st.booleans())
@settings(max_examples=300, deadline=None)
def test_garbage_payload_raises_only_stream_error(model, data, layers, keyframe):
    prev = None if keyframe else np.zeros((4, 12), np.int64)
    try:
        out = model.decode(data, layers, prev)
    except StreamError:
        return
    assert out.shape == (layers, 12) and out.min() >= 0 and out.max() < 625


def test_bad_layer_count_is_a_stream_error(model):
    with pytest.raises(StreamError, match="layers"):
        model.decode(b"\x01", 5, None)


def test_save_load_round_trips_exactly(model, tmp_path):
    path = tmp_path / "entropy.npz"
    model.save(path)
    loaded = load_entropy_model(path)
    assert loaded.hash == model.hash and loaded.config == model.config
    assert np.array_equal(loaded.probs, model.probs)
    tokens = random_walk(np.random.default_rng(3), 2)
    assert loaded.encode(tokens[1], tokens[0]) == model.encode(tokens[1], tokens[0])


def test_tables_are_validated():
    cfg = GRFSQConfig()
    with pytest.raises(ValueError, match="must be"):
        EntropyModel(cfg, np.ones((4, 12, 4, 6, 6, 4), np.float32))
    with pytest.raises(ValueError, match="positive"):
        EntropyModel(cfg, np.zeros((4, 12, 4, 6, 6, 5), np.float32))
    for levels in ((8, 5, 5, 5), (4, 4, 4, 4)):
        with pytest.raises(ValueError, match="equal FSQ levels of at least 5"):
            fit_entropy_model([], GRFSQConfig(dim=120, groups=12, residuals=4, levels=levels))


def test_the_hash_changes_with_the_tables(model):
    other = EntropyModel(model.config, model.probs * 2)
    assert other.hash != model.hash and len(model.hash) == 16


@pytest.mark.skipif(not ENTROPY_PATH.exists(), reason="no shipped entropy model")
def test_shipped_model_loads_and_round_trips():
    shipped = load_entropy_model()
    walk = random_walk(np.random.default_rng(8), 3)
    for layers in range(1, 5):
        data = shipped.encode(walk[2, :layers], walk[1])
        assert np.array_equal(shipped.decode(data, layers, walk[1]), walk[2, :layers])
