"""The browser viewers' source tracks: new frames as rendered, a still one slowly, speech paced."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest

from receiver.viewers import AUDIO_FRAME, AUDIO_RATE, STILL_FPS, AvatarTrack, CallerAudioTrack, rgb_to_i420


def _solid(value: int) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


def test_avatar_track_sends_new_frames_and_repeats_a_still_one_slowly() -> None:
    async def run() -> tuple[list[object], list[float]]:
        track = AvatarTrack(_solid(10))
        frames, times = [await track.recv()], [time.monotonic()]
        track.show(_solid(200))
        frames.append(await track.recv())  # a new frame: at most 25 a second
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
    assert 0.035 < gaps[0] < 0.15 and 0.9 / STILL_FPS < gaps[1] < 3.0 / STILL_FPS and gaps[2] < 0.15
    pts = [f.pts for f in frames]  # type: ignore[attr-defined]
    assert pts[0] == 0 and all(b > a for a, b in zip(pts, pts[1:]))
    assert abs(pts[2] - pts[1] - gaps[1] * 90000) < 0.02 * 90000  # stamped by when it was sent
    assert frames[0].time_base == fractions.Fraction(1, 90000)  # type: ignore[attr-defined]
    lumas = [int(f.to_ndarray()[:64].mean()) for f in frames]  # type: ignore[attr-defined]
    assert lumas[0] == lumas[3] and lumas[1] == lumas[2] > lumas[0] + 100
    assert frames[1] is not frames[2]  # each viewer's encoder gets its own frame object


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
