import numpy as np
import pytest
import torch

from codec.render.pipeline import RenderConfig, Renderer, resolve_device
from codec.render.portrait import prepare_portrait
from codec.render.warp import denoise_portrait


@pytest.fixture(scope="module")
def portrait(sample_portrait):
    return prepare_portrait(sample_portrait, size=512, crop=False)


@pytest.fixture(scope="module")
def renderer(portrait):
    return Renderer(portrait, RenderConfig(device="cpu"))


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        RenderConfig().size = 256  # type: ignore[misc]


def test_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")


def test_unknown_renderer_is_refused(portrait):
    with pytest.raises(ValueError, match="renderer"):
        Renderer(portrait, RenderConfig(device="cpu", renderer="magic"))


def test_frames_are_uint8_of_the_configured_size(renderer, portrait):
    one = renderer.render(portrait.landmarks)
    assert one.shape == (1, 512, 512, 3) and one.dtype == np.uint8
    many = renderer.render(np.stack([portrait.landmarks] * 2))
    assert many.shape == (2, 512, 512, 3)
    assert np.array_equal(many[0], one[0])
    # At rest: the portrait, its noise smoothed (codec.render.warp.denoise_portrait).
    assert np.abs(one[0].astype(int) - denoise_portrait(portrait.image)).mean() < 1.5
    with pytest.raises(ValueError, match="478"):
        renderer.render(np.zeros((10, 3), np.float32))


def test_smaller_output_size(portrait):
    r = Renderer(portrait, RenderConfig(device="cpu", size=256))
    out = r.render(portrait.landmarks + np.array([10, 0, 0], np.float32))
    assert out.shape == (1, 256, 256, 3)
    assert r.render_tensor(portrait.landmarks).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_matches_cpu(renderer, portrait):
    gpu = Renderer(portrait, RenderConfig(device="cuda"))
    target = portrait.landmarks + np.array([7, -4, 0], np.float32)
    diff = np.abs(gpu.render(target).astype(int) - renderer.render(target).astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_untrained_refiner_leaves_the_warp_as_is(renderer, portrait):
    from codec.render.refiner import IN_CHANNELS, Refiner, refiner_inputs

    target = portrait.landmarks + np.array([6, 2, 0], np.float32)
    result = renderer.warp.warp(target[None])
    x = refiner_inputs(result, renderer.warp.image[:, :3])
    assert x.shape == (1, IN_CHANNELS, 512, 512)
    with torch.no_grad():
        out = Refiner()(x, result.frames)
    assert torch.equal(out, result.frames)


def test_neural_renderer(portrait, tmp_path):
    from codec.render.refiner import RENDERER_PATH, load_refiner

    with pytest.raises(FileNotFoundError, match="talk-train renderer"):
        load_refiner(tmp_path / "none.pt")
    if not RENDERER_PATH.exists():
        pytest.skip("no trained refiner (codec/data/renderer.pt); run `talk-train renderer`")
    r = Renderer(portrait, RenderConfig(device="cpu", renderer="neural"))
    out = r.render(np.stack([portrait.landmarks] * 2))
    assert out.shape == (2, 512, 512, 3) and out.dtype == np.uint8
    # Trained to keep the portrait when asked for it.
    assert np.abs(out[0].astype(int) - portrait.image).mean() < 4


def test_frames_convert_to_uint8_as_torch_rounds():
    from codec.render.pipeline import planar_to_rgb8

    x = torch.rand(2, 3, 40, 56)
    x[0, 0, 0, :6] = torch.tensor([0.0, 1.0, 0.5 / 255, 254.5 / 255, 0.99999, 1.2])
    x[1, 2, 5, :2] = torch.tensor([-0.3, 0.002])
    want = x.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(planar_to_rgb8(x.numpy()), want)


def test_refiner_changes_only_lips_and_eyes(renderer, portrait):
    from codec import regions as R
    from codec.render.refiner import Refiner, refine, repair_mask

    torch.manual_seed(0)
    model = Refiner().eval()
    torch.nn.init.normal_(model.out.weight, std=0.05)  # an untrained refiner would change nothing at all
    target = (portrait.landmarks + np.array([5, -3, 0], np.float32))[None]
    result = renderer.warp.warp(target)
    with torch.no_grad():
        out = refine(model, result, renderer.warp.image[:, :3], target)
    changed = (out - result.frames.clamp(0, 1)).abs().amax(1)[0].numpy() > 1e-6
    mask = repair_mask(target, 512)[0, 0]
    assert changed.any() and not changed[mask == 0].any()
    # The mask holds the lips and both eyes, and not the cheeks or the background.
    for idx in (R.LIPS_OUTER, R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        x, y = np.round(target[0, idx, :2].mean(0)).astype(int)
        assert mask[y, x] > 0.9
    assert mask.mean() < 0.1 and mask[:40].max() == 0
