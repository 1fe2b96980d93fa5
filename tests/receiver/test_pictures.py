"""The receiver and the caller's picture: a placeholder until it arrives, then the caller; keyframes; refusals.

The receiver runs in-process with stand-in renderers; a FakeSender puts real picture messages (and broken
ones) on the call's control channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from codec.keyframe_select import frame_picture
from codec.picture import PictureKind, encode_picture
from codec.render.keyframes import Keyframe
from codec.stream import StreamWriter
from realtime.peer import restrict_ice_to_loopback
from realtime.pictures import PacingConfig, PictureOutbox
from realtime.protocol import Accept, NoPicture, NoPictureReason, PictureBegin, PictureData
from receiver.listener import Receiver, ReceiverConfig
from receiver.placeholder import WAITING, PlaceholderRenderer, placeholder_landmarks
from tests.realtime.harness import FakeSender, free_port, real_header

T = TypeVar("T")
TOKEN = "picture-token"


class CallerRenderer:
    """Stands in for the renderer of the caller's picture: remembers its portrait and keyframes."""

    made: list[CallerRenderer] = []

    def __init__(self, portrait: Any) -> None:
        self.portrait = portrait
        self.keyframes: list[Keyframe] = []
        CallerRenderer.made.append(self)

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        return np.full((len(landmarks), 64, 64, 3), 200, np.uint8)

    def add_keyframe(self, kf: Keyframe) -> None:
        self.keyframes.append(kf)


@pytest.fixture(scope="module")
def records(sample_frames: list[np.ndarray], sample_landmarks: np.ndarray) -> list[bytes]:
    ref = frame_picture(sample_frames[0], sample_landmarks[0], PictureKind.REFERENCE, 0)
    from codec.render.portrait import crop_box

    box = crop_box(sample_landmarks[0])
    kf = frame_picture(sample_frames[16], sample_landmarks[16], PictureKind.MOUTH, 640, box)
    return [encode_picture(ref), encode_picture(kf)]


def messages(records: list[bytes]) -> list[bytes]:
    outbox = PictureOutbox(PacingConfig(10_000.0))
    for r in records:
        outbox.add(r)
    out, t = [], 0.0
    while outbox.pending or outbox.wait_s(t) is not None:
        raw = outbox.next_message(t)
        if raw is not None:
            out.append(raw)
        t += 0.04
    return out


def with_receiver(body: Callable[[str, Receiver], Awaitable[T]], own_portrait: bool = False) -> T:
    restrict_ice_to_loopback()
    CallerRenderer.made.clear()

    async def run() -> T:
        port = free_port()
        placeholder = PlaceholderRenderer(64)
        cfg = ReceiverConfig(port=port, token=TOKEN, jitter_ms=40)
        if own_portrait:  # --portrait: a renderer of its own, the caller's pictures unused
            rec = Receiver(cfg, placeholder.rest, CallerRenderer(None))
        else:
            rec = Receiver(cfg, placeholder.rest, placeholder, make_renderer=CallerRenderer, placeholder=placeholder)
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


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def started_call(url: str, rec: Receiver) -> tuple[FakeSender, Any, StreamWriter]:
    header = real_header()
    s = FakeSender()
    await s.connect(url, TOKEN)
    assert isinstance(await s.hello(header.to_bytes()), Accept)
    assert rec.call is not None
    return s, rec.call, StreamWriter(header)


def test_placeholder_first_then_the_callers_picture_then_keyframes(records: list[bytes]) -> None:
    rng = np.random.default_rng(0)

    async def body(url: str, rec: Receiver) -> dict[str, Any]:
        s, call, writer = await started_call(url, rec)
        assert call.pictures.stats.state == "waiting" and not rec.render.switched
        for k in range(5):
            s.send_motion(writer.encode(rng.integers(0, 625, (4, 12)), k * 40))
        await until(lambda: call.stats.frames_received >= 3)
        for raw in messages(records):
            s.link.send_encoded(raw)
        await until(lambda: call.pictures.stats.state == "caller" and len(CallerRenderer.made) == 1)
        for k in range(5, 40):
            s.send_motion(writer.encode(rng.integers(0, 625, (4, 12)), k * 40))
        renderer = CallerRenderer.made[0]
        await until(lambda: len(renderer.keyframes) == 1 and call.time_to_face_ms is not None)
        out = {"stats": call.pictures.stats, "renderer": renderer, "after": call._face_after_ms,
               "rest": call.rest.copy(), "records": list(call.pictures.records)}
        await s.close()
        await until(lambda: rec.call is None)
        return out

    r = with_receiver(body)
    renderer: CallerRenderer = r["renderer"]
    # The portrait is the caller's picture: its landmarks as the sender tracked them, in its crop.
    from codec.picture import parse_picture

    assert np.abs(renderer.portrait.landmarks - parse_picture(records[0]).landmarks).max() < 1e-4
    assert np.array_equal(r["rest"], renderer.portrait.landmarks)
    kf = parse_picture(records[1])  # a picture of the mouth alone
    assert renderer.keyframes[0].kind == "mouth" and renderer.keyframes[0].image.shape == (kf.size, kf.size, 3)
    assert r["stats"].reference_bytes == len(records[0]) and r["stats"].keyframe_bytes == len(records[1])
    assert r["stats"].keyframes == ["mouth"] and r["stats"].dropped == {}
    assert r["after"] is not None and r["after"] >= 0  # frames up to the switch kept the placeholder
    assert r["records"] == records  # as received, for whoever needs the bytes (browser viewers)


def test_a_private_caller_keeps_the_placeholder_and_the_receiver_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def body(url: str, rec: Receiver) -> tuple[str, str, bool]:
        s, call, _ = await started_call(url, rec)
        s.link.send(NoPicture(NoPictureReason.PRIVATE))
        await until(lambda: call.pictures.stats.state == "private")
        assert call.placeholder is not None
        caption = call.placeholder.message
        await s.close()
        await until(lambda: rec.call is None)
        return call.pictures.stats.state, caption, rec.render.switched

    state, caption, switched = with_receiver(body)
    assert state == "private" and "private" in caption and not switched
    assert any("--portrait" in r.getMessage() and "private" in r.getMessage() for r in caplog.records)


def test_with_its_own_portrait_the_receiver_counts_the_callers_picture_but_keeps_its_face(
        records: list[bytes]) -> None:
    async def body(url: str, rec: Receiver) -> Any:
        s, call, _ = await started_call(url, rec)
        for raw in messages(records):
            s.link.send_encoded(raw)
        await until(lambda: call.pictures.stats.keyframe_bytes > 0)
        await asyncio.sleep(0.1)
        out = (call.pictures.stats, rec.render.switched)
        await s.close()
        return out

    stats, switched = with_receiver(body, own_portrait=True)
    assert stats.state == "portrait" and stats.reference_bytes == len(records[0]) and not switched
    assert len(CallerRenderer.made) == 1 and CallerRenderer.made[0].keyframes == []  # none for another face


def test_broken_pictures_are_dropped_and_the_call_goes_on(records: list[bytes], caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    caplog.set_level(logging.WARNING)
    bad = bytearray(records[0])
    bad[100] ^= 0xFF  # a corrupt landmark block, with a hash that matches the corruption

    async def body(url: str, rec: Receiver) -> Any:
        s, call, _ = await started_call(url, rec)
        s.link.send(PictureBegin(1, 100_000, bytes(32)))  # too large
        s.link.send(PictureData(5, 0, b"never announced"))
        s.link.send(PictureBegin(2, 4, hashlib.sha256(b"abcd").digest()))
        s.link.send(PictureData(2, 0, b"abcX"))  # hash mismatch
        for raw in messages([bytes(bad)]):
            s.link.send_encoded(raw)
        await until(lambda: sum(call.pictures.stats.dropped.values()) >= 4)
        for raw in messages(records[:1]):  # and then a good one still works
            s.link.send_encoded(raw)
        await until(lambda: call.pictures.stats.state == "caller")
        out = dict(call.pictures.stats.dropped), call.link.ended.is_set()
        await s.close()
        return out

    dropped, ended = with_receiver(body)
    assert not ended and sum(dropped.values()) >= 4
    assert any("picture of the caller" in r.getMessage() for r in caplog.records)


def test_the_placeholder_is_neutral_cheap_and_follows_the_motion() -> None:
    p = PlaceholderRenderer(128)
    rest = p.rest
    assert np.allclose(rest, placeholder_landmarks(128))
    a = p.render(rest)
    assert a.shape == (1, 128, 128, 3) and a.dtype == np.uint8
    moved = rest.copy()
    moved[14, 1] += 10  # the lower lip drops
    b = p.render(np.stack([rest, moved]))
    assert np.array_equal(b[0], a[0]) and not np.array_equal(b[1], a[0])
    assert np.array_equal(p.render(np.full((478, 3), np.nan, np.float32))[0],
                          p.render(rest[None] * 0 - 1000)[0])  # nothing drawn for unusable landmarks
    p.set_message("the caller keeps their picture private")
    assert not np.array_equal(p.render(rest)[0], a[0]) and p.message != WAITING
