"""--animate-from-audio: the crossfade between received and generated motion, without a call or a clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realtime.jitterbuffer import PlayoutKind
from receiver.fallback import Crossfade, FallbackConfig, MotionFallback, blend

SAMPLE_PORTRAIT = Path(__file__).resolve().parents[2] / "samples" / "portrait.jpg"


def test_crossfade_ramps_monotonically_and_lands_on_its_target() -> None:
    fade = Crossfade(blend_ms=250.0, tick_ms=40.0)
    up = [fade.step(1.0) for _ in range(10)]
    assert all(b > a for a, b in zip([0.0] + up[:6], up[:7]))  # 7 ticks of 40 ms cover 250 ms
    assert up[6:] == [1.0] * 4
    down = [fade.step(0.0) for _ in range(10)]
    assert all(b < a for a, b in zip([1.0] + down[:6], down[:7]))
    assert down[6:] == [0.0] * 4
    assert Crossfade(0.0).step(1.0) == 1.0  # no blend: a switch


def test_blend_is_exact_at_its_ends() -> None:
    a, b = np.ones((478, 3), np.float32), 3 * np.ones((478, 3), np.float32)
    assert blend(a, b, 0.0) is a and blend(a, b, 1.0) is b
    assert np.allclose(blend(a, b, 0.25), 1.5)


@pytest.fixture(scope="module")
def portrait_landmarks() -> np.ndarray:
    from codec.render.portrait import prepare_portrait

    return prepare_portrait(SAMPLE_PORTRAIT).landmarks.astype(np.float32)


def test_motion_stops_then_returns(portrait_landmarks: np.ndarray) -> None:
    """Received motion until 1 s, none until 2 s (held), then received again; generated motion all along."""
    cfg = FallbackConfig(stall_ms=200.0, blend_ms=240.0)
    fb = MotionFallback(cfg, portrait_landmarks)
    real = portrait_landmarks + 1.0  # the received motion, a face shifted by one pixel
    weights: list[float] = []
    shown: list[np.ndarray] = []
    for k in range(75):
        t = 40.0 * k
        fb.add_generated(t, portrait_landmarks + np.float32(5.0 + k))  # generated: a new face each frame
        kind = PlayoutKind.HELD if 1000 < t < 2000 else PlayoutKind.FRESH
        lm, w = fb.mix(t, kind, real)
        weights.append(w)
        shown.append(lm)
    w = np.array(weights)
    stop, back = 1000 // 40, 2000 // 40  # the last fresh tick, the first fresh tick again
    assert (w[:stop + 1] == 0).all() and all(lm is real for lm in shown[:stop + 1])  # untouched
    # Motion counts as stopped 200 ms after the last fresh frame, then fades in over 240 ms.
    first = int(np.argmax(w > 0))
    assert first == stop + 5
    ramp_in = w[first - 1:back]
    assert (np.diff(ramp_in) >= 0).all() and ramp_in[-1] == 1.0
    assert np.count_nonzero((ramp_in > 0) & (ramp_in < 1)) == 5  # 240 ms / 40 ms ticks, the last at 1
    # While generated, the face follows the generator (not a frozen held frame).
    full = [lm for lm, x in zip(shown, w) if x == 1.0]
    assert len(full) >= 10 and len({float(lm[0, 0]) for lm in full}) == len(full)
    # Motion back: it fades out over 240 ms, monotonically, and ends exactly on the received motion.
    ramp_out = w[back - 1:]
    assert (np.diff(ramp_out) <= 0).all()
    end = back + int(np.argmax(w[back:] == 0))
    assert end - back == 5  # 6 steps of 1/6, the last one exactly 0
    assert all(lm is real for lm in shown[end:]) and (w[end:] == 0).all()
    assert fb.stats.switch_ms == [200.0]
    assert fb.stats.frames_generated == end - first


def test_no_generated_motion_leaves_the_received_motion(portrait_landmarks: np.ndarray) -> None:
    """Motion stops but no speech was heard: the held frame stays, as without the flag."""
    fb = MotionFallback(FallbackConfig(), portrait_landmarks)
    real = portrait_landmarks + 1.0
    out = [fb.mix(40.0 * k, PlayoutKind.FRESH if k < 5 else PlayoutKind.HELD, real) for k in range(30)]
    assert all(lm is real and w == 0.0 for lm, w in out)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        FallbackConfig(stall_ms=0)
    with pytest.raises(ValueError):
        FallbackConfig(blend_ms=-1)
