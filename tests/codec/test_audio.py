"""Ogg Opus speech audio."""

from __future__ import annotations

import numpy as np
import pytest

from codec.audio import OPUS_RATE, decode_opus, encode_opus
from codec.errors import MediaError


def speechlike(seconds: float, rate: int) -> np.ndarray:
    """A 150 Hz voiced buzz with a 4 Hz syllable envelope."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    return (0.2 * tone * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_round_trip_keeps_length_and_waveform(rate):
    x = speechlike(3.0, rate)
    blob = encode_opus(x, rate)
    assert blob[:4] == b"OggS"
    assert len(blob) * 8 / 3.0 < 40_000  # about 24 kbps plus Ogg headers
    y, out_rate = decode_opus(blob)
    assert out_rate == OPUS_RATE and y.dtype == np.float32
    assert abs(len(y) - 3.0 * OPUS_RATE) < 0.03 * OPUS_RATE
    ref = np.interp(np.arange(len(y)) / OPUS_RATE, np.arange(len(x)) / rate, x)
    # Opus delays by a few ms after pre-skip; compare the best aligned lag.
    best = max(np.corrcoef(ref[1000:-1000], np.roll(y, -lag)[1000:-1000])[0, 1] for lag in range(0, 400, 8))
    assert best > 0.9


@pytest.mark.parametrize("samples,rate,message", [
    (np.zeros(0, np.float32), 16000, "no audio"),
    (np.zeros((2, 100), np.float32), 16000, "1-d"),
    (np.zeros(100, np.int16), 16000, "float"),
    (np.full(100, np.nan, np.float32), 16000, "NaN"),
    (np.zeros(100, np.float32), 0, "rate"),
])
def test_bad_input_is_a_media_error(samples, rate, message):
    with pytest.raises(MediaError, match=message):
        encode_opus(samples, rate)


@pytest.mark.parametrize("blob", [b"", b"OggS" + b"\x00" * 60, b"garbage" * 50, bytes(range(256)) * 4])
def test_garbage_blob_is_a_media_error(blob):
    with pytest.raises(MediaError):
        decode_opus(blob)


def test_truncated_and_corrupt_blobs_decode_or_raise_media_error():
    blob = encode_opus(speechlike(1.0, 16000), 16000)
    rng = np.random.default_rng(0)
    corrupt = bytearray(blob)
    for i in rng.choice(len(blob), 20, replace=False):
        corrupt[i] ^= 0xFF
    for b in (blob[: len(blob) // 2], blob[:80], bytes(corrupt)):
        try:
            y, _ = decode_opus(b)
        except MediaError:
            continue
        assert np.isfinite(y).all()


def test_call_speech_settings_are_checked() -> None:
    from codec.audio import check_speech_settings

    check_speech_settings(6, 60)
    check_speech_settings(32, 20)
    with pytest.raises(ValueError, match="audio-kbps must be in 6..32"):
        check_speech_settings(5.9, 20)
    with pytest.raises(ValueError, match="audio-ms must be one of 20, 40, 60"):
        check_speech_settings(12, 30)
