"""Keyframe selection (codec.keyframe_select): what qualifies, when it is offered, how pictures are cut."""

from __future__ import annotations

import numpy as np
import pytest

from codec import regions as R
from codec.keyframe_select import (
    KeyframeBudget,
    KeyframeSelector,
    SelectConfig,
    clip_pictures,
    frame_picture,
    mouth_box,
    pick_keyframes,
    teeth_fraction,
)
from codec.motion import load_template, motion_from_landmarks
from codec.picture import PictureKind, decode_picture, parse_picture
from codec.render.mesh import lip_region


def rest_face() -> np.ndarray:
    """``[478, 3]`` the canonical face, eyes 100 px apart, in a 512 px frame."""
    return (load_template().shape * 100 + np.array([256.0, 256.0, 0.0])).astype(np.float64)


def open_mouth(lm: np.ndarray, px: float) -> np.ndarray:
    out = lm.copy()
    lower = R.LIPS_INNER[11:]  # the lower inner lip (and the lower lip below it)
    out[lower, 1] += px
    out[R.LIPS_OUTER[11:], 1] += px
    return out


def close_eyes(lm: np.ndarray) -> np.ndarray:
    out = lm.copy()
    for up, lo in (R.RIGHT_EYE_LIDS, R.LEFT_EYE_LIDS):
        out[up, 1] = out[lo, 1] - 0.5
    return out


def turn(lm: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    c = lm.mean(0)
    return (lm - c) @ rot.T + c


def run(selector: KeyframeSelector, frames: list[np.ndarray | None], start_ms: int = 0) -> list[tuple[int, str]]:
    out = []
    for k, lm in enumerate(frames):
        out += [(c.index, c.kind.label) for c in selector.observe(lm, start_ms + 40 * k)]
    return out


def test_each_kind_qualifies_on_its_own() -> None:
    ref = rest_face()
    sel = KeyframeSelector(ref)
    assert sel.scores(ref) == {}
    assert set(sel.scores(open_mouth(ref, 30))) == {PictureKind.MOUTH}
    assert set(sel.scores(close_eyes(ref))) == {PictureKind.EYES_CLOSED}
    assert set(sel.scores(turn(ref, 25))) == {PictureKind.TURN_LEFT}
    assert set(sel.scores(turn(ref, -25))) == {PictureKind.TURN_RIGHT}
    assert sel.scores(turn(ref, 8)) == {} and sel.scores(open_mouth(ref, 5)) == {}
    # Wider is better.
    assert sel.scores(open_mouth(ref, 40))[PictureKind.MOUTH] > sel.scores(open_mouth(ref, 25))[PictureKind.MOUTH]


def test_a_turn_to_the_image_left_moves_the_nose_left() -> None:
    ref = rest_face()
    left = turn(ref, 25)
    nose = 1  # the nose tip, in front of the face
    assert left[nose, 0] < ref[nose, 0]
    assert PictureKind.TURN_LEFT in KeyframeSelector(ref).scores(left)


def test_the_best_frame_is_offered_after_the_settling_time_then_only_a_clearly_better_one() -> None:
    def turns(sel: KeyframeSelector, frames: list[np.ndarray | None], start_ms: int = 0) -> list[tuple[int, str]]:
        return [pick for pick in run(sel, frames, start_ms) if pick[1] != "mouth"]  # a mouth seen turned: apart

    ref = rest_face()
    cfg = SelectConfig(settle_ms=200.0, better=1.3, per_kind=2)
    sel = KeyframeSelector(ref, cfg)
    frames: list[np.ndarray | None] = [ref, turn(ref, 20), turn(ref, 30), turn(ref, 24), ref, ref, ref, ref]
    assert turns(sel, frames) == [(2, "turn_left")]  # 200 ms after the first turned frame: the farthest one
    # A little farther later is not enough; far farther is; a third is never offered.
    assert turns(sel, [turn(ref, 33)] + [ref] * 8, 1000) == []
    assert turns(sel, [turn(ref, 45)] + [ref] * 8, 2000) == [(17, "turn_left")]
    assert turns(sel, [turn(ref, 70)] + [ref] * 8, 3000) == []


def mouth_picks(sel: KeyframeSelector, frames: list[np.ndarray], start: int = 0) -> list[int]:
    return [i for i, kind in run(sel, frames, 40 * start) if kind == "mouth"]


def test_mouth_pictures_cover_the_shapes_the_caller_makes() -> None:
    ref = rest_face()
    cfg = SelectConfig(mouth_window_ms=400.0, mouths_per_window=4, max_mouths=5, mouth_stride=1)
    sel = KeyframeSelector(ref, cfg)
    # Speech: the mouth opens to 10 and 30 px, again and again, for 2 s (10 frames a window).
    talk = [open_mouth(ref, px) for px in [0, 10, 10, 0, 30, 30, 0, 10, 30, 0] * 5]
    picked = mouth_picks(sel, talk)
    shapes = sorted({[0, 10, 10, 0, 30, 30, 0, 10, 30, 0][i % 10] for i in picked})
    assert shapes == [10, 30]  # one picture of each shape the caller makes, not of the shut mouth it has
    assert len(picked) == 2 and sel.mouths_sent == 2
    # The same shapes again: nothing new to send.
    assert mouth_picks(sel, talk, len(talk)) == []
    # New shapes (a wide yawn, six openings) fill the call's limit of 5 pictures: 3 more, and then no more.
    wide = [open_mouth(ref, px) for px in (45, 60, 75, 90, 105, 120)] * 4
    more = mouth_picks(sel, wide, 2 * len(talk))
    assert len(more) == cfg.max_mouths - 2 and sel.mouths_sent == cfg.max_mouths
    wider = [open_mouth(ref, px) for px in range(130, 400, 10)] * 2
    assert mouth_picks(sel, wider, 4 * len(talk)) == [] and sel.mouths_sent == cfg.max_mouths


def test_a_closed_mouth_like_the_reference_sends_no_mouth_picture() -> None:
    ref = rest_face()
    sel = KeyframeSelector(ref, SelectConfig(settle_ms=200.0))
    assert mouth_picks(sel, [open_mouth(ref, 0.3)] * 40) == []
    assert [c.kind for c in sel.flush()] == []


def test_frames_without_a_face_pass_and_flush_offers_what_is_settling() -> None:
    ref = rest_face()
    sel = KeyframeSelector(ref, SelectConfig(settle_ms=10_000))
    assert run(sel, [None, close_eyes(ref), None]) == []
    assert [(c.index, c.kind.label) for c in sel.flush()] == [(1, "eyes_closed")]
    assert sel.flush() == []


def test_pick_keyframes_matches_the_live_selector() -> None:
    ref = rest_face()
    lms = np.stack([ref] * 5 + [close_eyes(ref)] * 2 + [ref] * 30 + [turn(ref, -30)] * 3 + [ref] * 30)
    valid = np.ones(len(lms), bool)
    valid[2] = False
    picks = pick_keyframes(lms, valid)
    assert picks == [(5, "eyes_closed"), (37, "turn_right")]
    assert pick_keyframes(lms, np.zeros(len(lms), bool)) == []


def test_teeth_are_brighter_than_the_lips_around_them() -> None:
    lm = open_mouth(rest_face(), 30)
    frame = np.full((512, 512, 3), 120, np.uint8)
    inner = np.round(lm[R.LIPS_INNER, :2]).astype(np.int32)
    import cv2

    dark = frame.copy()
    cv2.fillPoly(dark, [inner], (20, 20, 20))
    bright = frame.copy()
    cv2.fillPoly(bright, [inner], (240, 240, 240))
    assert teeth_fraction(dark, lm) < 0.1 < 0.8 < teeth_fraction(bright, lm)
    assert teeth_fraction(frame[:10, :10], lm) == 0.0  # the mouth outside the frame


def test_frame_picture_cuts_in_the_reference_box(sample_frames: list[np.ndarray],
                                                 sample_landmarks: np.ndarray) -> None:
    from codec.render.portrait import crop_box

    box = crop_box(sample_landmarks[0])
    ref = frame_picture(sample_frames[0], sample_landmarks[0], PictureKind.REFERENCE, 0)
    later = frame_picture(sample_frames[20], sample_landmarks[20], PictureKind.EYES_CLOSED, 800, box)
    assert ref.image.shape == later.image.shape == (512, 512, 3)
    # Cut in the reference's box: the frame's landmarks move by that box's offset and scale, not their own.
    k = 512 / (box[2] - box[0])
    expected = (sample_landmarks[20][:, :2] - np.array(box[:2])) * k
    assert np.abs(later.landmarks[:, :2] - expected).max() < 1e-3
    x0, y0, x1, y1 = ref.inside_box
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    # The crop's landmarks describe the same face as the frame's.
    a, b = motion_from_landmarks(ref.landmarks), motion_from_landmarks(sample_landmarks[0])
    assert np.allclose(a.expression, b.expression, atol=1e-4)


def test_a_mouth_picture_is_the_mouth_alone_at_the_reference_scale(sample_frames: list[np.ndarray],
                                                                    sample_landmarks: np.ndarray) -> None:
    from codec.render.portrait import crop_box

    box = crop_box(sample_landmarks[0])
    k = 512 / (box[2] - box[0])
    lm = sample_landmarks[20]
    mouth = frame_picture(sample_frames[20], lm, PictureKind.MOUTH, 800, box)
    x0, y0, x1, y1 = mouth_box(lm)
    assert mouth.image.shape == (mouth.size, mouth.size, 3) and 64 <= mouth.size < 256
    assert abs(mouth.size - (x1 - x0) * k) <= 1
    # The lips and the rings around them lie inside it, at the reference's scale.
    expected = (lm[:, :2] - np.array([x0, y0])) * (mouth.size / (x1 - x0))
    assert np.abs(mouth.landmarks[:, :2] - expected).max() < 1e-3
    region = mouth.landmarks[lip_region(2)[0], :2]
    assert region.min() > 0 and region.max() < mouth.size
    # Its pixels are the frame's there.
    full = frame_picture(sample_frames[20], lm, PictureKind.EYES_CLOSED, 800, box)
    cx, cy = np.round(mouth.landmarks[13, :2]).astype(int)
    fx, fy = np.round(full.landmarks[13, :2]).astype(int)
    a = mouth.image[cy - 5:cy + 5, cx - 5:cx + 5].astype(int)
    b = full.image[fy - 5:fy + 5, fx - 5:fx + 5].astype(int)
    assert np.abs(a - b).mean() < 12
    # A budget keeps room for the other kinds: mouths take at most their share.
    spend = KeyframeBudget(10_000, 0.5)
    assert spend.take(PictureKind.MOUTH, 4_000) and not spend.take(PictureKind.MOUTH, 1_500)
    assert spend.take(PictureKind.EYES_CLOSED, 5_000) and not spend.take(PictureKind.TURN_LEFT, 1_001)
    assert (spend.spent, spend.mouth_spent) == (9_000, 4_000)


def test_clip_pictures_sends_the_reference_first_within_the_budget(sample_clip: object,
                                                                   sample_landmarks: np.ndarray) -> None:
    face = np.ones(len(sample_landmarks), bool)
    records = clip_pictures(sample_clip, sample_landmarks, face, 0)  # type: ignore[arg-type]
    kinds = [parse_picture(r).kind for r in records]
    assert kinds[0] is PictureKind.REFERENCE and PictureKind.REFERENCE not in kinds[1:]
    assert len(records) >= 2  # the sample blinks and opens its mouth in its first second
    ref = decode_picture(records[0])
    assert np.abs(ref.landmarks - frame_picture(np.zeros((512, 512, 3), np.uint8), sample_landmarks[0],
                                                 PictureKind.REFERENCE, 0).landmarks).max() < 0.1
    only = clip_pictures(sample_clip, sample_landmarks, face, 0, budget=1000)  # type: ignore[arg-type]
    assert [parse_picture(r).kind for r in only] == [PictureKind.REFERENCE]
    assert clip_pictures(sample_clip, sample_landmarks, face, 0, keyframes=False) == records[:1]  # type: ignore


@pytest.mark.parametrize("kind", [PictureKind.MOUTH, PictureKind.EYES_CLOSED])
def test_labels_match_the_renderer_keyframe_kinds(kind: PictureKind) -> None:
    assert kind.label in ("mouth", "eyes_closed")
