import numpy as np
import pytest

from codec import regions as R
from codec.motion import MotionDelta, motion_from_landmarks, relative, transfer
from codec.tokenizer import load_tokenizer
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
