"""Head turns from keyframes (codec.render.turns): which picture a pose takes, and what the warp does with it."""

from __future__ import annotations

import numpy as np
import torch

from codec import regions as R
from codec.render import turns
from codec.render.keyframes import Keyframe
from codec.render.mesh import lip_region
from codec.render.portrait import Portrait
from codec.render.warp import LIP_RINGS, GeometricWarp


def turned(landmarks: np.ndarray, degrees: float, pitch: float = 0.0) -> np.ndarray:
    """Landmarks ``[478, 3]`` with the head turned about the vertical axis through the face's centre (positive:
    the nose towards the image's left, as :func:`codec.render.turns.yaws` counts), then nodded by ``pitch``."""
    lm = np.asarray(landmarks, np.float64)
    c = lm[R.FACE_OVAL].mean(0)
    a, b = np.radians(degrees), np.radians(pitch)
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    nod = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return ((lm - c) @ (nod @ yaw).T + c).astype(np.float32)


def _u8(frames: torch.Tensor) -> np.ndarray:
    return (frames * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def face_not_mouth(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` bool: well inside the face oval, and not within 3 pixels of the lip region (the lips and
    the skin around them, which a keyframe nearest in mouth shape lends: :func:`codec.render.mesh.lip_region`)."""
    inside = turns.face_mask(landmarks, size) > 0.99
    region = landmarks[lip_region(LIP_RINGS)[0], :2]
    x0, y0 = np.floor(region.min(0)).astype(int) - 3
    x1, y1 = np.ceil(region.max(0)).astype(int) + 3
    inside[max(y0, 0):y1, max(x0, 0):x1] = False
    return inside


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal frames but for rounding (a keyframe's patches lay the texture out anew)."""
    return int(np.abs(_u8(a).astype(int) - _u8(b)).max()) <= 1


def tinted_turn(warp: GeometricWarp, degrees: float, tint: float) -> Keyframe:
    """A keyframe of the portrait's head turned (rendered by the warp itself), its face tinted green inside
    the face oval, so that where a render takes its face from it shows (not the mouth: a mouth keyframe's
    interior may be lent to any mouth open as wide)."""
    lm = turned(warp.landmarks, degrees)
    image = _u8(warp(lm[None]))[0].astype(np.float32)
    image[face_not_mouth(lm, warp.size), 1] += tint
    return Keyframe(np.clip(image, 0, 255).astype(np.uint8), lm, "turn_left")


def test_weights_take_the_nearest_picture_smoothly() -> None:
    pics = np.array([20.0, -15.0, 40.0, np.nan])
    yaw = np.linspace(-30, 60, 901)
    w = turns.turn_weights(yaw, pics)
    assert w.shape == (901, 4) and (w >= 0).all() and (w.sum(1) <= 1 + 1e-12).all()
    assert ((w > 0).sum(1) <= 2).all() and (w[:, 3] == 0).all()
    # Each side takes only its own pictures; near the portrait, the portrait alone.
    assert (w[yaw < 0][:, [0, 2]] == 0).all() and (w[yaw > 0][:, 1] == 0).all()
    near = np.abs(yaw) <= 0.3 * 15
    assert (w[near] == 0).all()
    # At a picture's own pose, past the farthest, and nearer a picture than the blend band: that picture alone.
    for t, k in ((20.0, 0), (-15.0, 1), (40.0, 2), (60.0, 2), (-30.0, 1), (17.0, 0), (37.0, 2)):
        np.testing.assert_allclose(turns.turn_weights(np.array([t]), pics)[0, k], 1.0)
    # Continuous: 0.1 degree never moves a weight by more than a smoothstep's steepest slope allows (or from
    # nothing to the least weight rendered).
    steepest = 1.5 / (turns.BLEND[1] - turns.BLEND[0]) / 15 * 0.1
    assert np.abs(np.diff(w, axis=0)).max() <= max(steepest, turns.MIN_WEIGHT + steepest) + 1e-9
    assert np.abs(np.diff(w, axis=0)).max() > 0.5 * steepest  # and it does move
    assert (turns.turn_weights(np.array([0.0, 30.0]), np.zeros(0)) == 0).all()
    # A picture tilted otherwise (pitch, roll) than the target gives way to the portrait, smoothly.
    tilt = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    gap = np.linspace(0, 20, 201)
    g = turns.turn_weights(np.full(201, 20.0), pics, np.stack([gap, np.zeros(201)], 1), tilt)[:, 0]
    assert g[gap <= turns.TILT_FREE].min() == 1 and g[gap >= turns.TILT_FREE + turns.TILT_SPAN].max() == 0
    assert (np.diff(g) <= 0).all() and np.abs(np.diff(g)).max() < 0.1 and g[g > 0].min() >= turns.MIN_WEIGHT


def test_only_turned_keyframes_with_open_eyes_serve() -> None:
    open_, half = np.array([0.3, 0.3]), np.array([0.3, 0.15])
    assert turns.is_turn_picture(-12.0, open_, open_)
    assert not turns.is_turn_picture(turns.MIN_TURN_DEG / 2, open_, open_)
    assert not turns.is_turn_picture(20.0, half, open_)


def test_a_turned_target_takes_its_face_from_the_turn_keyframe(portrait: Portrait) -> None:
    plain = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    tint = 60.0
    warp.add_keyframe(tinted_turn(plain, 20.0, tint))
    assert [round(t.yaw) for t, _ in warp.turn_pictures()] == [20]
    # Frontal: as without the keyframe (to the rounding of a texture laid out anew).
    front = portrait.landmarks[None].astype(np.float32)
    assert _same(warp(front), plain(front))
    # Turned as the keyframe: its face (tinted), hair and background the portrait's.
    target = turned(portrait.landmarks, 20.0)[None]
    a, b = _u8(warp(target))[0].astype(int), _u8(plain(target))[0].astype(int)
    face = face_not_mouth(target[0], warp.size)
    assert (a - b)[face][:, 1].mean() > 0.6 * tint
    assert np.abs(a - b)[face][:, [0, 2]].mean() < 6  # the same face otherwise: a render of this very portrait
    far = np.ones(face.shape, bool)
    x0, y0 = np.floor(target[0, R.FACE_OVAL, :2].min(0)).astype(int) - 20
    x1, y1 = np.ceil(target[0, R.FACE_OVAL, :2].max(0)).astype(int) + 20
    far[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.abs(a[far] - b[far]).max() <= 1
    # The other way: the portrait's face. The lips may mix in a little of the keyframe's (their picture is
    # chosen by shape and pose: both pictures are as far in shape, the portrait nearer in pose), and the
    # keyframe's lips are a render of the portrait's: close to them, not equal.
    other = turned(portrait.landmarks, -20.0)[None]
    a, b = _u8(warp(other))[0].astype(int), _u8(plain(other))[0].astype(int)
    lips = ~face_not_mouth(other[0], warp.size) & (turns.face_mask(other[0], warp.size) > 0.99)
    assert np.abs(a - b)[~lips].max() <= 1
    assert np.abs(a - b)[lips].max() <= 4


def test_turning_step_by_step_never_pops(portrait: Portrait) -> None:
    plain = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    tint = 80.0
    warp.add_keyframe(tinted_turn(plain, 20.0, tint))
    targets = np.stack([turned(portrait.landmarks, d) for d in np.arange(0.0, 25.0, 1.0)])
    green = []
    for t in targets:
        a, b = _u8(warp(t[None]))[0].astype(float), _u8(plain(t[None]))[0].astype(float)
        face = face_not_mouth(t, warp.size)
        green.append((a - b)[face][:, 1].mean())
    steps = np.diff(green)
    assert green[0] == 0 and green[-1] > 0.6 * tint    # from the portrait's face to the keyframe's
    assert steps.min() > -0.05 * tint                  # one way only
    assert steps.max() < 0.3 * green[-1]               # spread over several degrees, no jump


def test_a_turn_keyframe_with_closed_eyes_is_not_a_turn_picture(portrait: Portrait) -> None:
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    lm = turned(portrait.landmarks, 20.0)
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        lm[contour[1:8]] = 0.9 * lm[contour[9:][::-1]] + 0.1 * lm[contour[1:8]]
    warp.add_keyframe(Keyframe(portrait.image, lm, "turn_left"))
    assert not warp.turn_pictures()


def test_a_turn_keyframe_tilted_otherwise_is_not_taken(portrait: Portrait) -> None:
    plain = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    key = tinted_turn(plain, 20.0, 60.0)
    nodded = turned(portrait.landmarks, 20.0, pitch=turns.TILT_FREE + turns.TILT_SPAN + 3)
    warp.add_keyframe(Keyframe(key.image, nodded, key.kind))  # its landmarks say: nodded
    assert len(warp.turn_pictures()) == 1
    target = turned(portrait.landmarks, 20.0)[None]
    assert warp.turn_weights(warp.geometry(target).state).max() == 0
    a, b = _u8(warp(target))[0].astype(int), _u8(plain(target))[0].astype(int)
    assert np.abs(a - b)[face_not_mouth(target[0], warp.size)].max() <= 1  # (its mouth may still be lent)


def test_the_turn_cut_out_is_what_the_warp_places(portrait: Portrait) -> None:
    """GeometricWarp.turn_patch (what a browser page gets of a turn picture) changes nothing, and is exactly
    the patch and the sources the warp itself takes from the keyframe."""
    plain = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    keyframe = tinted_turn(plain, 20.0, 60.0)
    taken = warp.turn_patch(keyframe)
    assert taken is not None and not warp.turn_pictures() and "key0_face" not in warp.atlas.patches
    warp.add_keyframe(keyframe)
    [(picture, sources)] = warp.turn_pictures()
    texels, cut = taken
    patch = warp.atlas.patches[picture.patch]
    assert np.array_equal(patch.texels, texels)
    assert np.allclose(sources, cut.sources + patch.origin(warp.atlas.margin), rtol=0, atol=1e-3, equal_nan=True)
    assert cut.yaw == picture.yaw and np.array_equal(cut.tilt, picture.tilt) and np.array_equal(cut.lift, picture.lift)
    # A frontal keyframe is no turn picture.
    assert warp.turn_patch(Keyframe(keyframe.image, portrait.landmarks, "mouth")) is None
