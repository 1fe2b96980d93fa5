"""What the receiver shows until it has the caller's picture: a neutral placeholder, not someone else's face.

A grey head-and-shoulders silhouette with the caller's motion drawn on it as
lines (face outline, brows, eyes, lips), and a caption saying why. It stands
in for a renderer (``render([B, 478, 3]) -> [B, H, W, 3] uint8``) and costs
well under a millisecond a frame: the background is drawn once, each frame
copies it and draws a few polylines.
"""

from __future__ import annotations

import cv2
import numpy as np

from codec import regions as R
from codec.motion import load_template

BACKGROUND = (38, 42, 50)
SILHOUETTE = (74, 80, 92)
LINES = (170, 178, 190)
TEXT = (210, 214, 222)
WAITING = "waiting for the caller's picture"
_CONTOURS = (R.FACE_OVAL, R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR, R.LIPS_OUTER, R.LIPS_INNER)
_OPEN = (R.RIGHT_BROW[[7, 4, 5, 2, 1, 0]], R.LEFT_BROW[[7, 4, 5, 2, 1, 0]])


def placeholder_landmarks(size: int = 512) -> np.ndarray:
    """``[478, 3]`` a neutral face at rest (the canonical template), framed as a prepared portrait frames one."""
    tpl = load_template().shape
    iod = size * 0.2
    lm = tpl * iod + np.array([size / 2, size * 0.47, 0.0])
    return lm.astype(np.float32)


class PlaceholderRenderer:
    """Draws the placeholder (see the module's docstring).

    Args:
        size: side of the frames.
        message: the caption.
    """

    def __init__(self, size: int = 512, message: str = WAITING) -> None:
        self.size = size
        self.rest = placeholder_landmarks(size)
        self._scale = size / 512
        self.message = message
        self._background = np.zeros((size, size, 3), np.uint8)
        self._draw_background(message)

    def set_message(self, message: str) -> None:
        """Changes the caption (e.g. once the caller says its picture is private)."""
        if message == self.message:
            return
        self.message = message
        self._draw_background(message)

    def _draw_background(self, message: str) -> None:
        """The silhouette and the caption (an empty one too), drawn once per caption."""
        s, bg = self.size, np.empty((self.size, self.size, 3), np.uint8)
        bg[:] = BACKGROUND
        lm = self.rest
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
        centre = (int((lo[0] + hi[0]) / 2), int((lo[1] + hi[1]) / 2))
        axes = (int((hi[0] - lo[0]) * 0.62), int((hi[1] - lo[1]) * 0.62))
        cv2.ellipse(bg, (centre[0], int(hi[1] + s * 0.42)), (int(s * 0.42), int(s * 0.3)), 0, 180, 360,
                    SILHOUETTE, -1, cv2.LINE_AA)
        cv2.rectangle(bg, (centre[0] - axes[0] // 2, int(hi[1])), (centre[0] + axes[0] // 2, int(hi[1] + s * 0.14)),
                      SILHOUETTE, -1)
        cv2.ellipse(bg, centre, axes, 0, 0, 360, SILHOUETTE, -1, cv2.LINE_AA)
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.55 * self._scale
        (w, h), _ = cv2.getTextSize(message, font, scale, 1)
        cv2.putText(bg, message, ((s - w) // 2, s - int(h * 1.6)), font, scale, TEXT, 1, cv2.LINE_AA)
        self._background = bg

    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """``[478, 3]`` or ``[B, 478, 3]`` landmarks -> ``[B, size, size, 3]`` uint8 frames of the placeholder."""
        target = np.asarray(target_landmarks, np.float32)
        if target.ndim == 2:
            target = target[None]
        out = np.repeat(self._background[None], len(target), 0)
        thickness = max(1, int(round(1.5 * self._scale)))
        for frame, lm in zip(out, target):
            if not np.isfinite(lm).all():
                continue
            pts = np.round(lm[:, :2] * 4).astype(np.int32)  # 2 fractional bits: smooth lines
            closed = [pts[c] for c in _CONTOURS]
            opened = [pts[c] for c in _OPEN]
            cv2.polylines(frame, closed, True, LINES, thickness, cv2.LINE_AA, shift=2)
            cv2.polylines(frame, opened, False, LINES, thickness, cv2.LINE_AA, shift=2)
        return out
