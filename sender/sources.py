"""What the sender captures: video frames at real-time pace, and speech as Opus.

Sources are small classes with one job each:

* :class:`VideoFileSource`: a video file played at its own pace on the media clock;
* :class:`CameraSource`: a camera through OpenCV;
* :class:`FilePcm` / :class:`MicPcm`: speech samples from a file (or a video's
  own soundtrack) or from the microphone;
* :class:`OpusTrack`: an aiortc audio track that encodes those samples to
  Opus at a speech bitrate, stamped on the media clock.

Every frame and audio packet is stamped in media time, the one timeline the
receiver uses to line audio and motion up. Frames are taken on a 40 ms grid
(:class:`GridSampler`), the rate the motion stream runs at.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from codec.audio import OPUS_RATE, opus_encoder
from codec.errors import MediaError
from codec.media import probe_video, read_audio, read_video
from realtime.clock import MediaClock

log = logging.getLogger(__name__)

OPUS_FRAME = 960  # 20 ms
SPEECH_BITRATE = 24_000
MOTION_FPS = 25.0


@dataclass(frozen=True)
class CapturedFrame:
    """One frame as captured.

    Attributes:
        rgb: ``[H, W, 3]`` uint8.
        media_ms: capture time on the media clock, on the motion grid.
    """

    rgb: np.ndarray
    media_ms: int


class GridSampler:
    """Keeps at most one frame per slot of the motion grid and stamps it with the slot's time.

    A 30 fps camera thus becomes a 25 fps stream; a 25 fps file passes whole.
    """

    def __init__(self, fps: float = MOTION_FPS) -> None:
        self.interval_ms = 1000.0 / fps
        self._last_slot: int | None = None

    def stamp(self, media_ms: float) -> int | None:
        """The grid time for a frame captured at ``media_ms``, or None if its slot is taken."""
        slot = int(round(media_ms / self.interval_ms))
        if self._last_slot is not None and slot <= self._last_slot:
            return None
        self._last_slot = slot
        return int(round(slot * self.interval_ms))


class FrameSource(Protocol):
    """Frames on the media clock: :class:`CapturedFrame` images, or (from a source with its own
    ``make_encoder``, see :mod:`sender.speech`) frames that source's encoder takes."""

    def frames(self, clock: MediaClock) -> AsyncIterator[Any]: ...
    def close(self) -> None: ...


class VideoFileSource:
    """A video file's frames, released when their time comes.

    Args:
        path: any video PyAV reads.
        loop: start over at the end instead of stopping.
    Raises:
        MediaError: missing, unreadable or not a video (checked at once).
    """

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.info = probe_video(self.path)
        self.loop = loop
        self.has_audio = self.info.has_audio

    async def frames(self, clock: MediaClock) -> AsyncIterator[CapturedFrame]:
        grid = GridSampler()
        period = 1000.0 / self.info.fps
        offset = 0.0
        while True:
            n = 0
            # Decoding a 512x512 frame takes a millisecond or two: fine on the loop.
            for rgb in read_video(self.path, warn_short=offset == 0):  # a looping file warns once
                due = offset + n * period
                n += 1
                wait = (due - clock.now_ms()) / 1000.0
                if wait > 0:
                    await asyncio.sleep(wait)
                ts = grid.stamp(due)
                if ts is not None:
                    yield CapturedFrame(rgb, ts)
            if not self.loop or n == 0:
                return
            offset += n * period

    def close(self) -> None:
        pass


class CameraSource:
    """Frames from a camera (OpenCV). Blocking reads run on the source's own thread.

    Raises:
        MediaError: the camera cannot be opened.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            raise MediaError(f"camera {index}: no such camera (/dev/video{index} does not exist)")
        # OpenCV reports a failed open on stderr itself; the MediaError below says it in one line.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # type: ignore[attr-defined]  # missing from OpenCV's stubs
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise MediaError(f"camera {index}: cannot be opened (no such camera, or it is in use)")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="camera")

    def _read(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    async def frames(self, clock: MediaClock) -> AsyncIterator[CapturedFrame]:
        grid = GridSampler()
        loop = asyncio.get_running_loop()
        while True:
            rgb = await loop.run_in_executor(self._pool, self._read)
            if rgb is None:
                raise MediaError(f"camera {self.index}: stopped delivering frames")
            ts = grid.stamp(clock.now_ms())
            if ts is not None:
                yield CapturedFrame(rgb, ts)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._cap.release()


class PcmSource(Protocol):
    """20 ms blocks of mono float32 speech at 48 kHz."""

    paced: bool  # blocks arrive in real time by themselves (a microphone)

    async def start(self) -> None: ...
    async def block(self) -> np.ndarray: ...
    def close(self) -> None: ...


class FilePcm:
    """Speech from a file's audio stream (an audio file, or a video's soundtrack).

    Raises:
        MediaError: missing file or no audio stream.
    """

    paced = False

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self._samples = read_audio(path, rate=OPUS_RATE)
        self._loop = loop
        self._pos = 0

    async def start(self) -> None:
        pass

    async def block(self) -> np.ndarray:
        n = len(self._samples)
        if self._pos + OPUS_FRAME > n and self._loop and n >= OPUS_FRAME:
            self._pos = 0
        out = np.zeros(OPUS_FRAME, np.float32)
        chunk = self._samples[self._pos:self._pos + OPUS_FRAME]
        out[:len(chunk)] = chunk  # silence once the file is over
        self._pos += OPUS_FRAME
        return out

    @property
    def done(self) -> bool:
        """The file has played to its end (never, when looping): only silence follows."""
        return not self._loop and self._pos >= len(self._samples)

    def close(self) -> None:
        pass


class MicPcm:
    """Speech from the default microphone (sounddevice, imported only here).

    PortAudio calls back on its own thread; blocks cross to the event loop
    through ``call_soon_threadsafe``.

    Raises:
        MediaError: PortAudio or the microphone is unavailable.
    """

    paced = True

    def __init__(self) -> None:
        try:
            # lazy: needs the PortAudio library, which a machine without audio devices may lack
            import sounddevice as sd
        except (ImportError, OSError) as e:
            raise MediaError(f"microphone: sound input is unavailable ({e})") from None
        try:
            sd.query_devices(kind="input")  # no default input device: say so now, not mid-call
        except Exception as e:
            raise MediaError(f"microphone: no input device ({e})") from None
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=50)
        self._stream: Any = None

    async def start(self) -> None:
        # lazy: needs the PortAudio library, which a machine without audio devices may lack
        import sounddevice as sd

        if self._stream is not None:
            return
        loop = asyncio.get_running_loop()

        def put(block: np.ndarray) -> None:
            if self._queue.full():  # the encoder stalled: drop the oldest, keep speech current
                self._queue.get_nowait()
            self._queue.put_nowait(block)

        def callback(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
            loop.call_soon_threadsafe(put, indata[:, 0].astype(np.float32).copy())

        try:
            self._stream = sd.InputStream(samplerate=OPUS_RATE, channels=1, blocksize=OPUS_FRAME,
                                          dtype="float32", callback=callback)
            self._stream.start()
        except Exception as e:
            raise MediaError(f"microphone: cannot be opened ({e})") from None

    async def block(self) -> np.ndarray:
        return await self._queue.get()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


class OpusTrack(MediaStreamTrack):
    """Speech as an aiortc audio track of pre-encoded Opus packets.

    aiortc would encode raw frames itself at 96 kbps; handing it packets keeps
    speech at a speech bitrate. Packet ``k`` carries media time ``frame_ms k``
    ms and waits for it, so the receiver (which counts RTP time from the first
    packet) sees audio on the same timeline as motion.

    Args:
        pcm: the samples.
        clock: the media clock, once started.
        started: set when media time 0 has been fixed.
        bitrate: Opus bitrate, bits/s.
        frame_ms: speech per packet (20, 40 or 60 ms).
    """

    kind = "audio"

    def __init__(self, pcm: PcmSource, clock: Callable[[], MediaClock | None], started: asyncio.Event,
                 bitrate: int = SPEECH_BITRATE, frame_ms: int = 20) -> None:
        super().__init__()
        self._pcm = pcm
        self._clock = clock
        self._started = started

        self._encoder = opus_encoder(bitrate, frame_ms)
        self._packet_samples = frame_ms * OPUS_RATE // 1000
        self._pending: list[Any] = []
        self._blocks = 0
        self._packets = 0
        self.bytes_sent = 0

    async def recv(self) -> Any:
        if not self._started.is_set():
            await self._started.wait()
            await self._pcm.start()
        while not self._pending:
            clock = self._clock()
            if not self._pcm.paced and clock is not None:
                wait = (self._blocks * 20.0 - clock.now_ms()) / 1000.0
                if wait > 0:
                    await asyncio.sleep(wait)
            block = await self._pcm.block()
            pcm16 = (np.clip(block, -1.0, 1.0) * 32767.0).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm16[None], format="s16", layout="mono")
            frame.sample_rate = OPUS_RATE
            frame.pts = self._blocks * OPUS_FRAME
            frame.time_base = fractions.Fraction(1, OPUS_RATE)
            self._blocks += 1
            self._pending.extend(self._encoder.encode(frame))
        packet = self._pending.pop(0)
        # Stamp packets in the order they leave: the encoder's lookahead shifts them by a few ms.
        packet.pts = self._packets * self._packet_samples
        packet.time_base = fractions.Fraction(1, OPUS_RATE)
        self._packets += 1
        self.bytes_sent += packet.size
        return packet

    def stop(self) -> None:
        super().stop()
        self._pcm.close()
