"""The viewers' audio: the caller's speech, delayed to match the avatar and encoded once for every browser.

* :class:`CallerAudioTrack`: the caller's decoded speech, delayed as much as
  rendering delays the avatar; silence between calls;
* :class:`SharedAudio`: encodes that speech once (Opus, mono, 32 kbps) for
  every viewer, whose :class:`ViewerAudioTrack` hands aiortc the packets (a
  relay would have each viewer's sender encode it again, 50 times a second).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from codec.audio import opus_encoder
from receiver.packet_track import AudioPacketTrack

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
# Speech held for viewers at most, 20 ms frames: the lip-sync delay and some slack.
MAX_AUDIO_FRAMES = 75
MAX_AUDIO_SLACK = 5
AUDIO_BITRATE = 32_000  # speech, mono


class _Paced(MediaStreamTrack):
    """A live track: frame ``n`` is released at ``start + n * period``."""

    def __init__(self, period_s: float) -> None:
        super().__init__()
        self._period_s = period_s
        self._start: float | None = None
        self._n = 0

    async def _next_slot(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._n * self._period_s
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:  # the loop stalled: start over rather than burst
            self._start, self._n = now, 0
        n = self._n
        self._n += 1
        return n


class CallerAudioTrack(_Paced):
    """The caller's speech as a 20 ms paced audio track (s16 stereo, 48 kHz); silence without a caller.

    Speech arrives as soon as the network brings it, the avatar only once
    rendered: :attr:`delay_ms` (the call's render latency, set by the
    receiver) holds speech back by as much, so viewers see lips and hear
    words together.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__(AUDIO_FRAME / AUDIO_RATE)
        self._queue: deque[np.ndarray] = deque(maxlen=MAX_AUDIO_FRAMES)
        self.delay_ms = 0.0

    def push(self, frame: Any) -> None:
        """Queues one decoded ``av.AudioFrame`` of the call (copied: the recorder owns the original)."""
        samples = frame.to_ndarray()
        if frame.format.name != "s16" or frame.sample_rate != AUDIO_RATE:
            return  # aiortc decodes Opus to s16 at 48 kHz; anything else is not the call's speech
        if len(frame.layout.channels) == 1:  # interleave into stereo
            samples = np.repeat(samples, 2, axis=1)
        self._queue.append(samples.reshape(1, -1))

    async def recv(self) -> Any:
        n = await self._next_slot()
        held = int(round(self.delay_ms * AUDIO_RATE / 1000 / AUDIO_FRAME))
        while len(self._queue) > held + MAX_AUDIO_SLACK:  # the delay shrank: catch up
            self._queue.popleft()
        speech = len(self._queue) > held
        samples = self._queue.popleft() if speech else np.zeros((1, 2 * AUDIO_FRAME), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class ViewerAudioTrack(AudioPacketTrack):
    """One viewer's speech: the Opus packets :class:`SharedAudio` encodes, bounded as :class:`AudioPacketTrack`."""


class SharedAudio:
    """Encodes the caller's speech once and hands the Opus packets to every viewer.

    Runs while someone listens, pulling :class:`CallerAudioTrack`'s paced
    20 ms frames. Encoding a frame takes a fraction of a millisecond, so it
    runs on the event loop.

    Args:
        source: the caller's speech.
    """

    def __init__(self, source: CallerAudioTrack) -> None:
        self.source = source
        self._viewers: list[ViewerAudioTrack] = []
        self._ctx: Any = None
        self._task: asyncio.Task[None] | None = None
        self.frames = 0
        self.failures = 0

    def subscribe(self) -> ViewerAudioTrack:
        track = ViewerAudioTrack(self)
        self._viewers.append(track)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="viewer-audio")
        return track

    def unsubscribe(self, track: ViewerAudioTrack) -> None:
        if track in self._viewers:
            self._viewers.remove(track)

    def __len__(self) -> int:
        return len(self._viewers)

    def encode(self, frame: Any) -> list[Any]:
        """One 20 ms stereo ``av.AudioFrame`` -> its Opus packets (mono), pts in 1/48000 s."""
        if self._ctx is None:
            self._ctx = opus_encoder(AUDIO_BITRATE)
        mono = av.AudioFrame.from_ndarray(frame.to_ndarray().reshape(1, -1, 2)[:, :, 0].copy(),
                                          format="s16", layout="mono")
        mono.sample_rate = AUDIO_RATE
        mono.pts = self.frames * AUDIO_FRAME
        mono.time_base = fractions.Fraction(1, AUDIO_RATE)
        packets = list(self._ctx.encode(mono))
        for packet in packets:
            packet.time_base = fractions.Fraction(1, AUDIO_RATE)
        return packets

    async def _run(self) -> None:
        while self._viewers:
            try:
                frame = await self.source.recv()
            except MediaStreamError:
                return
            try:
                packets = self.encode(frame)
            except Exception as e:  # this frame is lost for the viewers; a new encoder next time
                self.failures += 1
                if self.failures == 1:
                    log.warning("encoding the viewers' audio failed: %r", e)
                self._ctx = None
                continue
            finally:
                self.frames += 1
            for packet in packets:
                for viewer in list(self._viewers):
                    viewer.push(packet)

    async def close(self) -> None:
        for track in list(self._viewers):
            track.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
