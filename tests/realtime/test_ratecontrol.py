"""Layer adaptation under loss and under a rate cap."""

from __future__ import annotations

import pytest

from realtime.ratecontrol import RateConfig, RateController


def test_loss_drops_layers_one_at_a_time_down_to_one() -> None:
    rc = RateController(RateConfig(holdoff=2))
    seen = [rc.on_loss(0.2) for _ in range(12)]
    assert seen[0] == 3 and seen[-1] == 1
    assert all(a - b in (0, 1) for a, b in zip(seen, seen[1:]))


def test_recovery_restores_layers_after_good_reports() -> None:
    rc = RateController(RateConfig(recover_reports=3))
    for _ in range(10):
        rc.on_loss(0.3)
    assert rc.layers == 1
    history = [rc.on_loss(0.0) for _ in range(9)]
    assert history == [1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_moderate_loss_holds() -> None:
    rc = RateController()
    rc.on_loss(0.2)
    layers = rc.layers
    for _ in range(10):
        rc.on_loss(0.03)  # between loss_low and loss_high
    assert rc.layers == layers


def test_cap_limits_layers_by_measured_rate() -> None:
    rc = RateController(RateConfig(max_kbps=8.0))
    for _ in range(20):
        rc.on_rate(12.6, 4)  # 3.15 kbps per layer
    assert rc.layers == 2
    assert RateController(RateConfig(max_kbps=0.5)).layers == 1  # never below one layer


def test_no_cap_keeps_all_layers() -> None:
    rc = RateController()
    for _ in range(5):
        rc.on_rate(100.0, 4)
    assert rc.layers == 4


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        RateConfig(min_layers=0)
    with pytest.raises(ValueError):
        RateConfig(max_kbps=-1)


def test_a_wire_cap_bundles_frames_before_it_drops_layers() -> None:
    auto = (1, 2, 3)
    # 4 layers at 11.2 + 0.8 kbps of headers; each message adds 97 bytes: 19.4 kbps at 25 a second.
    rates = {}
    for cap in (40.0, 25.0, 20.0, 15.0, 9.0, 4.0):
        rc = RateController(RateConfig(max_wire_kbps=cap, frames_per_packet=auto, nominal_layer_kbps=3.0))
        rates[cap] = (rc.layers, rc.frames_per_packet)
        assert rc.wire_kbps(*rates[cap]) <= cap or rates[cap] == (1, 3)
    assert rates == {40.0: (4, 1), 25.0: (4, 2), 20.0: (4, 3), 15.0: (2, 3), 9.0: (1, 3), 4.0: (1, 3)}


def test_without_a_wire_cap_the_fewest_frames_per_message() -> None:
    assert RateController(RateConfig(frames_per_packet=(1, 2, 3))).frames_per_packet == 1
    assert RateController(RateConfig(frames_per_packet=(3,))).frames_per_packet == 3
    # A fixed count stays whatever the cap: only layers give way.
    rc = RateController(RateConfig(max_wire_kbps=15.0, frames_per_packet=(1,), nominal_layer_kbps=3.0))
    assert (rc.layers, rc.frames_per_packet) == (1, 1)


def test_loss_still_drops_layers_under_a_wire_cap() -> None:
    rc = RateController(RateConfig(max_wire_kbps=30.0, frames_per_packet=(1, 2, 3), nominal_layer_kbps=3.0))
    assert (rc.layers, rc.frames_per_packet) == (4, 2)
    rc.on_loss(0.3)
    assert (rc.layers, rc.frames_per_packet) == (3, 1)  # fewer layers fit in smaller messages again


def test_wire_config_is_checked() -> None:
    with pytest.raises(ValueError):
        RateConfig(frames_per_packet=(4,))
    with pytest.raises(ValueError):
        RateConfig(max_wire_kbps=0)
def feed_frames(rc: RateController, start_ms: float, end_ms: float, delay_ms: float | None,
                every: int = 1) -> None:
    """Frames every 40 ms from ``start_ms`` to ``end_ms``; every ``every``-th has ``delay_ms``, the rest 20 ms."""
    t, k = start_ms, 0
    while t < end_ms:
        rc.on_frame(t, delay_ms if k % every == 0 else 20.0)
        t += 40.0
        k += 1


def test_loss_while_the_sender_is_starved_keeps_the_layers() -> None:
    rc = RateController(RateConfig(holdoff=1))
    t = 0.0
    for _ in range(10):  # a busy machine: every other frame skipped by the encoder, and loss reported
        feed_frames(rc, t, t + 1000, None, every=2)
        t += 1000
        assert rc.on_loss(0.3, t) == 4
    assert rc.held_for_cpu == 10 and rc.lossy_reports == 10


def test_late_frames_count_as_starvation_too() -> None:
    rc = RateController()
    feed_frames(rc, 0, 1000, 250.0)  # every frame sent 250 ms after capture
    assert rc.starved(1000)
    assert rc.on_loss(0.5, 1000) == 4


def test_the_same_loss_with_a_punctual_sender_drops_layers() -> None:
    rc = RateController(RateConfig(holdoff=1))
    t = 0.0
    seen = []
    for _ in range(5):
        feed_frames(rc, t, t + 1000, 20.0)
        t += 1000
        seen.append(rc.on_loss(0.3, t))
    assert seen == [3, 2, 1, 1, 1]
    assert rc.held_for_cpu == 0 and rc.last_reason == "loss"


def test_starvation_is_forgotten_after_the_window() -> None:
    rc = RateController(RateConfig(starved_window_ms=2000))
    feed_frames(rc, 0, 1000, None)  # a stall
    assert rc.starved(1000)
    feed_frames(rc, 1000, 4000, 20.0)  # punctual again
    assert not rc.starved(4000)
    assert rc.on_loss(0.3, 4000) == 3


def test_a_few_late_frames_are_not_starvation() -> None:
    rc = RateController()
    feed_frames(rc, 0, 2000, 300.0, every=20)  # 5% late: under the 10% threshold
    assert not rc.starved(2000)


def test_recovery_reason() -> None:
    rc = RateController(RateConfig(recover_reports=1, holdoff=1))
    rc.on_loss(0.5)
    assert rc.layers == 3 and rc.last_reason == "loss"
    rc.on_loss(0.0)
    assert rc.layers == 4 and rc.last_reason == "recovered"


def test_bursty_loss_settles_instead_of_see_sawing() -> None:
    """A lossy report every 4th (a 300 ms burst every few seconds): restores that fail double the wait."""
    cfg = RateConfig()
    rc = RateController(cfg)
    pattern = [0.3, 0.0, 0.0, 0.0]
    history = [rc.on_loss(pattern[i % 4]) for i in range(200)]
    changes = [i for i in range(1, len(history)) if history[i] != history[i - 1]]
    early = [i for i in changes if i < 40]
    late = [i for i in changes if i >= 100]
    assert len(early) >= 4  # it still reacts at first
    assert not late  # and then holds one layer count
    assert rc.recover_reports > cfg.recover_reports


def test_a_restore_that_holds_resets_the_wait() -> None:
    cfg = RateConfig(holdoff=1, recover_reports=3)
    rc = RateController(cfg)
    assert rc.on_loss(0.3) == 3
    assert [rc.on_loss(0.0) for _ in range(3)] == [3, 3, 4]  # restored after 3 good reports
    assert rc.on_loss(0.3) == 3 and rc.recover_reports == 6  # lost again at once: the next restore waits 6
    assert [rc.on_loss(0.0) for _ in range(6)] == [3] * 5 + [4]
    assert rc.on_loss(0.3) == 3 and rc.recover_reports == 12
    for _ in range(12 + cfg.proven_reports):  # a clean link: the layer comes back and holds
        rc.on_loss(0.0)
    assert rc.layers == cfg.max_layers and rc.recover_reports == cfg.recover_reports
