"""The recorder keeps audio and video on the sender's timeline; statistics add up."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from codec.errors import MediaError
from realtime.status import percentiles
from receiver.sinks import CallStats, Recorder


def audio_frame(pts: int, n: int = 960, value: float = 0.3) -> av.AudioFrame:
    data = np.full((1, n * 2), int(value * 32767), np.int16)  # packed stereo, as aiortc decodes Opus
    f = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    f.sample_rate = 48_000
    f.pts = pts
    f.time_base = fractions.Fraction(1, 48_000)
    return f


def test_recording_places_audio_and_video_by_media_time(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    rec = Recorder(path, size=64)
    rec.begin_call()
    for k in range(25):  # 1 s of video from media time 0
        rec.add_video(np.full((64, 64, 3), k * 10, np.uint8), k * 40.0)
    for k in range(50):
        if k in (20, 21):
            continue  # 40 ms of speech lost: filled with silence
        rec.add_audio(audio_frame(k * 960))
    rec.close()
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    with av.open(str(path)) as c:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert len(frames) == 25
    assert abs(len(samples) / 48_000 - 1.0) < 0.05  # the gap kept the timeline
    assert float(np.abs(samples).max()) > 0.2


def test_late_and_repeated_video_frames_are_ignored(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "o.mp4", size=64)
    for t in (0.0, 40.0, 40.0, 20.0, 80.0):
        rec.add_video(np.zeros((64, 64, 3), np.uint8), t)
    rec.close()
    assert rec.video_frames == 3


def test_unwritable_recording() -> None:
    with pytest.raises(MediaError):
        Recorder("/nonexistent-dir/x.mp4")


def test_stats_json(tmp_path: Path) -> None:
    s = CallStats(frames_received=90, packets_expected=100, motion_payload_bytes=56 * 250,
                  motion_packet_bytes=63 * 250, motion_media_ms=10_000)
    for ms in (10.0, 20.0, 30.0):
        s.render_latency_ms.add(ms)
    d = s.to_dict()
    assert d["packet_loss"] == pytest.approx(0.1)
    assert d["motion_kbps"] == pytest.approx(11.2)
    assert d["motion_packet_kbps"] == pytest.approx(12.6)
    assert d["latency_ms"]["p50"] == 20.0
    s.write_json(tmp_path / "s.json")
    assert (tmp_path / "s.json").read_text().startswith("{")
    assert percentiles([])["p95"] is None
