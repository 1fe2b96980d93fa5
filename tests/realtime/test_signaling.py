"""Signaling: message parsing, the token check, and the server and client on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol import ProtocolError
from realtime.signaling import (
    Answer,
    Challenge,
    Offer,
    Reject,
    SignalingError,
    SignalingServer,
    call,
    encode_signal,
    new_nonce,
    new_token,
    parse_signal,
    sdp_mac,
    verify_mac,
)

signals = st.one_of(
    st.builds(Challenge, st.binary(min_size=16, max_size=16)),
    st.builds(Offer, st.text(max_size=200), st.binary(min_size=32, max_size=32)),
    st.builds(Answer, st.text(max_size=200), st.binary(min_size=32, max_size=32)),
    st.builds(Reject, st.text(max_size=200)),
)


@given(signals)
def test_round_trip(msg: object) -> None:
    assert parse_signal(encode_signal(msg)) == msg  # type: ignore[arg-type]


@given(st.text(max_size=200))
def test_random_text_parses_or_raises_protocol_error(text: str) -> None:
    try:
        parse_signal(text)
    except ProtocolError:
        pass


@pytest.mark.parametrize("raw, words", [
    ("not json", "not JSON"),
    ("[1, 2]", "not a talkcodec"),
    ('{"type": "offer"}', "not a talkcodec"),
    ('{"talkcodec": 2, "type": "offer"}', "version 2"),
    ('{"talkcodec": 1, "type": "dance"}', "unknown"),
    ('{"talkcodec": 1, "type": "offer", "sdp": "x"}', "mac"),
    ('{"talkcodec": 1, "type": "offer", "sdp": "x", "mac": "zz"}', "not hex"),
    ('{"talkcodec": 1, "type": "challenge", "nonce": "00"}', "expected 16"),
    ("x" * 70000, "exceeds"),
])
def test_broken_signals(raw: str, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_signal(raw)


def test_mac_binds_token_role_nonce_and_sdp() -> None:
    nonce = new_nonce()
    mac = sdp_mac("secret", "offer", nonce, "v=0")
    assert verify_mac("secret", "offer", nonce, "v=0", mac)
    assert not verify_mac("other", "offer", nonce, "v=0", mac)
    assert not verify_mac("secret", "answer", nonce, "v=0", mac)
    assert not verify_mac("secret", "offer", new_nonce(), "v=0", mac)
    assert not verify_mac("secret", "offer", nonce, "v=1", mac)
    assert new_token() != new_token() and len(new_token()) >= 20


async def _with_server(token: str, handler, client_token: str, busy: bool = False) -> str:  # type: ignore[no-untyped-def]
    server = SignalingServer("127.0.0.1", 0, token, handler)
    await server.start()
    try:
        async def offer() -> str:
            return "v=0 offer"
        return await call(f"ws://127.0.0.1:{server.bound_port}", client_token, offer)
    finally:
        await server.close()


def test_matching_token_gets_the_answer() -> None:
    seen: list[str] = []

    async def handler(sdp: str) -> str:
        seen.append(sdp)
        return "v=0 answer"

    assert asyncio.run(_with_server("s3cret", handler, "s3cret")) == "v=0 answer"
    assert seen == ["v=0 offer"]


def test_wrong_token_is_refused_with_a_clear_message(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(sdp: str) -> str:
        raise AssertionError("an unauthenticated offer must not reach the receiver")

    with pytest.raises(SignalingError, match="wrong token"):
        asyncio.run(_with_server("s3cret", handler, "guess"))
    assert any("wrong token" in r.message for r in caplog.records)


def test_handler_can_refuse_busy() -> None:
    async def handler(sdp: str) -> str:
        raise SignalingError("busy: another sender is connected")

    with pytest.raises(SignalingError, match="busy"):
        asyncio.run(_with_server("t", handler, "t"))


def test_unreachable_receiver() -> None:
    async def offer() -> str:
        return "x"

    with pytest.raises(SignalingError, match="is talk-recv running"):
        asyncio.run(call("ws://127.0.0.1:9", "t", offer))
    with pytest.raises(SignalingError, match="not a websocket URL"):
        asyncio.run(call("http://127.0.0.1:9", "t", offer))


def test_a_receiver_without_the_token_is_not_trusted() -> None:
    async def run() -> None:
        from websockets.asyncio.server import serve

        async def impostor(ws) -> None:  # type: ignore[no-untyped-def]
            await ws.send(encode_signal(Challenge(new_nonce())))
            offer = parse_signal(await ws.recv())
            assert isinstance(offer, Offer)
            await ws.send(encode_signal(Answer("v=0 evil", bytes(32))))

        async with serve(impostor, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]

            async def offer() -> str:
                return "v=0"
            await call(f"ws://127.0.0.1:{port}", "t", offer)

    with pytest.raises(SignalingError, match="does not know the room token"):
        asyncio.run(run())


def test_server_survives_garbage_clients() -> None:
    async def run() -> str:
        from websockets.asyncio.client import connect

        async def handler(sdp: str) -> str:
            return "ok"

        server = SignalingServer("127.0.0.1", 0, "t", handler)
        await server.start()
        url = f"ws://127.0.0.1:{server.bound_port}"
        try:
            for junk in ("garbage", json.dumps({"talkcodec": 1, "type": "answer", "sdp": "", "mac": "00" * 32}),
                         b"\x00\xff binary"):
                async with connect(url) as ws:
                    await ws.recv()  # the challenge
                    await ws.send(junk)
                    with pytest.raises(Exception):
                        await asyncio.wait_for(ws.recv(), 2)  # closed without an answer

            async def offer() -> str:
                return "v=0"
            return await call(url, "t", offer)
        finally:
            await server.close()

    assert asyncio.run(run()) == "ok"
