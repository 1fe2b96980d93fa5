"""Browser viewers: the rendered avatar and the caller's speech as ordinary WebRTC tracks.

The receiver renders once per sender; every browser gets the same frames
(aiortc's :class:`~aiortc.contrib.media.MediaRelay` fans one source track
out to each viewer's peer connection, which encodes them in the codec the
browser offered, VP8 or H.264). Each source has one job:

* :class:`AvatarTrack`: each newly rendered frame (up to 25 a second); the
  portrait at rest while no sender is connected, so a video element still plays;
* :class:`CallerAudioTrack`: the caller's decoded speech, delayed as much as
  rendering delays the avatar; silence between calls;
* :class:`Viewers`: answers viewers' offers, sends them the call's status on
  a small data channel once a second, and closes them.

The browser side is ``realtime/static`` (served by :mod:`realtime.webpage`).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import time
from collections import deque
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime.peer import gathered_description, new_peer_connection

log = logging.getLogger(__name__)

VIDEO_FPS = 25
STILL_FPS = 5
VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
# Speech held for viewers at most, 20 ms frames: the lip-sync delay and some slack.
MAX_AUDIO_FRAMES = 75
MAX_AUDIO_SLACK = 5
STATUS_LABEL, STATUS_ID = "status", 0
MAX_VIEWERS = 16


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[H * 3 / 2, W]`` uint8 I420 planes (what the encoders take)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


class _Paced(MediaStreamTrack):  # type: ignore[misc]
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


class AvatarTrack(MediaStreamTrack):  # type: ignore[misc]
    """The avatar as a video track: each newly rendered frame, at most 25 a second.

    A frame that did not change is repeated only :data:`STILL_FPS` times a
    second (the portrait at rest, or a renderer that fell behind): every
    frame sent costs one encoding per viewer, and the CPU is the renderer's.

    Args:
        rest: ``[H, W, 3]`` uint8, the portrait at rest (shown while no sender is connected).
    """

    kind = "video"

    def __init__(self, rest: np.ndarray) -> None:
        super().__init__()
        self._rest = rgb_to_i420(rest)
        self._latest = self._rest
        self._changed = asyncio.Event()
        self._start: float | None = None
        self._last: float | None = None
        self.frames_shown = 0

    def show(self, rgb: np.ndarray) -> None:
        """The next frame shows ``rgb`` (``[H, W, 3]`` uint8)."""
        self._latest = rgb_to_i420(rgb)
        self.frames_shown += 1
        self._changed.set()

    def show_rest(self) -> None:
        self._latest = self._rest
        self._changed.set()

    async def recv(self) -> Any:
        import av

        if self.readyState != "live":
            raise MediaStreamError
        if self._last is not None:
            wait = self._last + 1.0 / VIDEO_FPS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not self._changed.is_set():
                try:
                    await asyncio.wait_for(self._changed.wait(), self._last + 1.0 / STILL_FPS - time.monotonic())
                except (asyncio.TimeoutError, TimeoutError):
                    pass
        self._changed.clear()
        now = self._last = time.monotonic()
        if self._start is None:
            self._start = now
        # A fresh frame each time: the relay hands it to every viewer's encoder at once.
        frame = av.VideoFrame.from_ndarray(self._latest, format="yuv420p")
        frame.pts = int(round((now - self._start) * VIDEO_CLOCK))
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


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
        import av

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


class Viewers:
    """The browsers watching this receiver.

    Args:
        rest: ``[H, W, 3]`` uint8, the rendered portrait at rest.
    """

    def __init__(self, rest: np.ndarray) -> None:
        from aiortc.contrib.media import MediaRelay

        self.video = AvatarTrack(rest)
        self.audio = CallerAudioTrack()
        self._relay = MediaRelay()
        self._pcs: dict[Any, Any] = {}  # peer connection -> its status channel
        self._closing: set[asyncio.Task[None]] = set()
        self._status = b"{}"

    def __len__(self) -> int:
        return len(self._pcs)

    async def on_watch(self, sdp: str) -> str:
        """Answers a viewer's authenticated offer (a ``SignalingServer`` handler).

        Raises:
            SignalingError: too many viewers, or an offer aiortc cannot use.
        """
        from aiortc import RTCSessionDescription

        from realtime.signaling import SignalingError

        if len(self._pcs) >= MAX_VIEWERS:
            raise SignalingError(f"this receiver already serves {MAX_VIEWERS} viewers")
        pc = new_peer_connection()
        channel = pc.createDataChannel(STATUS_LABEL, negotiated=True, id=STATUS_ID)
        channel.on("open", lambda: self._send(channel, self._status))
        # A closed tab closes the channel at once; the connection state would take until ICE consent fails.
        channel.on("close", lambda: self._drop(pc))
        self._pcs[pc] = channel

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._drop(pc)

        pc.on("connectionstatechange", on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            for kind in {t.kind for t in pc.getTransceivers()}:
                # Fills the page's recvonly transceiver of that kind; buffered=False: a slow
                # viewer gets the newest frame, not a queue.
                pc.addTrack(self._relay.subscribe(self.video if kind == "video" else self.audio, buffered=False))
            answer = await gathered_description(pc, offer=False)
        except Exception as e:
            self._drop(pc)
            raise SignalingError(f"unusable viewer offer ({type(e).__name__}: {e})") from None
        log.info("a browser is watching (%d viewers)", len(self._pcs))
        return answer

    def publish(self, status: dict[str, Any]) -> None:
        """Sends the call's status to every viewer (JSON on the status channel)."""
        self._status = json.dumps({**status, "viewers": len(self._pcs)}).encode()
        for channel in self._pcs.values():
            self._send(channel, self._status)

    @staticmethod
    def _send(channel: Any, data: bytes) -> None:
        if channel.readyState == "open":
            try:
                channel.send(data.decode())
            except Exception:  # closing under us: the state change drops the viewer
                pass

    def _drop(self, pc: Any) -> None:
        if self._pcs.pop(pc, None) is None:
            return
        task = asyncio.create_task(pc.close(), name="viewer-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Closes every viewer and stops the source tracks."""
        for pc in list(self._pcs):
            self._drop(pc)
        await asyncio.gather(*self._closing, return_exceptions=True)
        self.video.stop()
        self.audio.stop()
