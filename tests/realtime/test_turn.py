"""NAT traversal: a call relayed through a TURN server (Debian's coturn, started on loopback).

Skips, saying why, where ``turnserver`` is not installed (``apt-get install coturn``; .ci/run installs it).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from realtime.clock import monotonic_ms
from realtime.peer import IceConfig, restrict_ice_to_loopback
from tests.realtime.harness import (
    TURN_PASSWORD,
    TURN_USER,
    TurnServer,
    clip_10s,
    free_port,
    read_json,
    run_sender,
    start_receiver,
    stop,
)
from tests.realtime.test_wire import open_pair

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None,
                                reason="turnserver (Debian's coturn) is not installed: apt-get install coturn")
TOKEN = "turn-test-token"


async def relayed_messages(url: str, n: int) -> tuple[Any, Any, int]:
    restrict_ice_to_loopback()
    relay = IceConfig((url,), TURN_USER, TURN_PASSWORD, relay_only=True)
    a, b = await open_pair(ice_a=relay)
    got: list[bytes] = []
    done = asyncio.Event()

    def on_message(m: bytes) -> None:
        got.append(m)
        if len(got) == n:
            done.set()

    b.motion.on("message", on_message)
    try:
        for i in range(n):
            a.send_motion(bytes([i]) * 40)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(done.wait(), 30)
        totals = a.wire.stop(monotonic_ms() / 1000)
        per_message = totals.sent.datagrams["dtls"].bytes // max(1, totals.sent.chunks["motion"].packets)
        return a.ice_pair, b.ice_pair, per_message
    finally:
        await a.close()
        await b.close()


def test_relay_only_peer_talks_through_the_turn_server(tmp_path: Path) -> None:
    with TurnServer(tmp_path) as turn:
        a_pair, b_pair, per_message = asyncio.run(relayed_messages(turn.url, 20))
    assert a_pair == {"local": "relay", "remote": "host"}
    assert b_pair == {"local": "host", "remote": "relay"}
    # Counted on the socket to the TURN server: its 4-byte ChannelData header is on the wire too.
    assert per_message >= 40 + 28 + 4 + 28


def test_a_call_over_turn_reports_the_relayed_pair(tmp_path: Path) -> None:
    clip, flags = clip_10s()
    ice = ["--ice-server", "", "--ice-user", TURN_USER, "--ice-password", TURN_PASSWORD, "--relay-only"]
    with TurnServer(tmp_path) as turn:
        ice[1] = turn.url
        port = free_port()
        recv = start_receiver(port, TOKEN, "--once", "--device", "cpu", "--size", "128",
                              "--stats-json", str(tmp_path / "recv.json"), *ice)
        try:
            send = run_sender(port, TOKEN, "--video", str(clip), "--duration", "4", "--no-audio",
                              "--stats-json", str(tmp_path / "send.json"), *ice, *flags)
            _, err = recv.communicate(timeout=120)
        finally:
            if recv.poll() is None:
                stop(recv)
    assert send.returncode == 0, send.stderr
    assert recv.returncode == 0, err
    sent, received = read_json(tmp_path / "send.json"), read_json(tmp_path / "recv.json")
    assert sent["ice"] == {"local": "relay", "remote": "relay"}
    assert received["ice"] == {"local": "relay", "remote": "relay"}
    assert received["frames_received"] > 0
    assert sent["wire"]["motion_kbps"] > 0 and received["wire"]["motion_kbps"] > 0
