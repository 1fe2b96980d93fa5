"""What the caller's picture costs in talk-bench: the bytes a sender of a clip sends besides motion.

In a call the receiver renders the sender's own picture: the reference frame, sent once at the start, and
keyframes within a budget (:mod:`sender.pictures`). talk-bench counts them honestly: each clip's reference
frame is compressed as a sender compresses it (:mod:`codec.picture`) and talkcodec renders on the
*decoded* picture, as a receiver does; keyframes are picked from the clip's first
:data:`KEYFRAME_SECONDS` only (the rest of the clip is what gets scored) and their bytes counted. The
bitrate is reported with these bytes spread over the clip, and over a 5-minute call.

talk-bench's clips are already framed as a portrait (512 px, the face centred), so the picture is the
whole frame, not a crop of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec.keyframe_select import KeyframeBudget, clip_frame_picture, pick_keyframes
from codec.picture import DEFAULT_QUALITY, Picture, PictureKind, decode_picture, encode_picture

KEYFRAME_SECONDS = 5.0
FIVE_MINUTES_S = 300.0


def keyframe_window(frames: int, fps: float, seconds: float = KEYFRAME_SECONDS) -> int:
    """Frames at the start of a clip that keyframes may come from, and that are then not scored: ``seconds``,
    at most half the clip."""
    return int(min(round(seconds * fps), frames // 2))


@dataclass
class ClipPictures:
    """A clip's pictures as a sender would send them.

    Attributes:
        reference: the reference picture as the receiver decodes it (its image compressed and back).
        reference_bytes: its record's bytes.
        keyframes: keyframes as decoded, picked from the first :data:`KEYFRAME_SECONDS`.
        keyframe_bytes: their records' bytes (within :data:`codec.keyframe_select.KEYFRAME_BUDGET_BYTES`).
    """

    reference: Picture
    reference_bytes: int
    keyframes: list[Picture] = field(default_factory=list)
    keyframe_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.reference_bytes + self.keyframe_bytes

    def kbps(self, motion_kbps: float, seconds: float) -> float:
        """``motion_kbps`` with the pictures spread over ``seconds`` (sent once per call)."""
        return motion_kbps + self.bytes * 8 / seconds / 1000

    def record(self, motion_kbps: float, clip_seconds: float) -> dict[str, object]:
        """The fields talk-bench adds to a talkcodec record."""
        return {"reference_bytes": self.reference_bytes, "keyframe_bytes": self.keyframe_bytes,
                "keyframes": [k.kind.label for k in self.keyframes],
                "kbps_with_pictures": self.kbps(motion_kbps, clip_seconds),
                "kbps_with_pictures_5min": self.kbps(motion_kbps, FIVE_MINUTES_S)}


def clip_pictures(frames: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, fps: float, reference_index: int,
                  quality: int = DEFAULT_QUALITY, window: int | None = None) -> ClipPictures:
    """The reference and keyframes of a clip, compressed, counted and decoded again.

    Args:
        frames: ``[T, S, S, 3]`` uint8 RGB (square, portrait-framed).
        landmarks: ``[T, 478, 3]`` tracked; ``valid`` ``[T]`` where they hold.
        fps: frame rate.
        reference_index: the stream's reference frame.
        quality: image quality.
        window: the first frames keyframes may come from (default :data:`KEYFRAME_SECONDS`' worth).
    """
    ref = Picture(PictureKind.REFERENCE, frames[reference_index], landmarks[reference_index].astype(np.float32),
                  int(round(reference_index * 1000 / fps)))
    record = encode_picture(ref, quality=quality)
    out = ClipPictures(decode_picture(record), len(record))
    n = min(len(frames), int(round(KEYFRAME_SECONDS * fps)) if window is None else window)
    picks = pick_keyframes(landmarks[:n], valid[:n], frames[:n], fps, reference_index) if reference_index < n else []
    spend = KeyframeBudget()
    for index, kind in picks:
        kf = clip_frame_picture(frames[index], landmarks[index].astype(np.float32), PictureKind.of_label(kind),
                                int(round(index * 1000 / fps)))
        rec = encode_picture(kf, quality=quality)
        if not spend.take(kf.kind, len(rec)):
            continue
        out.keyframes.append(decode_picture(rec))
        out.keyframe_bytes += len(rec)
    return out
