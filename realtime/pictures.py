"""The caller's pictures on the reliable channel: chunked and paced out, reassembled and checked in.

A picture (:mod:`codec.picture`: the reference frame, later keyframes) is
far larger than a motion packet: 6-12 kB against 63 bytes. Sent in one
piece it would sit in front of the motion packets that follow it on the
call's one SCTP association and, on a slow link, hold them back for
seconds. So the sender cuts it into small chunks and paces them:

* a :class:`PictureBegin` announces a picture (its id, length and SHA-256),
  then :class:`PictureData` chunks carry its bytes in order;
* :class:`PictureOutbox` releases one message at a time from a token bucket
  of :attr:`PacingConfig.kbps`; the sender asks for one right after each
  motion packet, so a chunk rides in the gap before the next frame's packet.
  A chunk carries what the rate allows since the last one: at the default
  16 kbps and 25 fps, 80 bytes with its header, which a 32 kbps link
  carries beside a 63-byte motion packet within one 40 ms frame. Pictures
  of a lower priority number go first (the reference before keyframes).

:class:`PictureInbox` reassembles on the receiver. It trusts nothing: a
picture longer than :data:`codec.picture.MAX_PICTURE_BYTES`, more than
:data:`MAX_PENDING` pictures in progress at once, more than
:data:`MAX_CALL_BYTES` in a call, a chunk out of order or past the announced
length, or a hash that does not match is a :class:`ProtocolError` (the
picture is dropped, the call goes on). Memory grows with the bytes that
actually arrived, never with what a header claims.

Both classes are pure state machines: time is passed in (seconds), nothing
here does I/O, so they are tested and fuzzed without a network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from codec.picture import MAX_PICTURE_BYTES
from realtime.protocol import MAX_PICTURE_CHUNK, PictureBegin, PictureData, ProtocolError, encode_message

CHUNK_HEADER_BYTES = len(encode_message(PictureData(0, 0, b"x"))) - 1
BEGIN_BYTES = len(encode_message(PictureBegin(0, 1, bytes(32))))
MIN_CHUNK = 32
"""Picture bytes a chunk carries at least (but for a picture's last one): smaller ones would be mostly header."""

MAX_PENDING = 2
"""Pictures a receiver reassembles at once (the sender sends one at a time, interleaving at most two)."""
MAX_CALL_BYTES = 512 * 1024
"""Picture bytes a receiver accepts in one call: the reference and keyframes are a tenth of this."""
FRAME_INTERVAL_S = 0.04


@dataclass(frozen=True)
class PacingConfig:
    """How fast pictures leave the sender.

    Attributes:
        kbps: pictures' share of the link, kilobits per second of control-message bytes.
        max_chunk: picture bytes per chunk at most.
    """

    kbps: float = 16.0
    max_chunk: int = MAX_PICTURE_CHUNK

    def __post_init__(self) -> None:
        if not self.kbps > 0:
            raise ValueError(f"picture rate must be > 0 kbps, got {self.kbps}")
        if not MIN_CHUNK <= self.max_chunk <= MAX_PICTURE_CHUNK:
            raise ValueError(f"picture chunks must be {MIN_CHUNK}..{MAX_PICTURE_CHUNK} bytes, got {self.max_chunk}")

    @property
    def message_bytes(self) -> int:
        """The largest message, bytes: one frame interval of the rate, so that a chunk sent behind a motion
        packet has left a link of twice the rate before the next frame's packet comes."""
        return max(int(self.kbps * 1000 / 8 * FRAME_INTERVAL_S), MIN_CHUNK + CHUNK_HEADER_BYTES, BEGIN_BYTES)

    @property
    def depth(self) -> float:
        """The token bucket's size, bytes: two messages (one per frame keeps flowing when a frame is late)."""
        return 2.0 * self.message_bytes


@dataclass
class _Outgoing:
    picture_id: int
    data: bytes
    priority: int
    sent: int = -1  # bytes sent; -1: not even announced


class PictureOutbox:
    """The sender's queue of pictures, released as paced control messages.

    Each message takes the bytes the token bucket holds, up to one frame interval's worth of the rate
    (:attr:`PacingConfig.message_bytes`): asked once per motion packet, a chunk carries what the rate allows
    since the last one, and is never large enough to hold back the next frame's packet on a link of twice
    the rate.

    Args:
        config: the pacing.
        now_s: the time the outbox starts (the token bucket starts full).
    """

    def __init__(self, config: PacingConfig = PacingConfig(), now_s: float = 0.0) -> None:
        self.config = config
        self._rate = config.kbps * 1000 / 8  # bytes per second
        self._depth = config.depth
        self._tokens = self._depth
        self._t = now_s
        self._queue: list[_Outgoing] = []
        self._next_id = 0
        self.bytes_sent = 0  # control-message bytes of pictures handed out
        self.messages_sent = 0

    def add(self, data: bytes, priority: int = 1) -> int:
        """Queues a picture record; returns its id. Lower ``priority`` numbers go first.

        Raises:
            ValueError: empty, or larger than a receiver accepts.
        """
        if not data or len(data) > MAX_PICTURE_BYTES:
            raise ValueError(f"a picture must be 1..{MAX_PICTURE_BYTES} bytes, got {len(data)}")
        pid = self._next_id
        self._next_id = (self._next_id + 1) % 65536
        self._queue.append(_Outgoing(pid, bytes(data), priority))
        self._queue.sort(key=lambda o: o.priority)  # stable: equal priorities keep their order
        return pid

    def has(self, picture_id: int) -> bool:
        """Whether that picture still has bytes to send."""
        return any(o.picture_id == picture_id for o in self._queue)

    @property
    def pending(self) -> int:
        """Picture bytes not sent yet."""
        return sum(len(o.data) - max(o.sent, 0) for o in self._queue)

    def _refill(self, now_s: float) -> None:
        if now_s > self._t:
            self._tokens = min(self._depth, self._tokens + (now_s - self._t) * self._rate)
            self._t = now_s

    def _need(self, o: _Outgoing) -> int:
        """Bytes of the smallest message that moves ``o`` on."""
        if o.sent < 0:
            return BEGIN_BYTES
        return CHUNK_HEADER_BYTES + min(MIN_CHUNK, len(o.data) - o.sent)

    def next_message(self, now_s: float) -> bytes | None:
        """The next message's bytes if the pacing allows one now, else None.

        Args:
            now_s: the current time, seconds (any monotonic clock; never decreasing).
        """
        self._refill(now_s)
        if not self._queue:
            return None
        o = self._queue[0]
        if self._tokens < self._need(o):
            return None
        msg: PictureBegin | PictureData
        if o.sent < 0:
            msg = PictureBegin(o.picture_id, len(o.data), hashlib.sha256(o.data).digest())
            o.sent = 0
        else:
            room = min(int(self._tokens), self.config.message_bytes) - CHUNK_HEADER_BYTES
            n = min(self.config.max_chunk, room, len(o.data) - o.sent)
            msg = PictureData(o.picture_id, o.sent, o.data[o.sent:o.sent + n])
            o.sent += n
        if o.sent >= len(o.data):
            self._queue.pop(0)
        raw = encode_message(msg)
        self._tokens -= len(raw)
        self.bytes_sent += len(raw)
        self.messages_sent += 1
        return raw

    def wait_s(self, now_s: float) -> float | None:
        """How long until :meth:`next_message` can release a message; None when nothing is queued."""
        self._refill(now_s)
        if not self._queue:
            return None
        return max(0.0, (self._need(self._queue[0]) - self._tokens) / self._rate)


@dataclass
class _Incoming:
    length: int
    sha256: bytes
    data: bytearray


class PictureInbox:
    """The receiver's reassembly of pictures (see the module's docstring for its bounds).

    Args:
        max_picture: bytes of one picture at most.
        max_pending: pictures in progress at once at most.
        max_total: picture bytes of the whole call at most.
    """

    def __init__(self, max_picture: int = MAX_PICTURE_BYTES, max_pending: int = MAX_PENDING,
                 max_total: int = MAX_CALL_BYTES) -> None:
        self.max_picture = max_picture
        self.max_pending = max_pending
        self.max_total = max_total
        self._pending: dict[int, _Incoming] = {}
        self.bytes_received = 0  # picture bytes accepted (announced pictures' data)
        self.completed = 0

    def begin(self, msg: PictureBegin) -> None:
        """A picture is announced.

        Raises:
            ProtocolError: too large, too many in progress, over the call's budget, or an id already in progress
                (that picture is dropped too).
        """
        if msg.picture_id in self._pending:
            del self._pending[msg.picture_id]
            raise ProtocolError(f"picture {msg.picture_id} announced twice")
        if not 0 < msg.length <= self.max_picture:
            raise ProtocolError(f"picture of {msg.length} bytes (at most {self.max_picture})")
        if len(self._pending) >= self.max_pending:
            raise ProtocolError(f"more than {self.max_pending} pictures in progress at once")
        committed = self.bytes_received + sum(p.length - len(p.data) for p in self._pending.values())
        if committed + msg.length > self.max_total:
            raise ProtocolError(f"pictures over {self.max_total} bytes in one call")
        self._pending[msg.picture_id] = _Incoming(msg.length, bytes(msg.sha256), bytearray())

    def data(self, msg: PictureData) -> bytes | None:
        """A chunk arrived; the whole picture once its last chunk is in and its hash matches, else None.

        Raises:
            ProtocolError: an unknown picture, a chunk out of order or past the announced length, or a hash
                mismatch (the picture is dropped).
        """
        p = self._pending.get(msg.picture_id)
        if p is None:
            raise ProtocolError(f"chunk of picture {msg.picture_id}, which was not announced")
        if msg.offset != len(p.data) or msg.offset + len(msg.data) > p.length:
            del self._pending[msg.picture_id]
            raise ProtocolError(f"chunk of picture {msg.picture_id} at {msg.offset}+{len(msg.data)}, "
                                f"expected {len(p.data)} of {p.length}")
        p.data += msg.data
        self.bytes_received += len(msg.data)
        if len(p.data) < p.length:
            return None
        del self._pending[msg.picture_id]
        if hashlib.sha256(p.data).digest() != p.sha256:
            raise ProtocolError(f"picture {msg.picture_id} does not match its SHA-256")
        self.completed += 1
        return bytes(p.data)

    @property
    def in_progress(self) -> int:
        return len(self._pending)
