"""The loss/jitter test hook."""

from __future__ import annotations

import asyncio

import pytest

from realtime.netem import Netem, NetemConfig


def test_loss_rate_is_about_right() -> None:
    got: list[bytes] = []
    n = Netem(NetemConfig(loss=0.1, seed=1), got.append)
    for i in range(2000):
        n.send(bytes([i % 256]))
    assert 150 < n.dropped < 250
    assert len(got) + n.dropped == 2000


def test_jitter_delays_and_reorders() -> None:
    async def run() -> list[int]:
        got: list[int] = []
        n = Netem(NetemConfig(jitter_ms=20, seed=3), lambda b: got.append(b[0]))
        for i in range(30):
            n.send(bytes([i]))
        assert got == []  # all delayed
        await asyncio.sleep(0.1)
        n.close()
        return got

    got = asyncio.run(run())
    assert sorted(got) == list(range(30)) and got != list(range(30))


def test_close_cancels_packets_in_flight() -> None:
    async def run() -> list[bytes]:
        got: list[bytes] = []
        n = Netem(NetemConfig(jitter_ms=50), got.append)
        n.send(b"x")
        n.close()
        await asyncio.sleep(0.15)
        return got

    assert asyncio.run(run()) == []


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        NetemConfig(loss=1.0)
    with pytest.raises(ValueError):
        NetemConfig(jitter_ms=-1)
    assert not NetemConfig().active


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bursts_take_every_packet_for_their_length() -> None:
    clock = FakeClock()
    got: list[float] = []
    n = Netem(NetemConfig(burst_ms=300, burst_every_s=2.0, seed=5), lambda b: got.append(clock.t), clock)
    sent = []
    for k in range(2500):  # 100 s of packets every 40 ms
        clock.t = k * 0.04
        sent.append(clock.t)
        n.send(b"m")
    lost = sorted(set(sent) - set(got))
    runs: list[list[float]] = [[lost[0]]]
    for t in lost[1:]:
        if t - runs[-1][-1] < 0.05:
            runs[-1].append(t)
        else:
            runs.append([t])
    assert n.dropped == n.dropped_burst == len(lost)
    assert 30 < n.bursts < 70 and len(runs) <= n.bursts  # about one every 2 s (two may touch)
    # 300 ms takes 7 or 8 packets sent 40 ms apart
    assert 7 * n.bursts - 8 <= len(lost) <= 8 * n.bursts
    assert sum(len(r) in (7, 8) for r in runs) > 0.8 * len(runs)


def test_bursts_leave_the_random_loss_pattern_alone() -> None:
    clock = FakeClock()
    plain: list[int] = []
    with_bursts: list[int] = []
    a = Netem(NetemConfig(loss=0.2, seed=9), lambda b: plain.append(b[0]), clock)
    b = Netem(NetemConfig(loss=0.2, seed=9, burst_ms=300, burst_every_s=3.0), lambda b: with_bursts.append(b[0]),
              clock)
    for k in range(250):
        clock.t = k * 0.04
        a.send(bytes([k]))
        b.send(bytes([k]))
    assert set(with_bursts) <= set(plain) and len(with_bursts) < len(plain)
    assert b.dropped_random + b.dropped_burst == b.dropped


def test_burst_config_is_checked() -> None:
    with pytest.raises(ValueError):
        NetemConfig(burst_ms=300)
    with pytest.raises(ValueError):
        NetemConfig(burst_ms=3000, burst_every_s=2)
    assert NetemConfig(burst_ms=300, burst_every_s=5).active
