"""Keyframes: extra pictures of the caller that show what the portrait does not.

One photo has one mouth shape, open eyes and one head pose. During a call the
sender can send a few more frames (:class:`Keyframe`): the mouth open with the
teeth showing, the eyes closed, the head turned. The renderer
(:meth:`codec.render.pipeline.Renderer.add_keyframe`) takes from them what the
portrait lacks: the inside of the mouth from the keyframe whose mouth shape is
nearest the target's, and real lids for a blink.

:func:`pick_keyframes` chooses such frames from tracked landmarks (the
sender's choice, and the benchmark's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec import regions as R
from codec.errors import NoFaceError, PortraitError
from codec.face import detect_landmarks
from codec.motion import MotionState, load_template, motion_from_landmarks

KINDS = ("mouth", "eyes_closed", "turn_left", "turn_right")

MIN_OPENING = 0.08
"""Least inner-lip opening (canonical, inter-ocular distances) for a frame to count as a mouth keyframe."""

CLOSED_SHARE = 0.5
"""A frame's lids count as closed below this share of the frames' median opening."""

MIN_TURN_DEG = 12.0
"""Least head turn (yaw from the first frame) for a turn keyframe."""


@dataclass(frozen=True)
class Keyframe:
    """A picture of the caller beside the portrait.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB; best the reference's crop (the portrait's
            box and size); a smaller crop is fine, the renderer uses what lies inside it.
        landmarks: ``[478, 3]`` float32 in ``image``'s pixels.
        kind: what it was picked for (one of :data:`KINDS`, or empty); informational:
            the renderer picks per frame by mouth shape, lid opening and pose.
    """

    image: np.ndarray
    landmarks: np.ndarray
    kind: str = ""

    def __post_init__(self) -> None:
        img, lm = self.image, self.landmarks
        if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
            raise ValueError(f"a keyframe's image must be [H, W, 3] uint8 RGB, got {getattr(img, 'shape', img)}")
        if not (isinstance(lm, np.ndarray) and lm.shape == (R.NUM_LANDMARKS, 3) and np.isfinite(lm).all()):
            raise ValueError(f"a keyframe's landmarks must be a finite [478, 3] array, got {getattr(lm, 'shape', lm)}")

    @staticmethod
    def from_image(image: np.ndarray, kind: str = "") -> "Keyframe":
        """A keyframe of a picture, its landmarks found by the face tracker.

        Raises:
            PortraitError: no face, or several.
        """
        try:
            lm = detect_landmarks(np.ascontiguousarray(image))
        except NoFaceError:
            raise PortraitError("keyframe: no face found") from None
        except ValueError as e:
            raise PortraitError(f"keyframe: {e}") from None
        return Keyframe(np.ascontiguousarray(image), lm.astype(np.float32), kind)


def canonical_mouth(state: MotionState) -> np.ndarray:
    """Mouth shape in the head's own frame, free of pose and scale.

    Args:
        state: motion states ``[...]``.
    Returns:
        ``[..., 2]``: inner-lip opening and mouth-corner width, in inter-ocular distances.
    """
    canon = load_template().shape + state.expression
    up, lo = R.MOUTH_INNER_LIPS
    left, right = R.MOUTH_CORNERS
    opening = np.maximum(canon[..., lo, 1] - canon[..., up, 1], 0.0)
    width = canon[..., right, 0] - canon[..., left, 0]
    return np.stack([opening, width], -1)


def yaw_degrees(state: MotionState, reference: MotionState) -> np.ndarray:
    """Head turn about the vertical axis from ``reference``, in degrees (positive: towards image right)."""
    rel = state.rotation @ np.swapaxes(reference.rotation, -1, -2)
    return np.degrees(np.arctan2(rel[..., 0, 2], rel[..., 2, 2]))


def pick_keyframes(landmarks: np.ndarray, valid: np.ndarray | None = None) -> list[tuple[int, str]]:
    """Frames worth sending as keyframes.

    The widest-open mouth (and one about half as open, for nearer shapes), the
    most closed eyes, and the largest head turn each way, each only when it
    shows something the first frame does not.

    Args:
        landmarks: ``[T, 478, 3]`` tracked landmarks (NaN where no face).
        valid: ``[T]`` frames with a face (default: frames without NaN).
    Returns:
        ``(frame index, kind)`` pairs, no frame twice.
    """
    lm = np.asarray(landmarks, np.float64)
    ok = ~np.isnan(lm).any(axis=(1, 2)) if valid is None else np.asarray(valid, bool) & ~np.isnan(lm).any(axis=(1, 2))
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return []
    st = motion_from_landmarks(lm[idx])
    picks: list[tuple[int, str]] = []
    opening = canonical_mouth(st)[:, 0]
    if opening.max() >= MIN_OPENING:
        widest = int(np.argmax(opening))
        picks.append((int(idx[widest]), "mouth"))
        half = int(np.argmin(np.abs(opening - opening[widest] / 2)))
        if opening[half] >= MIN_OPENING / 2 and half != widest:
            picks.append((int(idx[half]), "mouth"))
    blink = st.blink.mean(-1)
    closed = int(np.argmin(blink))
    if blink[closed] < CLOSED_SHARE * float(np.median(blink)):
        picks.append((int(idx[closed]), "eyes_closed"))
    first = MotionState(st.rotation[0], st.translation[0], st.scale[0], st.expression[0], st.gaze[0], st.blink[0])
    yaw = yaw_degrees(st, first)
    for k, kind in ((int(np.argmin(yaw)), "turn_left"), (int(np.argmax(yaw)), "turn_right")):
        if abs(yaw[k]) >= MIN_TURN_DEG:
            picks.append((int(idx[k]), kind))
    out: list[tuple[int, str]] = []
    for i, kind in picks:
        if all(i != j for j, _ in out):
            out.append((i, kind))
    return out
