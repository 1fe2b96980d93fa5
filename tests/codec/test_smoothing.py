import numpy as np
import pytest

from codec.api import EncoderConfig, decode_stream, encode_landmarks
from codec.regions import inter_ocular
from codec.smoothing import LIMITS, smooth_frame, smooth_landmarks, smoothing_limit


def _jitter(lm: np.ndarray) -> float:
    return float(np.linalg.norm((lm[2:] - 2 * lm[1:-1] + lm[:-2])[..., :2], axis=-1).mean())


def _nme(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.linalg.norm(a[..., :2] - b[..., :2], axis=-1).mean(-1) / inter_ocular(b)).mean())


def test_limits_grow_as_layers_are_dropped() -> None:
    assert [smoothing_limit(r) for r in (1, 2, 3, 4)] == list(LIMITS)
    assert all(a >= b for a, b in zip(LIMITS, LIMITS[1:]))
    assert smoothing_limit(0) == LIMITS[0] and smoothing_limit(9) == LIMITS[-1]


def test_small_noise_is_smoothed_and_landmarks_move_at_most_the_limit(sample_landmarks: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    truth = sample_landmarks.astype(np.float32)
    iod = float(inter_ocular(truth).mean())
    noisy = truth + rng.normal(0, 0.002 * iod, truth.shape).astype(np.float32)
    out = smooth_landmarks(noisy, 4)
    assert _jitter(out) < 0.7 * _jitter(noisy)
    moved = np.abs(out - noisy).max(axis=(1, 2)) / inter_ocular(noisy)
    assert moved.max() <= LIMITS[3] + 1e-6
    assert np.array_equal(out[[0, -1]], noisy[[0, -1]])  # no neighbour on one side: as decoded


def test_large_motion_passes_nearly_untouched() -> None:
    # A face (two eye corners 100 px apart) sweeping 20 px a frame: the mean of the neighbours is itself.
    lm = np.zeros((10, 478, 3), np.float32)
    lm[:, 263, 0] = 100
    lm[:, :, 0] += 20 * np.arange(10)[:, None] ** 2  # accelerating: the mean differs, the bound holds it
    out = smooth_landmarks(lm, 4)
    assert np.abs(out - lm).max() <= LIMITS[3] * 100 + 1e-4


def test_frames_next_to_no_face_are_left_as_decoded(sample_landmarks: np.ndarray) -> None:
    lm = (sample_landmarks[:6] + 0.5 * (np.arange(6) % 2)[:, None, None]).astype(np.float32)
    face = np.array([True, True, True, False, True, True])
    out = smooth_landmarks(lm, 4, face)
    assert not np.array_equal(out[1], lm[1])
    assert all(np.array_equal(out[i], lm[i]) for i in (0, 2, 3, 4, 5))


def test_the_receiver_frame_by_frame_matches_the_whole_clip(sample_landmarks: np.ndarray) -> None:
    lm = sample_landmarks[:12].astype(np.float32)
    lm = (lm + 0.7 * (np.arange(12) % 2)[:, None, None]).astype(np.float32)
    whole = smooth_landmarks(lm, 3)
    one = [smooth_frame(lm[t - 1] if t else None, lm[t], lm[t + 1] if t + 1 < 12 else None, 3) for t in range(12)]
    assert np.allclose(np.stack(one), whole, atol=1e-5)


def test_smoothed_decoding_is_steadier_and_no_less_accurate(sample_landmarks: np.ndarray) -> None:
    face = np.ones(len(sample_landmarks), bool)
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    raw = decode_stream(s.header, s.packets, sample_landmarks[0])
    smooth = decode_stream(s.header, s.packets, sample_landmarks[0], smooth=True)
    assert _jitter(smooth) < 0.85 * _jitter(raw)
    assert _nme(smooth, sample_landmarks) <= _nme(raw, sample_landmarks) * 1.01
    assert np.array_equal(raw, decode_stream(s.header, s.packets, sample_landmarks[0], smooth=False))


@pytest.mark.parametrize("layers", [1, 2])
def test_fewer_layers_are_smoothed_more(sample_landmarks: np.ndarray, layers: int) -> None:
    face = np.ones(len(sample_landmarks), bool)
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    raw = decode_stream(s.header, s.packets, sample_landmarks[0], layers=layers)
    smooth = decode_stream(s.header, s.packets, sample_landmarks[0], layers=layers, smooth=True)
    moved = np.abs(smooth - raw).max(axis=(1, 2)) / inter_ocular(raw)
    assert moved.max() <= LIMITS[layers - 1] + 1e-6 and moved.max() > LIMITS[3]
