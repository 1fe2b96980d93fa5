"""Browser viewers: the rendered avatar and the caller's speech as ordinary WebRTC tracks.

The receiver renders once per sender, and encodes each rendered frame once
per video codec in use (VP8 for every browser that offers it, which all
current ones do; H.264 for one that offers only that): every viewer's peer
connection sends the same encoded packets, so a fourth viewer costs the
receiver some packetizing and bandwidth, not another encoder. Each source
has one job:

* :class:`AvatarTrack`: each newly rendered frame (up to 25 a second); the
  portrait at rest while no sender is connected, so a video element still plays;
* :class:`SharedVideo`: encodes the avatar's frames for the viewers, a
  keyframe every 2 s and whenever a viewer joins or asks for one (a lost
  packet); each viewer's :class:`ViewerVideoTrack` starts at a keyframe;
* :class:`CallerAudioTrack`: the caller's decoded speech, delayed as much as
  rendering delays the avatar; silence between calls;
* :class:`SharedAudio`: encodes that speech once (Opus, mono, 32 kbps) for
  every viewer, whose :class:`ViewerAudioTrack` hands aiortc the packets (a
  relay would have each viewer's sender encode it again, 50 times a second);
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime.peer import gathered_description, new_peer_connection

log = logging.getLogger(__name__)

VIDEO_FPS = 25
STILL_FPS = 5
# Frames go out as soon as they are rendered, at least this far apart. Not a fixed 40 ms
# cadence: measured from the last frame sent, each late wake-up would push the next one
# later, and a frame rendered a little late would be overwritten by the next before it went.
MIN_FRAME_GAP_S = 0.6 / VIDEO_FPS
VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
# Speech held for viewers at most, 20 ms frames: the lip-sync delay and some slack.
MAX_AUDIO_FRAMES = 75
MAX_AUDIO_SLACK = 5
STATUS_LABEL, STATUS_ID = "status", 0
MAX_VIEWERS = 16
# The viewers' video: the codecs encoded, in order of preference (aiortc sends no others).
VP8, H264 = "video/VP8", "video/H264"
VIDEO_CODECS = (VP8, H264)
VIDEO_BITRATE = 600_000
AUDIO_BITRATE = 32_000  # speech, mono
# Encoded 20 ms speech frames a slow viewer may fall behind before it drops the oldest.
MAX_AUDIO_BACKLOG = 5
KEYFRAME_INTERVAL_S = 2.0
# Keyframes asked for (a viewer joined, a browser lost a packet) come at most this often.
MIN_KEYFRAME_GAP_S = 0.25
# Encoded frames a viewer may fall behind (about 0.3 s) before it skips to the next keyframe.
MAX_BACKLOG = 8


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
        import av

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
        import av

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
        import av

        if self._ctx is not None and (frame.width, frame.height) != (self._ctx.width, self._ctx.height):
            self._ctx, keyframe = None, True
        if self._ctx is None:
            self._ctx, keyframe = self._open(frame.width, frame.height), True
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = list(self._ctx.encode(frame))
        for packet in packets:
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return packets


class _ViewerPackets(MediaStreamTrack):  # type: ignore[misc]
    """One viewer's share of a shared encoder's packets: its ``recv`` returns ``av.Packet``.

    aiortc's sender only packetizes such packets (``Encoder.pack``) instead
    of encoding. Subclasses decide in ``push`` what a viewer keeps; the
    first ``recv`` (the viewer's sender has started) calls :meth:`_started`.
    """

    def __init__(self, shared: SharedVideo | SharedAudio) -> None:
        super().__init__()
        self._shared = shared
        self._queue: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._pulled = False  # the sender has started: packets from now on are this viewer's
        self.packets_sent = 0

    def _started(self) -> None:
        pass

    def _append(self, packet: Any) -> None:
        self._queue.append(packet)
        self._wake.set()

    async def recv(self) -> Any:
        if not self._pulled:
            self._pulled = True
            self._started()
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self.packets_sent += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._wake.set()
        self._shared.unsubscribe(self)  # type: ignore[arg-type]


class ViewerVideoTrack(_ViewerPackets):
    """One viewer's video: the encoded packets :class:`SharedVideo` shares, from a keyframe on.

    Packets wait for a viewer whose connection is slow up to
    :data:`MAX_BACKLOG`; past that it skips to the next keyframe, and a
    keyframe arriving drops whatever it still had queued (the keyframe does
    not need it).
    """

    kind = "video"

    def __init__(self, shared: SharedVideo, codec: str) -> None:
        super().__init__(shared)
        self.codec = codec
        self._keyed = False  # it has had its first keyframe (or the one after a skip)
        self.packets_skipped = 0

    def _started(self) -> None:
        self._shared.request_keyframe(self.codec)  # type: ignore[union-attr]

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
            self._shared.request_keyframe(self.codec)
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


class ViewerAudioTrack(_ViewerPackets):
    """One viewer's speech: the Opus packets :class:`SharedAudio` encodes.

    A viewer that falls behind by more than :data:`MAX_AUDIO_BACKLOG` frames
    loses the oldest: it gets the newest speech, not a growing queue.
    """

    kind = "audio"

    def __init__(self, shared: SharedAudio) -> None:
        super().__init__(shared)
        self.packets_dropped = 0

    def push(self, packet: Any) -> None:
        if self.readyState != "live":
            return
        if len(self._queue) >= MAX_AUDIO_BACKLOG:
            self._queue.popleft()
            self.packets_dropped += 1
        self._append(packet)


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
        import av

        if self._ctx is None:
            from codec.audio import opus_encoder

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


class Viewers:
    """The browsers watching this receiver.

    Args:
        rest: ``[H, W, 3]`` uint8, the rendered portrait at rest.
    """

    def __init__(self, rest: np.ndarray) -> None:
        self.video = AvatarTrack(rest)
        self.audio = CallerAudioTrack()
        self.shared = SharedVideo(self.video)
        self.shared_audio = SharedAudio(self.audio)
        self._pcs: dict[Any, Any] = {}  # peer connection -> its status channel
        self._tracks: dict[Any, list[Any]] = {}  # peer connection -> the tracks it sends
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
        self._tracks[pc] = []

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._drop(pc)

        pc.on("connectionstatechange", on_state)
        try:
            codec = self._add_tracks(pc, sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            answer = await gathered_description(pc, offer=False)
            if codec is not None and _first_video_codec(answer) != codec.lower():
                raise ValueError(f"the answer's video is not {codec}")
        except Exception as e:
            self._drop(pc)
            raise SignalingError(f"unusable viewer offer ({type(e).__name__}: {e})") from None
        log.info("a browser is watching (%d viewers)", len(self._pcs))
        return answer

    def _add_tracks(self, pc: Any, sdp: str) -> str | None:
        """Adds a sending transceiver per kind the page asks for (before the offer, so that its
        codec preferences apply); the video codec chosen, or None without video."""
        from aiortc import RTCRtpSender
        from aiortc.sdp import SessionDescription

        offer = SessionDescription.parse(sdp)
        codec = None
        for kind in dict.fromkeys(m.kind for m in offer.media if m.kind in ("audio", "video")):
            if kind == "audio":
                track = self.shared_audio.subscribe()
                self._tracks[pc].append(track)
                pc.addTransceiver(track, direction="sendonly")
                continue
            codec = video_codec(offer)
            if codec is None:
                raise ValueError("the page offers neither VP8 nor H.264 video")
            track = self.shared.subscribe(codec)
            self._tracks[pc].append(track)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            # Only the codec encoded: the answer then names it (with its retransmissions).
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                             if c.mimeType.lower() in (codec.lower(), "video/rtx")])
            # aiortc asks a frame encoder for a keyframe on a browser's PLI/FIR; packets come
            # encoded, so the request goes to the shared encoder instead.
            setattr(transceiver.sender, "_send_keyframe", lambda c=codec: self.shared.request_keyframe(c))
        return codec

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
        for track in self._tracks.pop(pc, []):
            track.stop()  # a sender that never started would not stop its track
        task = asyncio.create_task(pc.close(), name="viewer-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Closes every viewer and stops the source tracks."""
        for pc in list(self._pcs):
            self._drop(pc)
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.shared.close()
        await self.shared_audio.close()
        self.video.stop()
        self.audio.stop()


def _first_video_codec(sdp: str) -> str | None:
    """The first codec of an SDP's video section, lower case (``video/vp8``), or None."""
    from aiortc.sdp import SessionDescription

    for media in SessionDescription.parse(sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            return str(media.rtp.codecs[0].mimeType).lower()
    return None
