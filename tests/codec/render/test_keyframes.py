import cv2
import numpy as np
import pytest
import torch

from bench.metrics.features import eye_ssim, mouth_interior_luma
from bench.metrics.pixels import mouth_ssim
from codec.errors import PortraitError
from codec.keyframe_select import clip_frame_picture, pick_keyframes
from codec.media import read_video
from codec.motion import motion_from_landmarks, relative, transfer
from codec.picture import PictureKind
from codec.render.keyframes import MOUTH_POSE_WEIGHT, Keyframe, canonical_mouth, mouth_distance
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.render.warp import MAX_KEYFRAMES, GeometricWarp, WarpConfig, lip_flow


@pytest.fixture(scope="module")
def clip(sample_clip, sample_landmarks):
    """The sample clip's first 110 frames and their landmarks (an open mouth at 100, closed eyes at 7)."""
    frames = np.stack(list(read_video(sample_clip, 110)))
    return frames, sample_landmarks[: len(frames)].astype(np.float32)


@pytest.fixture(scope="module")
def picks(clip):
    """The first pick of each kind; of the mouth pictures (several, of different mouths) the widest open."""
    frames, lm = clip
    chosen = pick_keyframes(lm, np.ones(len(lm), bool), frames)
    out = dict((kind, i) for i, kind in reversed(chosen))
    opening = canonical_mouth(motion_from_landmarks(lm.astype(np.float64)))[:, 0]
    out["mouth"] = max((i for i, kind in chosen if kind == "mouth"), key=lambda i: opening[i])
    return out


def _render(warp: GeometricWarp, target: np.ndarray) -> np.ndarray:
    out = warp(np.asarray(target, np.float32).reshape(-1, 478, 3))
    return (out * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _targets(lm: np.ndarray, idx: list[int]) -> np.ndarray:
    # Self-reenactment from frame 0, as the benchmark renders: the true motion moved onto the portrait.
    delta = relative(motion_from_landmarks(lm[idx].astype(np.float64)), motion_from_landmarks(lm[0].astype(np.float64)))
    return transfer(lm[0].astype(np.float64), delta).astype(np.float32)


def test_the_clip_has_an_open_mouth_and_closed_eyes_to_lend(clip, picks):
    _, lm = clip
    assert {"mouth", "eyes_closed"} <= set(picks)
    st = motion_from_landmarks(lm.astype(np.float64))
    assert canonical_mouth(st)[picks["mouth"], 0] > 0.15
    assert st.blink[picks["eyes_closed"]].mean() < 0.5 * np.median(st.blink.mean(-1))


def test_a_keyframe_is_checked():
    with pytest.raises(ValueError, match="uint8"):
        Keyframe(np.zeros((8, 8, 3), np.float32), np.zeros((478, 3), np.float32))
    with pytest.raises(ValueError, match="478"):
        Keyframe(np.zeros((8, 8, 3), np.uint8), np.zeros((468, 3), np.float32))
    with pytest.raises(PortraitError, match="no face"):
        Keyframe.from_image(np.zeros((64, 64, 3), np.uint8))


def test_a_mouth_keyframe_lends_its_teeth(clip, picks):
    frames, lm = clip
    warp = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    target = _targets(lm, [100])
    truth = mouth_interior_luma(frames[100:101], lm[100:101])[0]
    drawn = mouth_interior_luma(_render(warp, target), target)[0]
    warp.add_keyframe(Keyframe(frames[picks["mouth"]], lm[picks["mouth"]], "mouth"))
    lent = mouth_interior_luma(_render(warp, target), target)[0]
    assert abs(lent - truth) < 15
    assert abs(lent - truth) < abs(drawn - truth)
    # A mouth the keyframe does not cover (shut) still shows the portrait's own lips and interior (the
    # keyframe's patch makes the texture taller: a grid coordinate may round differently in its last bit).
    assert warp.geometry(lm[:1]).lips[0, 0] == 0
    rest = _render(warp, lm[:1])[0].astype(int)
    alone = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    assert np.abs(rest - _render(alone, lm[:1])[0]).max() <= 1


def test_an_open_mouth_takes_the_keyframes_lips(clip, picks):
    frames, lm = clip
    warp = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    i = picks["mouth"]
    target = _targets(lm, [i])
    before = mouth_ssim(_render(warp, target), frames[i:i + 1], lm[i:i + 1])[0]
    warp.add_keyframe(Keyframe(frames[i], lm[i], "mouth"))
    geo = warp.geometry(target)
    assert geo.lips[0, 0] == 1 and geo.lip_weight[0] == 1  # the keyframe's lips alone, laid over the portrait's
    after = mouth_ssim(_render(warp, target), frames[i:i + 1], lm[i:i + 1])[0]
    assert after > before + 0.02
    # Opaque on the lips, fading out to the ring around them, nothing beyond it.
    _, alpha = lip_flow(geo.target[:, warp.lip_region], geo.lip_source, warp.lip_triangles, warp.lip_alpha,
                        warp.size, (0, 0, warp.size, warp.size))
    inner = np.round(target[0, 14, :2] + [0.0, 2.0]).astype(int)  # just below the lower inner lip
    assert alpha[0, inner[1], inner[0]] == pytest.approx(1.0)
    assert alpha[0, :20].max() == 0 and 0 < alpha.mean() < 0.1
    # Switched off (what the browser page draws): the portrait's lips.
    off = GeometricWarp(frames[0], lm[0], torch.device("cpu"), WarpConfig(keyframe_lips=False))
    off.add_keyframe(Keyframe(frames[i], lm[i], "mouth"))
    assert (off.geometry(target).lips == 0).all()


def test_a_closed_eye_keyframe_gives_real_lids(clip, picks):
    frames, lm = clip
    closed = picks["eyes_closed"]
    shown = closed + 1 if motion_from_landmarks(lm[closed + 1].astype(np.float64)).blink.mean() < 0.1 else closed - 1
    target = _targets(lm, [shown])
    warp = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    before = eye_ssim(_render(warp, target), frames[shown:shown + 1], lm[shown:shown + 1])[0]
    warp.add_keyframe(Keyframe(frames[closed], lm[closed], "eyes_closed"))
    after = eye_ssim(_render(warp, target), frames[shown:shown + 1], lm[shown:shown + 1])[0]
    assert after > before + 0.02
    # Open eyes are left alone (to the last bit of a grid coordinate: the keyframe's patches make the texture taller).
    alone = _render(GeometricWarp(frames[0], lm[0], torch.device("cpu")), lm[:1]).astype(int)
    assert np.abs(_render(warp, lm[:1]) - alone).max() <= 1


def test_keyframes_are_capped_and_any_size_works(clip, picks):
    frames, lm = clip
    warp = GeometricWarp(frames[0], lm[0], torch.device("cpu"), WarpConfig(layered=False))
    small = cv2.resize(frames[picks["mouth"]], (256, 256), interpolation=cv2.INTER_AREA)
    for _ in range(MAX_KEYFRAMES + 2):
        warp.add_keyframe(Keyframe(small, lm[picks["mouth"]] * np.float32(0.5), "mouth"))
    assert len(warp.keyframes) == MAX_KEYFRAMES
    out = _render(warp, _targets(lm, [100]))
    assert out.shape == (1, 512, 512, 3)


def test_the_renderer_takes_keyframes_at_another_size(clip, picks):
    frames, lm = clip
    portrait = prepare_portrait(frames[0], size=512, crop=False)
    renderer = Renderer(portrait, RenderConfig(device="cpu", size=256))
    target = _targets(lm, [100])
    plain = renderer.render(target)
    renderer.add_keyframe(Keyframe(frames[picks["mouth"]], lm[picks["mouth"]], "mouth"))
    lent = renderer.render(target)
    half = target * np.float32(0.5)  # the renderer draws at half the portrait's size
    inside = mouth_interior_luma(lent, half)[0]
    assert abs(inside - mouth_interior_luma(frames[100:101], lm[100:101])[0]) < 20
    assert not np.array_equal(plain, lent)


def test_tiny_frames_still_draw_an_interior(clip, picks):
    frames, lm = clip
    small = cv2.resize(frames[0], (64, 64), interpolation=cv2.INTER_AREA)
    warp = GeometricWarp(small, lm[0] * np.float32(0.125), torch.device("cpu"))
    warp.add_keyframe(Keyframe(frames[picks["mouth"]], lm[picks["mouth"]], "mouth"))
    out = _render(warp, _targets(lm, [100]) * np.float32(0.125))
    assert out.shape == (1, 64, 64, 3)


def test_a_mouth_picture_lends_the_mouth_its_frame_would(clip, picks):
    """A picture of the mouth alone (what the sender sends for mouths) lends the lips and interior the whole
    frame would, and nothing else: not the closed eyes of the frame it was cut from."""
    frames, lm = clip
    i, closed = picks["mouth"], picks["eyes_closed"]
    full = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    alone = GeometricWarp(frames[0], lm[0], torch.device("cpu"))
    full.add_keyframe(Keyframe(frames[i], lm[i], "mouth"))
    pic = clip_frame_picture(frames[i], lm[i], PictureKind.MOUTH, 0)
    assert pic.size < 256
    alone.add_keyframe(Keyframe(pic.image, pic.landmarks.astype(np.float32), "mouth"))
    a, b = full.mouth_pictures()[1], alone.mouth_pictures()[1]
    np.testing.assert_allclose(a.shape, b.shape, atol=1e-3)
    np.testing.assert_allclose(a.rotation, b.rotation, atol=1e-3)
    target = _targets(lm, [i])
    ours, theirs = _render(alone, target), _render(full, target)
    assert mouth_ssim(ours, theirs, target)[0] > 0.97
    eyes = clip_frame_picture(frames[closed], lm[closed], PictureKind.MOUTH, 0)
    taken = alone.keyframe_patches(Keyframe(eyes.image, eyes.landmarks.astype(np.float32), "mouth"))
    assert set(taken.patches) == {"mouth"} and not taken.eyes
    assert set(full.keyframe_patches(Keyframe(frames[closed], lm[closed], "eyes_closed")).patches) >= {"eye0", "eye1"}


def test_the_lips_come_from_the_picture_nearest_in_shape_and_pose():
    shape = np.array([[0.1, 0.9]])
    a = np.radians(20.0)
    turned = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pictures = np.array([[0.1, 0.9], [0.1, 0.9], [0.13, 0.9]])
    rotations = np.stack([np.eye(3), turned, turned])
    d = mouth_distance(shape, turned[None], pictures, rotations)[0]
    assert d[1] == pytest.approx(0.0, abs=1e-9)
    assert d[0] == pytest.approx(MOUTH_POSE_WEIGHT * a)  # the same mouth seen from 20 degrees away
    assert d[2] == pytest.approx(0.03)
    assert np.argmin(d) == 1
