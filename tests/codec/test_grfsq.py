import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.grfsq import FSQ, GRFSQConfig, GroupResidualFSQ


@given(st.lists(st.integers(2, 8), min_size=1, max_size=5))
@settings(max_examples=40, deadline=None)
def test_fsq_indices_and_codes_round_trip(levels):
    fsq = FSQ(tuple(levels))
    idx = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)


@given(st.lists(st.integers(2, 8), min_size=1, max_size=4), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_fsq_quantizes_to_valid_indices(levels, seed):
    fsq = FSQ(tuple(levels))
    z = torch.randn(64, len(levels), generator=torch.Generator().manual_seed(seed)) * 3
    codes, idx = fsq(z)
    assert idx.min() >= 0 and idx.max() < fsq.codebook_size
    assert torch.allclose(fsq.indices_to_codes(idx), codes)


def test_config_sizes_and_round_trip():
    cfg = GRFSQConfig()
    assert (cfg.group_dim, cfg.codebook_size) == (10, 625)
    assert cfg.bits_per_frame() == pytest.approx(48 * np.log2(625))
    assert cfg.bits_per_frame() * 25 / 1000 == pytest.approx(11.15, abs=0.01)
    assert GRFSQConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        GRFSQConfig(dim=121)


def test_tokens_shape_and_decode_matches_forward():
    torch.manual_seed(0)
    q = GroupResidualFSQ()
    z = torch.randn(32, 120)
    zq, tokens = q(z)
    assert tokens.shape == (32, 4, 12) and tokens.dtype == torch.int64
    assert 0 <= tokens.min() and tokens.max() < 625
    assert torch.allclose(q.decode(tokens), zq, atol=1e-5)
    for r in range(1, 4):
        zr, _ = q(z, layers=r)
        assert torch.allclose(q.decode(tokens[:, :r]), zr, atol=1e-5)


def test_straight_through_gradient_reaches_the_input():
    q = GroupResidualFSQ()
    z = torch.randn(8, 120, requires_grad=True)
    zq, _ = q(z)
    zq.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_decode_rejects_bad_shapes():
    q = GroupResidualFSQ()
    with pytest.raises(ValueError):
        q.decode(torch.zeros(1, 5, 12, dtype=torch.int64))
    with pytest.raises(ValueError):
        q.decode(torch.zeros(1, 2, 11, dtype=torch.int64))


def test_quantize_latent_is_the_forward_pass_with_its_straight_through_gradient():
    """The refinement's lean path gives the latent :meth:`forward` gives, and the same gradient."""
    torch.manual_seed(1)
    q = GroupResidualFSQ(GRFSQConfig())
    z = torch.randn(16, 120) * 0.8
    a, b = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    w = torch.randn(16, 120)
    out_a, out_b = q(a)[0], q.quantize_latent(b)
    torch.testing.assert_close(out_b, out_a)
    (ga,) = torch.autograd.grad((out_a * w).sum(), a)
    (gb,) = torch.autograd.grad((out_b * w).sum(), b)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)
    assert ga.abs().sum() > 0
