"""The browser viewer's page, served over plain HTTP on the signaling port.

A websocket upgrade goes on to signaling; any other request is answered
here: ``/`` is the server's page (``static/index.html``, the viewer, on
``talk-recv --serve-browser``; ``static/send.html``, the camera, on
``talk-send --from-browser``), ``/app.js`` their script, and anything else 404.
The room token travels in the page's address (``?token=``) and never reaches the server: the page proves it knows the
token with the same HMAC challenge as ``talk-send``
(:mod:`realtime.signaling`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

STATIC = Path(__file__).resolve().parent / "static"

VIEWER_PAGE, CAMERA_PAGE = "index.html", "send.html"
HTML, SCRIPT = "text/html; charset=utf-8", "text/javascript; charset=utf-8"

# A websockets ``process_request`` hook: (connection, request) -> None or an HTTP response.
PageHook = Callable[[Any, Any], Any]


def page_for(target: str, index: str = VIEWER_PAGE) -> tuple[str, bytes] | None:
    """The content type and bytes for a request target (``/?token=...``), or None for 404.

    Args:
        index: the page at ``/``, a file in ``static/``.
    """
    path = urlsplit(target).path
    if path in ("/", f"/{index}"):
        return HTML, (STATIC / index).read_bytes()
    if path == "/app.js":
        return SCRIPT, (STATIC / "app.js").read_bytes()
    return None


def page_server(index: str) -> PageHook:
    """A ``process_request`` hook serving ``index`` at ``/``; websocket upgrades go through to signaling."""
    return lambda connection, request: _respond(connection, request, index)


def _respond(connection: Any, request: Any, index: str) -> Any:

    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    page = page_for(request.path, index)
    if page is None:
        return connection.respond(404, "not found: the page is at /\n")
    content_type, body = page
    # The address holds the room token: keep it out of caches and Referer headers.
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                       ("X-Content-Type-Options", "nosniff"), ("Connection", "close")])
    return Response(200, "OK", headers, body)
