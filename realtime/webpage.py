"""The browser viewer's page, served over plain HTTP on the signaling port.

A websocket upgrade goes on to signaling; any other request is answered
here: ``/`` is the server's page (``static/index.html``, the viewer, on
``talk-recv --serve-browser``; ``static/send.html``, the camera, on
``talk-send --from-browser``), ``/app.js`` their script, ``/decoder/*.js``
the token-mode decoder's modules, ``/decoder/protocol.json`` the transport
constants they use (generated here from :mod:`realtime.protocol`), any file
the server adds (``talk-recv`` adds ``/decoder.bin``, the decoder's weights
from :mod:`codec.webexport`), and anything else 404. The room token travels
in the page's address (``?token=``) and never reaches the server: the page
proves it knows the token with the same HMAC challenge as ``talk-send``
(:mod:`realtime.signaling`). Nothing served here is private: the portrait
reaches a page only over its authenticated peer connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from codec.picture import MAX_PICTURE_BYTES
from realtime import protocol as P
from realtime.pictures import MAX_PENDING

STATIC = Path(__file__).resolve().parent / "static"

VIEWER_PAGE, CAMERA_PAGE = "index.html", "send.html"
HTML, SCRIPT = "text/html; charset=utf-8", "text/javascript; charset=utf-8"
JSON, BINARY = "application/json", "application/octet-stream"
# A token-mode page's data channels (negotiated: both ends create them with these ids and options).
TOKEN_CHANNELS: dict[str, dict[str, Any]] = {
    "status": {"id": 0}, "control": {"id": 1}, "motion": {"id": 2, "ordered": False, "maxRetransmits": 0},
    "portrait": {"id": 3}}
_MODULE = re.compile(r"/decoder/[a-z]+\.js")

# Extra files a server serves: path -> (content type, bytes).
Files = Mapping[str, tuple[str, bytes]]


@lru_cache(maxsize=1)
def decoder_protocol() -> bytes:
    """``/decoder/protocol.json``: the control framing and the token-mode channels, for the page."""
    return json.dumps({
        "control": {"magic": P.MAGIC.decode("ascii"), "version": P.CONTROL_VERSION, "prefix_bytes": P._PREFIX.size,
                    "max_message_bytes": P.MAX_MESSAGE_BYTES, "types": {t.name: int(t) for t in P.MessageType}},
        "channels": TOKEN_CHANNELS,
        # The caller's keyframes reach a token page as pictures (realtime.pictures), reassembled within these.
        "pictures": {"max_picture_bytes": MAX_PICTURE_BYTES, "max_pending": MAX_PENDING},
    }, sort_keys=True).encode()

# A websockets ``process_request`` hook: (connection, request) -> None or an HTTP response.
PageHook = Callable[[Any, Any], Any]


def page_for(target: str, index: str = VIEWER_PAGE, files: Files | None = None) -> tuple[str, bytes] | None:
    """The content type and bytes for a request target (``/?token=...``), or None for 404.

    Args:
        index: the page at ``/``, a file in ``static/``.
        files: more paths the server serves (generated content).
    """
    path = urlsplit(target).path
    if path in ("/", f"/{index}"):
        return HTML, (STATIC / index).read_bytes()
    if path == "/app.js":
        return SCRIPT, (STATIC / "app.js").read_bytes()
    if path == "/decoder/protocol.json":
        return JSON, decoder_protocol()
    if _MODULE.fullmatch(path) and (STATIC / path[1:]).is_file():
        return SCRIPT, (STATIC / path[1:]).read_bytes()
    if files is not None and path in files:
        return files[path]
    return None


def page_server(index: str, files: Files | None = None) -> PageHook:
    """A ``process_request`` hook serving ``index`` at ``/``; websocket upgrades go through to signaling."""
    return lambda connection, request: _respond(connection, request, index, files)


def _respond(connection: Any, request: Any, index: str, files: Files | None = None) -> Any:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    page = page_for(request.path, index, files)
    if page is None:
        return connection.respond(404, "not found: the page is at /\n")
    content_type, body = page
    # The address holds the room token: keep it out of caches and Referer headers.
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                       ("X-Content-Type-Options", "nosniff"), ("Connection", "close")])
    return Response(200, "OK", headers, body)
