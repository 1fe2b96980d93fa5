"""Control messages on the reliable channel: bytes <-> message objects.

Every control message is one data-channel message laid out as::

    magic  b"TK"   2 bytes
    version        1 byte   (CONTROL_VERSION)
    type           1 byte   (MessageType)
    length         2 bytes  big-endian, bytes of body that follow
    body           length bytes, fixed layout per type (below)

Parsing is a pure function (:func:`parse_message`) that either returns a
message or raises :class:`ProtocolError` with a reason; it never returns a
half-read message. A body longer or shorter than its type's layout is an
error, so a peer that speaks another layout is told so instead of being
misread.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Union

from codec.errors import StreamError
from realtime.timing import SENDER_STAGES, StageSums

MAGIC = b"TK"
CONTROL_VERSION = 1
# A stream header is a few hundred bytes; anything far larger is hostile.
MAX_MESSAGE_BYTES = 4096
MAX_REASON_BYTES = 512

_PREFIX = struct.Struct(">2sBBH")


class ProtocolError(StreamError):
    """A control or signaling message is malformed, oversized or of another version."""


class MessageType(enum.IntEnum):
    HELLO = 1
    ACCEPT = 2
    REFUSE = 3
    START = 4
    PING = 5
    PONG = 6
    REPORT = 7
    SENDER_STATS = 8
    BYE = 9
    TIMING = 10
    PICTURE_BEGIN = 11
    PICTURE_DATA = 12
    NO_PICTURE = 13


@dataclass(frozen=True)
class Hello:
    """Sender -> receiver, first message: the stream header the motion packets need.

    Attributes:
        header: ``StreamHeader.to_bytes()`` of the sender's stream.
    """

    header: bytes


@dataclass(frozen=True)
class Accept:
    """Receiver -> sender: the header is compatible; motion may flow."""


@dataclass(frozen=True)
class Refuse:
    """Receiver -> sender: the stream cannot be decoded here, and why."""

    reason: str


@dataclass(frozen=True)
class Start:
    """Sender -> receiver: wall-clock time (µs since the Unix epoch, sender's clock) of media time 0."""

    epoch_us: int


@dataclass(frozen=True)
class Ping:
    """Either way: ``t0`` is the pinger's wall clock (µs) when sent."""

    t0_us: int


@dataclass(frozen=True)
class Pong:
    """Answer to :class:`Ping`: ``t1`` when the ping arrived, ``t2`` when the pong left (responder's clock)."""

    t0_us: int
    t1_us: int
    t2_us: int


@dataclass(frozen=True)
class Report:
    """Receiver -> sender, about once a second: what the motion channel delivered.

    Attributes:
        expected: motion packets the sender sent in the interval (from sequence numbers).
        received: motion packets that arrived in the interval.
        late: packets that arrived after their playout time.
    """

    expected: int
    received: int
    late: int

    @property
    def loss(self) -> float:
        """Fraction of the interval's packets lost, in ``[0, 1]``."""
        if self.expected <= 0:
            return 0.0
        return max(0.0, min(1.0, 1.0 - self.received / self.expected))


@dataclass(frozen=True)
class SenderStats:
    """Sender -> receiver, about once a second: totals since the call began.

    Attributes:
        frames_sent: motion packets sent.
        motion_bytes: bytes of motion packets sent.
        audio_bytes: Opus payload bytes sent.
        layers: residual layers currently sent (1..4).
    """

    frames_sent: int
    motion_bytes: int
    audio_bytes: int
    layers: int


@dataclass(frozen=True)
class Timing:
    """Sender -> receiver, every few seconds: where the sender's milliseconds went since the last one.

    For the frames sent in the interval, the sum and the largest of each sender
    stage (:data:`realtime.timing.SENDER_STAGES`: capture, queue, tracking,
    tokenizing, send), in tenths of a millisecond. The receiver adds them up to
    the sender's part of its latency breakdown.

    Attributes:
        frames: frames the sums cover.
        sum_ds: per stage, the sum (0.1 ms units).
        max_ds: per stage, the largest (0.1 ms units).
    """

    frames: int
    sum_ds: tuple[int, ...]
    max_ds: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.sum_ds) != TIMING_STAGES or len(self.max_ds) != TIMING_STAGES:
            raise ValueError(f"Timing carries {TIMING_STAGES} stages, got {len(self.sum_ds)} and {len(self.max_ds)}")

    @classmethod
    def of(cls, sums: StageSums) -> Timing:
        """The message for an interval's sums, each field clamped to what its layout holds."""
        def ds(ms: float, limit: int) -> int:
            return max(0, min(limit, int(round(ms * 10))))

        return cls(min(sums.frames, 0xFFFF), tuple(ds(sums.sum_ms[s], 0xFFFFFFFF) for s in SENDER_STAGES),
                   tuple(ds(sums.max_ms[s], 0xFFFF) for s in SENDER_STAGES))

    def add_to(self, sums: StageSums) -> None:
        """Adds this interval to the totals ``sums`` (the receiver's view of the sender's stages)."""
        sums.add_totals(self.frames, {s: v / 10 for s, v in zip(SENDER_STAGES, self.sum_ds)},
                        {s: v / 10 for s, v in zip(SENDER_STAGES, self.max_ds)})


@dataclass(frozen=True)
class Bye:
    """Either way: the call ends, and why."""

    reason: str


@dataclass(frozen=True)
class PictureBegin:
    """Sender -> receiver: a picture of the caller follows in :class:`PictureData` chunks (:mod:`realtime.pictures`).

    Attributes:
        picture_id: the sender's number for it (u16).
        length: its bytes in all.
        sha256: SHA-256 of those bytes, checked once all have arrived.
    """

    picture_id: int
    length: int
    sha256: bytes


@dataclass(frozen=True)
class PictureData:
    """Sender -> receiver: bytes ``offset .. offset + len(data)`` of a picture announced by :class:`PictureBegin`."""

    picture_id: int
    offset: int
    data: bytes


class NoPictureReason(enum.IntEnum):
    PRIVATE = 1  # talk-send --no-portrait
    NO_CAMERA = 2  # talk-send --audio-only without --portrait


@dataclass(frozen=True)
class NoPicture:
    """Sender -> receiver: no picture of the caller will come, and why (the receiver needs its own portrait)."""

    reason: NoPictureReason


Message = Union[Hello, Accept, Refuse, Start, Ping, Pong, Report, SenderStats, Timing, Bye, PictureBegin,
                PictureData, NoPicture]

_START = struct.Struct(">Q")
_PING = struct.Struct(">Q")
_PONG = struct.Struct(">QQQ")
_REPORT = struct.Struct(">III")
_STATS = struct.Struct(">IQQB")
_PICTURE_BEGIN = struct.Struct(">HI32s")
_PICTURE_DATA = struct.Struct(">HI")
_NO_PICTURE = struct.Struct(">B")
MAX_PICTURE_CHUNK = MAX_MESSAGE_BYTES - _PREFIX.size - _PICTURE_DATA.size
# Timing: frames, then per stage a sum (u32) and a max (u16), in 0.1 ms.
TIMING_STAGES = len(SENDER_STAGES)
_TIMING = struct.Struct(">H" + "IH" * TIMING_STAGES)


def _text(reason: str) -> bytes:
    return reason.encode("utf-8")[:MAX_REASON_BYTES]


def encode_message(msg: Message) -> bytes:
    """Serializes a control message.

    Raises:
        ValueError: a field does not fit its layout (negative or too large).
    """
    if isinstance(msg, Hello):
        kind, body = MessageType.HELLO, msg.header
    elif isinstance(msg, Accept):
        kind, body = MessageType.ACCEPT, b""
    elif isinstance(msg, Refuse):
        kind, body = MessageType.REFUSE, _text(msg.reason)
    elif isinstance(msg, Start):
        kind, body = MessageType.START, _START.pack(msg.epoch_us)
    elif isinstance(msg, Ping):
        kind, body = MessageType.PING, _PING.pack(msg.t0_us)
    elif isinstance(msg, Pong):
        kind, body = MessageType.PONG, _PONG.pack(msg.t0_us, msg.t1_us, msg.t2_us)
    elif isinstance(msg, Report):
        kind, body = MessageType.REPORT, _REPORT.pack(msg.expected, msg.received, msg.late)
    elif isinstance(msg, SenderStats):
        kind, body = MessageType.SENDER_STATS, _STATS.pack(msg.frames_sent, msg.motion_bytes,
                                                             msg.audio_bytes, msg.layers)
    elif isinstance(msg, Timing):
        pairs = [v for pair in zip(msg.sum_ds, msg.max_ds) for v in pair]
        kind, body = MessageType.TIMING, _TIMING.pack(msg.frames, *pairs)
    elif isinstance(msg, Bye):
        kind, body = MessageType.BYE, _text(msg.reason)
    elif isinstance(msg, PictureBegin):
        if len(msg.sha256) != 32:
            raise ValueError(f"a SHA-256 is 32 bytes, got {len(msg.sha256)}")
        kind, body = MessageType.PICTURE_BEGIN, _PICTURE_BEGIN.pack(msg.picture_id, msg.length, msg.sha256)
    elif isinstance(msg, PictureData):
        if not msg.data:
            raise ValueError("a picture chunk carries at least one byte")
        kind, body = MessageType.PICTURE_DATA, _PICTURE_DATA.pack(msg.picture_id, msg.offset) + bytes(msg.data)
    elif isinstance(msg, NoPicture):
        kind, body = MessageType.NO_PICTURE, _NO_PICTURE.pack(int(msg.reason))
    else:
        raise TypeError(f"not a control message: {type(msg).__name__}")
    if _PREFIX.size + len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"control message of {_PREFIX.size + len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _PREFIX.pack(MAGIC, CONTROL_VERSION, kind, len(body)) + body


def _fixed(s: struct.Struct, body: bytes, kind: MessageType) -> tuple[Any, ...]:
    if len(body) != s.size:
        raise ProtocolError(f"{kind.name} body is {len(body)} bytes, expected {s.size}")
    return s.unpack(body)


def _decode_text(body: bytes, kind: MessageType) -> str:
    if len(body) > MAX_REASON_BYTES:
        raise ProtocolError(f"{kind.name} reason of {len(body)} bytes exceeds {MAX_REASON_BYTES}")
    return body.decode("utf-8", errors="replace")


def parse_message(data: bytes | str) -> Message:
    """Parses one control message.

    Args:
        data: one data-channel message, as received (a ``str`` is never valid).
    Returns:
        the message object.
    Raises:
        ProtocolError: wrong magic, another protocol version, unknown type,
            oversized, truncated or trailing bytes, or a bad body.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("control messages are binary; got text")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"control message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if len(data) < _PREFIX.size:
        raise ProtocolError(f"control message truncated: {len(data)} bytes, header needs {_PREFIX.size}")
    magic, version, raw_kind, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"not a talkcodec control message (magic {magic!r})")
    if version != CONTROL_VERSION:
        raise ProtocolError(f"control protocol version {version}, this build speaks {CONTROL_VERSION}: "
                            "run the same talkcodec release on both ends")
    body = data[_PREFIX.size:]
    if len(body) != length:
        raise ProtocolError(f"control message body is {len(body)} bytes, its header says {length}")
    try:
        kind = MessageType(raw_kind)
    except ValueError:
        raise ProtocolError(f"unknown control message type {raw_kind}") from None

    if kind is MessageType.HELLO:
        if not body:
            raise ProtocolError("HELLO carries no stream header")
        return Hello(body)
    if kind is MessageType.ACCEPT:
        if body:
            raise ProtocolError(f"ACCEPT body is {len(body)} bytes, expected 0")
        return Accept()
    if kind is MessageType.REFUSE:
        return Refuse(_decode_text(body, kind))
    if kind is MessageType.START:
        return Start(*_fixed(_START, body, kind))
    if kind is MessageType.PING:
        return Ping(*_fixed(_PING, body, kind))
    if kind is MessageType.PONG:
        return Pong(*_fixed(_PONG, body, kind))
    if kind is MessageType.REPORT:
        expected, received, late = _fixed(_REPORT, body, kind)
        return Report(expected, received, late)
    if kind is MessageType.SENDER_STATS:
        frames, motion, audio, layers = _fixed(_STATS, body, kind)
        return SenderStats(frames, motion, audio, layers)
    if kind is MessageType.PICTURE_BEGIN:
        picture_id, length, digest = _fixed(_PICTURE_BEGIN, body, kind)
        return PictureBegin(picture_id, length, digest)
    if kind is MessageType.PICTURE_DATA:
        if len(body) <= _PICTURE_DATA.size:
            raise ProtocolError(f"PICTURE_DATA body is {len(body)} bytes, expected more than {_PICTURE_DATA.size}")
        picture_id, offset = _PICTURE_DATA.unpack_from(body)
        return PictureData(picture_id, offset, body[_PICTURE_DATA.size:])
    if kind is MessageType.NO_PICTURE:
        (reason,) = _fixed(_NO_PICTURE, body, kind)
        try:
            return NoPicture(NoPictureReason(reason))
        except ValueError:
            raise ProtocolError(f"NO_PICTURE with unknown reason {reason}") from None
    if kind is MessageType.TIMING:
        frames, *pairs = _fixed(_TIMING, body, kind)
        return Timing(frames, tuple(pairs[0::2]), tuple(pairs[1::2]))
    return Bye(_decode_text(body, kind))
