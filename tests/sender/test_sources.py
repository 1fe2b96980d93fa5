"""Sender sources: pacing grid, file and camera errors, speech as Opus packets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codec.errors import MediaError
from realtime.clock import MediaClock
from sender.sources import OPUS_FRAME, CameraSource, FilePcm, GridSampler, OpusTrack, VideoFileSource

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "clip.mp4"


def test_grid_keeps_one_frame_per_slot() -> None:
    g = GridSampler(25.0)
    stamps = [g.stamp(t) for t in np.arange(0, 400, 1000 / 30)]  # a 30 fps camera
    kept = [s for s in stamps if s is not None]
    assert kept == sorted(set(kept))
    assert all(s % 40 == 0 for s in kept)
    assert 9 <= len(kept) <= 11
    g2 = GridSampler(25.0)
    assert [g2.stamp(k * 40.0) for k in range(5)] == [0, 40, 80, 120, 160]  # 25 fps passes whole


def test_missing_and_non_video_files(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        VideoFileSource(tmp_path / "nope.mp4")
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(MediaError, match="not a readable media file"):
        VideoFileSource(fake)


def test_missing_camera() -> None:
    with pytest.raises(MediaError, match="camera 97"):
        CameraSource(97)


def test_video_is_played_at_real_time_pace() -> None:
    src = VideoFileSource(CLIP)

    async def run() -> tuple[list[int], float]:
        clock = MediaClock()
        stamps = []
        async for f in src.frames(clock):
            stamps.append(f.media_ms)
            assert f.rgb.shape == (512, 512, 3)
            if len(stamps) == 10:
                break
        return stamps, clock.now_ms()

    stamps, elapsed = asyncio.run(run())
    assert stamps == [k * 40 for k in range(10)]
    assert elapsed >= 350  # 10 frames at 25 fps take 360 ms, not a burst


def test_file_speech_becomes_timed_opus_packets() -> None:
    pcm = FilePcm(CLIP)

    async def run() -> list[object]:
        started = asyncio.Event()
        clock = MediaClock()
        track = OpusTrack(pcm, lambda: clock, started, bitrate=24_000)
        started.set()
        packets = [await track.recv() for _ in range(10)]
        assert track.bytes_sent == sum(p.size for p in packets)  # type: ignore[attr-defined]
        track.stop()
        return packets

    packets = asyncio.run(run())
    assert [p.pts for p in packets] == [k * OPUS_FRAME for k in range(10)]  # type: ignore[attr-defined]
    assert all(0 < p.size < 200 for p in packets)  # type: ignore[attr-defined]


@pytest.mark.parametrize("frame_ms,kbps", [(40, 12_000), (60, 8_000)])
def test_longer_speech_packets_at_low_rates(frame_ms: int, kbps: int) -> None:
    pcm = FilePcm(CLIP)

    async def run() -> list[Any]:
        started = asyncio.Event()
        clock = MediaClock()
        track = OpusTrack(pcm, lambda: clock, started, bitrate=kbps, frame_ms=frame_ms)
        started.set()
        packets = [await track.recv() for _ in range(12)]
        track.stop()
        return packets

    packets = asyncio.run(run())
    samples = frame_ms * 48
    assert [p.pts for p in packets] == [k * samples for k in range(12)]  # media time of each packet's start
    # About the bitrate asked for (the first packets carry the encoder's start-up).
    mean_kbps = sum(p.size for p in packets[2:]) * 8 / (10 * frame_ms)
    assert 0.4 * kbps / 1000 < mean_kbps < 1.6 * kbps / 1000


def test_file_speech_ends_in_silence_not_an_error(tmp_path: Path) -> None:
    pcm = FilePcm(CLIP)
    pcm._pos = len(pcm._samples) - 100
    block = asyncio.run(pcm.block())
    assert block.shape == (OPUS_FRAME,)
    assert np.all(block[100:] == 0)
