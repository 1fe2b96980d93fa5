import cv2
import numpy as np
import pytest
import torch

from codec import regions as R
from codec.render.mesh import EYE, FACE, MOUTH, OUTSIDE, TEETH, build_mesh, face_triangles
from codec.render.portrait import prepare_portrait
from codec.render.warp import GeometricWarp, WarpConfig, denoise_portrait, restore_detail


@pytest.fixture(scope="module")
def portrait(sample_portrait):
    return prepare_portrait(sample_portrait, size=512, crop=False)


@pytest.fixture(scope="module")
def warp(portrait):
    # Geometry is checked on the portrait as it is; the default also smooths its noise (tested below).
    return GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"), WarpConfig(denoise=False))


def _render(warp, targets):
    out = warp(np.asarray(targets, np.float32).reshape(-1, 478, 3))
    return (out * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_face_tessellation_has_852_triangles():
    tri = face_triangles()
    assert tri.shape == (852, 3)
    assert tri.min() == 0 and tri.max() == 467


def test_mesh_covers_the_image(portrait):
    mesh = build_mesh(portrait.landmarks, 512)
    kinds = set(np.unique(mesh.kind))
    assert kinds == {FACE, EYE, MOUTH, OUTSIDE, TEETH}
    v = mesh.vertices[mesh.triangles, :2].astype(np.float64)
    area = np.abs(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])).sum() / 2
    # Folds aside, the triangles tile the whole square (the outer rings reach past it).
    assert area >= 512 * 512


def test_identity_target_gives_the_portrait(warp, portrait):
    err = np.abs(_render(warp, portrait.landmarks)[0].astype(int) - portrait.image).mean(-1)
    # Exact but at the person's soft edge, which is laid over the background plate (filled there).
    alpha = warp.image[0, 3].numpy()
    edge = cv2.dilate(((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert err[~edge].mean() < 0.5 and err.mean() < 1.5


def test_denoise_smooths_noise_and_keeps_edges():
    rng = np.random.default_rng(0)
    clean = np.full((128, 128, 3), 60, np.uint8)
    clean[:, 64:] = 190
    noisy = np.clip(clean + rng.normal(0, 6, clean.shape), 0, 255).astype(np.uint8)
    out = denoise_portrait(noisy).astype(float)
    flat = (slice(8, 120), slice(8, 56))
    assert out[flat].std() < 0.5 * noisy[flat].astype(float).std()
    # The edge stays a step: the columns either side of it keep their levels.
    assert abs(out[:, 62].mean() - 60) < 5 and abs(out[:, 65].mean() - 190) < 5


def test_default_warp_renders_the_denoised_portrait(portrait):
    smooth = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    out = _render(smooth, portrait.landmarks)[0].astype(int)
    alpha = smooth.image[0, 3].numpy()
    core = (alpha > 0.98) | (alpha < 0.02)  # away from the person's soft edge
    restored = restore_detail(denoise_portrait(portrait.image), portrait.image, portrait.landmarks)
    assert np.abs(out - restored)[core].mean() < 0.5
    assert np.abs(out - portrait.image)[core].mean() > 0.8


def test_translation_moves_the_face_and_keeps_the_background(warp, portrait):
    dx, dy = 12, -8
    target = portrait.landmarks + np.array([dx, dy, 0], np.float32)
    out = _render(warp, target)[0].astype(int)
    img = portrait.image.astype(int)
    mask = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(mask, [np.round(portrait.landmarks[R.FACE_OVAL, :2]).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((15, 15), np.uint8)).astype(bool)
    ys, xs = np.nonzero(mask)
    moved = np.abs(out[ys + dy, xs + dx] - img[ys, xs]).mean()
    unmoved = np.abs(out[ys, xs] - img[ys, xs]).mean()
    assert moved < 2.0 and unmoved > 3 * moved
    # Background, away from the person's edge, stays put.
    alpha = warp.image[0, 3].numpy()
    far = cv2.erode((alpha == 0).astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    assert far.mean() > 0.1
    assert np.abs(out[far] - img[far]).mean() < 0.5
    for c in (slice(0, 24), slice(0, 24)), (slice(0, 24), slice(-24, None)):
        assert np.abs(out[c] - img[c]).mean() < 0.5


def _open_mouth(lm: np.ndarray, amount: float) -> np.ndarray:
    """Drops the lower lip and jaw by ``amount`` inter-ocular distances."""
    t = lm.copy()
    upper = lm[R.LIPS_INNER[:11], 1].max()
    below = lm[:, 1] > upper + 1
    below[468:] = False
    t[below, 1] += amount * R.inter_ocular(lm)
    return t


def _luma(im: np.ndarray) -> np.ndarray:
    return im.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _inside(lm: np.ndarray, contour: np.ndarray, erode: int = 5) -> np.ndarray:
    m = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(m, [np.round(lm[contour, :2] - 0.5).astype(np.int32)], 1)
    return cv2.erode(m, np.ones((erode, erode), np.uint8)).astype(bool)


def test_an_open_mouth_shows_teeth_and_a_tongue_not_a_dark_slot(warp, portrait):
    target = _open_mouth(portrait.landmarks, 0.3)
    inside = _inside(target, R.LIPS_INNER)
    assert inside.sum() > 200
    y = _luma(_render(warp, target)[0])[inside]
    skin = _luma(warp.skin[None] * 255)[0]
    lips = _luma(warp.lips[None] * 255)[0]
    lo, hi = np.quantile(y, [0.2, 0.8])
    assert y[y >= hi].mean() > 0.9 * skin        # teeth, about as bright as the skin
    assert y[y <= lo].mean() < 0.6 * lips        # the cavity behind them is dark
    assert y.mean() > 0.4 * skin                 # on the whole not a black slot
    assert warp.mouth_newness(target[None])[0] > 0.3
    assert warp.mouth_newness(portrait.landmarks[None])[0] == 0


def test_moving_far_brings_in_the_body_not_stripes(portrait):
    def stripes(warp: GeometricWarp) -> tuple[float, float]:
        # The person moved up: the bottom rows sample below the photo. Stripes are columns
        # that repeat the photo's last row: constant downwards, and as varied across as the photo.
        out = _render(warp, portrait.landmarks + np.array([0, -60, 0], np.float32))[0]
        bottom = _luma(out[-40:])
        return float(np.abs(np.diff(bottom, axis=1)).mean()), float(bottom.std(0).mean())

    cpu = torch.device("cpu")
    smooth = GeometricWarp(portrait.image, portrait.landmarks, cpu, WarpConfig(denoise=False))
    edge = GeometricWarp(portrait.image, portrait.landmarks, cpu, WarpConfig(denoise=False, smooth_outside=False))
    (across_edge, down_edge), (across, _) = stripes(edge), stripes(smooth)
    assert down_edge < 1.0 and across_edge > 1.0  # repeated edge pixels
    assert across < 0.5 * across_edge             # a smooth continuation instead


def test_closing_the_eyes_covers_them_with_lids(warp, portrait):
    lm = portrait.landmarks
    target = lm.copy()
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        upper, lower = contour[1:8], contour[9:][::-1]
        mid = (lm[upper] + lm[lower]) / 2
        target[upper], target[lower] = mid, mid
    out = _render(warp, target)[0].astype(np.float32)
    # The dark iris disappears: the eye region becomes about as bright as the lids.
    for iris in (R.RIGHT_IRIS_CENTER, R.LEFT_IRIS_CENTER):
        x, y = np.round(lm[iris, :2]).astype(int)
        before = portrait.image[y - 3:y + 4, x - 3:x + 4].mean()
        after = out[y - 3:y + 4, x - 3:x + 4].mean()
        assert after > before + 20


def test_gaze_moves_the_iris(warp, portrait):
    lm = portrait.landmarks
    shift = 0.05 * float(R.inter_ocular(lm))
    target = lm.copy()
    target[468:, 0] += shift
    out = _render(warp, target)[0]
    gray_in = cv2.cvtColor(portrait.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray_out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)
    for iris in (R.RIGHT_IRIS_CENTER, R.LEFT_IRIS_CENTER):
        x, y = np.round(lm[iris, :2]).astype(int)
        patch = gray_in[y - 4:y + 5, x - 4:x + 5]
        # The iris patch is found shifted by `shift` in the output, not where it was.
        errs = {s: np.abs(gray_out[y - 4:y + 5, x - 4 + s:x + 5 + s] - patch).mean() for s in range(-2, 8)}
        assert abs(min(errs, key=errs.get) - shift) <= 1.5


def test_batch_and_single_frames_agree(warp, portrait):
    lm = portrait.landmarks
    targets = np.stack([lm, lm + np.array([5, 3, 0], np.float32), _open_mouth(lm, 0.2)])
    batch = _render(warp, targets)
    assert batch.shape == (3, 512, 512, 3) and batch.dtype == np.uint8
    for i in range(3):
        assert np.array_equal(batch[i], _render(warp, targets[i])[0])


def _oval_normals(lm: np.ndarray) -> np.ndarray:
    oval = lm[R.FACE_OVAL, :2].astype(np.float64)
    out = oval - oval.mean(0)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _ring_gaps(warp: GeometricWarp, target: np.ndarray) -> np.ndarray:
    """How far out each vertex of the first ring lies from its outline landmark, along the outward normal."""
    n, first = len(R.FACE_OVAL), warp.mesh.ring_start
    ring = warp.geometry(target[None]).target[0, first:first + n, :2]
    return ((ring - target[R.FACE_OVAL, :2]) * _oval_normals(warp.landmarks)).sum(-1)


def test_the_rings_stay_outside_a_face_outline_that_moves_out(warp, portrait):
    # A cheek seen edge-on widens as the head turns back: its outline moves out past where the head's rigid
    # motion takes the hair beside it. The first ring is pushed out as far, so the hair stays beside the face
    # instead of folding under it (and leaving the face's edge against the background plate).
    lm = portrait.landmarks
    normal = _oval_normals(lm)
    side = normal[:, 0] > 0.8
    target = lm.copy()
    target[R.FACE_OVAL[side], 0] += 20.0
    rest = _ring_gaps(warp, lm)
    assert (_ring_gaps(warp, target)[side] >= rest[side] - 0.5).all()
    unpushed = GeometricWarp(portrait.image, lm, torch.device("cpu"), WarpConfig(denoise=False, ring_keep=()))
    assert (_ring_gaps(unpushed, target)[side] < rest[side] - 10).all()  # the fold it prevents
    # The other side and a face that narrows: as before.
    assert np.allclose(_ring_gaps(warp, target)[~side], _ring_gaps(unpushed, target)[~side], atol=1e-3)
    narrow = lm.copy()
    narrow[R.FACE_OVAL[side], 0] -= 10.0
    assert np.allclose(_ring_gaps(warp, narrow), _ring_gaps(unpushed, narrow), atol=1e-3)


def test_a_dropping_chin_moves_over_the_neck(warp, portrait):
    # Below the jaw the rings are not pushed: the chin covers the neck as the mouth opens.
    lm = portrait.landmarks
    down = _oval_normals(lm)[:, 1] > 0.95
    assert down.any()
    target = lm.copy()
    target[R.FACE_OVAL[down], 1] += 15.0
    unpushed = GeometricWarp(portrait.image, lm, torch.device("cpu"), WarpConfig(denoise=False, ring_keep=()))
    assert np.allclose(_ring_gaps(warp, target)[down], _ring_gaps(unpushed, target)[down], atol=1e-3)


def _face_detail(image: np.ndarray, lm: np.ndarray, erode: int) -> float:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[R.FACE_OVAL, :2] - 0.5).astype(np.int32)], (1,))
    mask = cv2.erode(mask, np.ones((2 * erode + 1,) * 2, np.uint8)) > 0
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[mask].var())


def test_restoring_detail_gives_the_denoised_face_the_photos_and_leaves_the_rest(portrait):
    image, lm = portrait.image, portrait.landmarks
    smooth = denoise_portrait(image)
    k = int(round(0.25 * float(R.inter_ocular(lm))))
    assert _face_detail(smooth, lm, k) < 0.95 * _face_detail(image, lm, k)  # what the denoising took
    out = restore_detail(smooth, image, lm, target=1.0)
    assert _face_detail(out, lm, k) == pytest.approx(_face_detail(image, lm, k), rel=0.02)
    assert _face_detail(restore_detail(smooth, image, lm, target=1.15), lm, k) > 1.1 * _face_detail(out, lm, k)
    # Only the face, away from its outline: the rest of the picture is the denoised one.
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(lm[R.FACE_OVAL, :2]).astype(np.int32)], (1,))
    assert np.array_equal(out[face == 0], smooth[face == 0])
    # A face already as detailed as asked is left as it is.
    assert np.array_equal(restore_detail(image, image, lm, target=0.9), image)
