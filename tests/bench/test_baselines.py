import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.baselines import (
    TOLERANCE,
    BaselineSearch,
    Setting,
    decode,
    encode,
    lowest_fitting_crf,
    prepare,
    sample_frames,
)
from bench.metrics.reference import Reference


def _clip(t: int = 30, size: int = 256) -> np.ndarray:
    """A generated clip: a textured disc sliding over a gradient, ``[t, size, size, 3]``."""
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    frames = np.empty((t, size, size, 3), np.uint8)
    for i in range(t):
        bg = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 128)], -1)
        cx, cy = size / 3 + i * 2, size / 2 + 20 * np.sin(i / 5)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size / 5) ** 2
        frames[i] = np.where(disc[..., None], np.roll(tex, i * 3, axis=1), bg)
    return frames


def test_encode_decode_round_trip_keeps_size_rate_and_quality():
    frames = _clip(20)
    enc, dec = encode(frames, Setting("h264", 128, 2, 20))
    assert dec.shape == frames.shape and dec.dtype == np.uint8
    assert enc.kbps > 0 and len(enc.packets) > 0
    # 12.5 fps repeats each decoded frame twice.
    assert np.array_equal(dec[0], dec[1]) and not np.array_equal(dec[1], dec[2])
    assert np.abs(dec.astype(int) - frames).mean() < 25
    sub, _ = decode(enc, frames.shape[:3], np.array([3, 4]))
    assert np.array_equal(sub, dec[[3, 4]])


def test_vp8_round_trip():
    frames = _clip(12, 128)
    enc, dec = encode(frames, Setting("vp8", 128, 1, 200_000))
    assert dec.shape == frames.shape
    assert np.abs(dec.astype(int) - frames).mean() < 25


def test_prepare_makes_yuv420_planes():
    src = prepare(_clip(5, 64), 64, 2)
    assert len(src) == 3 and src[0].shape == (96, 64)


def test_setting_names_the_rung():
    assert Setting("h264", 96, 2, 51).describe() == "h264 crf=51 96px 12.5fps"
    assert Setting("vp8", 512, 1, 9000).describe() == "vp8 b=9000 512px 25fps"


def test_sample_step_is_odd_so_repeated_frames_are_scored():
    idx = sample_frames(100, 25)
    assert (idx % 2 == 1).any() and (idx % 2 == 0).any()


@settings(max_examples=60, deadline=None)
@given(scale=st.floats(0.5, 2.0), base=st.floats(1.0, 50.0), target=st.floats(0.5, 5000.0),
       wobble=st.floats(0.0, 0.04))
def test_crf_search_finds_the_lowest_fitting_crf(scale, base, target, wobble):
    def kbps(c: int) -> float:
        return base * 2 ** ((51 - c) / (6 * scale)) * (1 + wobble * ((c * 7) % 3 - 1) / 10)

    # Keep the curve monotone so a brute-force answer exists.
    curve = np.minimum.accumulate(np.array([kbps(c) for c in range(52)]))
    calls = []

    def probe(c: int) -> float:
        calls.append(c)
        return float(curve[c])

    got = lowest_fitting_crf(probe, target)
    fits = [c for c in range(52) if curve[c] <= target * (1 + TOLERANCE)]
    assert got == (min(fits) if fits else None)
    assert len(calls) <= 12


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_search_meets_the_target_or_goes_down_the_ladder(codec):
    frames = _clip(30, 256)
    ref = Reference.of(frames)  # no face: candidates are ranked by SSIM alone
    search = BaselineSearch(ref, sample=sample_frames(30, 6))
    # Far below what 256 px at 25 fps needs: the search must drop size or rate.
    low = search.best(codec, 8.0)
    assert low is not None
    assert low.kbps <= 8.0 * (1 + TOLERANCE)
    assert low.setting.size < 256 or low.setting.fps_div == 2
    assert re.fullmatch(rf"{codec} (crf|b)=\d+ \d+px (25|12\.5)fps", low.setting.describe())
    high = search.best(codec, 400.0)
    assert high is not None and high.kbps <= 400.0 * (1 + TOLERANCE)
    assert high.ssim >= low.ssim
    dec, _ = search.decoded(low)
    assert dec.shape == frames.shape


def test_search_reports_unreachable_targets():
    search = BaselineSearch(Reference.of(_clip(10, 128)), sample=np.arange(0, 10, 3))
    assert search.best("h264", 0.01) is None
    with pytest.raises(ValueError):
        search.best("mpeg2", 10)
