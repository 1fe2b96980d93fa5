"""The browser viewers' tracks: new frames as rendered, a still one slowly, encoded once for every
viewer (each starting at a keyframe), speech paced."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest

from receiver.viewer_audio import AUDIO_FRAME, AUDIO_RATE, CallerAudioTrack, ViewerAudioTrack
from receiver.viewer_video import (
    H264,
    KEYFRAME_INTERVAL_S,
    MAX_BACKLOG,
    MIN_FRAME_GAP_S,
    STILL_FPS,
    VP8,
    AvatarTrack,
    SharedVideo,
    ViewerVideoTrack,
    rgb_to_i420,
)
from receiver.viewers import Viewers


def _solid(value: int) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


def test_avatar_track_sends_new_frames_and_repeats_a_still_one_slowly() -> None:
    async def run() -> tuple[list[object], list[float]]:
        track = AvatarTrack(_solid(10))
        frames, times = [await track.recv()], [time.monotonic()]
        track.show(_solid(200))
        frames.append(await track.recv())  # a new frame: at once, but not closer than MIN_FRAME_GAP_S
        times.append(time.monotonic())
        frames.append(await track.recv())  # nothing new: repeated after 1 / STILL_FPS
        times.append(time.monotonic())
        track.show_rest()
        frames.append(await track.recv())
        times.append(time.monotonic())
        track.stop()
        return frames, times

    frames, times = asyncio.run(run())
    gaps = np.diff(times)
    assert MIN_FRAME_GAP_S - 0.002 < gaps[0] < 0.1 and 0.9 / STILL_FPS < gaps[1] < 3.0 / STILL_FPS and gaps[2] < 0.15
    pts = [f.pts for f in frames]  # type: ignore[attr-defined]
    assert pts[0] == 0 and all(b > a for a, b in zip(pts, pts[1:]))
    assert abs(pts[2] - pts[1] - gaps[1] * 90000) < 0.02 * 90000  # stamped by when it was sent
    assert frames[0].time_base == fractions.Fraction(1, 90000)  # type: ignore[attr-defined]
    lumas = [int(f.to_ndarray()[:64].mean()) for f in frames]  # type: ignore[attr-defined]
    assert lumas[0] == lumas[3] and lumas[1] == lumas[2] > lumas[0] + 100
    assert frames[1] is not frames[2]  # an encoder may mark each one (a keyframe) on its own


def test_stopped_track_ends() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = AvatarTrack(_solid(0))
    track.stop()
    with pytest.raises(MediaStreamError):
        asyncio.run(track.recv())


def test_i420_size() -> None:
    assert rgb_to_i420(np.zeros((512, 512, 3), np.uint8)).shape == (768, 512)


def test_caller_audio_is_silence_then_speech() -> None:
    import av

    speech = np.full((1, 2 * AUDIO_FRAME), 1000, np.int16)
    received = av.AudioFrame.from_ndarray(speech, format="s16", layout="stereo")
    received.sample_rate = AUDIO_RATE
    mono = av.AudioFrame.from_ndarray(np.full((1, AUDIO_FRAME), 500, np.int16), format="s16", layout="mono")
    mono.sample_rate = AUDIO_RATE

    async def run() -> list[np.ndarray]:
        track = CallerAudioTrack()
        out = [await track.recv()]
        track.push(received)
        track.push(mono)
        out += [await track.recv(), await track.recv(), await track.recv()]
        track.stop()
        assert [f.pts for f in out] == [0, 960, 1920, 2880]
        return [f.to_ndarray() for f in out]

    silence, first, second, after = asyncio.run(run())
    assert not silence.any() and not after.any()
    assert (first == 1000).all() and (second == 500).all() and first.shape == second.shape == (1, 2 * AUDIO_FRAME)


def test_caller_audio_waits_for_the_avatar() -> None:
    import av

    async def run() -> list[bool]:
        track = CallerAudioTrack()
        track.delay_ms = 60.0  # three 20 ms frames
        heard = []
        for _ in range(6):
            frame = av.AudioFrame.from_ndarray(np.full((1, 2 * AUDIO_FRAME), 1000, np.int16), format="s16",
                                               layout="stereo")
            frame.sample_rate = AUDIO_RATE
            track.push(frame)
            heard.append(bool((await track.recv()).to_ndarray().any()))
        track.stop()
        return heard

    assert asyncio.run(run()) == [False, False, False, True, True, True]


def _moving(track: AvatarTrack, i: int) -> None:
    """Shows frame ``i`` of a small moving picture."""
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, (3 * i) % 64:] = 180
    track.show(frame)


async def _watch(viewers: list[ViewerVideoTrack], avatar: AvatarTrack, n: int) -> list[list[object]]:
    """Each viewer's next ``n`` packets (all asking at once), a new frame shown as each one is taken."""
    got: list[list[object]] = [[] for _ in viewers]
    for i in range(n):
        _moving(avatar, i)
        packets = await asyncio.wait_for(asyncio.gather(*(viewer.recv() for viewer in viewers)), 2.0)
        for out, packet in zip(got, packets):
            out.append(packet)
    return got


@pytest.mark.parametrize("codec", [VP8, H264])
def test_each_frame_is_encoded_once_for_every_viewer(codec: str) -> None:
    async def run(n_viewers: int) -> tuple[SharedVideo, list[list[object]]]:
        shared = SharedVideo(AvatarTrack(_solid(0)))
        viewers = [shared.subscribe(codec) for _ in range(n_viewers)]
        got = await _watch(viewers, shared.source, 12)
        await shared.close()
        return shared, got

    for n_viewers in (1, 4):
        shared, got = asyncio.run(run(n_viewers))
        assert shared.encoded == {codec: shared.frames}  # one encoding per frame, however many watch
        assert shared.frames <= 12 + 2
        first = got[0]
        assert first[0].is_keyframe and not any(p.is_keyframe for p in first[1:])  # type: ignore[attr-defined]
        for other in got[1:]:  # the very same packets
            assert all(a is b for a, b in zip(first, other))
        pts = [p.pts for p in first]  # type: ignore[attr-defined]
        assert all(b > a for a, b in zip(pts, pts[1:]))
        assert first[0].time_base == fractions.Fraction(1, 90000)  # type: ignore[attr-defined]


def test_a_joining_viewer_starts_at_a_keyframe() -> None:
    async def run() -> tuple[list[object], list[object], float, SharedVideo]:
        shared = SharedVideo(AvatarTrack(_solid(0)))
        early = shared.subscribe(VP8)
        await _watch([early], shared.source, 10)
        late = shared.subscribe(VP8)
        t0 = time.monotonic()
        got = await _watch([early, late], shared.source, 10)
        waited = time.monotonic() - t0
        await shared.close()
        return got[0], got[1], waited, shared

    early, late, waited, shared = asyncio.run(run())
    assert late[0].is_keyframe  # type: ignore[attr-defined]
    assert waited < KEYFRAME_INTERVAL_S / 2  # asked for at once, not at the next scheduled one
    assert late[0] in early  # the keyframe made for it went to everyone
    assert shared.encoded[VP8] == shared.frames


class _Packet:
    def __init__(self, key: bool) -> None:
        self.is_keyframe = key


class _Shared:
    def __init__(self) -> None:
        self.requests = 0

    def request_keyframe(self, codec: str) -> None:
        self.requests += 1

    def unsubscribe(self, track: object) -> None:
        pass


def test_a_slow_viewer_skips_to_the_next_keyframe() -> None:
    async def run() -> tuple[list[bool], int, int]:
        shared = _Shared()
        track = ViewerVideoTrack(shared, VP8)  # type: ignore[arg-type]
        pull = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)
        assert shared.requests == 1  # its sender started: a keyframe, please
        track.push(_Packet(False))  # not a start: skipped
        track.push(_Packet(True))
        assert (await pull).is_keyframe
        for _ in range(MAX_BACKLOG + 1):  # the viewer falls too far behind: its backlog goes, a keyframe is asked for
            track.push(_Packet(False))
        requests = shared.requests
        track.push(_Packet(False))  # useless until that keyframe
        track.push(_Packet(True))
        track.push(_Packet(False))
        got = [(await track.recv()).is_keyframe for _ in range(2)]
        track.stop()
        return got, requests, track.packets_skipped

    got, requests, skipped = asyncio.run(run())
    assert got == [True, False] and requests == 2 and skipped == 1 + (MAX_BACKLOG + 1) + 1


async def _watch_over_webrtc(codecs: list[str], frames: int) -> tuple[str, list[object], Viewers]:
    """A WebRTC viewer (aiortc) offering ``codecs`` for video: the answer and the frames it decodes."""
    from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

    from realtime.peer import gathered_description, restrict_ice_to_loopback

    restrict_ice_to_loopback()
    viewers = Viewers(_solid(40))
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    video.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.mimeType in codecs])
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("status", negotiated=True, id=0)
    tracks: asyncio.Queue[object] = asyncio.Queue()
    pc.on("track", lambda t: tracks.put_nowait(t) if t.kind == "video" else None)
    try:
        answer = await viewers.on_watch(await gathered_description(pc, offer=True))
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        track = await asyncio.wait_for(tracks.get(), 10)
        got = []
        for i in range(frames):
            _moving(viewers.video, i)
            got.append(await asyncio.wait_for(track.recv(), 10))  # type: ignore[attr-defined]
        await _lose_a_packet(viewers)
        return answer, got, viewers
    finally:
        await pc.close()
        await viewers.close()


async def _lose_a_packet(viewers: Viewers) -> None:
    """The viewer's PLI (picture loss) reaches aiortc's sender: the shared encoder is asked for a keyframe."""
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

    asked: list[str] = []
    viewers.shared.request_keyframe = asked.append  # type: ignore[method-assign]
    (pc,) = viewers._pcs
    sender = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
    assert asked == [sender.track.codec]


@pytest.mark.parametrize("codec", [VP8, H264])
def test_a_webrtc_viewer_gets_the_shared_encoding(codec: str) -> None:
    answer, frames, viewers = asyncio.run(_watch_over_webrtc([codec, "video/rtx"] if codec == H264 else
                                                            [H264, codec, "video/rtx"], 5))
    video = answer[answer.index("m=video"):answer.index("m=audio")]
    rtpmaps = [line.split()[1].split("/")[0] for line in video.splitlines() if line.startswith("a=rtpmap:")]
    assert rtpmaps[0] == codec.split("/")[1] and set(rtpmaps) <= {codec.split("/")[1], "rtx"}  # VP8 preferred
    assert [(f.width, f.height) for f in frames] == [(64, 64)] * 5  # type: ignore[attr-defined]
    assert viewers.shared.encoded.get(codec, 0) >= 5 and len(viewers.shared) == 0  # all gone after close


def test_speech_is_encoded_once_for_every_viewer() -> None:
    import av

    from receiver.packet_track import MAX_AUDIO_BACKLOG
    from receiver.viewer_audio import SharedAudio

    t = np.arange(AUDIO_FRAME) / AUDIO_RATE

    async def run() -> tuple[list[list[bytes]], int, ViewerAudioTrack]:
        source = CallerAudioTrack()
        shared = SharedAudio(source)
        viewers = [shared.subscribe() for _ in range(3)]
        for k in range(10):
            tone = (8000 * np.sin(2 * np.pi * 440 * (t + k * AUDIO_FRAME / AUDIO_RATE))).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2)[None], format="s16", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            source.push(frame)
        got: list[list[bytes]] = [[], []]
        for _ in range(8):  # both read as the packets come
            for i in range(2):
                got[i].append(bytes(await viewers[i].recv()))
        slow = viewers[2]  # never read: it keeps only the newest packets
        await asyncio.sleep(0.3)
        frames = shared.frames
        await shared.close()
        source.stop()
        return got, frames, slow

    (a, b), frames, slow = asyncio.run(run())
    assert a == b  # the same packets, not two encodes
    assert frames >= 8  # one encode per 20 ms frame, whatever the number of viewers
    assert slow.packets_dropped > 0 and slow.packets_sent == 0
    assert len(slow._queue) == 0  # stopped: emptied
    assert MAX_AUDIO_BACKLOG < frames
    decoder = av.CodecContext.create("libopus", "r")
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for p in a for f in decoder.decode(av.Packet(p))])
    assert np.sqrt(np.mean(pcm.astype(float) ** 2)) > 0.05 * (8000 / 32768 if pcm.dtype.kind == "f" else 8000)
