"""Face tracking: an RGB frame of any size -> 478 3D landmarks in pixels.

Wraps MediaPipe's refined face mesh (468 surface points plus 10 iris points),
whose models ship inside the ``mediapipe==0.10.21`` wheel, so nothing is
downloaded at run time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.errors import NoFaceError
from codec.media import probe_video, read_video
from codec.regions import NUM_LANDMARKS

# MediaPipe logs through glog/absl on import; keep a user's terminal quiet.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences the C++ log lines MediaPipe writes straight to file descriptor 2.

    They appear when its graph starts and on its first frame, before any
    logging setup can reach them, and would break a tool's one-line errors.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class FaceTrackerConfig:
    """Settings of the face mesh.

    Attributes:
        video: track from frame to frame (MediaPipe's video mode) instead of
            detecting the face anew in every image.
        max_faces: faces to look for; 2 lets a caller tell "several faces" apart.
        min_detection_confidence: detector threshold.
        min_tracking_confidence: below this the tracker re-runs detection.
    """

    video: bool = True
    max_faces: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


class FaceTracker:
    """Tracks one face through a sequence of frames.

    Example:
        >>> tracker = FaceTracker()
        >>> landmarks = tracker.track(frame)   # [478, 3] float32, pixels
    """

    def __init__(self, config: FaceTrackerConfig = FaceTrackerConfig()) -> None:
        # lazy: slow to import (TensorFlow Lite); loaded when a face is first tracked
        import mediapipe as mp

        self.config = config
        with _quiet_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not config.video,
                max_num_faces=config.max_faces,
                refine_landmarks=True,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=config.min_tracking_confidence,
            )
        self._started = False

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track_all(self, frame: np.ndarray) -> list[np.ndarray]:
        """Landmarks of every face found (at most ``config.max_faces``).

        Args:
            frame: ``[H, W, 3]`` uint8 RGB.
        Returns:
            a list of ``[478, 3]`` float32 arrays: x, y in pixels of ``frame``,
            z in the same scale as x (MediaPipe's depth times the width).
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an [H, W, 3] uint8 RGB frame, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self._started:
            result = self._mesh.process(np.ascontiguousarray(frame))
        else:
            with _quiet_stderr():
                result = self._mesh.process(np.ascontiguousarray(frame))
            self._started = True
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            if pts.shape[0] != NUM_LANDMARKS:
                continue
            pts *= np.array([w, h, w], dtype=np.float32)
            faces.append(pts)
        return faces

    def track(self, frame: np.ndarray) -> np.ndarray:
        """Landmarks of the face in ``frame``.

        Args:
            frame: ``[H, W, 3]`` uint8 RGB.
        Returns:
            ``[478, 3]`` float32 landmarks (see :meth:`track_all`).
        Raises:
            NoFaceError: no face in the frame.
        """
        faces = self.track_all(frame)
        if not faces:
            raise NoFaceError("no face found in the frame")
        return faces[0]


def detect_landmarks(image: np.ndarray) -> np.ndarray:
    """Landmarks of the single face in a still image (portrait use).

    Raises:
        NoFaceError: no face.
        ValueError: more than one face (the caller decides how to report it).
    """
    with FaceTracker(FaceTrackerConfig(video=False, max_faces=2)) as tracker:
        faces = tracker.track_all(image)
    if not faces:
        raise NoFaceError("no face found in the image")
    if len(faces) > 1:
        raise ValueError(f"{len(faces)} faces found in the image; expected one")
    return faces[0]


@dataclass
class ClipLandmarks:
    """Landmarks of every frame of a clip.

    Attributes:
        landmarks: ``[T, 478, 3]`` float32 pixels; NaN where no face was found.
        valid: ``[T]`` bool, a face was found.
        fps: the clip's frame rate.
        size: ``(width, height)`` of the frames.
    """

    landmarks: np.ndarray
    valid: np.ndarray
    fps: float
    size: tuple[int, int]


def extract_landmarks(path: str | Path, max_frames: int | None = None) -> ClipLandmarks:
    """Tracks the face through every frame of a video (the corpus caches it: :mod:`codec.train.corpus`)."""
    info = probe_video(path)
    out, valid = [], []
    with FaceTracker() as tracker:
        for frame in read_video(path, max_frames):
            try:
                out.append(tracker.track(frame))
                valid.append(True)
            except NoFaceError:
                out.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
                valid.append(False)
    return ClipLandmarks(np.stack(out), np.array(valid), info.fps, (info.width, info.height))
