"""The viewers' video: the rendered avatar, encoded once per codec for every browser.

* :class:`AvatarTrack`: each newly rendered frame (up to 25 a second); the
  portrait at rest while no sender is connected, so a video element still plays;
* :class:`SharedVideo`: encodes the avatar's frames for the viewers, a
  keyframe every 2 s and whenever a viewer joins or asks for one (a lost
  packet); each viewer's :class:`ViewerVideoTrack` starts at a keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from receiver.packet_track import PacketTrack

log = logging.getLogger(__name__)

VIDEO_FPS = 25
STILL_FPS = 5
# Frames go out as soon as they are rendered, at least this far apart. Not a fixed 40 ms
# cadence: measured from the last frame sent, each late wake-up would push the next one
# later, and a frame rendered a little late would be overwritten by the next before it went.
MIN_FRAME_GAP_S = 0.6 / VIDEO_FPS
VIDEO_CLOCK = 90_000
# The viewers' video: the codecs encoded, in order of preference (aiortc sends no others).
VP8, H264 = "video/VP8", "video/H264"
VIDEO_CODECS = (VP8, H264)
VIDEO_BITRATE = 600_000
KEYFRAME_INTERVAL_S = 2.0
# Keyframes asked for (a viewer joined, a browser lost a packet) come at most this often.
MIN_KEYFRAME_GAP_S = 0.25
# Encoded frames a viewer may fall behind (about 0.3 s) before it skips to the next keyframe.
MAX_BACKLOG = 8


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[H * 3 / 2, W]`` uint8 I420 planes (what the encoders take)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


class AvatarTrack(MediaStreamTrack):
    """The avatar as a video track: each newly rendered frame as it comes (the renderer makes at most 25 a second).

    A frame that did not change is repeated only :data:`STILL_FPS` times a
    second (the portrait at rest, or a renderer that fell behind): every
    frame sent costs an encoding and each viewer's bandwidth, and the CPU is
    the renderer's.

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
        if self.readyState != "live":
            raise MediaStreamError
        if self._last is not None:
            wait = self._last + MIN_FRAME_GAP_S - time.monotonic()
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
        # A fresh frame each time: an encoder marks the frames it must make keyframes.
        frame = av.VideoFrame.from_ndarray(self._latest, format="yuv420p")
        frame.pts = int(round((now - self._start) * VIDEO_CLOCK))
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class _Encoder:
    """One video codec's encoder for every viewer of that codec (``encode`` runs on the encoding thread)."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self._ctx: Any = None
        self.keyframe_at: float | None = None
        self.keyframe_wanted = True

    def keyframe_due(self, now: float) -> bool:
        if self.keyframe_at is None:
            return True
        since = now - self.keyframe_at
        return since >= KEYFRAME_INTERVAL_S or (self.keyframe_wanted and since >= MIN_KEYFRAME_GAP_S)

    def _open(self, width: int, height: int) -> Any:
        if self.codec == VP8:
            ctx = av.CodecContext.create("libvpx", "w")
            options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
                       "static-thresh": "1", "maxrate": str(VIDEO_BITRATE), "bufsize": str(VIDEO_BITRATE)}
        else:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.profile = "Baseline"  # what browsers decode (profile-level-id 42e01f / 42001f)
            options = {"preset": "veryfast", "tune": "zerolatency", "forced-idr": "1", "level": "31"}
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        ctx.framerate = fractions.Fraction(VIDEO_FPS, 1)
        ctx.bit_rate = VIDEO_BITRATE
        # Keyframes are forced on time (frames are not evenly spaced); this is only a backstop.
        ctx.gop_size = int(4 * KEYFRAME_INTERVAL_S * VIDEO_FPS)
        ctx.thread_count = 1  # the cores are the renderer's
        ctx.options = options
        return ctx

    def encode(self, frame: Any, keyframe: bool) -> list[Any]:
        """One ``av.VideoFrame`` (pts in 1/90000 s) -> its encoded packets (``av.Packet``), stamped likewise."""
        if self._ctx is not None and (frame.width, frame.height) != (self._ctx.width, self._ctx.height):
            self._ctx, keyframe = None, True
        if self._ctx is None:
            self._ctx, keyframe = self._open(frame.width, frame.height), True
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = list(self._ctx.encode(frame))
        for packet in packets:
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return packets


class ViewerVideoTrack(PacketTrack):
    """One viewer's video: the encoded packets :class:`SharedVideo` shares, from a keyframe on.

    Packets wait for a viewer whose connection is slow up to
    :data:`MAX_BACKLOG`; past that it skips to the next keyframe, and a
    keyframe arriving drops whatever it still had queued (the keyframe does
    not need it).
    """

    kind = "video"

    def __init__(self, shared: SharedVideo, codec: str) -> None:
        super().__init__(shared)
        self._video = shared
        self.codec = codec
        self._keyed = False  # it has had its first keyframe (or the one after a skip)
        self.packets_skipped = 0

    def _started(self) -> None:
        self._video.request_keyframe(self.codec)

    def push(self, packet: Any) -> None:
        if not self._pulled or self.readyState != "live":
            return
        if packet.is_keyframe:
            self.packets_skipped += len(self._queue)
            self._queue.clear()
            self._keyed = True
        elif not self._keyed:
            self.packets_skipped += 1
            return
        elif len(self._queue) >= MAX_BACKLOG:
            self.packets_skipped += len(self._queue) + 1
            self._queue.clear()
            self._keyed = False
            self._video.request_keyframe(self.codec)
            return
        self._append(packet)


class SharedVideo:
    """Encodes the avatar once per codec in use and hands the packets to every viewer of that codec.

    Runs while someone watches: it pulls :class:`AvatarTrack`'s frames (so
    the pacing is the avatar's) and encodes them on one thread of its own.

    Args:
        source: the avatar.
    """

    def __init__(self, source: AvatarTrack) -> None:
        self.source = source
        self._viewers: dict[str, list[ViewerVideoTrack]] = {}
        self._encoders: dict[str, _Encoder] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="viewer-encode")
        self._task: asyncio.Task[None] | None = None
        self.frames = 0  # avatar frames taken
        self.encoded: dict[str, int] = {}  # frames encoded, per codec
        self.failures = 0

    def subscribe(self, codec: str) -> ViewerVideoTrack:
        """A new viewer's track; it starts at a keyframe once its sender asks for packets."""
        if codec not in VIDEO_CODECS:
            raise ValueError(f"no encoder for {codec}")
        track = ViewerVideoTrack(self, codec)
        self._viewers.setdefault(codec, []).append(track)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="viewer-video")
        return track

    def unsubscribe(self, track: ViewerVideoTrack) -> None:
        viewers = self._viewers.get(track.codec, [])
        if track in viewers:
            viewers.remove(track)
        if not viewers:
            self._viewers.pop(track.codec, None)

    def request_keyframe(self, codec: str) -> None:
        """The next frame of ``codec`` is a keyframe (as soon as :data:`MIN_KEYFRAME_GAP_S` allows)."""
        encoder = self._encoders.get(codec)
        if encoder is not None:
            encoder.keyframe_wanted = True

    def __len__(self) -> int:
        return sum(len(v) for v in self._viewers.values())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._viewers:
            try:
                frame = await self.source.recv()
            except MediaStreamError:
                return
            self.frames += 1
            now = time.monotonic()
            for codec in [c for c in VIDEO_CODECS if c in self._viewers]:
                encoder = self._encoders.get(codec)
                if encoder is None:
                    encoder = self._encoders[codec] = _Encoder(codec)
                keyframe = encoder.keyframe_due(now)
                if keyframe:
                    encoder.keyframe_at, encoder.keyframe_wanted = now, False
                try:
                    packets = await loop.run_in_executor(self._pool, encoder.encode, frame, keyframe)
                except Exception as e:  # no viewer video for this frame; a new encoder next time
                    self.failures += 1
                    if self.failures == 1:
                        log.warning("encoding the viewers' %s video failed: %r", codec, e)
                    self._encoders.pop(codec, None)
                    continue
                self.encoded[codec] = self.encoded.get(codec, 0) + 1
                for packet in packets:
                    for viewer in list(self._viewers.get(codec, ())):
                        viewer.push(packet)
                    if packet.is_keyframe:  # whoever asked while it was being encoded has one now
                        encoder.keyframe_wanted = False
            for codec in [c for c in self._encoders if c not in self._viewers]:
                del self._encoders[codec]  # nobody watches in it any more

    async def close(self) -> None:
        for viewers in list(self._viewers.values()):
            for track in list(viewers):
                track.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False)


def video_codec(offer: Any) -> str | None:
    """The codec the viewers' video goes in for a parsed offer (``aiortc.sdp.SessionDescription``), or None."""
    offered = {c.mimeType.lower() for m in offer.media if m.kind == "video" for c in m.rtp.codecs}
    return next((c for c in VIDEO_CODECS if c.lower() in offered), None)
