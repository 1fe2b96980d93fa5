"""Headless Chromium with WebGL2 (SwiftShader) running the page's decoder modules.

The modules (``realtime/static/decoder/*.js``) and the assets Python exports
are served to the page by Playwright's request routing on a made-up origin,
so no server runs. Skips, with the reason, where Playwright or Chromium is
missing; ``TALKCODEC_CHROMIUM`` points at another Chromium binary.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

STATIC = Path(__file__).resolve().parents[2] / "realtime" / "static"
ORIGIN = "http://talkcodec.test"
CHROMIUM = os.environ.get("TALKCODEC_CHROMIUM", "/usr/bin/chromium")
# Software WebGL2: ANGLE on SwiftShader (the GPU process stays; --disable-gpu would remove WebGL).
WEBGL_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGE = b"<!doctype html><meta charset=utf-8><canvas id=c width=512 height=512></canvas>"
# Page-side helpers: base64 in and out of typed arrays.
HELPERS = """
window.b64 = (bytes) => { let s = ''; for (let i = 0; i < bytes.length; i += 0x8000)
  s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); return btoa(s); };
window.unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
window.f64b64 = (a) => b64(new Uint8Array(Float64Array.from(a).buffer));
"""


def sync_playwright() -> Any:
    """Playwright's entry point, or a skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright as entry
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright; its browser download is not needed)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TALKCODEC_CHROMIUM)")
    return entry


# For pages in a call on loopback: real loopback addresses (no mDNS names aiortc would have to
# resolve), and speech that plays without a click.
CALL_ARGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
             "--autoplay-policy=no-user-gesture-required"]


@contextmanager
def webgl_browser(*extra: str) -> Iterator[Any]:
    """A headless Chromium with software WebGL2 (and ``extra`` flags)."""
    entry = sync_playwright()
    with entry() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=WEBGL_ARGS + list(extra))
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, assets: dict[str, bytes]) -> Any:
    """A page at ``ORIGIN/`` that can import ``/decoder/*.js`` and fetch ``/assets/<name>``."""
    page = browser.new_page()

    def serve(route: Any) -> None:
        path = route.request.url[len(ORIGIN):].split("?")[0]
        if path == "/":
            route.fulfill(status=200, body=PAGE, headers={"Content-Type": "text/html"})
        elif path.startswith("/assets/") and path[len("/assets/"):] in assets:
            route.fulfill(status=200, body=assets[path[len("/assets/"):]],
                          headers={"Content-Type": "application/octet-stream"})
        elif path.startswith("/decoder/") and (STATIC / path[1:]).is_file():
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            route.fulfill(status=200, body=(STATIC / path[1:]).read_bytes(),
                          headers={"Content-Type": "text/javascript" if path.endswith(".js") else kind})
        else:
            route.fulfill(status=404, body=b"not found")

    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    page.add_script_tag(content=HELPERS)
    return page


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def from_b64(s: str, dtype: Any = np.uint8) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype)
