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
