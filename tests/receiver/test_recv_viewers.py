"""The browser viewers' source tracks: paced, fresh frames, the portrait at rest between calls."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest

from receiver.viewers import AUDIO_FRAME, AUDIO_RATE, AvatarTrack, CallerAudioTrack, rgb_to_i420


def _solid(value: int) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


def test_avatar_track_paces_and_shows_the_newest_frame() -> None:
    async def run() -> list[object]:
        track = AvatarTrack(_solid(10))
        frames = [await track.recv()]
        track.show(_solid(200))
        t0 = time.monotonic()
        frames += [await track.recv(), await track.recv()]
        elapsed = time.monotonic() - t0
        track.show_rest()
        frames.append(await track.recv())
        track.stop()
        assert 0.06 < elapsed < 0.5  # two frames at 25 fps
        return frames

    frames = asyncio.run(run())
    assert [f.pts for f in frames] == [0, 3600, 7200, 10800]  # type: ignore[attr-defined]
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
