"""A real browser in a call: Chromium (headless, driven by Playwright) watches talk-recv's viewer page,
and is talk-send's camera (``--from-browser``), its fake camera playing the sample clip.

Skipped, with the reason, where Playwright or Chromium is missing. CI
installs both (Debian's ``chromium`` package and ``pip install playwright``;
Playwright's own browser download is not used). ``TALKCODEC_CHROMIUM``
points at another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.realtime.harness import (
    SAMPLE_CLIP,
    SAMPLE_PORTRAIT,
    free_port,
    read_json,
    start_receiver,
    start_sender,
    stop,
    wait_listening,
)

TOKEN = "browser-test-token"
CHROMIUM = os.environ.get("TALKCODEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    # The receiver offers 127.0.0.1 only (a loopback call): let Chromium use loopback too,
    # with real addresses rather than mDNS names that aiortc would have to resolve.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]
# 32x32 grey thumbnail of the video element, as a flat list of bytes.
THUMBNAIL_JS = """() => {
  const v = document.getElementById('avatar');
  const c = document.createElement('canvas');
  c.width = c.height = 32;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 32, 32);
  const d = g.getImageData(0, 0, 32, 32).data;
  const out = [];
  for (let i = 0; i < d.length; i += 4) out.push((d[i] + d[i + 1] + d[i + 2]) / 3 | 0);
  return out;
}"""
VIDEO_JS = """() => { const v = document.getElementById('avatar');
  return {width: v.videoWidth, height: v.videoHeight, time: v.currentTime}; }"""
AUDIO_JS = """async () => { let out = {packets: 0, samples: 0, bytes: 0};
  (await peer.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio')
    out = {packets: s.packetsReceived, samples: s.totalSamplesReceived, bytes: s.bytesReceived}; });
  return out; }"""
STATE_JS = "() => [document.getElementById('state').dataset.state, document.getElementById('state').textContent]"


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright; its browser download is not needed)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TALKCODEC_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Launches a Chromium with a fresh profile and the given extra flags."""
    sync_playwright = _playwright()
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="talkcodec-chromium-") as root:
        contexts = []

        def launch(*flags: str) -> Any:
            profile = tempfile.mkdtemp(dir=root)
            context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                           args=CHROMIUM_ARGS + list(flags),
                                                           viewport={"width": 560, "height": 640})
            contexts.append(context)
            return context

        try:
            yield launch
        finally:
            for context in contexts:
                context.close()


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    return chromium()


def write_y4m(path: Path, frames: list[np.ndarray], size: int = 320, fps: int = 25) -> None:
    """Frames as a Y4M file, what Chromium's fake camera plays (in a loop)."""
    import cv2

    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{size} H{size} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            f.write(b"FRAME\n" + cv2.cvtColor(small, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    _playwright()
    port = free_port()
    # A portrait of its own: the page shows a face from the first frame (without one, a placeholder until the
    # caller's picture has arrived, tests/receiver/test_pictures.py).
    proc = start_receiver(port, TOKEN, "--serve-browser", "--device", "cpu", "--portrait", str(SAMPLE_PORTRAIT))
    try:
        yield port, proc
    finally:
        code, err = stop(proc)
        assert code == 0, err


def _open(browser: Any, port: int, token: str | None = TOKEN, query: str = "&mode=video") -> Any:
    """A viewer page; video mode unless ``query`` says otherwise (token mode: test_browser_tokens.py)."""
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{port}/" + ("" if token is None else f"?token={token}{query}"))
    return page


def _wait_state(page: Any, wanted: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    state, text = page.evaluate(STATE_JS)
    while state != wanted and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        state, text = page.evaluate(STATE_JS)
    assert state == wanted, f"page state {state!r} ({text!r}), expected {wanted!r}"
    return str(text)


def _wait_playing(page: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    video = page.evaluate(VIDEO_JS)
    while (video["width"] == 0 or video["time"] == 0) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        video = page.evaluate(VIDEO_JS)
    assert video["width"] == 512 and video["height"] == 512, video
    return dict(video)


def _thumbnails(page: Any, n: int, every_ms: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        out.append(np.array(page.evaluate(THUMBNAIL_JS), np.float32))
        page.wait_for_timeout(every_ms)
    return out


def test_page_without_token_says_so(browser: Any, receiver: tuple[int, Any]) -> None:
    page = _open(browser, receiver[0], token=None)
    try:
        assert "no room token" in _wait_state(page, "error", 10)
    finally:
        page.close()


def test_wrong_token_is_refused(browser: Any, receiver: tuple[int, Any]) -> None:
    page = _open(browser, receiver[0], token="not-the-token")
    try:
        assert "wrong token" in _wait_state(page, "error", 20)
    finally:
        page.close()


def test_a_browser_without_webgl2_chooses_video_mode(chromium: Any, receiver: tuple[int, Any]) -> None:
    page = _open(chromium("--disable-3d-apis"), receiver[0], query="")
    try:
        assert "no sender" in _wait_state(page, "waiting")
        assert page.evaluate("() => document.body.dataset.mode") == "video"
        assert "no WebGL2" in page.evaluate("() => document.getElementById('mode').textContent")
        _wait_playing(page)
    finally:
        page.close()


def test_portrait_at_rest_plays_without_a_sender(browser: Any, receiver: tuple[int, Any]) -> None:
    page = _open(browser, receiver[0])
    try:
        assert "no sender" in _wait_state(page, "waiting")
        first = _wait_playing(page)
        page.wait_for_timeout(1000)
        assert page.evaluate(VIDEO_JS)["time"] > first["time"] + 0.5
    finally:
        page.close()


def test_viewers_watch_a_call(browser: Any, receiver: tuple[int, Any]) -> None:
    port, _ = receiver
    pages = [_open(browser, port), _open(browser, port)]
    sender = start_sender(port, TOKEN, "--video", str(SAMPLE_CLIP), "--loop", "--duration", "60")
    try:
        for page in pages:
            _wait_state(page, "live", 90)
            _wait_playing(page)
        t0 = time.monotonic()
        start = [page.evaluate(VIDEO_JS)["time"] for page in pages]
        thumbs = _thumbnails(pages[0], 10, 300)
        elapsed = time.monotonic() - t0
        # Consecutive samples differ by more than coding noise: the face moves.
        moving = sum(float(np.abs(a - b).mean()) > 1.0 for a, b in zip(thumbs, thumbs[1:]))
        assert moving >= 3, f"only {moving} of 9 successive frames differ"
        for page, t in zip(pages, start):  # both viewers play, fed by the one render
            assert page.evaluate(VIDEO_JS)["time"] - t > 0.5 * elapsed
        # The caller's speech reaches the viewers too (one Opus encode shared by both).
        for page in pages:
            audio = page.evaluate(AUDIO_JS)
            assert audio["packets"] > 50 and audio["samples"] > 48_000 and audio["bytes"] > 35 * 50, audio
        # Viewers of the earlier tests have left (their pages closed); the receiver counts these two.
        page.wait_for_function("() => document.getElementById('stats').textContent.endsWith(' 2 watching')",
                               timeout=10_000)
    finally:
        for page in pages:
            page.close()
        stop(sender)


def test_browser_camera_reaches_a_receiver(chromium: Any, tmp_path: Path) -> None:
    from codec.media import read_video

    camera = tmp_path / "face.y4m"
    write_y4m(camera, list(read_video(SAMPLE_CLIP)))
    browser = chromium(f"--use-file-for-fake-video-capture={camera}")
    port, page_port = free_port(), free_port()
    recv = start_receiver(port, TOKEN, "--once", "--device", "cpu", "--stats-json", str(tmp_path / "recv.json"))
    send = start_sender(port, TOKEN, "--from-browser", "--listen", f"127.0.0.1:{page_port}", "--duration", "8",
                        "--stats-json", str(tmp_path / "send.json"))
    page = None
    try:
        wait_listening(page_port, send)
        page = _open(browser, page_port, query="")
        assert "fps of motion" in _wait_state(page, "live", 90)
        _, send_err = send.communicate(timeout=120)
        assert send.returncode == 0, send_err
        _, recv_err = recv.communicate(timeout=120)
        assert recv.returncode == 0, recv_err
    finally:
        if page is not None:
            page.close()
        stop(send)
        stop(recv)
    sent, received = read_json(tmp_path / "send.json"), read_json(tmp_path / "recv.json")
    print(f"browser camera: {sent['frames_sent']} motion packets sent in 8 s, "
          f"{received['frames_received']} received ({received['frames_no_face']} without a face), "
          f"{received['motion_kbps']} kbps")
    # The clip's face, not just packets: the fake camera played the sample clip.
    assert received["frames_received"] >= max(50, 0.9 * sent["frames_sent"])
    assert received["frames_no_face"] < 0.2 * received["frames_received"]
    assert received["audio_frames"] > 100  # the fake microphone's beeps, as Opus
