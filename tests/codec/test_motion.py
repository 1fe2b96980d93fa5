import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import regions as R
from codec.motion import (
    DELTA_DIM,
    MotionDelta,
    _rotation_matrix,
    apply_delta,
    landmarks_from_motion,
    load_template,
    motion_from_landmarks,
    relative,
    similarity_fit,
    transfer,
)


@given(st.lists(st.floats(-0.6, 0.6), min_size=3, max_size=3), st.floats(0.2, 400),
       st.lists(st.floats(-500, 500), min_size=3, max_size=3))
@settings(max_examples=50, deadline=None)
def test_similarity_fit_recovers_a_known_transform(aa, scale, t):
    src = load_template().shape
    rot = _rotation_matrix(np.array(aa))
    dst = scale * src @ rot.T + np.array(t)
    r2, t2, s2 = similarity_fit(src, dst)
    assert np.allclose(r2, rot, atol=1e-6)
    assert s2 == pytest.approx(scale, rel=1e-6)
    assert np.allclose(t2, t, atol=1e-4 * max(1, scale))


def test_state_round_trips_to_landmarks(sample_landmarks):
    st_ = motion_from_landmarks(sample_landmarks[:10])
    assert np.allclose(landmarks_from_motion(st_), sample_landmarks[:10], atol=1e-6)


def test_delta_vector_round_trip(sample_landmarks):
    d = relative(motion_from_landmarks(sample_landmarks), motion_from_landmarks(sample_landmarks[0]))
    v = d.to_vector()
    assert v.shape == (len(sample_landmarks), DELTA_DIM)
    assert np.allclose(MotionDelta.from_vector(v).to_vector(), v)
    assert np.abs(v[0]).max() < 1e-5  # the reference relative to itself


def test_self_transfer_reproduces_the_frames(sample_landmarks):
    ref = sample_landmarks[0]
    d = relative(motion_from_landmarks(sample_landmarks), motion_from_landmarks(ref))
    assert np.allclose(transfer(ref, d), sample_landmarks, atol=1e-3)


def test_rigid_motion_transfers_to_another_face(sample_landmarks):
    ref = sample_landmarks[0]
    centre = ref.mean(0)
    rot = _rotation_matrix(np.array([0.0, 0.3, 0.0]))
    moved = (ref - centre) @ rot.T + centre + np.array([20.0, 0, 0])
    delta = relative(motion_from_landmarks(moved[None]), motion_from_landmarks(ref))
    assert np.linalg.norm(delta.rotation[0]) == pytest.approx(0.3, abs=1e-3)
    assert np.abs(delta.expression).max() < 1e-6
    # Another face, half the size, elsewhere: it turns by the same angle, moves by half as much.
    other = (sample_landmarks[60] - centre) * 0.5 + np.array([100.0, 80.0, 0.0])
    out = transfer(other, delta)[0]
    r_out, _, s_out = similarity_fit(other, out)
    assert np.linalg.norm(r_out - rot) < 1e-2
    assert s_out == pytest.approx(1.0, abs=1e-3)


def test_blink_and_gaze_measures_respond(sample_landmarks):
    lm = sample_landmarks[0].copy()
    base = motion_from_landmarks(lm)
    closed = lm.copy()
    for up, lo in (R.RIGHT_EYE_LIDS, R.LEFT_EYE_LIDS):
        closed[up] = closed[lo]
    assert (motion_from_landmarks(closed).blink < base.blink - 0.1).all()
    looking = lm.copy()
    iod = R.inter_ocular(lm)
    looking[468:478, 0] += 0.05 * iod
    g = motion_from_landmarks(looking).gaze - base.gaze
    assert g[0] > 0.05 and g[2] > 0.05  # both irises move right in the image


def test_blink_never_goes_negative_in_transfer(sample_landmarks):
    portrait = motion_from_landmarks(sample_landmarks[0])
    d = MotionDelta.zero()
    d.blink[:] = -5.0
    assert (apply_delta(portrait, d).blink >= 0).all()
