"""Frames bundled into messages (--frames-per-packet): a short in-process call, every frame arrives."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bench.measure.wire import ClipTokens, Setting, _call, _free_port
from codec.api import speech_reference
from realtime.peer import restrict_ice_to_loopback
from tests.realtime.harness import SAMPLE_CLIP


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
def test_three_frames_a_message_arrive_as_three_frames(mode: str) -> None:
    restrict_ice_to_loopback()
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-1, 2, (50, 4, 12)), axis=0) % 625  # slowly varying tokens, like motion
    tokens: list[np.ndarray | None] = [t for t in walk]
    tokens[20] = None  # a frame without a face rides in a message too
    clip = ClipTokens(SAMPLE_CLIP, tokens, speech_reference())
    sent, recv = asyncio.run(_call(Setting(mode, 4, 3, 8.0, 60), clip, 3.0, _free_port()))
    assert sent["frames_sent"] >= 60
    assert sent["messages_sent"] <= sent["frames_sent"] / 3 + 3  # a few partial messages (start, end, stalls)
    assert recv["frames_received"] == sent["frames_sent"]
    assert recv["frames_no_face"] >= 1
    assert recv["motion_messages"] == sent["messages_sent"]
    assert not recv["packets_dropped"]  # no frame undecodable: entropy frames chain across messages too
    assert sent["wire"]["audio_kbps"] > 0 and recv["audio_latency_ms"]["n"] > 0
