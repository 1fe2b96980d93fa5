"""The viewer page on the signaling port, and viewers' offers (role "watch") in signaling."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol import CONTROL_VERSION, ProtocolError
from realtime.signaling import (
    WATCH,
    Answer,
    Challenge,
    Offer,
    Reject,
    SignalingServer,
    encode_signal,
    parse_signal,
    sdp_mac,
    verify_mac,
)
from realtime.webpage import CAMERA_PAGE, TOKEN_CHANNELS, VIEWER_PAGE, page_for


@given(st.text(max_size=200), st.binary(min_size=32, max_size=32), st.sampled_from(["send", "watch"]))
def test_offer_role_round_trip(sdp: str, mac: bytes, role: str) -> None:
    assert parse_signal(encode_signal(Offer(sdp, mac, role))) == Offer(sdp, mac, role)


def test_a_sender_offer_is_unchanged_on_the_wire() -> None:
    assert "role" not in json.loads(encode_signal(Offer("v=0", bytes(32))))


def test_unknown_role_is_a_protocol_error() -> None:
    raw = json.dumps({"talkcodec": 1, "type": "offer", "sdp": "v=0", "mac": "00" * 32, "role": "admin"})
    with pytest.raises(ProtocolError, match="role"):
        parse_signal(raw)


def test_watch_mac_is_not_an_offer_mac() -> None:
    nonce = bytes(16)
    mac = sdp_mac("t", "watch", nonce, "v=0")
    assert Offer("v=0", mac, WATCH).mac_role == "watch"
    assert not verify_mac("t", "offer", nonce, "v=0", mac)


def test_page_routes() -> None:
    page = page_for("/?token=abc")
    assert page is not None and page[0].startswith("text/html") and b'id="avatar"' in page[1]
    script = page_for("/app.js")
    assert script is not None and script[0].startswith("text/javascript")
    assert page_for("/../pyproject.toml") is None and page_for("/static/app.js") is None
    camera = page_for("/", CAMERA_PAGE)
    assert camera is not None and b'id="camera"' in camera[1]


async def _watch(server: SignalingServer, token: str, role: str = WATCH) -> object:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{server.bound_port}/") as ws:
        challenge = parse_signal(await ws.recv())
        assert isinstance(challenge, Challenge)
        mac = sdp_mac(token, "offer" if role == "send" else role, challenge.nonce, "v=0 viewer")
        await ws.send(encode_signal(Offer("v=0 viewer", mac, role)))
        return parse_signal(await ws.recv())


def _http(port: int, path: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_server_serves_the_page_and_viewers() -> None:
    async def senders(sdp: str) -> str:
        return "v=0 sender answer"

    async def viewers(sdp: str) -> str:
        assert sdp == "v=0 viewer"
        return "v=0 viewer answer"

    async def run() -> None:
        server = SignalingServer("127.0.0.1", 0, "tok", senders, on_watch=viewers, page=VIEWER_PAGE)
        await server.start()
        try:
            status, body, headers = await asyncio.to_thread(_http, server.bound_port, "/?token=tok")
            assert status == 200 and b"app.js" in body and headers["Cache-Control"] == "no-store"
            assert (await asyncio.to_thread(_http, server.bound_port, "/nothing"))[0] == 404
            answer = await _watch(server, "tok")
            assert isinstance(answer, Answer) and answer.sdp == "v=0 viewer answer"
            wrong = await _watch(server, "guess")
            assert isinstance(wrong, Reject) and wrong.reason.startswith("wrong token")
        finally:
            await server.close()

    asyncio.run(run())


def test_a_receiver_without_viewers_refuses_them() -> None:
    async def senders(sdp: str) -> str:
        return "v=0"

    async def run() -> object:
        server = SignalingServer("127.0.0.1", 0, "tok", senders)
        await server.start()
        try:
            return await _watch(server, "tok")
        finally:
            await server.close()

    reply = asyncio.run(run())
    assert isinstance(reply, Reject) and "--serve-browser" in reply.reason


def test_decoder_modules_and_generated_files_are_served() -> None:
    module = page_for("/decoder/index.js")
    assert module is not None and module[0].startswith("text/javascript") and b"export" in module[1]
    proto = page_for("/decoder/protocol.json")
    assert proto is not None and proto[0] == "application/json"
    d = json.loads(proto[1])
    assert d["control"]["types"]["HELLO"] == 1 and d["channels"] == TOKEN_CHANNELS
    assert d["control"]["version"] == CONTROL_VERSION
    files = {"/decoder.bin": ("application/octet-stream", b"weights")}
    assert page_for("/decoder.bin", files=files) == files["/decoder.bin"]
    assert page_for("/decoder.bin") is None  # only what the server adds
    for bad in ("/decoder/../app.js", "/decoder/Index.js", "/decoder/none.js", "/decoder/index.js.map"):
        assert page_for(bad) is None, bad
