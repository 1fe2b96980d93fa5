"""Websocket signaling: a room secret, then one SDP offer and its answer.

The receiver listens; a sender connects and the exchange is::

    receiver -> sender   challenge {nonce}
    sender   -> receiver offer     {sdp, mac = HMAC(token, "offer" | nonce | sdp)}
    receiver -> sender   answer    {sdp, mac = HMAC(token, "answer" | nonce | sdp)}
                      or reject    {reason}

A browser that comes to watch (``talk-recv --serve-browser``) goes through
the same exchange with ``role: "watch"`` in its offer, MACed as ``"watch"``
instead of ``"offer"``, so a sender's offer can never pass for a viewer's.

The token never crosses the wire, a recorded exchange cannot be replayed
(fresh nonce), and since each SDP carries its side's DTLS fingerprint, the
MACs bind the encrypted media to peers that know the room secret. MACs are
compared in constant time.

Messages are JSON text frames; :func:`encode_signal` and :func:`parse_signal`
are the pure halves, tested without a network.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from argparse import ArgumentTypeError
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, Union

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from codec.errors import TalkcodecError
from realtime.protocol import ProtocolError
from realtime.webpage import Files, page_server

log = logging.getLogger(__name__)

SIGNALING_VERSION = 1
MAX_SIGNAL_BYTES = 64 * 1024
NONCE_BYTES = 16
# How long either side waits for the other's next signaling message.
SIGNAL_TIMEOUT_S = 10.0


class SignalingError(TalkcodecError):
    """The receiver cannot be reached, refused the call, or failed to authenticate."""


class ReceiverUnreachable(SignalingError):
    """Nothing answers at the signaling address (yet)."""


@dataclass(frozen=True)
class Challenge:
    nonce: bytes


SEND, WATCH = "send", "watch"


@dataclass(frozen=True)
class Offer:
    """An offer SDP; ``role`` is ``"send"`` (a talk-send) or ``"watch"`` (a browser viewer)."""

    sdp: str
    mac: bytes
    role: str = SEND

    @property
    def mac_role(self) -> str:
        return "offer" if self.role == SEND else self.role


@dataclass(frozen=True)
class Answer:
    sdp: str
    mac: bytes


@dataclass(frozen=True)
class Reject:
    reason: str


Signal = Union[Challenge, Offer, Answer, Reject]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def new_token() -> str:
    """A fresh room secret, easy to copy: 22 URL-safe characters (128 bits)."""
    return secrets.token_urlsafe(16)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def sdp_mac(token: str, role: str, nonce: bytes, sdp: str) -> bytes:
    """HMAC-SHA256 of one side's SDP under the room secret.

    Args:
        role: ``"offer"``, ``"watch"`` or ``"answer"`` so that one side's MAC is never valid for another.
    """
    msg = role.encode() + b"\0" + nonce + sdp.encode("utf-8")
    return hmac.new(token.encode("utf-8"), msg, hashlib.sha256).digest()


def verify_mac(token: str, role: str, nonce: bytes, sdp: str, mac: bytes) -> bool:
    """Constant-time check of :func:`sdp_mac`."""
    return hmac.compare_digest(sdp_mac(token, role, nonce, sdp), mac)


def encode_signal(msg: Signal) -> str:
    """One signaling message as a JSON text frame."""
    d: dict[str, object] = {"talkcodec": SIGNALING_VERSION}
    if isinstance(msg, Challenge):
        d.update(type="challenge", nonce=msg.nonce.hex())
    elif isinstance(msg, Offer):
        d.update(type="offer", sdp=msg.sdp, mac=msg.mac.hex())
        if msg.role != SEND:
            d.update(role=msg.role)
    elif isinstance(msg, Answer):
        d.update(type="answer", sdp=msg.sdp, mac=msg.mac.hex())
    elif isinstance(msg, Reject):
        d.update(type="reject", reason=msg.reason)
    else:
        raise TypeError(f"not a signaling message: {type(msg).__name__}")
    return json.dumps(d)


def _field(d: dict, name: str) -> str:
    v = d.get(name)
    if not isinstance(v, str):
        raise ProtocolError(f"signaling message {d.get('type')!r} lacks a string field {name!r}")
    return v


def _hex(d: dict, name: str, size: int) -> bytes:
    try:
        b = bytes.fromhex(_field(d, name))
    except ValueError:
        raise ProtocolError(f"signaling field {name!r} is not hex") from None
    if len(b) != size:
        raise ProtocolError(f"signaling field {name!r} is {len(b)} bytes, expected {size}")
    return b


def parse_signal(data: str | bytes) -> Signal:
    """Parses one signaling frame.

    Raises:
        ProtocolError: not JSON, not talkcodec signaling, another version,
            an unknown type, a missing or malformed field, or oversized.
    """
    if len(data) > MAX_SIGNAL_BYTES:
        raise ProtocolError(f"signaling message of {len(data)} bytes exceeds {MAX_SIGNAL_BYTES}")
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested brackets: RecursionError (fuzzing)
        raise ProtocolError("signaling message is not JSON: is this a talkcodec peer?") from None
    if not isinstance(d, dict) or "talkcodec" not in d:
        raise ProtocolError("not a talkcodec signaling message: is this a talkcodec peer?")
    if d["talkcodec"] != SIGNALING_VERSION:
        raise ProtocolError(f"signaling version {d['talkcodec']!r}, this build speaks {SIGNALING_VERSION}: "
                            "run the same talkcodec release on both ends")
    kind = d.get("type")
    if kind == "challenge":
        return Challenge(_hex(d, "nonce", NONCE_BYTES))
    if kind == "offer":
        role = d.get("role", SEND)
        if role not in (SEND, WATCH):
            raise ProtocolError(f"unknown offer role {role!r}")
        return Offer(_field(d, "sdp"), _hex(d, "mac", 32), role)
    if kind == "answer":
        return Answer(_field(d, "sdp"), _hex(d, "mac", 32))
    if kind == "reject":
        return Reject(_field(d, "reason")[:500])
    raise ProtocolError(f"unknown signaling message type {kind!r}")


class _Socket(Protocol):
    """What signaling needs of a websockets connection, client or server side."""

    async def send(self, message: str) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self) -> None: ...


async def _recv(ws: _Socket) -> Signal:
    raw = await asyncio.wait_for(ws.recv(), SIGNAL_TIMEOUT_S)
    return parse_signal(raw)

# Answers an authenticated offer SDP with the answer SDP.
OfferHandler = Callable[[str], Awaitable[str]]


class SignalingServer:
    """The receiver's end: authenticates one sender at a time and hands its offer on.

    Args:
        host, port: where to listen.
        token: the room secret.
        on_offer: builds the peer connection for an authenticated offer and
            returns the answer SDP; it may raise :class:`SignalingError` to
            reject the call with that message (busy, for instance).
        on_watch: the same for a browser viewer's offer; None refuses viewers.
        page: a page of :mod:`realtime.webpage` to serve to plain HTTP
            requests on the same port (the browser's side of the call);
            None leaves HTTP to the websocket library's own answer.
        files: more paths served with the page (``{path: (content type, bytes)}``).
    """

    def __init__(self, host: str, port: int, token: str, on_offer: OfferHandler,
                 on_watch: OfferHandler | None = None, page: str | None = None,
                 files: Files | None = None) -> None:
        self.host, self.port, self.token = host, port, token
        self._on_offer = on_offer
        self._on_watch = on_watch
        self._page = page
        self._files = files
        self._server: Any = None

    async def start(self) -> None:
        """Starts listening.

        Raises:
            SignalingError: the address is in use or cannot be bound.
        """
        try:
            self._server = await serve(self._handle, self.host, self.port, max_size=MAX_SIGNAL_BYTES,
                                       ping_interval=None,
                                       process_request=None if self._page is None
                                       else page_server(self._page, self._files))
        except OSError as e:
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: _Socket) -> None:
        peer = getattr(ws, "remote_address", None)
        nonce = new_nonce()
        try:
            await ws.send(encode_signal(Challenge(nonce)))
            msg = await _recv(ws)
            if not isinstance(msg, Offer):
                raise ProtocolError(f"expected an offer, got {type(msg).__name__.lower()}")
            if not verify_mac(self.token, msg.mac_role, nonce, msg.sdp, msg.mac):
                log.warning("refused a %s from %s: wrong token", "viewer" if msg.role == WATCH else "sender", peer)
                await ws.send(encode_signal(Reject("wrong token: the receiver's room token does not match")))
                return
            handler = self._on_offer if msg.role == SEND else self._on_watch
            if handler is None:
                await ws.send(encode_signal(Reject("this receiver serves no browsers "
                                                   "(start talk-recv with --serve-browser)")))
                return
            try:
                answer = await handler(msg.sdp)
            except SignalingError as e:
                await ws.send(encode_signal(Reject(str(e))))
                return
            mac = sdp_mac(self.token, "answer", nonce, answer)
            await ws.send(encode_signal(Answer(answer, mac)))
        except ProtocolError as e:
            log.warning("signaling from %s dropped: %s", peer, e)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("signaling from %s timed out", peer)
        except Exception as e:  # a vanished socket must not take the receiver down
            log.warning("signaling from %s failed: %s", peer, type(e).__name__)
        finally:
            await ws.close()


async def call(url: str, token: str, make_offer: Callable[[], Awaitable[str]]) -> str:
    """The sender's end: authenticates to the receiver and exchanges SDP.

    Args:
        url: ``ws://HOST:PORT`` of ``talk-recv``.
        token: the room secret.
        make_offer: returns the local offer SDP (ICE already gathered).
    Returns:
        the receiver's answer SDP, authenticated.
    Raises:
        SignalingError: unreachable, refused (wrong token, busy, ...), or the
            receiver failed to prove it knows the token.
    """

    try:
        ws = await asyncio.wait_for(connect(url, max_size=MAX_SIGNAL_BYTES, ping_interval=None,
                                            open_timeout=SIGNAL_TIMEOUT_S), SIGNAL_TIMEOUT_S)
    except InvalidURI:
        raise SignalingError(f"{url}: not a websocket URL (expected ws://HOST:PORT)") from None
    except (OSError, InvalidHandshake, asyncio.TimeoutError, TimeoutError) as e:
        raise ReceiverUnreachable(f"cannot reach a receiver at {url} ({type(e).__name__}): "
                                  "is talk-recv running there?") from None
    try:
        first = await _recv(ws)
        if isinstance(first, Reject):
            raise SignalingError(f"receiver refused the call: {first.reason}")
        if not isinstance(first, Challenge):
            raise SignalingError("receiver did not follow the talkcodec handshake")
        sdp = await make_offer()
        await ws.send(encode_signal(Offer(sdp, sdp_mac(token, "offer", first.nonce, sdp))))
        reply = await _recv(ws)
        if isinstance(reply, Reject):
            raise SignalingError(f"receiver refused the call: {reply.reason}")
        if not isinstance(reply, Answer):
            raise SignalingError("receiver did not answer the offer")
        if not verify_mac(token, "answer", first.nonce, reply.sdp, reply.mac):
            raise SignalingError("the receiver does not know the room token: refusing to connect")
        return reply.sdp
    except ProtocolError as e:
        raise SignalingError(f"bad signaling from {url}: {e}") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise SignalingError(f"the receiver at {url} stopped answering") from None
    except ConnectionClosed:
        raise SignalingError(f"the receiver at {url} closed the connection") from None
    finally:
        await ws.close()
