"""Which frames the sender shows the receiver: its reference, and keyframes of what the reference lacks.

The receiver animates one still of the caller. A still with the mouth shut
has no teeth to show when the caller talks, one with open eyes has no
eyelids, a frontal one no side of the head. While the call runs,
:class:`KeyframeSelector` watches the tracked landmarks for frames that show
these, relative to the reference:

* ``mouth``: pictures of the mouth alone (:func:`mouth_box`: the lips and the
  skin around them, about 3.5 kB where a full picture takes 7-12), as many
  different mouths as the caller shows, at most :attr:`SelectConfig.max_mouths`.
  The receiver lays the lips of the picture nearest in mouth shape and head pose
  (:func:`codec.render.keyframes.mouth_distance`) over the face it renders, and
  takes the teeth and tongue of an open one, so the sender covers the mouths the
  caller makes: every frame whose mouth differs from every picture the receiver
  has is a candidate (at most :attr:`SelectConfig.mouth_pool` are kept, the one
  most like another leaving first, a copy of the frame around the mouth each), and every
  :attr:`SelectConfig.mouth_window_ms` the selector sends those that bring the
  mouths seen so far (the last :attr:`SelectConfig.demand_frames`) nearest a
  picture, each by at least :attr:`SelectConfig.min_gain` on average (a greedy
  facility location). Choosing late from many candidates matters: on the 7
  held-out clips, every frame of the first 5 s a candidate and one choice at 5 s
  gave mouth SSIM 0.846; choices every 1 s, or every 2nd frame a candidate, 0.843;
  only the mouths that bring 0.001 or more, 0.841;
* ``eyes_closed``: both lids at most :attr:`SelectConfig.max_blink` of the
  reference's opening;
* ``turn_left`` / ``turn_right``: the head turned by at least
  :attr:`SelectConfig.min_yaw_deg` towards the image's left or right (as the
  viewer sees it) from the reference's pose.

For the other kinds, when a frame first qualifies, the selector keeps the best
frame of that kind for :attr:`SelectConfig.settle_ms` and then offers it; a kind
is offered again only for a clearly better frame (:attr:`SelectConfig.better`),
at most :attr:`SelectConfig.per_kind` times. The byte budget is the
sender's (see :mod:`sender.call`): the selector only decides which frames.

Every picture is cut at the reference's scale (:func:`frame_picture`), the
full ones with the reference's crop box, so all of a call's pictures are framed alike.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from codec import regions as R
from codec.errors import MediaError, PortraitError
from codec.media import probe_video, read_image, read_video
from codec.motion import MotionState, motion_from_landmarks
from codec.picture import DEFAULT_QUALITY, MAX_SIDE, MIN_SIDE, Picture, PictureKind, encode_picture
from codec.render.keyframes import canonical_mouth, mouth_distance
from codec.render.mesh import lip_region
from codec.render.portrait import crop_box, crop_to_box, inside_of_crop, prepare_portrait

KEYFRAME_KINDS = (PictureKind.MOUTH, PictureKind.EYES_CLOSED, PictureKind.TURN_LEFT, PictureKind.TURN_RIGHT)
SETTLED_KINDS = KEYFRAME_KINDS[1:]
"""The kinds offered as the best frame of a settling window (the mouth is chosen by coverage)."""


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
        per_kind: at most this many keyframes of one kind (not the mouth).
        max_mouths: mouth pictures per call at most.
        mouth_window_ms: how often the mouth pictures to send are chosen (from the candidates so far).
        mouths_per_window: mouth pictures chosen from one window at most.
        min_gain: a mouth picture is sent only when it brings the mouths seen so far this much nearer (mean
            :func:`codec.render.keyframes.mouth_distance`) a picture the receiver has.
        min_distance: a mouth candidate differs at least this much from every picture the receiver has.
        demand_frames: the mouths seen so far: the last this many frames with a face.
        mouth_stride: every this many frames is a mouth candidate (the frames between differ little).
        mouth_pool: candidates kept at most (a copy of the frame around the mouth each).
    """

    min_mouth: float = 0.18
    mouth_margin: float = 0.06
    max_blink: float = 0.35
    min_yaw_deg: float = 15.0
    settle_ms: float = 1000.0
    better: float = 1.3
    per_kind: int = 2
    max_mouths: int = 16
    mouth_window_ms: float = 5000.0
    mouths_per_window: int = 16
    min_gain: float = 0.0002
    min_distance: float = 0.01
    demand_frames: int = 1500
    mouth_stride: int = 1
    mouth_pool: int = 128


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
        self._kinds = {k: _KindState() for k in SETTLED_KINDS}
        self._index = 0
        # Mouths: those the receiver has pictures of (shape [2], rotation [3, 3]), those seen, this window's
        # candidates.
        self._had: list[tuple[np.ndarray, np.ndarray]] = [(canonical_mouth(self._ref), self._ref.rotation)]
        self._seen: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=config.demand_frames)
        self._pool: list[tuple[Candidate, np.ndarray, np.ndarray]] = []
        self._pool_since: int | None = None
        self.mouths_sent = 0

    def scores(self, landmarks: np.ndarray, frame: np.ndarray | None = None) -> dict[PictureKind, float]:
        """Each kind's score for one frame (absent: the frame does not qualify).

        The mouth's score (its opening, more with teeth in view) says only that the frame shows a mouth
        open wider than the reference's; mouth pictures are chosen by coverage (:meth:`observe`).

        Args:
            landmarks: ``[478, 3]``.
            frame: ``[H, W, 3]`` uint8 RGB, or None (the mouth then scores on its opening alone).
        """
        lm = np.asarray(landmarks, np.float64)
        return self._scores(lm, motion_from_landmarks(lm), frame)

    def _scores(self, lm: np.ndarray, st: MotionState, frame: np.ndarray | None,
                mouth_too: bool = True) -> dict[PictureKind, float]:
        """:meth:`scores` of a frame whose motion state is known; ``mouth_too`` False leaves out the mouth's
        (what :meth:`observe` needs: mouth pictures are chosen by coverage, not by this score)."""
        c = self.config
        out: dict[PictureKind, float] = {}
        mouth = float(R.mouth_opening(lm))
        if mouth_too and mouth >= max(c.min_mouth, self._ref_mouth + c.mouth_margin):
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
                overwritten later; a mouth candidate keeps a copy of its :func:`mouth_box`), or None.
        """
        index = self._index
        self._index += 1
        scores: dict[PictureKind, float] = {}
        if landmarks is not None:
            lm = np.asarray(landmarks, np.float64)
            st = motion_from_landmarks(lm)
            scores = self._scores(lm, st, frame, mouth_too=False)
            self._see_mouth(lm, st, media_ms, frame, index)
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
        if self._pool_since is not None and media_ms - self._pool_since >= self.config.mouth_window_ms:
            ready += self._choose_mouths(media_ms)
        return ready

    def flush(self) -> list[Candidate]:
        """The candidates still settling (at the end of a clip)."""
        out = [self._offer(s) for s in self._kinds.values() if s.best is not None]
        return out + self._choose_mouths()

    def _offer(self, s: _KindState) -> Candidate:
        assert s.best is not None
        best = s.best
        s.offered.append(best.score)
        s.best, s.since_ms = None, None
        st = motion_from_landmarks(best.landmarks.astype(np.float64))
        self._had.append((canonical_mouth(st), st.rotation))  # every picture lends its lips
        return best

    def _see_mouth(self, lm: np.ndarray, st: MotionState, media_ms: int, frame: np.ndarray | None,
                   index: int) -> None:
        """Notes a frame's mouth, and keeps it as a candidate when it may be worth a picture."""
        c = self.config
        shape, rotation = canonical_mouth(st), st.rotation
        self._seen.append((shape, rotation))
        if self.mouths_sent >= c.max_mouths or index % c.mouth_stride:
            return
        near = float(self._distance([shape], [rotation], self._had).min())
        if near < c.min_distance:  # about a mouth the receiver has
            return
        image, local = (None, lm) if frame is None else _cut_mouth(frame, lm)
        self._pool.append((Candidate(PictureKind.MOUTH, media_ms, near, local.astype(np.float32), image, index),
                           shape, rotation))
        if len(self._pool) > c.mouth_pool:  # the one most like another goes
            d = self._distance([p[1] for p in self._pool], [p[2] for p in self._pool],
                               [(p[1], p[2]) for p in self._pool])
            np.fill_diagonal(d, np.inf)
            self._pool.pop(int(np.argmin(d.min(1))))
        if self._pool_since is None:
            self._pool_since = media_ms

    @staticmethod
    def _distance(shapes: list[np.ndarray], rotations: list[np.ndarray],
                  pictures: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return mouth_distance(np.stack(shapes), np.stack(rotations), np.stack([p[0] for p in pictures]),
                              np.stack([p[1] for p in pictures]))

    def _choose_mouths(self, now_ms: int | None = None) -> list[Candidate]:
        """The candidates that cover the mouths seen best (greedy facility location); the others stay
        candidates (at most :attr:`SelectConfig.mouth_pool`) while they differ from every picture sent."""
        pool, self._pool_since = self._pool, None
        c = self.config
        if not pool or not self._seen:
            return []
        shapes = [m[0] for m in self._seen]
        rotations = [m[1] for m in self._seen]
        nearest = self._distance(shapes, rotations, self._had).min(1)               # [D]
        to = self._distance(shapes, rotations, [(p[1], p[2]) for p in pool])       # [D, C]
        out: list[Candidate] = []
        chosen: set[int] = set()
        while len(out) < c.mouths_per_window and self.mouths_sent < c.max_mouths:
            gain = np.maximum(nearest[:, None] - to, 0.0).mean(0)
            j = int(np.argmax(gain))
            if gain[j] < c.min_gain:
                break
            nearest = np.minimum(nearest, to[:, j])
            to[:, j] = np.inf
            cand, shape, rotation = pool[j]
            cand.score = float(gain[j])
            out.append(cand)
            chosen.add(j)
            self._had.append((shape, rotation))
            self.mouths_sent += 1
        left = [p for j, p in enumerate(pool) if j not in chosen]
        if left and self.mouths_sent < c.max_mouths:
            near = self._distance([p[1] for p in left], [p[2] for p in left], self._had).min(1)
            left = [p for p, d in zip(left, near) if d >= c.min_distance]
        self._pool = left if self.mouths_sent < c.max_mouths else []
        if self._pool and now_ms is not None:  # the next window
            self._pool_since = now_ms
        return sorted(out, key=lambda m: m.index)


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


MOUTH_MARGIN = 0.12
"""A mouth picture reaches this share of its side past the lip region (:func:`mouth_box`)."""

_LIP_REGION = lip_region(2)[0]  # as codec.render.warp.LIP_RINGS: the landmarks a keyframe's lips are laid with


def mouth_box(landmarks: np.ndarray, least: float = 0.0) -> tuple[float, float, float, float]:
    """The square a mouth picture shows: the lips and two rings of face landmarks around them (what the
    renderer lays over the face it renders), with a margin.

    Args:
        landmarks: ``[478, 3]`` in a frame's pixels.
        least: the square's least side, pixels.
    Returns:
        ``(x0, y0, x1, y1)`` in the frame's pixels (may reach past its edges).
    """
    pts = np.asarray(landmarks, np.float64)[_LIP_REGION, :2]
    lo, hi = pts.min(0), pts.max(0)
    side = max(float((hi - lo).max()) * (1 + 2 * MOUTH_MARGIN), least)
    cx, cy = (lo + hi) / 2
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def _cut_mouth(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the frame around :func:`mouth_box` (a few pixels more, within the frame) and the landmarks
    moved into it: what a mouth candidate keeps of its frame."""
    x0, y0, x1, y1 = mouth_box(landmarks)
    pad = 0.25 * (x1 - x0) + 4  # room for a larger box (MIN_SIDE at a small picture scale: seldom)
    h, w = frame.shape[:2]
    a, b = max(int(np.floor(x0 - pad)), 0), max(int(np.floor(y0 - pad)), 0)
    c, d = min(int(np.ceil(x1 + pad)), w), min(int(np.ceil(y1 + pad)), h)
    if c <= a or d <= b:
        return frame[:1, :1].copy(), landmarks
    return frame[b:d, a:c].copy(), landmarks - np.array([a, b, 0.0])


def frame_picture(frame: np.ndarray, landmarks: np.ndarray, kind: PictureKind, media_ms: int,
                  box: tuple[float, float, float, float] | None = None, size: int = 512) -> Picture:
    """Cuts a camera frame into a :class:`Picture` as the renderer prepares portraits.

    A mouth picture shows the mouth alone (:func:`mouth_box`) at the scale of the others (``size`` over
    the box's side), on a square of at least :data:`codec.picture.MIN_SIDE`.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB (a mouth's: the frame, or a part of it around the mouth).
        landmarks: ``[478, 3]`` the face in ``frame``'s pixels.
        kind: what it shows.
        media_ms: its media time.
        box: the crop box (keyframes: the reference's); None: the face's own, as for the reference.
        size: the side of a full picture.
    """
    box = crop_box(np.asarray(landmarks)) if box is None else box
    if kind is PictureKind.MOUTH:
        k = size / (box[2] - box[0])
        box = mouth_box(landmarks, least=MIN_SIDE / k)
        size = min(max(int(round((box[2] - box[0]) * k)), MIN_SIDE), MAX_SIDE)
    p = crop_to_box(frame, landmarks, box, size)
    inside = inside_of_crop(box, (frame.shape[1], frame.shape[0]), size)
    return Picture(kind, p.image, p.landmarks, int(media_ms), inside)


KEYFRAME_BUDGET_BYTES = 100_000
"""Bytes of keyframes a sender sends in a call at most (a .tok holds as many)."""

MOUTH_SHARE = 0.65
"""Mouth pictures may take this share of :data:`KEYFRAME_BUDGET_BYTES`, so that the eyes and the head turns,
which come rarely, find room when they come (35 kB: three full pictures). The 16 mouth pictures of the held-out
clips took 52-62 kB (3.3-4.2 kB each); at 0.6 the 16th was left out on two of them."""


@dataclass
class KeyframeBudget:
    """The keyframe bytes a call may still spend (the sender's, a .tok's and the benches' one rule).

    Attributes:
        total: keyframe bytes at most.
        mouth_share: of which mouth pictures at most this share.
        spent: bytes taken so far; mouth_spent: of which mouth pictures'.
    """

    total: int = KEYFRAME_BUDGET_BYTES
    mouth_share: float = MOUTH_SHARE
    spent: int = 0
    mouth_spent: int = 0

    def take(self, kind: PictureKind, nbytes: int) -> bool:
        """Spends ``nbytes`` on a keyframe of ``kind`` when they fit (else spends nothing and says False)."""
        if self.spent + nbytes > self.total:
            return False
        mouth = kind is PictureKind.MOUTH
        if mouth and self.mouth_spent + nbytes > self.mouth_share * self.total:
            return False
        self.spent += nbytes
        self.mouth_spent += nbytes if mouth else 0
        return True


def clip_frame_picture(frame: np.ndarray, landmarks: np.ndarray, kind: PictureKind, media_ms: int) -> Picture:
    """:func:`frame_picture` of a frame that is already a reference crop (a corpus clip's square frame): a
    full picture is the frame itself, a mouth picture its mouth at the frame's scale."""
    side = frame.shape[1]
    return frame_picture(frame, landmarks, kind, media_ms, (0.0, 0.0, float(side), float(side)), side)


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
    out, spend = [reference], KeyframeBudget(budget)
    for c in chosen:
        assert c.frame is not None
        record = encode_picture(frame_picture(c.frame, c.landmarks, c.kind, c.media_ms, box), quality=quality)
        if spend.take(c.kind, len(record)):
            out.append(record)
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
