import numpy as np
import pytest
import torch

from codec import regions as R
from codec.api import EncoderConfig
from codec.motion import MotionDelta, motion_from_landmarks, relative, transfer
from codec.tokenizer import MotionLoss, delta_landmarks, load_tokenizer
from codec.train.tokenizer import TrainConfig, train_tokenizer


def _nme(pred, true):
    return float((np.linalg.norm(pred[..., :2] - true[..., :2], axis=-1) / R.inter_ocular(true)[..., None]).mean())


@pytest.fixture(scope="module")
def sample_delta(sample_landmarks):
    return relative(motion_from_landmarks(sample_landmarks), motion_from_landmarks(sample_landmarks[0]))


def test_shipped_tokenizer_shapes(sample_delta):
    tok = load_tokenizer()
    tokens = tok.encode(sample_delta.to_vector())
    assert tokens.shape == (len(sample_delta.rotation), 4, 12)
    assert tokens.min() >= 0 and tokens.max() < 625
    for r in range(1, 5):
        assert tok.decode(tokens[:, :r]).shape == sample_delta.to_vector().shape


def test_decode_rejects_out_of_range_tokens():
    tok = load_tokenizer()
    with pytest.raises(ValueError):
        tok.decode(np.full((1, 4, 12), 625))


def test_fidelity_on_a_held_out_face(sample_landmarks, sample_delta):
    """The sample's identity is held out of training: 4 layers beat 25% of the still baseline."""
    tok = load_tokenizer()
    tokens = tok.encode(sample_delta.to_vector())
    lm = sample_landmarks
    still = _nme(np.broadcast_to(lm[0], lm.shape), lm)
    errs = [_nme(transfer(lm[0], MotionDelta.from_vector(tok.decode(tokens[:, :r]))), lm) for r in range(1, 5)]
    assert errs[3] < 0.25 * still
    assert errs[0] > errs[3]  # finer layers add detail
    pred = transfer(lm[0], MotionDelta.from_vector(tok.decode(tokens)))
    assert np.corrcoef(R.mouth_opening(pred), R.mouth_opening(lm))[0, 1] > 0.9


def test_training_reduces_the_loss(sample_clip, capsys):
    model = train_tokenizer(TrainConfig(steps=40, batch=64, refs_per_clip=2, threads=1), clips=[sample_clip],
                            log_every=39)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step")]
    first, last = (float(ln.split("rms")[1].split()[0]) for ln in (lines[0], lines[-1]))
    assert last < first
    assert not model.training


def _lip_error(tok, tokens, delta, reference):
    """Mean distance (reference face sizes) of the decoded lips from the true ones, per frame."""
    loss = MotionLoss()
    n = len(delta)
    rot = torch.as_tensor(reference.rotation, dtype=torch.float32).expand(n, 3, 3)
    exp = torch.as_tensor(reference.expression, dtype=torch.float32).expand(n, 478, 3)
    true = delta_landmarks(torch.as_tensor(delta, dtype=torch.float32), rot, exp, loss.template)
    got = delta_landmarks(torch.as_tensor(tok.decode(tokens)), rot, exp, loss.template)
    return (got - true)[:, R.LIPS].norm(dim=-1).mean(1).numpy()


def test_refined_tokens_decode_nearer_the_truth(sample_landmarks):
    """Refining each frame's latent against the decoder brings the decoded lips nearer (on the held-out
    sample face), never makes a frame's loss worse, and every prefix of layers still decodes."""
    tok = load_tokenizer()
    ref = motion_from_landmarks(sample_landmarks[0])
    delta = relative(motion_from_landmarks(sample_landmarks[:60]), ref).to_vector()
    plain, refined = tok.encode(delta), tok.refine(delta, ref, 10)
    assert refined.shape == plain.shape and (refined != plain).any()
    before, after = _lip_error(tok, plain, delta, ref), _lip_error(tok, refined, delta, ref)
    assert after.mean() < 0.9 * before.mean()

    loss = MotionLoss()
    x = torch.as_tensor(delta, dtype=torch.float32)
    rot = torch.as_tensor(ref.rotation, dtype=torch.float32).expand(len(x), 3, 3)
    exp = torch.as_tensor(ref.expression, dtype=torch.float32).expand(len(x), 478, 3)
    per_frame = [sum(loss(torch.as_tensor(tok.decode(t)), x, rot, exp)).numpy() for t in (plain, refined)]
    assert (per_frame[1] <= per_frame[0] * (1 + 1e-4)).all()
    # Coarse layers alone still decode near the truth (the refinement tunes the fine ones).
    one = _lip_error(tok, refined[:, :1], delta, ref).mean()
    assert one < 1.5 * _lip_error(tok, plain[:, :1], delta, ref).mean()


def test_refining_a_frame_does_not_depend_on_its_batch(sample_landmarks):
    tok = load_tokenizer()
    ref = motion_from_landmarks(sample_landmarks[0])
    delta = relative(motion_from_landmarks(sample_landmarks[:12]), ref).to_vector()
    together = tok.refine(delta, ref, 5)
    alone = np.concatenate([tok.refine(delta[i:i + 1], ref, 5) for i in range(len(delta))])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(tok.refine(delta, ref, 0), tok.encode(delta))


def test_encoder_config_refuses_a_bad_refinement():
    with pytest.raises(ValueError, match="refine_steps"):
        EncoderConfig(refine_steps=-1)


def test_a_spent_budget_leaves_the_encoders_tokens(sample_landmarks):
    """A live sender bounds the refinement's time: with none left, a frame keeps the encoder's tokens."""
    tok = load_tokenizer()
    ref = motion_from_landmarks(sample_landmarks[0])
    delta = relative(motion_from_landmarks(sample_landmarks[:8]), ref).to_vector()
    np.testing.assert_array_equal(tok.refine(delta, ref, 10, budget_s=0.0), tok.encode(delta))


def test_the_losss_rotation_is_the_decoders():
    """The loss turns a delta's axis-angle into a rotation as codec.motion applies it at the receiver."""
    from codec.motion import _rotation_matrix
    from codec.tokenizer import rodrigues

    aa = np.concatenate([np.random.default_rng(0).normal(0, 0.6, (50, 3)), np.zeros((1, 3))])
    np.testing.assert_allclose(rodrigues(torch.as_tensor(aa, dtype=torch.float32)).numpy(),
                               _rotation_matrix(aa), atol=1e-6)
