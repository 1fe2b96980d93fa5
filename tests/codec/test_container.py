"""The ``.tok`` file.

Fixtures: ``tok_small.bin`` holds ``header_fixed.bin``, an ancillary chunk
``b"x"`` (skipped), two fixed packets, a no-face packet and a 21-byte
stand-in audio chunk; ``tok_unknown_chunk.bin`` is the same with a critical
unknown chunk ``b"Z"`` instead; ``tok_picture.bin`` is ``tok_small.bin``'s
content with a picture chunk ``b"i"`` (a 64 px JPEG reference picture).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.audio import encode_opus
from codec.bitstream import PACKET_HEADER_BYTES, Packet, ReferenceInfo, StreamHeader
from codec.container import MAX_PICTURES, PICTURE_CHUNK, TokFile, parse_tok, read_tok, tok_bytes, write_tok
from codec.errors import MediaError, StreamError
from codec.picture import ImageFormat, Picture, PictureKind, decode_picture, encode_picture
from codec.stream import StreamWriter, undecodable_packets

FIXTURES = Path(__file__).parent / "fixtures"
REF = ReferenceInfo(0, (0.0, 0.1, 0.2), (0.0, 0.0, 0.0, 0.0), (0.1, 0.1), 0.3, (512, 512))
HEADER = StreamHeader(tokenizer_hash="abcd", reference=REF, layers=2)


def packets(n: int = 50) -> list[bytes]:
    rng = np.random.default_rng(0)
    writer = StreamWriter(HEADER)
    return [writer.encode(None if t % 7 == 3 else rng.integers(0, 625, (1 + t % 2, 12)), 40 * t) for t in range(n)]


@pytest.fixture(scope="module")
def audio() -> bytes:
    t = np.arange(16000) / 16000
    return encode_opus((0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)


def test_round_trip_with_audio(tmp_path, audio):
    path = tmp_path / "call.tok"
    pk = packets()
    write_tok(path, HEADER, pk, audio)
    tok = read_tok(path)
    assert tok.header == HEADER and list(tok.packets) == pk and tok.audio == audio
    assert tok.motion_bytes == sum(len(p) for p in pk)
    assert tok.duration_s == pytest.approx(2.0)
    assert tok.motion_kbps == pytest.approx(tok.motion_bytes * 8 / 2.0 / 1000)


def test_round_trip_without_audio_and_without_packets(tmp_path):
    path = tmp_path / "empty.tok"
    write_tok(path, HEADER, [])
    tok = read_tok(path)
    assert tok.packets == () and tok.audio is None and tok.motion_kbps == 0.0
    assert path.read_bytes() == HEADER.to_bytes()


def test_small_fixture_skips_ancillary_chunks():
    tok = parse_tok((FIXTURES / "tok_small.bin").read_bytes())
    assert tok.header == StreamHeader.from_bytes((FIXTURES / "header_fixed.bin").read_bytes())
    assert tok.header.version == 1  # written by the release before byte-format version 2: still read
    assert [Packet.from_bytes(p, version=1).seq for p in tok.packets] == [0, 1, 2]
    assert [Packet.from_bytes(p, version=1).face for p in tok.packets] == [True, True, False]
    assert tok.audio == b"OggS-not-really-audio"
    assert tok.motion_bytes == 63 + 63 + 7


def test_unknown_critical_chunk_is_an_error(tmp_path):
    path = tmp_path / "future.tok"
    path.write_bytes((FIXTURES / "tok_unknown_chunk.bin").read_bytes())
    with pytest.raises(StreamError, match="future.tok.*unknown type b'Z'"):
        read_tok(path)


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"\x00\x00\x00\x20ftypisom" + b"\x00" * 100, "not a talkcodec stream"),  # an MP4 passed by mistake
    (b"\x1aE\xdf\xa3" + b"\x00" * 100, "not a talkcodec stream"),  # a WebM
])
def test_files_that_are_not_tok_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(StreamError, match=f"clip.mp4.*{message}|{message}.*clip.mp4"):
        read_tok(path)


def test_a_missing_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot read"):
        read_tok(tmp_path / "nope.tok")


def test_every_truncation_is_a_stream_error_or_a_shorter_valid_file(audio):
    data = tok_bytes(HEADER, packets(6), audio[:200])
    chunk_ends = set()
    for n in range(len(data)):
        try:
            tok = parse_tok(data[:n], "cut.tok")
        except StreamError as e:
            assert "cut.tok" in str(e)
        else:
            chunk_ends.add(n)
            assert isinstance(tok, TokFile)
    assert len(chunk_ends) == 7  # the header alone and after each of the 6 packets


def test_two_audio_chunks_are_an_error_and_a_corrupt_packet_costs_only_itself(audio):
    data = tok_bytes(HEADER, packets(2), audio)
    with pytest.raises(StreamError, match="more than one audio"):
        parse_tok(data + struct.pack(">cI", b"A", 1) + b"x")
    tok = parse_tok(data + struct.pack(">cI", b"P", 3) + b"abc")
    assert len(tok.packets) == 3 and tok.packets[2] == b"abc"  # kept: decoding conceals its frame
    assert undecodable_packets(HEADER, tok.packets) == {
        2: f"packet truncated: 3 bytes, the header alone is {PACKET_HEADER_BYTES}"}
    with pytest.raises(ValueError, match="packet 0"):
        tok_bytes(HEADER, [b"short"])


def test_a_corrupt_picture_is_skipped_and_noted():
    tok = parse_tok((FIXTURES / "tok_picture.bin").read_bytes())
    good = len(tok.pictures)
    data = bytearray((FIXTURES / "tok_picture.bin").read_bytes())
    at = bytes(data).index(b"TKPI")
    data[at + 4] = 99  # the first picture's version byte
    broken = parse_tok(bytes(data), "pic.tok")
    assert len(broken.pictures) == good - 1 and len(broken.damaged) == 1
    assert "picture chunk at offset" in broken.damaged[0] and "version 99" in broken.damaged[0]
    assert broken.packets == tok.packets


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_after_the_header_raises_only_stream_error(tail):
    try:
        parse_tok(HEADER.to_bytes() + tail)
    except StreamError:
        pass


@given(st.integers(0, 8 * 700 - 1))
@settings(max_examples=200, deadline=None)
def test_bit_flips_raise_only_stream_error(bit):
    data = bytearray(tok_bytes(HEADER, packets(10)))
    bit %= 8 * len(data)
    data[bit // 8] ^= 1 << (bit % 8)
    try:
        parse_tok(bytes(data))
    except StreamError:
        pass


# -- the caller's pictures (chunk b"i") ---------------------------------------------------------------
# tok_picture.bin: tok_small.bin's header, packets and audio with one picture chunk (a 64 px JPEG reference).


def _picture(kind: PictureKind = PictureKind.REFERENCE, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return encode_picture(Picture(kind, img, rng.uniform(5, 60, (478, 3)).astype(np.float32), 40 * seed),
                          fmt=ImageFormat.JPEG)


def test_pictures_round_trip_in_order(tmp_path, audio):
    pics = [_picture(), _picture(PictureKind.MOUTH, 1), _picture(PictureKind.TURN_LEFT, 2)]
    path = tmp_path / "p.tok"
    write_tok(path, HEADER, packets(), audio, pics)
    tok = read_tok(path)
    assert list(tok.pictures) == pics and tok.reference == pics[0]
    assert tok.picture_bytes == sum(map(len, pics))
    assert [r.kind for r in tok.records()] == [PictureKind.REFERENCE, PictureKind.MOUTH, PictureKind.TURN_LEFT]
    assert list(tok.packets) == packets() and tok.audio == audio


def test_old_files_read_without_pictures_and_new_ones_stay_readable_to_old_readers():
    old = parse_tok((FIXTURES / "tok_small.bin").read_bytes())
    assert old.pictures == () and old.reference is None
    new = parse_tok((FIXTURES / "tok_picture.bin").read_bytes())
    assert new.packets == old.packets and new.audio == old.audio and len(new.pictures) == 1
    assert decode_picture(new.pictures[0]).image.shape == (64, 64, 3)
    # Ancillary (lowercase): a reader that does not know the chunk skips it.
    assert PICTURE_CHUNK.islower()


def test_a_keyframe_alone_is_no_reference():
    tok = parse_tok(tok_bytes(HEADER, packets(3), None, [_picture(PictureKind.EYES_CLOSED)]))
    assert tok.reference is None and len(tok.pictures) == 1


def test_broken_pictures_are_skipped_and_too_many_are_errors():
    good = _picture()
    bad = bytearray(good)
    bad[0:4] = b"XXXX"
    data = HEADER.to_bytes() + struct.pack(">cI", PICTURE_CHUNK, len(bad)) + bytes(bad)
    tok = parse_tok(data, "x.tok")  # a corrupt picture costs itself, not the file
    assert tok.pictures == () and len(tok.damaged) == 1 and "not a talkcodec picture" in tok.damaged[0]
    with pytest.raises(ValueError):
        tok_bytes(HEADER, [], None, [bytes(bad)])
    with pytest.raises(ValueError):
        tok_bytes(HEADER, [], None, [good] * (MAX_PICTURES + 1))
    many = HEADER.to_bytes() + (struct.pack(">cI", PICTURE_CHUNK, len(good)) + good) * (MAX_PICTURES + 1)
    with pytest.raises(StreamError, match="more than"):
        parse_tok(many)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_bytes_flipped_in_a_picture_file_raise_only_stream_error(pos, value):
    data = bytearray((FIXTURES / "tok_picture.bin").read_bytes())
    data[pos % len(data)] = value
    try:
        parse_tok(bytes(data))
    except StreamError:
        pass
