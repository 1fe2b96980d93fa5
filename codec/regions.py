"""Named landmark regions of the 478-point MediaPipe face mesh.

Indices follow MediaPipe's refined face mesh: 0..467 are the surface mesh,
468..472 the right iris (subject's right, image left; 468 is its centre) and
473..477 the left iris (473 is its centre).
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478

LIPS = np.array([0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
                 185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375,
                 402, 405, 409, 415])
# Inner lip contour, ordered around the mouth opening (upper lip left to right, then lower back).
LIPS_INNER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
                       324, 318, 402, 317, 14, 87, 178, 88, 95])
LIPS_OUTER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
                       375, 321, 405, 314, 17, 84, 181, 91, 146])
RIGHT_EYE = np.array([7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246])
LEFT_EYE = np.array([249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466])
# Eye contours in order (corner, upper lid, corner, lower lid), used to mask the eye opening.
RIGHT_EYE_CONTOUR = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133,
                              155, 154, 153, 145, 144, 163, 7])
LEFT_EYE_CONTOUR = np.array([362, 398, 384, 385, 386, 387, 388, 466, 263,
                             249, 390, 373, 374, 380, 381, 382])
RIGHT_IRIS = np.arange(468, 473)
LEFT_IRIS = np.arange(473, 478)
RIGHT_BROW = np.array([46, 52, 53, 55, 63, 65, 66, 70, 105, 107])
LEFT_BROW = np.array([276, 282, 283, 285, 293, 295, 296, 300, 334, 336])
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379,
                      378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127,
                      162, 21, 54, 103, 67, 109])

# Points that define the measures we code explicitly (gaze, blink, mouth opening).
RIGHT_EYE_CORNERS = (33, 133)   # outer, inner
LEFT_EYE_CORNERS = (263, 362)   # outer, inner
RIGHT_EYE_LIDS = (159, 145)     # upper, lower
LEFT_EYE_LIDS = (386, 374)      # upper, lower
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473
MOUTH_INNER_LIPS = (13, 14)     # upper, lower
MOUTH_CORNERS = (78, 308)

EYES = np.concatenate([RIGHT_EYE, LEFT_EYE, RIGHT_IRIS, LEFT_IRIS])
MOUTH = LIPS


def region_masks() -> dict[str, np.ndarray]:
    """Boolean masks over the 478 landmarks for the regions we report errors on.

    Returns:
        ``{"lips": [478], "eyes": [478], "rest": [478]}``; the three partition the mesh.
    """
    lips = np.zeros(NUM_LANDMARKS, dtype=bool)
    lips[LIPS] = True
    eyes = np.zeros(NUM_LANDMARKS, dtype=bool)
    eyes[EYES] = True
    eyes &= ~lips
    return {"lips": lips, "eyes": eyes, "rest": ~(lips | eyes)}


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners.

    Args:
        landmarks: ``[..., 478, 3]`` or ``[..., 478, 2]``.
    Returns:
        ``[...]`` distances in the landmarks' units (x, y only).
    """
    a = landmarks[..., RIGHT_EYE_CORNERS[0], :2]
    b = landmarks[..., LEFT_EYE_CORNERS[0], :2]
    return np.linalg.norm(a - b, axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip distance over inter-ocular distance (0 for a closed mouth).

    Args:
        landmarks: ``[..., 478, 3]``.
    Returns:
        ``[...]`` dimensionless openings.
    """
    up = landmarks[..., MOUTH_INNER_LIPS[0], :2]
    lo = landmarks[..., MOUTH_INNER_LIPS[1], :2]
    return np.linalg.norm(up - lo, axis=-1) / inter_ocular(landmarks)
