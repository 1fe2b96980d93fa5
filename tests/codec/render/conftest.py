"""Fixtures of the device-renderer tests: the bundled portrait prepared for the warp, and target frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec import regions as R
from codec.motion import motion_from_landmarks, relative, transfer
from codec.render.portrait import Portrait, prepare_portrait
from codec.render.warp import GeometricWarp


@pytest.fixture(scope="session")
def portrait(sample_portrait: Path) -> Portrait:
    return prepare_portrait(sample_portrait, size=512, crop=False)


@pytest.fixture(scope="session")
def cpu_warp(portrait: Portrait) -> GeometricWarp:
    """The numba warp of the portrait, every default on (denoised, layered)."""
    return GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))


@pytest.fixture(scope="session")
def targets(portrait: Portrait, sample_landmarks: np.ndarray) -> np.ndarray:
    """``[6, 478, 3]`` float32: the sample clip's motion on the portrait, at its widest mouth, its largest
    head turn and four frames spread over the clip."""
    lm = sample_landmarks
    delta = relative(motion_from_landmarks(lm), motion_from_landmarks(lm[0]))
    moved = transfer(portrait.landmarks, delta).astype(np.float32)
    turn = np.abs(delta.rotation).sum(-1)
    picks = [int(np.argmax(R.mouth_opening(lm))), int(np.argmax(turn))]
    picks += np.linspace(0, len(lm) - 1, 4).astype(int).tolist()
    return moved[picks]
