"""Which frames the sender shows the receiver: its reference, and keyframes of what the reference lacks.

The receiver animates one still of the caller. A still with the mouth shut
has no teeth to show when the caller talks, one with open eyes has no
eyelids, a frontal one no side of the head. While the call runs,
:class:`KeyframeSelector` watches the tracked landmarks for frames that show
these, relative to the reference:

* ``mouth``: the inner lips open by at least :attr:`SelectConfig.min_mouth`
  of the inter-ocular distance (and by more than the reference's), preferring
  wide openings with teeth in view (bright pixels between the lips);
* ``eyes_closed``: both lids at most :attr:`SelectConfig.max_blink` of the
  reference's opening;
* ``turn_left`` / ``turn_right``: the head turned by at least
  :attr:`SelectConfig.min_yaw_deg` towards the image's left or right (as the
  viewer sees it) from the reference's pose.

When a frame first qualifies for a kind, the selector keeps the best frame
of that kind for :attr:`SelectConfig.settle_ms` and then offers it; a kind
is offered again only for a clearly better frame (:attr:`SelectConfig.better`),
at most :attr:`SelectConfig.per_kind` times. The byte budget is the
sender's (see :mod:`sender.call`): the selector only decides which frames.

Every picture is cut with the reference's crop box (:func:`frame_picture`),
so all of a call's pictures are framed alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from codec import regions as R
from codec.errors import MediaError, PortraitError
from codec.media import probe_video, read_image, read_video
from codec.motion import MotionState, motion_from_landmarks
from codec.picture import DEFAULT_QUALITY, Picture, PictureKind, encode_picture
from codec.render.portrait import crop_box, crop_to_box, inside_of_crop, prepare_portrait

KEYFRAME_KINDS = (PictureKind.MOUTH, PictureKind.EYES_CLOSED, PictureKind.TURN_LEFT, PictureKind.TURN_RIGHT)


@dataclass(frozen=True)
class SelectConfig:
    """Thresholds of the keyframe selector.

    Attributes:
        min_mouth: least inner-lip opening over inter-ocular distance for a mouth keyframe.
        mouth_margin: and at least this much more than the reference's opening.
        max_blink: most lid opening, as a fraction of the reference's, for an eyes-closed keyframe.
        min_yaw_deg: least head turn from the reference for a turn keyframe.
        settle_ms: after a kind's first qualifying frame, how long to look for a better one before offering it.
        better: a kind is offered again only for a frame scoring this many times the last one offered.
        per_kind: at most this many keyframes of one kind.
    """

    min_mouth: float = 0.18
    mouth_margin: float = 0.06
    max_blink: float = 0.35
    min_yaw_deg: float = 15.0
    settle_ms: float = 1000.0
    better: float = 1.3
    per_kind: int = 2


@dataclass
class Candidate:
    """A frame offered as a keyframe.

    Attributes:
        kind: what it shows.
        media_ms: its media time.
        score: how well it shows it (larger is better; comparable within a kind only).
        landmarks: ``[478, 3]`` in the frame's pixels.
        frame: ``[H, W, 3]`` uint8 RGB, or None when the selector saw landmarks only.
        index: the frame's index among those observed.
    """

    kind: PictureKind
    media_ms: int
    score: float
    landmarks: np.ndarray
    frame: np.ndarray | None
    index: int


@dataclass
class _KindState:
    best: Candidate | None = None
    since_ms: int | None = None  # media time of the first qualifying frame of the open window
    offered: list[float] = field(default_factory=list)  # scores offered so far


def yaw_degrees(state: MotionState, reference: MotionState) -> float:
    """Head turn about the vertical axis from the reference, degrees; positive: the nose moves to the image's left."""
    rel = state.rotation @ reference.rotation.T
    return math.degrees(math.atan2(float(rel[0, 2]), float(rel[2, 2])))


def teeth_fraction(frame: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the mouth opening's pixels brighter than the lips around it (teeth are; tongue and shadow are not).

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
        landmarks: ``[478, 3]`` in ``frame``'s pixels.
    Returns:
        a fraction in ``[0, 1]`` (0 when the opening covers no pixel).
    """
    inner = landmarks[R.LIPS_INNER, :2]
    outer = landmarks[R.LIPS_OUTER, :2]
    h, w = frame.shape[:2]
    x0, y0 = np.floor(outer.min(0)).astype(int)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    patch = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    mouth = np.zeros(patch.shape, np.uint8)
    lips = np.zeros(patch.shape, np.uint8)
    off = np.array([x0, y0], np.float64)
    cv2.fillPoly(lips, [np.round(outer - off).astype(np.int32)], (1,))
    cv2.fillPoly(mouth, [np.round(inner - off).astype(np.int32)], (1,))
    lips[mouth > 0] = 0
    if not mouth.any() or not lips.any():
        return 0.0
    return float((patch[mouth > 0] > np.median(patch[lips > 0])).mean())


class KeyframeSelector:
    """Watches a call's frames and offers keyframes (see the module's docstring).

    Args:
        reference_landmarks: ``[478, 3]`` of the reference frame, in the frames' pixels.
        config: thresholds.
    """

    def __init__(self, reference_landmarks: np.ndarray, config: SelectConfig = SelectConfig()) -> None:
        self.config = config
        ref = np.asarray(reference_landmarks, np.float64)
        self._ref = motion_from_landmarks(ref)
        self._ref_mouth = float(R.mouth_opening(ref))
        self._ref_blink = float(np.mean(self._ref.blink))
        self._kinds = {k: _KindState() for k in KEYFRAME_KINDS}
        self._index = 0

    def scores(self, landmarks: np.ndarray, frame: np.ndarray | None = None) -> dict[PictureKind, float]:
        """Each kind's score for one frame (absent: the frame does not qualify).

        Args:
            landmarks: ``[478, 3]``.
            frame: ``[H, W, 3]`` uint8 RGB, or None (the mouth then scores on its opening alone).
        """
        c = self.config
        lm = np.asarray(landmarks, np.float64)
        st = motion_from_landmarks(lm)
        out: dict[PictureKind, float] = {}
        mouth = float(R.mouth_opening(lm))
        if mouth >= max(c.min_mouth, self._ref_mouth + c.mouth_margin):
            teeth = teeth_fraction(frame, lm) if frame is not None else 0.0
            out[PictureKind.MOUTH] = mouth * (0.5 + teeth)
        blink = float(np.max(st.blink))
        if self._ref_blink > 0 and blink <= c.max_blink * self._ref_blink:
            out[PictureKind.EYES_CLOSED] = 1.0 - blink / self._ref_blink
        yaw = yaw_degrees(st, self._ref)
        if yaw >= c.min_yaw_deg:
            out[PictureKind.TURN_LEFT] = yaw
        elif yaw <= -c.min_yaw_deg:
            out[PictureKind.TURN_RIGHT] = -yaw
        return out

    def observe(self, landmarks: np.ndarray | None, media_ms: int, frame: np.ndarray | None = None) -> list[Candidate]:
        """One frame; the keyframes to send now (usually none).

        Args:
            landmarks: ``[478, 3]``, or None when the frame has no face.
            media_ms: its media time.
            frame: the frame itself (kept, not copied, while it is a kind's best: pass a frame that is not
                overwritten later), or None.
        """
        index = self._index
        self._index += 1
        scores = {} if landmarks is None else self.scores(landmarks, frame)
        ready: list[Candidate] = []
        for kind, s in self._kinds.items():
            score = scores.get(kind)
            if score is not None and len(s.offered) < self.config.per_kind:
                bar = s.offered[-1] * self.config.better if s.offered else 0.0
                if score > bar and (s.best is None or score > s.best.score):
                    assert landmarks is not None
                    s.best = Candidate(kind, media_ms, score, np.asarray(landmarks, np.float32), frame, index)
                    if s.since_ms is None:
                        s.since_ms = media_ms
            if s.best is not None and s.since_ms is not None and media_ms - s.since_ms >= self.config.settle_ms:
                ready.append(self._offer(s))
        return ready

    def flush(self) -> list[Candidate]:
        """The candidates still settling (at the end of a clip)."""
        return [self._offer(s) for s in self._kinds.values() if s.best is not None]

    @staticmethod
    def _offer(s: _KindState) -> Candidate:
        assert s.best is not None
        best = s.best
        s.offered.append(best.score)
        s.best, s.since_ms = None, None
        return best


def pick_keyframes(landmarks: np.ndarray, valid: np.ndarray, frames: np.ndarray | None = None, fps: float = 25.0,
                   reference_index: int | None = None,
                   config: SelectConfig = SelectConfig()) -> list[tuple[int, str]]:
    """The keyframes the live sender would pick from a clip, as the selector runs frame by frame.

    Args:
        landmarks: ``[T, 478, 3]`` tracked landmarks (NaN or anything where ``valid`` is False).
        valid: ``[T]`` bool, frames with a face.
        frames: ``[T, H, W, 3]`` uint8 RGB, or None (the mouth is then chosen on its opening alone).
        fps: frame rate (the settling window is in media time).
        reference_index: the reference frame (default: the first with a face).
        config: thresholds.
    Returns:
        ``(frame index, kind)`` pairs, kinds as in :attr:`codec.picture.PictureKind.label`, in the order
        the sender would send them.
    """
    valid = np.asarray(valid, bool)
    if not valid.any():
        return []
    ref = int(np.argmax(valid)) if reference_index is None else int(reference_index)
    sel = KeyframeSelector(landmarks[ref], config)
    out: list[Candidate] = []
    for t in range(len(valid)):
        out += sel.observe(landmarks[t] if valid[t] else None, int(round(t * 1000 / fps)),
                           None if frames is None else frames[t])
    out += sel.flush()
    return [(c.index, c.kind.label) for c in out]


def frame_picture(frame: np.ndarray, landmarks: np.ndarray, kind: PictureKind, media_ms: int,
                  box: tuple[float, float, float, float] | None = None, size: int = 512) -> Picture:
    """Cuts a camera frame into a :class:`Picture` as the renderer prepares portraits.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
        landmarks: ``[478, 3]`` the face in ``frame``'s pixels.
        kind: what it shows.
        media_ms: its media time.
        box: the crop box (keyframes: the reference's); None: the face's own, as for the reference.
        size: the picture's side.
    """
    box = crop_box(np.asarray(landmarks)) if box is None else box
    p = crop_to_box(frame, landmarks, box, size)
    inside = inside_of_crop(box, (frame.shape[1], frame.shape[0]), size)
    return Picture(kind, p.image, p.landmarks, int(media_ms), inside)


KEYFRAME_BUDGET_BYTES = 100_000
"""Bytes of keyframes a sender sends in a call at most (a .tok holds as many)."""


def clip_pictures(path: str | Path, landmarks: np.ndarray, face: np.ndarray, reference_frame: int,
                  keyframes: bool = True, budget: int = KEYFRAME_BUDGET_BYTES,
                  quality: int = DEFAULT_QUALITY) -> list[bytes]:
    """The picture records a sender of this clip would send: its reference, then keyframes within the budget.

    Reads the clip once more, frame by frame, running the selector as the live sender does.

    Args:
        path: the video.
        landmarks: ``[T, 478, 3]`` its tracked landmarks; ``face`` ``[T]`` where they are valid.
        reference_frame: the stream's reference frame.
        keyframes: add keyframes (else the reference only).
        budget: keyframe bytes at most.
        quality: image quality (:func:`codec.picture.encode_image`).
    Raises:
        MediaError: the video cannot be read.
    """
    fps = probe_video(path).fps
    ref_lm = landmarks[reference_frame]
    box = crop_box(ref_lm)
    selector = KeyframeSelector(ref_lm)
    reference: bytes | None = None
    chosen: list[Candidate] = []
    for t, frame in enumerate(read_video(path, len(face))):
        media_ms = int(round(t * 1000 / fps))
        if t == reference_frame:
            reference = encode_picture(frame_picture(frame, ref_lm, PictureKind.REFERENCE, media_ms), quality=quality)
        if keyframes:
            chosen += selector.observe(landmarks[t] if face[t] else None, media_ms, frame)
    if keyframes:
        chosen += selector.flush()
    if reference is None:
        raise MediaError(f"{path}: its reference frame {reference_frame} could not be read again")
    out, spent = [reference], 0
    for c in chosen:
        assert c.frame is not None
        record = encode_picture(frame_picture(c.frame, c.landmarks, c.kind, c.media_ms, box), quality=quality)
        if spent + len(record) <= budget:
            out.append(record)
            spent += len(record)
    return out


def photo_picture(photo: str | Path | np.ndarray, size: int = 512) -> Picture:
    """A photo as the caller's reference picture (the speech-driven mode has no camera frame to send).

    Raises:
        PortraitError: unreadable, no face, or several faces.
    """
    if isinstance(photo, np.ndarray):
        image = photo
    else:
        try:
            image = read_image(photo)
        except MediaError as e:
            raise PortraitError(f"cannot use as a portrait: {e}") from None
    p = prepare_portrait(image, size=size)
    return Picture(PictureKind.REFERENCE, p.image, p.landmarks, 0,
                   inside_of_crop(p.box, (image.shape[1], image.shape[0]), size))
