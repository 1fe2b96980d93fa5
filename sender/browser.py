"""A browser as talk-send's camera and microphone (``talk-send --from-browser``).

talk-send serves ``realtime/static/send.html`` on its own port; the page
sends its camera and microphone to talk-send over WebRTC, after the same
token check as every talkcodec peer (:mod:`realtime.signaling`). talk-send
then runs the codec on those frames and calls the receiver as it would from
a camera. Each piece has one job:

* :class:`BrowserCamera`: the page's server and the one browser peer, and
  the status it shows the page;
* :class:`BrowserVideoSource`: the browser's video track as a frame source;
* :class:`BrowserPcm`: the browser's microphone as 20 ms speech blocks.

The browser's leg is an ordinary video stream (hundreds of kbps to a few
Mbps, the browser's choice): it belongs on one machine or a local network.
Only the leg from talk-send to talk-recv is the 11 kbps call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from realtime.clock import MediaClock
from realtime.peer import gathered_description, new_peer_connection
from realtime.signaling import SignalingError, SignalingServer
from realtime.webpage import CAMERA_PAGE
from sender.sources import OPUS_FRAME, OPUS_RATE, CapturedFrame, GridSampler

log = logging.getLogger(__name__)

STATUS_LABEL, STATUS_ID = "status", 0
MAX_PCM_BLOCKS = 50


class BrowserVideoSource:
    """Frames of the browser's camera track, stamped on arrival on the motion grid."""

    def __init__(self) -> None:
        self._track: Any = None
        self._attached = asyncio.Event()

    def attach(self, track: Any) -> None:
        self._track = track
        self._attached.set()

    async def frames(self, clock: MediaClock) -> AsyncIterator[CapturedFrame]:
        await self._attached.wait()
        grid = GridSampler()
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return  # the page went away: the source has ended
            ts = grid.stamp(clock.now_ms())
            if ts is not None:  # convert only the frames the motion grid keeps
                yield CapturedFrame(frame.to_ndarray(format="rgb24"), ts)

    def close(self) -> None:
        pass


class BrowserPcm:
    """The browser's microphone: 20 ms blocks of mono float32 at 48 kHz, as they arrive."""

    paced = True

    def __init__(self) -> None:
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=MAX_PCM_BLOCKS)

    async def start(self) -> None:
        pass

    def put(self, block: np.ndarray) -> None:
        if self._queue.full():  # the encoder stalled: drop the oldest, keep speech current
            self._queue.get_nowait()
        self._queue.put_nowait(block)

    async def block(self) -> np.ndarray:
        return await self._queue.get()

    def close(self) -> None:
        pass


class BrowserCamera:
    """Serves the camera page and takes one browser's camera and microphone.

    Args:
        host, port: where the page and its signaling listen.
        token: the room secret (the page proves it knows it, as talk-send does to talk-recv).
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.server = SignalingServer(host, port, token, self._on_offer, page=CAMERA_PAGE)
        self.video = BrowserVideoSource()
        self.pcm = BrowserPcm()
        self.connected = asyncio.Event()
        self._pc: Any = None
        self._channel: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._status = "{}"

    async def start(self) -> None:
        """Starts serving the page.

        Raises:
            SignalingError: the address cannot be bound.
        """
        await self.server.start()

    async def _on_offer(self, sdp: str) -> str:
        if self._pc is not None:
            raise SignalingError("busy: another browser is already this sender's camera")
        pc = self._pc = new_peer_connection()
        self._channel = pc.createDataChannel(STATUS_LABEL, negotiated=True, id=STATUS_ID)
        self._channel.on("open", lambda: self._send(self._status))

        def on_track(track: Any) -> None:
            if track.kind == "video":
                self.video.attach(track)
                self.connected.set()
            elif track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._pump_audio(track), name="browser-mic"))

        pc.on("track", on_track)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            answer = await gathered_description(pc, offer=False)
        except Exception as e:
            await pc.close()
            self._pc = None
            raise SignalingError(f"unusable browser offer ({type(e).__name__}: {e})") from None
        return answer

    async def _pump_audio(self, track: Any) -> None:

        resampler = av.AudioResampler(format="flt", layout="mono", rate=OPUS_RATE, frame_size=OPUS_FRAME)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            frame.pts = None  # the resampler regroups into 20 ms blocks on its own time
            for out in resampler.resample(frame):
                self.pcm.put(out.to_ndarray().reshape(-1).astype(np.float32))

    def publish(self, status: dict[str, Any]) -> None:
        """Shows the call's state on the page (JSON on its status channel)."""
        self._status = json.dumps(status)
        self._send(self._status)

    def _send(self, text: str) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            try:
                self._channel.send(text)
            except Exception:  # closing under us
                pass

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._pc is not None:
            await self._pc.close()
        await self.server.close()
