"""The ``.tok`` file: a recorded stream, its packets and optional audio.

Layout::

    stream header (codec.bitstream.StreamHeader.to_bytes)
    chunk*        type u8 | length u32 (big-endian) | data

Chunk types:

- ``b"P"``: one motion packet (one frame) of the header's byte-format version, in send order;
- ``b"A"``: the call's audio as one Ogg Opus blob (:mod:`codec.audio`), at most one;
- ``b"i"``: one picture of the caller (:mod:`codec.picture`): the reference, which the stream's motion
  is relative to, first; then keyframes. Ancillary (lowercase): an older reader skips it, and a file
  written with ``--no-portrait`` has none.

Forward compatibility follows PNG: an unknown chunk whose type byte is an
ASCII lowercase letter is ancillary and skipped, so later versions can add
optional data that older readers ignore; any other unknown type is critical
and makes the file unreadable (``StreamError``). There is no trailer, so a
recording cut exactly between two chunks reads as a shorter recording; a cut
anywhere else is a ``StreamError``. A corrupt packet or picture costs itself
only: packets are kept as they are (decoding conceals the frame), a picture
that does not parse is skipped and noted in :attr:`TokFile.damaged`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from codec.bitstream import Packet, StreamHeader
from codec.errors import MediaError, StreamError
from codec.paths import write_bytes_atomic
from codec.picture import PictureKind, PictureRecord, parse_picture

PACKET_CHUNK = b"P"
AUDIO_CHUNK = b"A"
PICTURE_CHUNK = b"i"
MAX_PICTURES = 64
_CHUNK = struct.Struct(">cI")


@dataclass(frozen=True, eq=False)
class TokFile:
    """A parsed ``.tok`` file.

    Attributes:
        header: the stream header.
        packets: each packet's bytes (packet header and payload: 5 + payload bytes in
            byte-format version 2, 7 + in version 1), in order.
        audio: the Ogg Opus blob, or ``None``.
        pictures: picture records (:mod:`codec.picture`), in the order written.
        damaged: what was skipped as corrupt while reading (a picture chunk), one line each;
            corrupt packets stay in ``packets`` and cost their own frame when decoded.
    """

    header: StreamHeader
    packets: tuple[bytes, ...]
    audio: bytes | None = None
    pictures: tuple[bytes, ...] = ()
    damaged: tuple[str, ...] = ()

    @property
    def picture_bytes(self) -> int:
        """Bytes of all pictures (the reference's and keyframes')."""
        return sum(len(p) for p in self.pictures)

    def records(self) -> list[PictureRecord]:
        """The pictures parsed (images not decoded); they were checked when the file was read."""
        return [parse_picture(p) for p in self.pictures]

    @property
    def reference(self) -> bytes | None:
        """The reference picture's record, or None (written with ``--no-portrait``, or by an older talkcodec)."""
        return next((p for p, r in zip(self.pictures, self.records()) if r.kind is PictureKind.REFERENCE), None)

    @property
    def motion_bytes(self) -> int:
        """Bytes of all motion packets, packet headers included."""
        return sum(len(p) for p in self.packets)

    @property
    def duration_s(self) -> float:
        """Length of the motion track at the header's frame rate."""
        return len(self.packets) / self.header.fps

    @property
    def motion_kbps(self) -> float:
        """Motion bitrate, packet headers included; 0 for an empty file."""
        return self.motion_bytes * 8 / self.duration_s / 1000 if self.packets else 0.0


def tok_bytes(header: StreamHeader, packets: list[bytes], audio: bytes | None = None,
              pictures: list[bytes] | tuple[bytes, ...] = ()) -> bytes:
    """The bytes of a ``.tok`` file; see :func:`write_tok`."""
    cfg = header.tokenizer
    parts = [header.to_bytes()]
    if len(pictures) > MAX_PICTURES:
        raise ValueError(f"{len(pictures)} pictures, a .tok holds at most {MAX_PICTURES}")
    for n, pic in enumerate(pictures):
        try:
            parse_picture(pic)
        except StreamError as e:
            raise ValueError(f"picture {n} is not a valid picture record: {e}") from None
        parts.append(_CHUNK.pack(PICTURE_CHUNK, len(pic)) + bytes(pic))
    for n, p in enumerate(packets):
        try:
            Packet.from_bytes(p, cfg.groups, cfg.codebook_size, header.version)
        except StreamError as e:
            raise ValueError(f"packet {n} is not a valid packet: {e}") from None
        parts.append(_CHUNK.pack(PACKET_CHUNK, len(p)) + bytes(p))
    if audio is not None:
        parts.append(_CHUNK.pack(AUDIO_CHUNK, len(audio)) + bytes(audio))
    return b"".join(parts)


def write_tok(path: str | Path, header: StreamHeader, packets: list[bytes], audio: bytes | None = None,
              pictures: list[bytes] | tuple[bytes, ...] = ()) -> None:
    """Writes a ``.tok`` file.

    Args:
        path: destination.
        header: the stream header.
        packets: packet bytes as produced by :class:`~codec.stream.StreamWriter`.
        audio: an Ogg Opus blob (:func:`codec.audio.encode_opus`), or ``None``.
        pictures: picture records (:func:`codec.picture.encode_picture`), the reference first.

    The file appears whole or not at all (:func:`codec.paths.write_bytes_atomic`).
    """
    write_bytes_atomic(path, tok_bytes(header, packets, audio, pictures))


def parse_tok(data: bytes, name: str = "<bytes>") -> TokFile:
    """Parses the bytes of a ``.tok`` file; ``name`` appears in error messages."""
    if not data:
        raise StreamError(f"{name} is empty, not a .tok file")
    try:
        header, pos = StreamHeader.parse_prefix(data)
    except StreamError as e:
        raise StreamError(f"{name}: {e}") from None
    packets: list[bytes] = []
    pictures: list[bytes] = []
    damaged: list[str] = []
    audio: bytes | None = None
    while pos < len(data):
        if len(data) - pos < _CHUNK.size:
            raise StreamError(f"{name} is truncated: {len(data) - pos} stray bytes at offset {pos}")
        kind, length = _CHUNK.unpack_from(data, pos)
        start, pos = pos + _CHUNK.size, pos + _CHUNK.size + length
        if pos > len(data):
            raise StreamError(f"{name} is truncated: a {length}-byte chunk at offset {start - _CHUNK.size} "
                              f"has only {len(data) - start} bytes")
        body = data[start:pos]
        if kind == PACKET_CHUNK:
            # Kept as it is, even corrupt: like a packet lost on a call it costs its own frame when
            # decoded (codec.api.decode_stream conceals it), never the whole file.
            packets.append(bytes(body))
        elif kind == AUDIO_CHUNK:
            if audio is not None:
                raise StreamError(f"{name} has more than one audio chunk")
            audio = bytes(body)
        elif kind == PICTURE_CHUNK:
            if len(pictures) >= MAX_PICTURES:
                raise StreamError(f"{name} has more than {MAX_PICTURES} pictures")
            try:
                parse_picture(body)
            except StreamError as e:
                damaged.append(f"picture chunk at offset {start - _CHUNK.size} skipped: {e}")
                continue
            pictures.append(bytes(body))
        elif not kind.islower():
            raise StreamError(f"{name} has a chunk of unknown type {kind!r} at offset {start - _CHUNK.size}: "
                              "corrupt, or written by a newer talkcodec")
    return TokFile(header, tuple(packets), audio, tuple(pictures), tuple(damaged))


def read_tok(path: str | Path) -> TokFile:
    """Reads a ``.tok`` file.

    Raises:
        MediaError: the file cannot be read.
        StreamError: the file is not a valid ``.tok`` file (wrong magic or
            version, truncated or unknown chunk, corrupt packet); the message
            names the file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MediaError(f"cannot read {p}: {e.strerror}") from None
    return parse_tok(data, p.name)

