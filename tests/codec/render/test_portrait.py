import cv2
import numpy as np
import pytest

from codec.errors import PortraitError
from codec.media import read_image
from codec.render.composite import continue_outside
from codec.render.portrait import crop_to_box, prepare_portrait


def _inside(lm: np.ndarray, size: int) -> bool:
    return bool((lm[:, :2] > 0).all() and (lm[:, :2] < size).all())


def test_image_without_a_face_is_refused():
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (400, 300, 3), dtype=np.uint8), (0, 0), 3)
    with pytest.raises(PortraitError, match="no face"):
        prepare_portrait(noise)


def test_file_that_is_not_an_image_is_refused(tmp_path):
    p = tmp_path / "me.png"
    p.write_text("not a picture")
    with pytest.raises(PortraitError, match="me.png"):
        prepare_portrait(p)
    with pytest.raises(PortraitError):
        prepare_portrait(tmp_path / "missing.jpg")


def test_two_faces_are_refused(sample_portrait):
    img = read_image(sample_portrait)
    half = cv2.resize(img, (256, 256))
    with pytest.raises(PortraitError, match="faces"):
        prepare_portrait(np.concatenate([half, half], 1))


def test_frame_kept_as_is(sample_portrait):
    img = read_image(sample_portrait)
    p = prepare_portrait(img, size=512, crop=False)
    assert p.image.shape == (512, 512, 3) and p.image.dtype == np.uint8
    assert np.array_equal(p.image, img)
    assert p.landmarks.shape == (478, 3) and _inside(p.landmarks, 512)
    assert p.state.scale > 0
    with pytest.raises(PortraitError, match="crop=True"):
        prepare_portrait(cv2.resize(img, (300, 300)), size=512, crop=False)


def test_any_photo_is_cropped_around_the_face(sample_portrait):
    img = read_image(sample_portrait)
    # The face small and off-centre in a large landscape photo.
    photo = np.full((900, 1400, 3), 90, np.uint8)
    photo[300:812, 820:1332] = img
    p = prepare_portrait(photo, size=512)
    assert p.image.shape == (512, 512, 3)
    assert _inside(p.landmarks, 512)
    x0, y0, x1, y1 = p.box
    assert x1 - x0 == pytest.approx(y1 - y0)
    # The face is roughly centred and fills a fair part of the crop.
    centre = p.landmarks[:, :2].mean(0)
    assert np.all(np.abs(centre - 256) < 80)
    span = p.landmarks[:, :2].max(0) - p.landmarks[:, :2].min(0)
    assert 180 < span.max() < 320
    # Landmarks agree with the crop's pixels: re-tracking finds the face where they say.
    again = prepare_portrait(p.image, size=512, crop=False).landmarks
    assert np.abs(again[:, :2] - p.landmarks[:, :2]).mean() < 4.0


def test_a_tiny_photo_is_refused_and_a_small_face_is_warned_about(sample_portrait, caplog):
    photo = read_image(sample_portrait)
    with pytest.raises(PortraitError, match="32x32 pixels; a portrait needs at least 64x64"):
        prepare_portrait(cv2.resize(photo, (32, 32), interpolation=cv2.INTER_AREA))
    caplog.clear()
    small = prepare_portrait(cv2.resize(photo, (96, 96), interpolation=cv2.INTER_AREA), size=512)
    assert small.size == 512
    assert any("will look blurred" in r.getMessage() for r in caplog.records)
    caplog.clear()
    prepare_portrait(photo, size=512)
    assert not any("blurred" in r.getMessage() for r in caplog.records)


def test_a_crop_past_the_photo_continues_its_edge_without_stripes(sample_portrait):
    img = read_image(sample_portrait)
    lm = prepare_portrait(img, size=512, crop=False).landmarks
    rng = np.random.default_rng(0)
    textured = np.clip(img.astype(int) + rng.integers(-40, 40, (1, img.shape[1], 1)), 0, 255).astype(np.uint8)
    # A box reaching 100 px below the photo: those rows are not in the picture.
    p = crop_to_box(textured, lm, (0.0, 100.0, 512.0, 612.0))
    last = p.image[407:411].astype(np.float32).mean(-1)     # the photo's bottom rows
    beyond = p.image[-20:].astype(np.float32).mean(-1)      # far below it
    stripes = np.abs(np.diff(last, axis=1)).mean()
    assert stripes > 10
    assert np.abs(np.diff(beyond, axis=1)).mean() < 0.2 * stripes


def test_far_past_the_photo_a_broad_band_fades_into_its_surroundings():
    """A close-up's bottom edge with a broad band in it (an open collar, a tie): a caller who moves back needs
    the body far below the photo, where the band must not go on as a column of its own colour."""
    img = np.full((200, 200, 3), 60, np.uint8)
    img[:, 80:140] = 200                               # a band 60 px wide reaching the bottom edge
    out = continue_outside(np.pad(img, ((0, 200), (0, 0), (0, 0))), (0, 0, 200, 200), sigma=20, reach=30)
    edge = out[199, :, 0].astype(np.float32)
    far = out[-1, :, 0].astype(np.float32)
    assert edge.max() - edge.min() > 130
    assert far.max() - far.min() < 0.5 * (edge.max() - edge.min())
    near = out[205, :, 0].astype(np.float32)            # just past the edge the photo still continues
    assert near.max() - near.min() > 0.8 * (edge.max() - edge.min())
