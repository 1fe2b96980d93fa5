"""The figures of bench.measure.latency / heavy_loss / soak, computed from made-up calls (no call is run)."""

from pathlib import Path

import numpy as np

from bench.measure import heavy_loss, latency, soak
from realtime.jitterbuffer import PlayoutKind
from receiver.playout import MotionLog, Tick


def _face(shift: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    lm = rng.uniform(100, 400, (478, 3)).astype(np.float32)
    lm[[33, 263], 0] = (200.0, 300.0)  # eye corners 100 px apart (the inter-ocular distance)
    lm[[33, 263], 1] = 250.0
    lm[:, 0] += shift
    return lm


def _tick(media_ms: float, kind: PlayoutKind, landmarks: np.ndarray) -> Tick:
    return Tick(index=0, media_ms=media_ms, landmarks=landmarks, kind=kind, face=True, due_ms=0.0)


def test_quality_compares_each_tick_with_the_motion_sent_for_it(tmp_path: Path) -> None:
    sent = {0: _face(0.0), 40: _face(0.0), 80: _face(0.0)}
    log = MotionLog()
    log.begin_call()
    log.add(_tick(0.0, PlayoutKind.FRESH, _face(0.0)))         # exact
    log.add(_tick(40.0, PlayoutKind.HELD, _face(10.0)))        # 10 px off: 0.1 inter-ocular distances
    log.add(_tick(80.0, PlayoutKind.INTERPOLATED, _face(0.0)))
    log.add(_tick(120.0, PlayoutKind.FRESH, _face(0.0)))       # nothing sent for it: not compared
    log.save(tmp_path / "played.npz")
    q = heavy_loss.quality(tmp_path / "played.npz", sent)
    assert q["ticks_compared"] == 3
    assert q["fresh"]["ticks"] == 1 and q["fresh"]["nme_mean"] == 0.0
    assert q["held"]["ticks"] == 1 and abs(q["held"]["nme_mean"] - 0.1) < 1e-3
    assert q["concealed"]["ticks"] == 2 and abs(q["concealed"]["nme_mean"] - 0.05) < 1e-3
    # Against another call's motion of a looped clip: media times compared modulo the clip's length.
    looped = heavy_loss.quality(tmp_path / "played.npz", {0: _face(0.0), 40: _face(0.0)}, period_ms=80)
    assert looped["ticks_compared"] == 4


def test_soak_memory_fits_growth_after_the_warm_up() -> None:
    samples = [{"t": float(t), "rss_mb": {"send": 100.0 + (50.0 if t < soak.WARMUP_S else t / 60.0),
                                          "recv": 200.0}} for t in range(0, 1801, 10)]
    m = soak.memory(samples)
    assert m["recv"]["growth_mb_per_10min"] == 0.0 and m["recv"]["start_mb"] == m["recv"]["end_mb"] == 200.0
    assert abs((m["send"]["growth_mb_per_10min"] or 0.0) - 10.0) < 0.01  # 1 MB a minute, the warm-up left out
    assert m["send"]["start_mb"] == 101.0 and m["send"]["end_mb"] == 130.0 and m["send"]["max_mb"] == 150.0
    assert soak.memory([]) == {}


def test_latency_verdicts_say_what_failed() -> None:
    good = {"latency_ms": {"p95": 90.0}, "recording_complete": 0.99, "layers_dropped": []}
    assert all(latency.verdicts(good, latency.TARGET_QUIET_P95_MS).values())
    bad = {"latency_ms": {"p95": 300.0}, "recording_complete": 0.5,
           "layers_dropped": [{"at_s": 3.0, "from": 4, "to": 3, "why": "loss"}]}
    assert not any(latency.verdicts(bad, latency.TARGET_BUSY_P95_MS).values())
    assert set(latency.verdicts({}, 100.0).values()) == {None, True}
    lines = latency.report([good | {"scenario": "quiet", "busy_loops": 0, "cpus": 2, "load_before": [3.0, 2.0, 1.0],
                                    "machine_during_call": {"cpu_busy": 0.5, "load1_max": 3.2}}])
    assert any("PASS capture->rendered p95 <= 100 ms" in line for line in lines)
    assert any("not quiet" in line for line in lines)  # load 3.0 > 1.5: said so


def test_soak_memory_ignores_a_process_on_its_way_out() -> None:
    samples = [{"t": float(t), "rss_mb": {"recv": 0.0 if t == 120 else 100.0}} for t in range(0, 121, 10)]
    assert soak.memory(samples)["recv"]["end_mb"] == 100.0
