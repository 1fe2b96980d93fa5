import cv2
import numpy as np
import pytest

from codec.errors import NoFaceError
from codec.face import FaceTracker, FaceTrackerConfig, detect_landmarks
from codec.regions import NUM_LANDMARKS, inter_ocular


def test_tracks_478_landmarks_in_pixels(sample_frames):
    with FaceTracker() as t:
        lm = t.track(sample_frames[0])
    assert lm.shape == (NUM_LANDMARKS, 3) and lm.dtype == np.float32
    h, w = sample_frames[0].shape[:2]
    assert (lm[:, 0] > 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] > 0).all() and (lm[:, 1] < h).all()
    assert inter_ocular(lm) > 50


def test_any_frame_size_scales_the_landmarks(sample_frames):
    f = sample_frames[0]
    small = cv2.resize(f, (300, 420))
    a = detect_landmarks(f)
    b = detect_landmarks(small)
    b_back = b[:, :2] * np.array([512 / 300, 512 / 420])
    assert np.abs(b_back - a[:, :2]).mean() < 6.0


def test_no_face_raises():
    with FaceTracker(FaceTrackerConfig(video=False)) as t:
        with pytest.raises(NoFaceError):
            t.track(np.full((240, 320, 3), 127, np.uint8))
    with pytest.raises(NoFaceError):
        detect_landmarks(np.zeros((64, 64, 3), np.uint8))


def test_rejects_wrong_frame_type():
    with FaceTracker() as t:
        with pytest.raises(ValueError):
            t.track(np.zeros((64, 64), np.uint8))


def test_two_faces_are_reported(sample_frames):
    f = sample_frames[0]
    pair = np.concatenate([f, f], axis=1)
    with pytest.raises(ValueError, match="2 faces"):
        detect_landmarks(pair)
