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
