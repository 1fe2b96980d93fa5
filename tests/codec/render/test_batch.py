"""The device renderer (torch, run here on the CPU) against the numba warp on the bundled sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics.pixels import ssim
from codec.media import read_video
from codec.motion import motion_from_landmarks
from codec.render.assets import PortraitAssets
from codec.render.batch import BatchRenderer, DeviceWarp
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import Portrait, prepare_portrait
from codec.render.warp import EYE_BLEND, GeometricWarp, WarpResult


def _u8(frames: torch.Tensor) -> np.ndarray:
    return (frames * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _assert_same_warp(a: WarpResult, b: WarpResult) -> None:
    """Same grid and regions on all but a few pixels, same frames to float rounding, SSIM over 0.99."""
    off = (a.grid - b.grid).abs().amax(-1) > 1e-4
    assert off.float().mean() < 1e-4
    assert ((a.raster - b.raster).abs() > 1e-4).float().mean() < 1e-4
    assert torch.equal(a.newness, b.newness)
    s = ssim(_u8(a.frames), _u8(b.frames))
    assert s.min() >= 0.99 and s.mean() >= 0.999
    assert (a.frames - b.frames).abs().mean() < 1e-4


def test_device_warp_matches_the_numba_warp(cpu_warp: GeometricWarp, targets: np.ndarray) -> None:
    want = cpu_warp.warp(targets)
    assert want.newness.max() > 0  # the widest mouth is shaded: that path is compared too
    _assert_same_warp(want, DeviceWarp(cpu_warp).warp(targets))


def test_a_batch_of_portraits_renders_each_as_alone(cpu_warp: GeometricWarp, targets: np.ndarray,
                                                    sample_clip: Path) -> None:
    frame = next(iter(read_video(sample_clip, 1)))
    other = prepare_portrait(frame, size=512, crop=False)
    other_warp = GeometricWarp(other.image, other.landmarks, torch.device("cpu"))
    # The second portrait's targets: its own face moved as the first one's targets move.
    theirs = targets - cpu_warp.landmarks + other.landmarks
    renderer = BatchRenderer([PortraitAssets.from_warp(cpu_warp), PortraitAssets.from_warp(other_warp)],
                             torch.device("cpu"))
    pid = torch.tensor([0, 1, 1, 0])
    mixed = np.stack([targets[0], theirs[1], theirs[2], targets[3]])
    got = renderer.warp(pid, torch.from_numpy(mixed))
    for i, (warp, t) in enumerate(((cpu_warp, targets[0]), (other_warp, theirs[1]), (other_warp, theirs[2]),
                                   (cpu_warp, targets[3]))):
        want = warp.warp(t[None])
        one = WarpResult(got.frames[i:i + 1], got.grid[i:i + 1], got.raster[i:i + 1], got.alpha[i:i + 1],
                         got.newness[i:i + 1])
        _assert_same_warp(want, one)


@pytest.mark.parametrize("codec", ["raw", "png"])
def test_assets_written_and_read_render_the_same(cpu_warp: GeometricWarp, targets: np.ndarray, codec: str) -> None:
    assets = PortraitAssets.from_warp(cpu_warp)
    back = PortraitAssets.from_arrays(assets.to_arrays("p0_", codec), "p0_")
    pid, t = torch.zeros(2, dtype=torch.long), torch.from_numpy(targets[:2])
    a = BatchRenderer([assets], torch.device("cpu"))(pid, t)
    b = BatchRenderer([back], torch.device("cpu"))(pid, t)
    assert (a - b).abs().max() < 1e-4  # the alpha is kept to 16 bits in a PNG


def test_lossy_assets_stay_close(cpu_warp: GeometricWarp) -> None:
    assets = PortraitAssets.from_warp(cpu_warp)
    back = PortraitAssets.from_arrays(assets.to_arrays(codec="webp"))
    assert np.abs(back.image.astype(int) - assets.image).mean() < 3
    assert back.background is not None and back.background.shape == assets.image.shape
    np.testing.assert_array_equal(back.mesh.triangles, assets.mesh.triangles)


def test_portraits_of_different_sizes_are_refused(cpu_warp: GeometricWarp, portrait: Portrait) -> None:
    small = GeometricWarp(portrait.image[::2, ::2].copy(), portrait.landmarks / 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="one size"):
        BatchRenderer([PortraitAssets.from_warp(cpu_warp), PortraitAssets.from_warp(small)], torch.device("cpu"))


def test_renderer_takes_the_torch_raster_when_asked(portrait: Portrait, targets: np.ndarray) -> None:
    numba = Renderer(portrait, RenderConfig(device="cpu"))
    assert numba.device_warp is None  # the CPU default stays numba
    device = Renderer(portrait, RenderConfig(device="cpu", raster="torch"))
    assert isinstance(device.device_warp, DeviceWarp) and isinstance(device.warp, GeometricWarp)
    a, b = numba.render(targets[:2]), device.render(targets[:2])
    assert np.abs(a.astype(int) - b).max() <= 1
    with pytest.raises(ValueError, match="raster"):
        Renderer(portrait, RenderConfig(device="cpu", raster="opengl"))


def test_device_warp_draws_teeth_lids_and_keyframe_mouths_as_numba(portrait: Portrait, targets: np.ndarray,
                                                                  sample_clip: Path,
                                                                  sample_landmarks: np.ndarray) -> None:
    from codec import regions as R
    from codec.render.keyframes import Keyframe

    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    frame = list(read_video(sample_clip, 49))[48]  # the mouth wide open, the eyes open
    warp.add_keyframe(Keyframe(frame, sample_landmarks[48].astype(np.float32), "mouth"))
    assert warp.mouth_pictures()[1:] and not warp._eyes  # a mouth to lend, no eyes
    lm = portrait.landmarks
    iod = float(R.inter_ocular(lm))
    opened = lm.copy()
    below = lm[:, 1] > lm[R.LIPS_INNER[:11], 1].max() + 1
    below[468:] = False
    opened[below, 1] += 0.35 * iod  # wider than any picture: the drawn interior
    shut = lm.copy()
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        shut[contour[1:8]] = 0.9 * lm[contour[9:][::-1]] + 0.1 * lm[contour[1:8]]
    cases = np.stack([opened, shut, targets[0], targets[2]]).astype(np.float32)
    want = warp.warp(cases)
    drawn, gain, *_ = warp._mouth_sources(warp.geometry(cases).state, np.zeros((4, len(warp.base_sources), 2)))
    assert drawn[0] and not drawn[2]
    lips = warp.geometry(cases).lips
    assert lips[0, 0] == 1 and lips[1, 0] == 0  # the open mouth: the keyframe's lips; the shut one: the portrait's
    _assert_same_warp(want, DeviceWarp(warp).warp(cases))


def test_device_warp_takes_turned_faces_and_closed_eyes_from_keyframes_as_numba(
        portrait: Portrait, sample_clip: Path, sample_landmarks: np.ndarray) -> None:
    from codec import regions as R
    from codec.render.keyframes import Keyframe
    from tests.codec.render.test_turns import turned

    plain = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    frames = list(read_video(sample_clip, 101))
    blink = motion_from_landmarks(sample_landmarks[:101]).blink.mean(-1)
    closed = int(np.argmin(blink))
    assert blink[closed] < 0.3 * np.median(blink)
    warp.add_keyframe(Keyframe(frames[closed], sample_landmarks[closed].astype(np.float32), "eyes_closed"))
    for degrees in (20.0, 32.0, -18.0):  # two pictures on one side: a target between them takes both
        lm = turned(portrait.landmarks, degrees)
        image = (plain(lm[None])[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        warp.add_keyframe(Keyframe(image, lm, "turn_left" if degrees > 0 else "turn_right"))
    assert len(warp.turn_pictures()) == 3 and warp.eye_picture(0) is not None and warp.eye_picture(1) is not None
    shut = turned(portrait.landmarks, 12.0)
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        shut[contour[1:8]] = 0.9 * shut[contour[9:][::-1]] + 0.1 * shut[contour[1:8]]
    cases = np.stack([turned(portrait.landmarks, d) for d in (0.0, 5.0, 10.0, 14.0, 26.0, 40.0, -12.0)]
                     + [turned(portrait.landmarks, 22.0, pitch=9.0), shut])  # the one nodded: weights gated
    state = warp.geometry(cases).state
    assert (warp._closure(state)[-1] > EYE_BLEND[1]).all()  # the last one's eyes blend in the keyframe's
    weights = warp.turn_weights(state)
    assert (weights[0] == 0).all() and ((weights > 0) & (weights < 1)).any() and ((weights > 0).sum(1) == 2).any()
    want = warp.warp(cases)
    assert not torch.equal(want.frames, plain.warp(cases).frames)
    _assert_same_warp(want, DeviceWarp(warp).warp(cases))
    # Written and read back (as a GPU server loads portraits), the same.
    back = PortraitAssets.from_arrays(PortraitAssets.from_warp(warp).to_arrays("p_", "raw"), "p_")
    got = BatchRenderer([back], torch.device("cpu")).warp(torch.zeros(len(cases), dtype=torch.long),
                                                          torch.from_numpy(cases))
    _assert_same_warp(want, got)
