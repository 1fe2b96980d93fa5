"""Clock offset and round trip from ping/pong exchanges."""

from __future__ import annotations

import pytest

from realtime.clock import MediaClock, OffsetEstimator, offset_sample


def test_offset_sample_of_a_symmetric_path() -> None:
    # Peer clock 1000 µs ahead, 100 µs each way, 20 µs to answer.
    t0 = 5000
    t1 = t0 + 100 + 1000
    t2 = t1 + 20
    t3 = t2 - 1000 + 100
    s = offset_sample(t0, t1, t2, t3)
    assert s.offset_us == pytest.approx(1000)
    assert s.rtt_us == pytest.approx(200)


def test_estimator_trusts_the_fastest_exchange() -> None:
    est = OffsetEstimator()
    assert est.offset_us == 0.0 and est.rtt_ms is None
    est.add(offset_sample(0, 5000 + 500, 5000 + 500, 6000))  # queued one way: skews the offset
    est.add(offset_sample(10_000, 10_050 + 500, 10_050 + 500, 10_100))
    assert est.offset_us == pytest.approx(500)
    assert est.rtt_ms == pytest.approx(0.1)


def test_a_clock_step_is_ignored() -> None:
    est = OffsetEstimator()
    est.add(offset_sample(100, 0, 10_000, 200))  # negative round trip
    assert est.rtt_ms is None


def test_media_clock_counts_from_zero() -> None:
    c = MediaClock()
    assert 0 <= c.now_ms() < 1000
    assert c.monotonic_at(40) - c.monotonic_at(0) == pytest.approx(40)
