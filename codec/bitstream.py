"""The talkcodec byte format: stream header, per-frame packets, fixed payloads.

A call starts with a stream header that holds everything a receiver needs to
decode, then sends its frames in messages of one or more frames::

    header   b"TKCD" | version u8 | length u32 | compact UTF-8 JSON (length bytes)

    version 2 (written now):
    message  seq u16 | time u16 | frame+
    frame    flags u8 | [dt u8] | [length u8] | payload
    flags    bits 0-1 layers - 1, bit 2 face, bit 3 keyframe, bit 4 entropy,
             bit 5 more (another frame follows), bits 6-7 reserved (0)

    version 1 (read only):
    packet   seq u16 | timestamp_ms u32 | flags u8 | payload      (one frame; bits 5-7 reserved)

All integers are big-endian. In version 2, frame ``i`` of a message has
sequence number ``seq + i``; ``time`` is the low 16 bits of the first frame's
capture time in ms, which a reader unwraps to the value nearest the previous
frame's (or a clock it is given), and every later frame says how many ms
after the one before it it was captured (``dt``). ``length`` is there only for
an entropy-coded frame that is not the last: a fixed payload's size follows
from its layers, and the last frame's payload runs to the end of the message.
A one-frame message has a 5-byte header (version 1: 7 bytes).

A payload is either the fixed packing of the frame's ``[r, G]`` tokens
(:func:`pack_fixed`, the reference path) or, in entropy mode, a range-coded
payload (:mod:`codec.entropy`). A frame without a face has no payload and no
flags but ``more``.

This module is the byte format alone; :mod:`codec.stream` combines it with the
entropy coder into the writer and reader of a whole stream. Every parse error
raises :class:`~codec.errors.StreamError`; nothing here returns garbage tokens.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from codec.errors import StreamError
from codec.grfsq import GRFSQConfig

STREAM_VERSION = 2
# Versions this reader decodes: a .tok written by an earlier release still plays.
READABLE_VERSIONS = (1, 2)
MAGIC = b"TKCD"
MODES = ("fixed", "entropy")
# Headers are a few hundred bytes; the cap keeps a corrupt length from
# making a reader allocate or wait for gigabytes.
MAX_HEADER_BYTES = 64 * 1024
# The largest legal one-frame packet is 5 + 56 bytes, a message of 3 frames under 200;
# anything near a kilobyte is corrupt.
MAX_PACKET_BYTES = 1024
# Frames one message may carry.
MAX_FRAMES_PER_MESSAGE = 8
# Two flag bits carry the layer count.
MAX_LAYERS = 4
# Bounds on the tokenizer a header may declare, so that a corrupt header cannot
# ask for payloads beyond the packet limit or codes beyond 64-bit arithmetic.
MAX_GROUPS = 64
MAX_CODEBOOK = 2**16

_HEADER_PREFIX = struct.Struct(">4sBI")
_V1_PACKET_HEADER = struct.Struct(">HIB")
_MESSAGE_HEADER = struct.Struct(">HH")
V1_PACKET_HEADER_BYTES = _V1_PACKET_HEADER.size
MESSAGE_HEADER_BYTES = _MESSAGE_HEADER.size
# Header bytes of a one-frame packet of the version written now.
PACKET_HEADER_BYTES = MESSAGE_HEADER_BYTES + 1

_FACE = 1 << 2
_KEYFRAME = 1 << 3
_ENTROPY = 1 << 4
_MORE = 1 << 5
_RESERVED = {1: 0b1110_0000, 2: 0b1100_0000}


@dataclass(frozen=True)
class ReferenceInfo:
    """What the receiver needs to know about the sender's reference frame.

    Attributes:
        frame_index: index of the reference frame in the sender's capture.
        rotation: axis-angle of the reference head pose, radians.
        gaze: 4 gaze values (left/right eye, x/y) of the reference frame.
        blink: 2 eye-closure values (left, right).
        mouth_opening: mouth opening of the reference frame.
        image_size: ``(width, height)`` of the portrait, pixels.
    """

    frame_index: int
    rotation: tuple[float, float, float]
    gaze: tuple[float, float, float, float]
    blink: tuple[float, float]
    mouth_opening: float
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        _check_int("reference.frame_index", self.frame_index, 0, 2**32 - 1)
        for name, n in (("rotation", 3), ("gaze", 4), ("blink", 2)):
            object.__setattr__(self, name, _float_tuple(f"reference.{name}", getattr(self, name), n))
        object.__setattr__(self, "mouth_opening", _float("reference.mouth_opening", self.mouth_opening))
        size = self.image_size
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(f"reference.image_size must be (width, height), got {size!r}")
        for v in size:
            _check_int("reference.image_size", v, 1, 65535)
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    def to_dict(self) -> dict[str, Any]:
        return {"frame_index": self.frame_index, "rotation": list(self.rotation), "gaze": list(self.gaze),
                "blink": list(self.blink), "mouth_opening": self.mouth_opening,
                "image_size": list(self.image_size)}

    @staticmethod
    def from_dict(d: Any) -> "ReferenceInfo":
        if not isinstance(d, dict):
            raise ValueError("reference must be an object")
        _require(d, ("frame_index", "rotation", "gaze", "blink", "mouth_opening", "image_size"), "reference")
        return ReferenceInfo(frame_index=d["frame_index"], rotation=d["rotation"], gaze=d["gaze"],
                             blink=d["blink"], mouth_opening=d["mouth_opening"], image_size=d["image_size"])


@dataclass(frozen=True)
class StreamHeader:
    """Everything a receiver needs to decode a stream; sent once, first.

    Attributes:
        version: byte-format version (:data:`STREAM_VERSION` when writing).
        fps: nominal frame rate of the motion packets.
        mode: ``"fixed"`` (packed tokens) or ``"entropy"`` (range-coded tokens).
        layers: residual layers the stream was encoded with, ``1 .. 4``; single
            packets may carry fewer (adaptive bitrate drops fine layers).
        tokenizer: shape of the quantizer the tokens come from.
        tokenizer_hash: hex hash of the tokenizer weights.
        entropy_hash: hex hash of the entropy model; required in entropy mode.
        reference: the sender's reference frame.
        keyframe_interval: in entropy mode, most packets between keyframes;
            at most ``round(fps)`` so a frame decodes on its own at least once
            a second. ``None`` means ``round(fps)``.
    """

    tokenizer_hash: str
    reference: ReferenceInfo
    fps: float = 25.0
    mode: str = "fixed"
    layers: int = 4
    tokenizer: GRFSQConfig = field(default_factory=GRFSQConfig)
    entropy_hash: str | None = None
    keyframe_interval: int | None = None
    version: int = STREAM_VERSION

    def __post_init__(self) -> None:
        _check_int("version", self.version, 0, 255)
        fps = _float("fps", self.fps)
        if not 0 < fps <= 1000:
            raise ValueError(f"fps must be in (0, 1000], got {fps}")
        object.__setattr__(self, "fps", fps)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.tokenizer, GRFSQConfig):
            raise ValueError("tokenizer must be a GRFSQConfig")
        if not 1 <= self.tokenizer.residuals <= MAX_LAYERS:
            raise ValueError(f"the byte format carries 1..{MAX_LAYERS} layers, "
                             f"the tokenizer has {self.tokenizer.residuals}")
        if self.tokenizer.groups > MAX_GROUPS or self.tokenizer.codebook_size > MAX_CODEBOOK:
            raise ValueError(f"the byte format carries at most {MAX_GROUPS} groups of {MAX_CODEBOOK} codes, "
                             f"the tokenizer has {self.tokenizer.groups} of {self.tokenizer.codebook_size}")
        _check_int("layers", self.layers, 1, self.tokenizer.residuals)
        _check_hex("tokenizer_hash", self.tokenizer_hash)
        if self.entropy_hash is not None:
            _check_hex("entropy_hash", self.entropy_hash)
        elif self.mode == "entropy":
            raise ValueError("entropy mode needs entropy_hash (the hash of the entropy model)")
        if not isinstance(self.reference, ReferenceInfo):
            raise ValueError("reference must be a ReferenceInfo")
        max_interval = max(1, round(fps))
        if self.keyframe_interval is None:
            object.__setattr__(self, "keyframe_interval", max_interval)
        _check_int("keyframe_interval", self.keyframe_interval, 1, max_interval)

    def to_bytes(self) -> bytes:
        """``MAGIC | version u8 | length u32 | JSON``."""
        body = json.dumps({
            "fps": self.fps, "mode": self.mode, "layers": self.layers,
            "tokenizer": self.tokenizer.to_dict(), "tokenizer_hash": self.tokenizer_hash,
            "entropy_hash": self.entropy_hash, "reference": self.reference.to_dict(),
            "keyframe_interval": self.keyframe_interval,
        }, separators=(",", ":"), allow_nan=False).encode()
        return _HEADER_PREFIX.pack(MAGIC, self.version, len(body)) + body

    @staticmethod
    def parse_prefix(data: bytes) -> tuple["StreamHeader", int]:
        """Reads a header at the start of ``data``; returns it and its size in bytes."""
        if len(data) < _HEADER_PREFIX.size:
            raise StreamError(f"stream header truncated: {len(data)} bytes, "
                              f"need at least {_HEADER_PREFIX.size}")
        magic, version, length = _HEADER_PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise StreamError(f"not a talkcodec stream: starts with {bytes(magic)!r}, expected {MAGIC!r}")
        if version not in READABLE_VERSIONS:
            raise StreamError(f"stream version {version} is not supported: this talkcodec reads versions "
                              f"{_versions()}; use a talkcodec release of the sender's version")
        if length > MAX_HEADER_BYTES:
            raise StreamError(f"stream header claims {length} bytes, more than the "
                              f"{MAX_HEADER_BYTES}-byte limit: corrupt stream")
        end = _HEADER_PREFIX.size + length
        if len(data) < end:
            raise StreamError(f"stream header truncated: {len(data)} of {end} bytes")
        try:
            d = json.loads(bytes(data[_HEADER_PREFIX.size:end]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise StreamError(f"stream header is not valid JSON: {e}") from None
        except RecursionError:  # thousands of nested brackets: json gives up in C, found by fuzzing
            raise StreamError("stream header is not valid JSON: nested too deeply") from None
        if not isinstance(d, dict):
            raise StreamError("stream header JSON is not an object")
        try:
            _require(d, ("fps", "mode", "layers", "tokenizer", "tokenizer_hash", "entropy_hash",
                         "reference", "keyframe_interval"), "header")
            tok = d["tokenizer"]
            if not isinstance(tok, dict):
                raise ValueError("tokenizer must be an object")
            _require(tok, ("dim", "groups", "residuals", "levels"), "tokenizer")
            for key in ("dim", "groups", "residuals"):
                _check_int(f"tokenizer.{key}", tok[key], 1, 4096)
            if not isinstance(tok["levels"], list) or not 1 <= len(tok["levels"]) <= 16:
                raise ValueError("tokenizer.levels must be a list of 1..16 ints")
            for lv in tok["levels"]:
                _check_int("tokenizer.levels", lv, 2, 256)
            header = StreamHeader(
                version=version, fps=d["fps"], mode=d["mode"], layers=d["layers"],
                tokenizer=GRFSQConfig.from_dict(tok), tokenizer_hash=d["tokenizer_hash"],
                entropy_hash=d["entropy_hash"], reference=ReferenceInfo.from_dict(d["reference"]),
                keyframe_interval=d["keyframe_interval"])
        except (ValueError, TypeError, KeyError) as e:
            raise StreamError(f"invalid stream header: {e}") from None
        return header, end

    @staticmethod
    def from_bytes(data: bytes) -> "StreamHeader":
        """Parses exactly one header; trailing bytes are an error."""
        header, size = StreamHeader.parse_prefix(data)
        if size != len(data):
            raise StreamError(f"stream header is {size} bytes but {len(data)} were given")
        return header


def check_compatible(header: StreamHeader, tokenizer_config: GRFSQConfig, tokenizer_hash: str,
                     entropy_hash: str | None = None) -> None:
    """Raises :class:`StreamError` unless this receiver speaks the sender's language.

    Args:
        header: the sender's stream header.
        tokenizer_config, tokenizer_hash: the receiver's tokenizer.
        entropy_hash: the receiver's entropy model; checked in entropy mode when given.
    """
    if header.version not in READABLE_VERSIONS:
        raise StreamError(f"sender uses stream version {header.version}, this receiver reads "
                          f"versions {_versions()}: run the same talkcodec release on both ends")
    if header.tokenizer != tokenizer_config:
        raise StreamError(f"sender's tokenizer {header.tokenizer.to_dict()} differs from this receiver's "
                          f"{tokenizer_config.to_dict()}: run the same talkcodec release on both ends")
    if header.tokenizer_hash != tokenizer_hash:
        raise StreamError(f"sender's tokenizer weights {header.tokenizer_hash} differ from this receiver's "
                          f"{tokenizer_hash}: install the same codec/data/tokenizer.pt on both ends")
    if header.mode == "entropy" and entropy_hash is not None and header.entropy_hash != entropy_hash:
        raise StreamError(f"sender's entropy model {header.entropy_hash} differs from this receiver's "
                          f"{entropy_hash}: install the same codec/data/entropy.npz on both ends, "
                          f"or have the sender use fixed mode")


# --------------------------------------------------------------------------- fixed payload


@lru_cache(maxsize=64)
def fixed_payload_bytes(layers: int, groups: int = 12, codebook_size: int = 625) -> int:
    """Bytes of a fixed payload: ``ceil(log2(codebook_size ** (layers * groups)) / 8)``."""
    return ((codebook_size ** (layers * groups) - 1).bit_length() + 7) // 8


@lru_cache(maxsize=16)
def _chunking(codebook_size: int) -> tuple[int, np.ndarray]:
    """Tokens per uint64 chunk and the chunk's place values (most significant first)."""
    per = int(63 // math.log2(codebook_size))
    while codebook_size**per >= 2**63:  # guard against log rounding
        per -= 1
    place = codebook_size ** np.arange(per - 1, -1, -1, dtype=np.int64)
    place.setflags(write=False)  # shared by every caller through the cache
    return per, place


def pack_fixed(tokens: np.ndarray, codebook_size: int = 625) -> bytes:
    """Packs one frame's tokens as a single base-``codebook_size`` integer.

    The first token (layer 0, group 0) is the most significant digit; the
    integer is written big-endian in :func:`fixed_payload_bytes` bytes.

    Args:
        tokens: ``[r, G]`` ints in ``0 .. codebook_size - 1``.
    """
    t = np.asarray(tokens)
    if t.ndim != 2 or t.size == 0:
        raise ValueError(f"tokens must be [r, G], got shape {t.shape}")
    flat = t.astype(np.int64).ravel()
    if flat.min() < 0 or flat.max() >= codebook_size:
        raise ValueError(f"token values must be in 0..{codebook_size - 1}")
    per, place = _chunking(codebook_size)
    # Chunks of `per` tokens fit an int64, so numpy does the inner loop and
    # Python big ints only combine the few chunks.
    head = len(flat) % per
    value = int(flat[:head] @ place[per - head:]) if head else 0
    step = codebook_size**per
    for chunk in (flat[head:].reshape(-1, per) @ place).tolist():
        value = value * step + chunk
    return value.to_bytes(fixed_payload_bytes(t.shape[0], t.shape[1], codebook_size), "big")


def unpack_fixed(data: bytes, layers: int, groups: int = 12, codebook_size: int = 625) -> np.ndarray:
    """Inverse of :func:`pack_fixed`.

    Returns:
        tokens ``[layers, groups]`` int64.
    Raises:
        StreamError: wrong length, or a value no token sequence packs to.
    """
    n = layers * groups
    size = fixed_payload_bytes(layers, groups, codebook_size)
    if len(data) != size:
        raise StreamError(f"fixed payload of {layers} layer(s) must be {size} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= codebook_size**n:
        raise StreamError(f"fixed payload value is out of range for {n} tokens of {codebook_size} codes: "
                          "corrupt packet")
    per, place = _chunking(codebook_size)
    step = codebook_size**per
    full, head = divmod(n, per)
    chunks = []
    for _ in range(full):
        value, c = divmod(value, step)
        chunks.append(c)
    chunks.append(value)
    chunks.reverse()  # most significant (the head) first
    c = np.array(chunks, dtype=np.int64)
    body = (c[1:, None] // place) % codebook_size
    lead = (c[0] // place[per - head:]) % codebook_size if head else np.zeros(0, np.int64)
    return np.concatenate([lead, body.ravel()]).reshape(layers, groups)


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class Packet:
    """One frame on the wire.

    Attributes:
        seq: sequence number, u16, wraps.
        timestamp_ms: capture time in ms, u32, wraps (version 2 carries its low
            16 bits; parsing unwraps them, see :func:`unwrap_ms`).
        layers: residual layers in the payload, ``1 .. 4``; 0 for a frame without a face.
        face: a face was found; otherwise the payload is empty.
        keyframe: the payload decodes without any earlier packet.
        entropy: the payload is range-coded (else fixed-packed).
        payload: the coded tokens.
    """

    seq: int
    timestamp_ms: int
    layers: int
    face: bool
    keyframe: bool
    entropy: bool
    payload: bytes

    def __post_init__(self) -> None:
        _check_int("seq", self.seq, 0, 0xFFFF)
        _check_int("timestamp_ms", self.timestamp_ms, 0, 0xFFFFFFFF)
        if self.face:
            _check_int("layers", self.layers, 1, MAX_LAYERS)
            if not self.payload:
                raise ValueError("a face packet needs a payload")
        elif self.layers or self.keyframe or self.entropy or self.payload:
            raise ValueError("a packet without a face has layers=0, no keyframe/entropy flag and no payload")
        if V1_PACKET_HEADER_BYTES + len(self.payload) > MAX_PACKET_BYTES:
            raise ValueError(f"packet exceeds {MAX_PACKET_BYTES} bytes")

    @property
    def flags(self) -> int:
        """The flags byte, without ``more``."""
        return ((self.layers - 1) if self.face else 0) | (_FACE if self.face else 0) \
            | (_KEYFRAME if self.keyframe else 0) | (_ENTROPY if self.entropy else 0)

    def to_bytes(self, version: int = STREAM_VERSION) -> bytes:
        """The packet as a one-frame message of byte-format ``version``."""
        if version == 1:
            return _V1_PACKET_HEADER.pack(self.seq, self.timestamp_ms, self.flags) + bytes(self.payload)
        _check_version(version)
        return _MESSAGE_HEADER.pack(self.seq, self.timestamp_ms & 0xFFFF) + bytes([self.flags]) + bytes(self.payload)

    @staticmethod
    def from_bytes(data: bytes, groups: int = 12, codebook_size: int = 625, version: int = STREAM_VERSION,
                   reference_ms: float = 0) -> "Packet":
        """Parses and checks a one-frame packet (see :func:`parse_message` for messages of several).

        Args:
            groups, codebook_size: the stream's tokenizer, to check fixed payload sizes.
            version: the stream's byte-format version.
            reference_ms: version 2: the time its 16-bit timestamp is unwrapped nearest to.
        Raises:
            StreamError: truncated, oversized, reserved bits set, a payload
                whose size does not match its flags, or several frames.
        """
        frames = parse_message(data, groups, codebook_size, version, reference_ms)
        if len(frames) != 1:
            raise StreamError(f"message {frames[0].seq} holds {len(frames)} frames where one packet was expected")
        return frames[0]


def unwrap_ms(low16: int, reference_ms: float) -> int:
    """The capture time whose low 16 bits are ``low16`` nearest ``reference_ms`` (never negative)."""
    ref = int(round(max(0.0, reference_ms)))
    value = (ref & ~0xFFFF) | (low16 & 0xFFFF)
    best = min((v for v in (value - 0x10000, value, value + 0x10000) if v >= 0), key=lambda v: abs(v - ref))
    return best & 0xFFFFFFFF


def parse_message(data: bytes, groups: int = 12, codebook_size: int = 625, version: int = STREAM_VERSION,
                  reference_ms: float = 0) -> list[Packet]:
    """Parses one message (a data-channel message, or a ``.tok`` packet chunk) into its frames.

    Args:
        data: the message.
        groups, codebook_size: the stream's tokenizer, to check fixed payload sizes.
        version: the stream's byte-format version (1: exactly one frame).
        reference_ms: version 2: the capture time (ms) the message's 16-bit
            time is unwrapped nearest to: the previous frame's, or a clock's.
    Returns:
        the frames, in order (sequence numbers ``seq, seq + 1, ...``).
    Raises:
        StreamError: truncated, oversized, reserved bits set, or a payload
            whose size does not match its flags.
    """
    n = len(data)
    if n > MAX_PACKET_BYTES:
        raise StreamError(f"packet of {n} bytes exceeds the {MAX_PACKET_BYTES}-byte limit: corrupt stream")
    if version == 1:
        if n < V1_PACKET_HEADER_BYTES:
            raise StreamError(f"packet truncated: {n} bytes, the header alone is {V1_PACKET_HEADER_BYTES}")
        seq, ts, flags = _V1_PACKET_HEADER.unpack_from(data)
        return [_frame(seq, ts, flags, bytes(data[V1_PACKET_HEADER_BYTES:]), groups, codebook_size, 1)]
    _check_version(version)
    if n < PACKET_HEADER_BYTES:
        raise StreamError(f"packet truncated: {n} bytes, the header alone is {PACKET_HEADER_BYTES}")
    seq, low = _MESSAGE_HEADER.unpack_from(data)
    ts = unwrap_ms(low, reference_ms)
    pos = MESSAGE_HEADER_BYTES
    frames: list[Packet] = []
    while True:
        if len(frames) == MAX_FRAMES_PER_MESSAGE:
            raise StreamError(f"message {seq} holds more than {MAX_FRAMES_PER_MESSAGE} frames: corrupt stream")
        this_seq = (seq + len(frames)) & 0xFFFF
        if pos >= n:
            raise StreamError(f"message {seq} is truncated before frame {len(frames)}")
        flags = data[pos]
        pos += 1
        more = bool(flags & _MORE)
        flags &= ~_MORE
        if frames:
            if pos >= n:
                raise StreamError(f"message {seq} is truncated in frame {len(frames)}")
            ts = (ts + data[pos]) & 0xFFFFFFFF
            pos += 1
        if not more:
            size = n - pos
        elif flags & _FACE and flags & _ENTROPY:
            if pos >= n:
                raise StreamError(f"message {seq} is truncated in frame {len(frames)}")
            size = data[pos]
            pos += 1
        elif flags & _FACE:
            size = fixed_payload_bytes((flags & 0b11) + 1, groups, codebook_size)
        else:
            size = 0
        if pos + size > n:
            raise StreamError(f"message {seq} is truncated: frame {len(frames)} needs {size} payload bytes, "
                              f"{n - pos} are left")
        frames.append(_frame(this_seq, ts, flags, bytes(data[pos:pos + size]), groups, codebook_size, 2))
        pos += size
        if not more:
            return frames


def bundle(messages: Sequence[bytes], groups: int = 12, codebook_size: int = 625) -> bytes:
    """One version-2 message holding the frames of several one-frame messages, in order.

    The frames must have consecutive sequence numbers and be captured at most
    255 ms apart (as one writer's frames are); a single message is returned
    as it is.

    Raises:
        ValueError: not consecutive, too far apart, or more than :data:`MAX_FRAMES_PER_MESSAGE` frames.
    """
    if not 1 <= len(messages) <= MAX_FRAMES_PER_MESSAGE:
        raise ValueError(f"a message holds 1..{MAX_FRAMES_PER_MESSAGE} frames, got {len(messages)}")
    if len(messages) == 1:
        return bytes(messages[0])
    frames = []
    prev_low: int | None = None
    for m in messages:
        try:
            (f,) = parse_message(m, groups, codebook_size, 2)
        except (StreamError, ValueError) as e:
            raise ValueError(f"not a one-frame message: {e}") from None
        frames.append(f)
    out = bytearray(_MESSAGE_HEADER.pack(frames[0].seq, frames[0].timestamp_ms & 0xFFFF))
    for i, f in enumerate(frames):
        last = i == len(frames) - 1
        out.append(f.flags | (0 if last else _MORE))
        low = f.timestamp_ms & 0xFFFF
        if prev_low is not None:
            if f.seq != (frames[i - 1].seq + 1) & 0xFFFF:
                raise ValueError(f"frames {frames[i - 1].seq} and {f.seq} are not consecutive")
            dt = (low - prev_low) & 0xFFFF
            if dt > 255:
                raise ValueError(f"frames {frames[i - 1].seq} and {f.seq} are {dt} ms apart, more than 255")
            out.append(dt)
        prev_low = low
        if not last and f.face and f.entropy:
            out.append(len(f.payload))
        out += f.payload
    if len(out) > MAX_PACKET_BYTES:
        raise ValueError(f"the message would exceed {MAX_PACKET_BYTES} bytes")
    return bytes(out)


def _frame(seq: int, ts: int, flags: int, payload: bytes, groups: int, codebook_size: int,
           version: int) -> Packet:
    """Checks one frame's flags against its payload."""
    if V1_PACKET_HEADER_BYTES + len(payload) > MAX_PACKET_BYTES:  # found by fuzzing: was Packet's ValueError
        raise StreamError(f"packet {seq}: a {len(payload)}-byte payload exceeds the {MAX_PACKET_BYTES}-byte limit: "
                          "corrupt stream")
    if flags & _RESERVED[version]:
        raise StreamError(f"packet {seq} has reserved flag bits set (flags 0x{flags:02x}): "
                          "corrupt, or from a newer talkcodec")
    face, keyframe, entropy = bool(flags & _FACE), bool(flags & _KEYFRAME), bool(flags & _ENTROPY)
    if not face:
        if flags or payload:
            raise StreamError(f"packet {seq} without a face must have no flags and no payload "
                              f"(flags 0x{flags:02x}, {len(payload)} payload bytes)")
        return Packet(seq, ts, 0, False, False, False, b"")
    layers = (flags & 0b11) + 1
    if entropy:
        if not payload:
            raise StreamError(f"entropy-coded packet {seq} has an empty payload")
    else:
        size = fixed_payload_bytes(layers, groups, codebook_size)
        if len(payload) != size:
            raise StreamError(f"fixed packet {seq} with {layers} layer(s) needs a {size}-byte payload, "
                              f"got {len(payload)}")
        if not keyframe:
            raise StreamError(f"fixed packet {seq} is not marked as a keyframe: corrupt stream")
    return Packet(seq, ts, layers, True, keyframe, entropy, payload)


def _check_version(version: int) -> None:
    if version not in READABLE_VERSIONS:
        raise StreamError(f"stream version {version} is not supported: this talkcodec reads versions {_versions()}")


def _versions() -> str:
    return ", ".join(map(str, READABLE_VERSIONS))


# --------------------------------------------------------------------------- validation helpers


def _require(d: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")


def _check_int(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _float_tuple(name: str, v: Any, n: int) -> tuple[float, ...]:
    if not isinstance(v, (tuple, list)) or len(v) != n:
        raise ValueError(f"{name} must be {n} numbers, got {v!r}")
    return tuple(_float(name, x) for x in v)


def _check_hex(name: str, v: Any) -> None:
    if not isinstance(v, str) or not 1 <= len(v) <= 128 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(f"{name} must be a lowercase hex string, got {v!r}")
