"""Token mode end to end: talk-recv relays a real talk-send call to pages that decode and draw it.

Headless Chromium with software WebGL2 watches ``talk-recv --serve-browser``:
the page gets a portrait bundle (the receiver's placeholder, then the
caller's own picture once it has arrived), the sender's header, motion
packets and Opus speech relayed unchanged, and draws the avatar itself; the
receiver renders nothing for it. Skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realtime.peer import restrict_ice_to_loopback
from tests.realtime.decoder_page import CALL_ARGS, sync_playwright, webgl_browser
from tests.realtime.harness import SAMPLE_CLIP, FakeSender, free_port, real_header, start_receiver, start_sender, stop

TOKEN = "token-mode-test"
STATE_JS = """() => ({state: document.getElementById('state').dataset.state,
  text: document.getElementById('state').textContent, mode: document.body.dataset.mode,
  stats: document.getElementById('stats').textContent,
  player: window.talkcodec && talkcodec.player ? talkcodec.player.stats : null,
  portraits: window.talkcodec ? talkcodec.portraits || 0 : 0,
  keyframes: window.talkcodec && talkcodec.keyframesUsed ? talkcodec.keyframesUsed.length : 0,
  link: typeof peer !== "undefined" && peer
    ? [peer.connectionState, peer.iceConnectionState, peer.sctp && peer.sctp.state] : null})"""
AUDIO_JS = """async () => { let n = 0; for (const r of peer.getReceivers()) (await r.getStats()).forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'audio') n = s.packetsReceived; }); return n; }"""


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: Any) -> Iterator[tuple[int, Path, Any]]:
    sync_playwright()
    port = free_port()
    stats = tmp_path_factory.mktemp("recv") / "recv.json"
    proc = start_receiver(port, TOKEN, "--serve-browser", "--device", "cpu", "--stats-json", str(stats),
                          "--page-keyframe-kbps", "256")
    try:
        yield port, stats, proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with webgl_browser(*CALL_ARGS) as b:
        yield b


# How long a page may take to get somewhere. The waits end on events; on a machine shared with other
# jobs (load 15 on 2 cores) a page took 20-30 s to load and the browser stalled for 15 s at times.
PATIENCE_S = 180.0


# The portrait's images decode only once the page has its first motion message: a page whose portrait is
# ready after the keyframe the relay started it at (decoding the bundle takes seconds on a busy machine).
HOLD_PORTRAIT_JS = """(() => {
  let got; const first = new Promise((resolve) => { got = resolve; });
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (label, options) {
    const channel = create.call(this, label, options);
    if (label === 'motion') channel.addEventListener('message', () => got(), { once: true });
    return channel;
  };
  const decode = window.createImageBitmap;
  window.createImageBitmap = async (...args) => { await first; return decode(...args); };
})();"""


def _open(browser: Any, port: int, init_js: str | None = None) -> Any:
    page = browser.new_page()
    if init_js is not None:
        page.add_init_script(init_js)
    page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}", wait_until="domcontentloaded", timeout=PATIENCE_S * 1000)
    return page


def _wait(page: Any, ok: Any, what: str, timeout_s: float = PATIENCE_S, other: Any = None) -> dict[str, Any]:
    """Polls the page's state until ``ok``; on failure says where it (and the ``other`` page) stood."""
    deadline = time.monotonic() + timeout_s
    s = page.evaluate(STATE_JS)
    while not ok(s) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        s = page.evaluate(STATE_JS)
    assert ok(s), f"{what}: {s}" + ("" if other is None else f"; the other page: {other.evaluate(STATE_JS)}")
    return dict(s)


# The page's portrait at rest, drawn and read back at once (no wait for the compositor, slow on a busy
# machine): its grey level's mean and spread.
REST_JS = """() => { talkcodec.player.drawRest(); const p = talkcodec.player.renderer.readPixels();
  let s = 0, s2 = 0; const n = p.length / 4;
  for (let i = 0; i < p.length; i += 4) { const g = (p[i] + p[i + 1] + p[i + 2]) / 3; s += g; s2 += g * g; }
  return [s / n, Math.sqrt(s2 / n - (s / n) ** 2)]; }"""


def _rest(page: Any) -> tuple[float, float]:
    mean, std = page.evaluate(REST_JS)
    return float(mean), float(std)


def test_token_page_shows_the_placeholder_without_a_sender(browser: Any, receiver: tuple[int, Path, Any]) -> None:
    page = _open(browser, receiver[0])
    try:
        s = _wait(page, lambda s: s["state"] == "waiting" and s["player"] and s["player"]["drawn"] > 0, "portrait")
        assert s["mode"] == "token" and "no sender" in s["text"] and s["portraits"] == 1
        assert _rest(page)[0] > 30  # the placeholder's silhouette, not an empty canvas
    finally:
        page.close()


def test_token_pages_play_a_call_relayed_as_it_came(browser: Any, receiver: tuple[int, Path, Any]) -> None:
    port = receiver[0]
    early = _open(browser, port)
    _wait(early, lambda s: s["state"] == "waiting" and s["player"] and s["player"]["drawn"] > 0, "waiting")
    placeholder = _rest(early)
    sender = start_sender(port, TOKEN, "--video", str(SAMPLE_CLIP), "--loop", "--duration", "600", "--entropy",
                          "--picture-kbps", "256")
    late = None
    try:
        _wait(early, lambda s: s["state"] == "live" and s["player"] and s["player"]["fresh"] > 25, "early page")
        # The caller's own picture replaces the placeholder (a second portrait bundle).
        _wait(early, lambda s: s["portraits"] == 2, "the caller's picture")
        # Joins mid-call: from the next keyframe on, on the caller's picture; its portrait is ready only after
        # that keyframe has come, and the page starts there all the same (no frame it had to wait past).
        late = _open(browser, port, HOLD_PORTRAIT_JS)
        s = _wait(late, lambda s: s["state"] == "live" and s["player"] and s["player"]["fresh"] > 50, "late page",
                  other=early)
        assert s["player"]["lost"] == 0 and s["player"]["errors"] == 0, s  # no packet it could not decode
        assert s["player"]["waiting"] == 0, s
        assert s["portraits"] == 1 and _rest(late)[1] > 1.5 * placeholder[1]  # a photo, not the silhouette
        # The caller's keyframes (the sample clip shows an open mouth and a blink) reach both pages, the
        # late one all of them at once, and are drawn with.
        _wait(early, lambda s: s["keyframes"] >= 1, "keyframes")
        n = early.evaluate(STATE_JS)["keyframes"]
        _wait(late, lambda s, n=n: s["keyframes"] >= n, "keyframes on the late page", other=early)
        for page in (early, late):
            before = page.evaluate(STATE_JS)["player"]["drawn"]
            _wait(page, lambda s, b=before: s["player"]["drawn"] > b + 25, "drawing")
            assert page.evaluate(AUDIO_JS) > 50  # the caller's speech, relayed
            assert "received" in page.evaluate(STATE_JS)["stats"]
        stop(sender)
        # The call over, pages are back on the placeholder, waiting for the next caller.
        _wait(early, lambda s: s["state"] == "waiting" and s["portraits"] == 3, "after the call")
    finally:
        for page in (early, late):
            if page is not None:
                page.close()
        stop(sender)


def test_a_page_names_an_incompatible_stream(browser: Any, receiver: tuple[int, Path, Any]) -> None:
    page = _open(browser, receiver[0])
    _wait(page, lambda s: s["state"] == "waiting" and s["player"], "waiting")
    header = dataclasses.replace(real_header(), tokenizer_hash="0123456789abcdef").to_bytes()

    def fake_call() -> None:
        async def run() -> None:
            sender = FakeSender()
            await sender.connect(f"ws://127.0.0.1:{receiver[0]}", TOKEN)
            await sender.hello(header)  # refused by the receiver; the page hears the header too
            await sender.close()

        asyncio.run(run())

    restrict_ice_to_loopback()
    thread = threading.Thread(target=fake_call)
    thread.start()
    try:
        s = _wait(page, lambda s: s["state"] == "error", "incompatible")
        assert "incompatible stream" in s["text"] and "0123456789abcdef" in s["text"]
    finally:
        thread.join(60)
        page.close()


def test_the_receiver_rendered_nothing_for_token_pages(receiver: tuple[int, Path, Any]) -> None:
    """Last in this module: stops the receiver for its figures over the calls above."""
    code, err = stop(receiver[2])
    assert code == 0, err
    stats = json.loads(receiver[1].read_text())
    assert stats["calls"] >= 1 and stats["frames_played"] > 100
    assert stats["frames_rendered"] == 0  # the pages drew every frame themselves
    pages = stats["token_pages"]
    print(f"keyframes to pages: {pages}; the call's keyframes: {stats['picture']['keyframes']}")
    assert pages["keyframes"] >= 1 and len(pages["keyframe_bytes"]) == pages["keyframes"]
    assert max(pages["page_keyframe_bytes"]) >= sum(pages["keyframe_bytes"])  # every one, chunk headers on top
