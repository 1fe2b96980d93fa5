import numpy as np

from bench.measure.speech_ceiling import ClipSpeech, choose_ridge, fit_ridge, pooled_corr, score, stack_context
from codec.motion import DELTA_DIM, NUM_LANDMARKS, MotionDelta, load_template, lower_face, transfer
from codec.regions import LIPS, mouth_opening
from codec.train.corpus import speaker, speaker_folds


def test_stack_context_puts_neighbours_side_by_side() -> None:
    x = np.arange(5, dtype=float)[:, None]
    c = stack_context(x, past=2, future=1)
    assert c.shape == (5, 4)
    assert c[2].tolist() == [0, 1, 2, 3]
    assert c[0].tolist() == [0, 0, 0, 1]  # edges repeated, never wrapped
    assert c[4].tolist() == [2, 3, 4, 4]


def test_ridge_recovers_a_linear_map_and_leave_one_out_prefers_light_weights_on_clean_data() -> None:
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(6, 3))
    xs = [rng.normal(size=(200, 6)) for _ in range(4)]
    ys = [x @ w_true + 2.0 for x in xs]
    lam = choose_ridge(xs, ys)
    assert lam == 10.0
    w, mx, my = fit_ridge(np.concatenate(xs), np.concatenate(ys), lam)
    x = rng.normal(size=(50, 6))
    np.testing.assert_allclose((x - mx) @ w + my, x @ w_true + 2.0, rtol=0.03, atol=0.05)
    # Targets unrelated to many features: fitting them only hurts the left-out clip.
    wide = [rng.normal(size=(50, 60)) for _ in range(4)]
    assert choose_ridge(wide, [rng.normal(size=(50, 3)) for _ in wide]) >= 1e4


def test_pooled_corr_removes_each_clips_mean() -> None:
    t = np.linspace(0, 6, 100)
    a, b = np.sin(t), np.cos(3 * t)
    # Without it the offsets alone would make the pooled series anti-correlated.
    assert pooled_corr([a, b + 10], [a + 5, b]) > 0.99
    assert abs(pooled_corr([a, b], [b[::-1], a[::-1]])) < 0.5


def _clip(rng: np.random.Generator, t: int = 80) -> ClipSpeech:
    """Synthetic lips: the jaw's landmarks move down by a random amount per frame; silent where they do not."""
    rest = load_template().shape * 100.0
    mask = lower_face()
    lower = np.zeros((t, mask.sum(), 3), np.float32)
    amount = rng.uniform(0.06, 0.2, t).astype(np.float32)
    amount[:20] = 0.0
    jaw = rest[mask][:, 1] > rest[14, 1] - 1e-6  # lower lip and below
    lower[:, jaw, 1] = amount[:, None]
    delta = MotionDelta.from_vector(np.zeros((t, DELTA_DIM), np.float32))
    expr = np.zeros((t, NUM_LANDMARKS, 3), np.float32)
    expr[:, mask] = lower
    delta.expression = expr
    silent = np.zeros(t, bool)
    silent[:20] = True
    return ClipSpeech("synthetic", np.zeros((t, 1)), np.zeros((t, 1)), lower, rest,
                      mouth_opening(transfer(rest, delta)), silent, (~silent).astype(np.float32))


def test_score_of_the_truth_the_rest_pose_and_a_wrong_guess() -> None:
    rng = np.random.default_rng(1)
    clips = [_clip(rng), _clip(rng)]
    truth = score(clips, [c.lower for c in clips])
    assert truth["opening_corr"] > 0.999
    assert truth["lip_error_reduction"] == 1.0
    assert truth["silent_closed"] == 1.0
    rest = score(clips, [np.zeros_like(c.lower) for c in clips])
    assert rest["lip_error_reduction"] == 0.0 and np.isnan(rest["opening_corr"])
    shuffled = score(clips, [c.lower[rng.permutation(len(c.lower))] for c in clips])
    assert shuffled["opening_corr"] < 0.5 and shuffled["lip_error_reduction"] < truth["lip_error_reduction"]
    assert shuffled["silent_closed"] < 0.5  # frames from speech land on silence
    assert set(LIPS) <= set(np.flatnonzero(lower_face()))


def test_speaker_folds_keep_each_speaker_whole_and_cover_every_clip() -> None:
    clips = ["clips/grid_s1_a.mp4", "clips/grid_s1_b.mp4", "clips/edtalk_obama.mp4", "clips/f2f_obama_address.mp4",
             "clips/x.mp4", "clips/y.mp4", "clips/z.mp4"]
    speakers = [speaker(c) for c in clips]
    assert speakers[0] == speakers[1] and speakers[2] == speakers[3] and len(set(speakers)) == 5
    folds = speaker_folds(speakers, 3)
    assert len(folds) == 3
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(clips)))
    for f in folds:
        inside = {speakers[i] for i in f}
        assert all(speakers[j] not in inside for g in folds if g is not f for j in g)


def test_ridge_weight_chosen_across_speakers_not_within_one() -> None:
    rng = np.random.default_rng(0)
    # Each speaker's clips share a voice (features) and a mouth offset (target) that have nothing to do with
    # each other: within a speaker the features "predict" the offset, across speakers they do not. Folds that
    # keep a speaker whole see that and weigh heavily; leave-one-clip-out is fooled into a light weight.
    xs, ys, groups = [], [], []
    for s in range(6):
        voice, offset = rng.normal(size=(1, 30)), rng.normal()
        for _ in range(3):
            xs.append(voice + 0.05 * rng.normal(size=(40, 30)))
            ys.append(np.full((40, 1), offset))
            groups.append(str(s))
    assert choose_ridge(xs, ys) == 10.0
    assert choose_ridge(xs, ys, groups=groups) >= 1e5
