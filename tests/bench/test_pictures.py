"""talk-bench's account of the caller's picture (bench.pictures)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.pictures import FIVE_MINUTES_S, clip_pictures, keyframe_window
from codec.picture import PictureKind


def test_pictures_are_counted_and_keyframes_come_from_the_first_seconds(sample_frames: list[np.ndarray],
                                                                        sample_landmarks: np.ndarray) -> None:
    frames = np.stack(sample_frames)
    lm = sample_landmarks[: len(frames)]
    valid = np.ones(len(frames), bool)
    p = clip_pictures(frames, lm, valid, 25.0, 0)
    assert p.reference.kind is PictureKind.REFERENCE and p.reference.image.shape == frames[0].shape
    assert 1000 < p.reference_bytes <= 40_000
    assert all(k.media_ms < 5000 for k in p.keyframes)
    assert p.bytes == p.reference_bytes + p.keyframe_bytes
    # The decoded picture is what talkcodec renders on: close to the frame, not the frame itself.
    diff = np.abs(p.reference.image.astype(int) - frames[0].astype(int)).mean()
    assert 0 < diff < 4
    rec = p.record(11.2, 10.0)
    assert rec["kbps_with_pictures"] == pytest.approx(11.2 + p.bytes * 8 / 10.0 / 1000)
    assert rec["kbps_with_pictures_5min"] == pytest.approx(11.2 + p.bytes * 8 / FIVE_MINUTES_S / 1000)
    # A clip whose first face comes after the keyframe window: no keyframes, still a reference.
    late = clip_pictures(frames[:3], lm[:3], valid[:3], 0.5, 2)
    assert late.keyframes == [] and late.reference_bytes > 0


def test_chunks_behind_regular_motion_packets_never_delay_them_on_a_32_kbps_link() -> None:
    from bench.measure.caller_picture import replay

    # 20 s of 63-byte motion packets every 40 ms, a ping twice a second.
    trace: list[list[object]] = [[40.0 * k, "motion", 63] for k in range(500)]
    trace += [[500.0 * k + 7, "control", 14] for k in range(40)]
    trace.sort(key=lambda m: float(m[0]))  # type: ignore[arg-type]
    alone = replay(trace, 32.0)
    with_pictures = replay(trace, 32.0, pictures=[12_000, 11_000, 11_000])
    assert alone["p95"] == pytest.approx(63 / 4000 * 1000, abs=0.1)
    assert with_pictures["p95"] == pytest.approx(alone["p95"], abs=0.1)
    # Pictures faster than the link's spare rate do delay them.
    assert replay(trace, 32.0, pictures=[12_000], kbps=40.0)["p95"] > 5 * alone["p95"]

def test_talk_bench_scores_only_frames_after_those_keyframes_come_from(sample_clip,
                                                                      sample_landmarks: np.ndarray) -> None:
    from bench.benchmark import load_frames
    from codec.media import read_video

    clip = np.stack(list(read_video(sample_clip)))
    frames, lead, fps = load_frames(sample_clip, 20)
    # The bundled clip is 5 s long: half of it leads in, then 20 frames are scored.
    assert lead == keyframe_window(len(clip), fps) == len(clip) // 2
    assert len(frames) == lead + 20 and np.array_equal(frames, clip[:lead + 20])
    lm = sample_landmarks[: len(frames)]
    p = clip_pictures(frames, lm, np.ones(len(frames), bool), fps, 0, window=lead)
    assert p.keyframes and all(k.media_ms < lead * 1000 / fps for k in p.keyframes)
    # All of a clip when no frame count is given, with the same lead-in.
    everything, lead_all, _ = load_frames(sample_clip, None)
    assert len(everything) == len(clip) and lead_all == lead
