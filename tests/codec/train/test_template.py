import numpy as np

from codec import regions as R
from codec.motion import _rotation_matrix, load_template
from codec.train.template import NUM_STABLE, build_template


def test_template_is_canonical_and_undoes_pose(sample_landmarks):
    rng = np.random.default_rng(0)
    frames = []
    for lm in sample_landmarks[::5]:
        rot = _rotation_matrix(rng.normal(0, 0.2, 3))
        frames.append(rng.uniform(0.5, 2) * (lm - lm.mean(0)) @ rot.T + rng.uniform(-100, 100, 3))
    tpl = build_template(np.stack(frames), iterations=3)
    iod = np.linalg.norm(tpl.shape[R.LEFT_EYE_CORNERS[0], :2] - tpl.shape[R.RIGHT_EYE_CORNERS[0], :2])
    assert abs(iod - 1) < 1e-6
    eyes = tpl.shape[R.LEFT_EYE_CORNERS[0]] - tpl.shape[R.RIGHT_EYE_CORNERS[0]]
    assert abs(eyes[1]) < 1e-6 and abs(eyes[2]) < 1e-6  # eye line along +x
    assert tpl.shape[152, 1] > tpl.shape[10, 1]          # chin below forehead: y points down
    assert len(tpl.stable) == NUM_STABLE
    assert not set(tpl.stable) & set(R.LIPS) and not set(tpl.stable) & set(R.EYES)
    # Random poses were removed: the template matches the unposed mean shape closely.
    ref = build_template(sample_landmarks[::5], iterations=3)
    assert np.abs(tpl.shape - ref.shape).max() < 0.02


def test_shipped_template_loads():
    tpl = load_template()
    assert tpl.shape.shape == (478, 3) and len(tpl.stable) == NUM_STABLE
