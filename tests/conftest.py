"""Shared test fixtures: the bundled sample (always present) and the corpus (when beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = ROOT / "samples" / "clip.mp4"
SAMPLE_PORTRAIT = ROOT / "samples" / "portrait.jpg"

os.environ.setdefault("GLOG_minloglevel", "2")


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    return SAMPLE_CLIP


@pytest.fixture(scope="session")
def sample_portrait() -> Path:
    return SAMPLE_PORTRAIT


@pytest.fixture(scope="session")
def sample_landmarks() -> np.ndarray:
    """Tracked landmarks of the bundled clip ``[T, 478, 3]`` (cached between runs)."""
    from codec.train.corpus import clip_landmarks

    cl = clip_landmarks(SAMPLE_CLIP)
    assert cl.valid.all()
    return cl.landmarks.astype(np.float64)


@pytest.fixture(scope="session")
def sample_frames() -> list[np.ndarray]:
    from codec.media import read_video

    return list(read_video(SAMPLE_CLIP, 30))
