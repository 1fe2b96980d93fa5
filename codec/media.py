"""Reading and writing media files (video frames, audio) with PyAV.

Every failure to open or decode a file becomes a :class:`MediaError` with the
file's name, so command-line tools can report it on one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from codec.errors import MediaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds.

    Attributes:
        fps: frames per second of the video stream.
        frames: frame count if the container says so, else 0.
        width, height: frame size in pixels.
        has_audio: the file has an audio stream.
    """

    fps: float
    frames: int
    width: int
    height: int
    has_audio: bool


def _open(path: str | Path) -> av.container.InputContainer:

    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    try:
        return av.open(str(p))
    except Exception as e:  # PyAV raises many distinct types for bad input
        raise MediaError(f"{p}: not a readable media file ({type(e).__name__})") from None


def probe_video(path: str | Path) -> VideoInfo:
    """Reads a video file's header.

    Raises:
        MediaError: missing file, unreadable file, or no video stream.
    """
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: has no video stream")
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        return VideoInfo(float(rate), int(s.frames or 0), s.codec_context.width,
                         s.codec_context.height, bool(c.streams.audio))


def read_video(path: str | Path, max_frames: int | None = None, warn_short: bool = True) -> Iterator[np.ndarray]:
    """Decodes a video's frames in order.

    A file that ends before the frame count its container announces (a
    truncated or damaged download), or whose data turns corrupt after some
    frames, yields the frames it has and logs one warning saying how many of
    how many were read: a user learns that the clip is shorter than it should be.

    Args:
        path: any container PyAV reads.
        max_frames: stop after this many frames.
        warn_short: log the warning above (a looping reader asks on its first pass only).
    Yields:
        ``[H, W, 3]`` uint8 RGB frames.
    Raises:
        MediaError: missing, unreadable, no video stream, or no decodable frame at all.
    """
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        announced = int(stream.frames or 0)
        n = 0
        try:
            for frame in c.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
        except av.FFmpegError as e:
            if n == 0:
                raise MediaError(f"{path}: corrupt video data ({e})") from None
            if warn_short:
                log.warning("%s: corrupt video data after %d%s frames (%s): the rest is left out", path, n,
                            f" of the {announced} announced" if announced else "", e)
            return
        if n == 0:
            raise MediaError(f"{path}: video stream holds no frames")
        # Containers count a frame or two differently from what decodes (edit lists): more is damage.
        if warn_short and announced and n < announced - 2:
            log.warning("%s ended after %d of the %d frames its container announces: the file is truncated "
                        "or damaged, and only those frames are used", path, n, announced)


def read_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Decodes a file's first audio stream to mono float32 at ``rate`` Hz.

    Returns:
        ``[N]`` float32 samples in [-1, 1].
    Raises:
        MediaError: missing, unreadable or no audio stream.
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in c.decode(c.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise MediaError(f"{path}: corrupt audio data ({e})") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """Reads a still image (PNG, JPEG, ...) as ``[H, W, 3]`` uint8 RGB.

    Raises:
        MediaError: missing or not an image.
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{p}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class VideoWriter:
    """Writes RGB frames (and optionally mono audio) to an MP4 (H.264 + AAC).

    Both streams are declared before anything is written (MP4 needs its
    streams up front), so pass ``audio_rate`` if audio will follow.

    Example:
        >>> with VideoWriter("out.mp4", fps=25, audio_rate=48000) as w:
        ...     w.write(frames)           # [B, H, W, 3] or [H, W, 3] uint8
        ...     w.write_audio(samples)
    """

    def __init__(self, path: str | Path, fps: float = 25.0, crf: int = 18, audio_rate: int | None = None) -> None:
        self.path = Path(path)
        try:
            self._c = av.open(str(self.path), "w")
        except Exception as e:
            raise MediaError(f"{self.path}: cannot write ({type(e).__name__}: {e})") from None
        self._fps = Fraction(fps).limit_denominator(1000)
        self._crf = crf
        self._audio_rate = audio_rate
        self._v: av.video.stream.VideoStream | None = None
        self._a: av.audio.stream.AudioStream | None = None
        self._audio_pts = 0

    def _start(self, width: int, height: int) -> av.video.stream.VideoStream:
        v = self._c.add_stream("libx264", rate=self._fps)
        v.width, v.height = width, height
        v.pix_fmt = "yuv420p"
        v.options = {"crf": str(self._crf), "preset": "veryfast"}
        self._v = v
        if self._audio_rate:
            a = self._c.add_stream("aac", rate=self._audio_rate)
            a.layout = "mono"
            self._a = a
        return v

    def write(self, frames: np.ndarray) -> None:
        frames = frames[None] if frames.ndim == 3 else frames
        v = self._v if self._v is not None else self._start(frames.shape[2], frames.shape[1])
        for f in frames:
            for pkt in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                self._c.mux(pkt)

    def write_audio(self, samples: np.ndarray) -> None:
        """Appends mono audio at the ``audio_rate`` given when opening (after the first video frame)."""
        rate = self._audio_rate
        if self._a is None or rate is None:
            raise ValueError("open the VideoWriter with audio_rate and write a video frame first")
        pcm = np.clip(samples, -1, 1).astype(np.float32)
        step = 1024
        for i in range(0, len(pcm), step):
            fr = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="flt", layout="mono")
            fr.sample_rate = rate
            fr.pts = self._audio_pts
            fr.time_base = Fraction(1, rate)
            self._audio_pts += fr.samples
            for pkt in self._a.encode(fr):
                self._c.mux(pkt)

    def close(self) -> None:
        for stream in (self._v, self._a):
            if stream is not None:
                for pkt in stream.encode(None):
                    self._c.mux(pkt)
        self._c.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
