"""From jitter-buffer decisions to tick landmarks."""

from __future__ import annotations

import numpy as np

from realtime.jitterbuffer import Entry, Playout, PlayoutKind
from receiver.playout import tick_landmarks

REST = np.zeros((478, 3), np.float32)
A = np.ones((478, 3), np.float32)
B = 3 * np.ones((478, 3), np.float32)


def test_fresh_and_held_show_the_frame() -> None:
    for kind in (PlayoutKind.FRESH, PlayoutKind.HELD):
        lm, face = tick_landmarks(Playout(kind, Entry(0, 0, A)), REST)
        assert face and np.array_equal(lm, A)


def test_interpolation_blends() -> None:
    lm, face = tick_landmarks(Playout(PlayoutKind.INTERPOLATED, Entry(0, 0, A), Entry(2, 80, B), 0.5), REST)
    assert face and np.allclose(lm, 2.0)


def test_no_face_shows_the_portrait_at_rest() -> None:
    lm, face = tick_landmarks(Playout(PlayoutKind.FRESH, Entry(0, 0, None)), REST)
    assert not face and lm is REST
    lm, face = tick_landmarks(Playout(PlayoutKind.EMPTY), REST)
    assert not face and lm is REST


def test_interpolating_into_or_out_of_no_face_takes_the_nearest() -> None:
    lm, face = tick_landmarks(Playout(PlayoutKind.INTERPOLATED, Entry(0, 0, A), Entry(2, 80, None), 0.25), REST)
    assert face and np.array_equal(lm, A)
    lm, face = tick_landmarks(Playout(PlayoutKind.INTERPOLATED, Entry(0, 0, A), Entry(2, 80, None), 0.75), REST)
    assert not face and lm is REST
