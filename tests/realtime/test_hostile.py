"""A receiver facing broken, hostile or incompatible senders drops what it must, says so once, and survives.

The receiver runs in-process with a stand-in renderer; the senders are
:class:`FakeSender` objects that put arbitrary bytes on the real channels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from codec.stream import StreamWriter
from realtime.peer import PEER_TIMEOUT_S, restrict_ice_to_loopback
from realtime.protocol import Accept, Refuse
from realtime.signaling import SignalingError
from receiver.listener import Receiver, ReceiverConfig
from tests.realtime.harness import SAMPLE_PORTRAIT, FakeRenderer, FakeSender, free_port, real_header

FIXTURES = Path(__file__).parent / "fixtures"
T = TypeVar("T")
TOKEN = "room-token"


@pytest.fixture(scope="module")
def portrait_landmarks() -> np.ndarray:
    from codec.render.portrait import prepare_portrait

    return prepare_portrait(SAMPLE_PORTRAIT).landmarks


def with_receiver(landmarks: np.ndarray, body: Callable[[str, Receiver], Awaitable[T]]) -> T:
    restrict_ice_to_loopback()

    async def run() -> T:
        port = free_port()
        rec = Receiver(ReceiverConfig(port=port, token=TOKEN, jitter_ms=40), landmarks, FakeRenderer())
        stop = asyncio.Event()
        task = asyncio.create_task(rec.run(stop))
        while rec.server._server is None:
            await asyncio.sleep(0.01)
        try:
            return await body(f"ws://127.0.0.1:{port}", rec)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    return asyncio.run(run())


async def wait_for(cond: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def test_broken_and_random_packets_are_dropped_and_logged_once(portrait_landmarks: np.ndarray,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    header = real_header()
    writer = StreamWriter(header)
    rng = np.random.default_rng(0)

    async def body(url: str, rec: Receiver) -> dict[str, Any]:
        s = FakeSender()
        await s.connect(url, TOKEN)
        assert isinstance(await s.hello(header.to_bytes()), Accept)
        call = rec.call
        assert call is not None
        good = 0
        for k in range(5):
            s.send_motion(writer.encode(rng.integers(0, 625, (4, 12)), k * 40))
            good += 1
        broken = [FIXTURES / f"motion_{n}.bin" for n in
                  ("truncated", "header_only_short", "oversized", "reserved_flags", "payload_out_of_range")]
        for path in broken * 3:
            s.send_motion(path.read_bytes())
        r = random.Random(1)
        randoms = [bytes(r.getrandbits(8) for _ in range(r.choice([8, 20, 63, 200]))) for _ in range(40)]
        for data in randoms:
            s.send_motion(data)
        s.send_motion("a text message")
        s.send_motion(b"\x00" * 60_000)
        s.link.control.send(b"not a control message")
        for k in range(5, 10):
            s.send_motion(writer.encode(rng.integers(0, 625, (4, 12)), k * 40))
            good += 1
        sent = good + len(broken) * 3 + len(randoms) + 2
        # The motion channel is unreliable by design: on a loaded box a burst may lose a packet or two.
        await wait_for(lambda: call.stats.frames_received + call.drops.total >= sent - 3, 20)
        await asyncio.sleep(0.3)
        assert rec.call is call and not call.link.ended.is_set()  # the call goes on
        result = {"received": call.stats.frames_received, "drops": dict(call.drops.counts), "sent": sent,
                  "good": good, "control_drops": call.link.drops.total}
        await s.close()
        await wait_for(lambda: rec.call is None, 10)
        # Back to waiting: the next sender is served.
        s2 = FakeSender()
        await s2.connect(url, TOKEN)
        result["second"] = await s2.hello(header.to_bytes())
        await s2.close()
        return result

    r = with_receiver(portrait_landmarks, body)
    assert isinstance(r["second"], Accept)
    assert r["received"] >= r["good"] - 2
    assert r["sent"] - 3 <= r["received"] + sum(r["drops"].values()) <= r["sent"], r  # each packet accounted for
    assert sum(r["drops"].values()) >= 15 + 2  # the fixtures, the text and the blob at least
    assert "text message" in r["drops"]
    assert r["control_drops"] == 1
    lines = [rec.getMessage() for rec in caplog.records if "dropped motion packet" in rec.getMessage()]
    assert len(lines) == len(r["drops"])  # one line per kind, not per packet


def test_another_stream_version_is_refused_clearly(portrait_landmarks: np.ndarray) -> None:
    raw = bytearray(real_header().to_bytes())
    raw[4] = 3  # the version byte after the magic

    async def body(url: str, rec: Receiver) -> Any:
        s = FakeSender()
        await s.connect(url, TOKEN)
        reply = await s.hello(bytes(raw))
        await wait_for(lambda: rec.call is None, 10)
        await s.close()
        return reply, rec.stats.calls_refused

    reply, refused = with_receiver(portrait_landmarks, body)
    assert isinstance(reply, Refuse) and "version 3" in reply.reason and "release" in reply.reason
    assert refused == 1


def test_other_tokenizer_weights_are_refused(portrait_landmarks: np.ndarray) -> None:
    header = dataclasses.replace(real_header(), tokenizer_hash="deadbeef")

    async def body(url: str, rec: Receiver) -> Any:
        s = FakeSender()
        await s.connect(url, TOKEN)
        reply = await s.hello(header.to_bytes())
        await s.close()
        return reply

    reply = with_receiver(portrait_landmarks, body)
    assert isinstance(reply, Refuse) and "tokenizer weights" in reply.reason


def test_wrong_token_and_busy_are_refused(portrait_landmarks: np.ndarray) -> None:
    async def body(url: str, rec: Receiver) -> list[str]:
        errors = []
        try:
            await FakeSender().connect(url, "not-the-token")
        except SignalingError as e:
            errors.append(str(e))
        s = FakeSender()
        await s.connect(url, TOKEN)
        try:
            await FakeSender().connect(url, TOKEN)
        except SignalingError as e:
            errors.append(str(e))
        await s.close()
        return errors

    errors = with_receiver(portrait_landmarks, body)
    assert len(errors) == 2
    assert "wrong token" in errors[0]
    assert "busy" in errors[1]


def test_a_vanished_sender_is_noticed_and_the_receiver_waits_again(portrait_landmarks: np.ndarray) -> None:
    header = real_header()

    async def body(url: str, rec: Receiver) -> tuple[float, Any]:
        s = FakeSender()
        await s.connect(url, TOKEN)
        assert isinstance(await s.hello(header.to_bytes()), Accept)
        await s.vanish()
        noticed = await wait_for(lambda: rec.call is None, PEER_TIMEOUT_S + 5)
        await s.close()
        s2 = FakeSender()
        await s2.connect(url, TOKEN)
        reply = await s2.hello(header.to_bytes())
        await s2.close()
        return noticed, reply

    noticed, reply = with_receiver(portrait_landmarks, body)
    assert noticed <= PEER_TIMEOUT_S + 2
    assert isinstance(reply, Accept)


def test_face_leaving_the_frame_shows_the_portrait_at_rest(portrait_landmarks: np.ndarray) -> None:
    header = real_header()
    writer = StreamWriter(header)
    rng = np.random.default_rng(1)

    async def body(url: str, rec: Receiver) -> tuple[list[np.ndarray], int]:
        shown: list[np.ndarray] = []
        renderer = rec.render.renderer
        real = renderer.render

        def spy(landmarks: np.ndarray) -> np.ndarray:
            shown.extend(landmarks)
            return real(landmarks)  # type: ignore[no-any-return]

        renderer.render = spy
        s = FakeSender()
        await s.connect(url, TOKEN)
        assert isinstance(await s.hello(header.to_bytes()), Accept)
        for k in range(30):
            face = not 10 <= k < 20
            s.send_motion(writer.encode(rng.integers(0, 625, (4, 12)) if face else None, k * 40))
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.5)
        call = rec.call
        assert call is not None
        no_face = call.stats.frames_no_face
        await s.close()
        return shown, no_face

    shown, no_face = with_receiver(portrait_landmarks, body)
    assert no_face == 10
    at_rest = sum(np.allclose(lm, portrait_landmarks, atol=1e-3) for lm in shown)
    moving = len(shown) - at_rest
    assert at_rest >= 5 and moving >= 10
