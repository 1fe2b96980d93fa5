"""Portrait compositing: the person cut out of the portrait and the background behind them.

The warp moves the person (face, hair, body) and lays them over a still
background plate, the portrait with the person filled in, so that what a moving
head uncovers is background, not stretched pixels. The portrait's own noise is
smoothed once, since one frame's noise would otherwise be frozen onto every
rendered frame, and the face's detail that the smoothing took is given back
(:func:`restore_detail`). Where a picture needs pixels the camera did not see (a crop
reaching past the frame, the warp sampling past the portrait), they continue
its edge softly (:func:`continue_outside`) instead of repeating its edge pixels
in stripes.
"""

from __future__ import annotations

import cv2
import numpy as np

from codec import regions as R


def denoise_portrait(image: np.ndarray) -> np.ndarray:
    """The portrait without its sensor and compression noise, edges kept.

    A bilateral filter sized for 512 px: a 7-pixel neighbourhood, colour
    differences below about 25 levels smoothed, larger ones (edges) kept.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
    Returns:
        ``[H, W, 3]`` uint8.
    """
    return cv2.bilateralFilter(np.ascontiguousarray(image), 7, 25, 5)


DETAIL_TARGET = 1.45
"""The face's Laplacian variance :func:`restore_detail` gives a denoised portrait, over the photo's own:
above 1 by what the warp's bilinear resampling takes again. Chosen on four training clips (not the
held-out ones) as the target, of 1.3, 1.45 and 1.6, that brought their renders' detail over the truth's
nearest 1 on the mean (from 0.53-0.86 to 0.73-1.11; mean distance from 1 0.13, 0.11, 0.12)."""

DETAIL_SIGMA = 1.0
"""Width (px) of the unsharp mask :func:`restore_detail` restores detail with."""

MAX_RESTORE = 1.0
"""Most unsharp-mask amount :func:`restore_detail` applies."""


def restore_detail(denoised: np.ndarray, original: np.ndarray, landmarks: np.ndarray,
                   target: float = DETAIL_TARGET) -> np.ndarray:
    """The denoised portrait's face made as detailed as the photo's (its edges, not its noise).

    The bilateral filter takes the noise and, with it, some of the skin's fine texture; the warp's
    resampling takes more. An unsharp mask over the face, fading out before its outline (edges
    there are the face against what lies behind it, not texture), gets the face's Laplacian
    variance back to ``target`` times the photo's; its amount solves that (the variance is quadratic
    in it; what rounding to 8 bits adds is measured and taken off), at most :data:`MAX_RESTORE`.

    Args:
        denoised: ``[H, W, 3]`` uint8, :func:`denoise_portrait` of ``original``.
        original: ``[H, W, 3]`` uint8 RGB photo.
        landmarks: ``[478, 3]`` its face.
        target: the face's variance over the photo's.
    Returns:
        ``[H, W, 3]`` uint8.
    """
    oval = np.round(landmarks[R.FACE_OVAL, :2] - 0.5).astype(np.int32)
    face = np.zeros(denoised.shape[:2], np.uint8)
    cv2.fillPoly(face, [oval], (1,))
    iod = float(R.inter_ocular(landmarks))
    k = max(int(round(0.25 * iod)), 1)
    inner = cv2.erode(face, np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    if not inner.any():
        return denoised
    weight = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), 0.5 * k)[..., None]
    d = denoised.astype(np.float32)
    high = d - cv2.GaussianBlur(d, (0, 0), DETAIL_SIGMA)

    def lap(img: np.ndarray) -> np.ndarray:
        return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[inner]

    def restored(amount: float) -> np.ndarray:
        return np.clip(np.round(d + amount * weight * high), 0, 255).astype(np.uint8)

    x = lap(denoised)
    y = lap(np.ascontiguousarray(high * weight))
    want = target * float(lap(original).var())
    vx, vy, c = float(x.var()), float(y.var()), float(np.mean((x - x.mean()) * (y - y.mean())))
    if vx >= want or vy <= 0:
        return denoised

    def solve(goal: float) -> float:  # var(x + a y) = goal; the variance is quadratic in a
        return float(min((-c + np.sqrt(max(c * c + vy * (goal - vx), 0.0))) / vy, MAX_RESTORE))

    # Rounding to 8 bits adds variance of its own: measured once, then solved again without it.
    amount = solve(want)
    excess = float(lap(restored(amount)).var()) - (vx + 2 * amount * c + amount * amount * vy)
    return restored(solve(want - max(excess, 0.0)))


def person_alpha(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Soft mask of the person (face, hair, neck, body) in a portrait.

    Args:
        image: ``[H, W, 3]`` uint8 RGB; landmarks: ``[478, 3]`` its face.
    Returns:
        ``[H, W]`` float32 in [0, 1]; 1 on the whole face oval whatever the
        segmentation says.
    """
    import mediapipe as mp  # lazy: a heavy import, needed once per portrait

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        mask = seg.process(np.ascontiguousarray(image)).segmentation_mask
    alpha = np.clip((np.asarray(mask, np.float32) - 0.5) * 3 + 0.5, 0, 1)  # narrower soft edge
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(landmarks[R.FACE_OVAL, :2]).astype(np.int32)], (1,))
    return np.maximum(alpha, face.astype(np.float32))


def background_plate(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The portrait with the person filled in from the background around it.

    What a moving head uncovers is taken from here. Filled at a quarter of the
    size (the background behind a person is out of focus anyway, and it is
    quick); kept exact where the person is not.

    Args:
        image: ``[H, W, 3]`` uint8 RGB; alpha: ``[H, W]`` from :func:`person_alpha`.
    Returns:
        ``[H, W, 3]`` uint8.
    """
    h, w = alpha.shape
    # Fill from beyond the person's soft edge, so its colours do not bleed in, and replace
    # that edge too: left in the plate, it draws the person's outline wherever the head moves away.
    hole = cv2.dilate((alpha > 0.02).astype(np.uint8), np.ones((15, 15), np.uint8))
    small = cv2.resize(image, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small_hole = (cv2.resize(hole, (w // 4, h // 4), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
    return np.where(hole[..., None] > 0, filled, image)


FAR_BLUR = 4.0
"""How much wider than near the photo the continuation's blur grows far from it (see :func:`continue_outside`)."""


def continue_outside(image: np.ndarray, inside: tuple[int, int, int, int], sigma: float,
                     reach: float) -> np.ndarray:
    """Fills what lies outside a box of an image by a soft continuation of the box's edge.

    Each pixel outside takes the colour of the nearest pixel inside (the edge, continued
    outwards) and, the further out, the more of that colour blurred along the edge: within
    ``reach`` of the box the texture fades out, so nothing is smeared into stripes; further
    on, the blur keeps growing (:data:`FAR_BLUR` times ``sigma`` at 4 ``reach``), so that
    what continues far past the photo (a body below a close-up, when the caller moves
    back) is its clothes' colour, not broad bands of the colours along its edge.

    Args:
        image: ``[H, W, C]`` uint8 or float32.
        inside: ``(x0, y0, x1, y1)`` the part that shows real content (pixels ``x0 <= x < x1``).
        sigma: the blur's standard deviation in pixels.
        reach: distance from the box at which the continuation is blurred by ``sigma``.
    Returns:
        ``[H, W, C]`` of ``image``'s dtype; the box itself unchanged.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in inside)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if (x0, y0, x1, y1) == (0, 0, w, h) or x1 <= x0 or y1 <= y0:
        return image.copy()
    core = np.ascontiguousarray(image[y0:y1, x0:x1], np.float32)
    out = np.asarray(cv2.copyMakeBorder(core, y0, h - y1, x0, w - x1, cv2.BORDER_REPLICATE), np.float32)
    out = out.reshape(h, w, -1)
    blurred = np.asarray(cv2.GaussianBlur(out, (0, 0), max(0.5, sigma)), np.float32).reshape(h, w, -1)
    dy = np.maximum(np.maximum(y0 - np.arange(h), np.arange(h) - (y1 - 1)), 0)[:, None]
    dx = np.maximum(np.maximum(x0 - np.arange(w), np.arange(w) - (x1 - 1)), 0)[None, :]
    dist = np.maximum(dx, dy).astype(np.float32)[..., None]
    # The far blur, at an eighth of the size (its kernel would be hundreds of pixels wide).
    k = 8
    small = cv2.resize(out, (max(w // k, 1), max(h // k, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, FAR_BLUR * sigma / k))
    far = np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32).reshape(h, w, -1)
    reach = max(reach, 1.0)
    out += np.clip(dist / reach, 0, 1) * (blurred - out)
    out += np.clip((dist - reach) / (3 * reach), 0, 1) * (far - out)
    out[y0:y1, x0:x1] = core.reshape(y1 - y0, x1 - x0, -1)
    if image.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(image.shape)
    return out.astype(image.dtype).reshape(image.shape)
