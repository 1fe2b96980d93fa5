"""The picture record (codec.picture): round trips, and every broken input refused with a StreamError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from codec.errors import StreamError
from codec.picture import (
    _HEAD,
    LANDMARK_STEP,
    MAX_PICTURE_BYTES,
    ImageFormat,
    Picture,
    PictureKind,
    available_formats,
    decode_landmarks,
    decode_picture,
    encode_image,
    encode_landmarks,
    encode_picture,
    parse_picture,
)


def face_image(size: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth synthetic image (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(3 * x + rng.uniform(0, 3)), np.cos(2 * y + rng.uniform(0, 3)), x * y], -1)
    return ((base * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)


def landmarks(size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0.2 * size, 0.8 * size, (478, 3))
    lm[:, 2] -= 0.5 * size
    return lm.astype(np.float32)


@pytest.fixture(scope="module")
def record() -> bytes:
    pic = Picture(PictureKind.MOUTH, face_image(), landmarks(), media_ms=1234, inside=(0, 10, 128, 128))
    return encode_picture(pic)


def test_round_trip(record: bytes) -> None:
    pic = decode_picture(record)
    assert pic.kind is PictureKind.MOUTH and pic.media_ms == 1234 and pic.inside == (0, 10, 128, 128)
    assert pic.image.shape == (128, 128, 3) and pic.image.dtype == np.uint8
    assert np.abs(pic.image.astype(int) - face_image().astype(int)).mean() < 6  # lossy, but close
    assert np.abs(pic.landmarks - landmarks()).max() <= 0.5 / LANDMARK_STEP + 1e-6
    assert parse_picture(record).format is available_formats()[0]


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_every_format_round_trips(fmt: ImageFormat) -> None:
    if fmt not in available_formats():
        pytest.skip(f"this Pillow cannot write {fmt.name}")
    data = encode_picture(Picture(PictureKind.REFERENCE, face_image(96), landmarks(96)), fmt=fmt)
    assert parse_picture(data).format is fmt
    assert decode_picture(data).image.shape == (96, 96, 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, (478, 3), elements=st.floats(-4095, 4095), fill=st.floats(-4095, 4095)))
def test_landmarks_round_trip_within_their_step(lm: np.ndarray) -> None:
    back = decode_landmarks(encode_landmarks(lm))
    assert back.shape == (478, 3) and back.dtype == np.float32
    assert np.abs(back - lm).max() <= 0.5 / LANDMARK_STEP + 1e-3


def test_landmarks_out_of_range_or_not_finite_are_refused() -> None:
    lm = landmarks()
    for bad in (lm * 100, np.full((478, 3), np.nan), lm[:400]):
        with pytest.raises(ValueError):
            encode_landmarks(bad)


def _with_head(record: bytes, **fields: int) -> bytes:
    names = ("magic", "version", "kind", "format", "flags", "media_ms", "size", "x0", "y0", "x1", "y1",
             "lm_len", "img_len")
    values = dict(zip(names, _HEAD.unpack_from(record)))
    values.update(fields)
    return _HEAD.pack(*values.values()) + record[_HEAD.size:]


@pytest.mark.parametrize("change, words", [
    ({"magic": b"TKPX"}, "not a talkcodec picture"),
    ({"version": 9}, "version 9"),
    ({"kind": 77}, "unknown kind"),
    ({"format": 0}, "unknown format"),
    ({"flags": 1}, "flags"),
    ({"size": 8}, "outside"),
    ({"size": 5000}, "outside"),
    ({"x1": 0}, "inside-box"),
    ({"y1": 300}, "inside-box"),
    ({"lm_len": 10}, "header says"),
    ({"img_len": 1}, "header says"),
])
def test_broken_headers_are_refused(record: bytes, change: dict[str, int], words: str) -> None:
    with pytest.raises(StreamError, match=words):
        parse_picture(_with_head(record, **change))


def test_truncated_and_oversized_records_are_refused(record: bytes) -> None:
    for n in (0, 3, _HEAD.size - 1, _HEAD.size, len(record) - 1):
        with pytest.raises(StreamError):
            parse_picture(record[:n])
    with pytest.raises(StreamError, match="exceeds"):
        parse_picture(record + b"\0" * MAX_PICTURE_BYTES)
    with pytest.raises(StreamError, match="header says"):
        parse_picture(record + b"\0")


def test_corrupt_landmarks_are_refused(record: bytes) -> None:
    lm_len = _HEAD.unpack_from(record)[11]
    lm = bytearray(record[_HEAD.size:_HEAD.size + lm_len])
    lm[5] ^= 0xFF
    with pytest.raises(StreamError, match="landmarks"):
        parse_picture(record[:_HEAD.size] + bytes(lm) + record[_HEAD.size + lm_len:])
    # A deflate stream of the wrong length, or a bomb that would expand far past 2.8 kB.
    for blob in (zlib.compress(b"\0" * 100), zlib.compress(b"\0" * 10_000_000, 9)):
        with pytest.raises(StreamError, match="landmarks"):
            decode_landmarks(blob)


def test_an_image_of_another_size_or_corrupt_is_refused(record: bytes) -> None:
    head = _HEAD.unpack_from(record)
    lm = record[_HEAD.size:_HEAD.size + head[11]]
    fmt, other = encode_image(face_image(64))
    swapped = _HEAD.pack(*head[:3], int(fmt), *head[4:12], len(other)) + lm + other
    with pytest.raises(StreamError, match="64x64"):
        decode_picture(swapped)
    junk = b"\x89not an image at all" * 3
    garbage = _HEAD.pack(*head[:12], len(junk)) + lm + junk
    with pytest.raises(StreamError, match="not a valid"):
        decode_picture(garbage)


def test_a_huge_image_is_refused_before_its_pixels_are_decoded(record: bytes) -> None:
    # A JPEG that claims far more pixels than it holds: refused on its header, nothing allocated.
    head = _HEAD.unpack_from(record)
    lm = record[_HEAD.size:_HEAD.size + head[11]]
    _, small = encode_image(face_image(64), ImageFormat.JPEG)
    sof = small.index(b"\xff\xc2") if b"\xff\xc2" in small else small.index(b"\xff\xc0")
    for side, words in ((8000, "8000x8000"), (60000, "DecompressionBomb")):  # Pillow's own guard, past 178 Mpx
        bomb = small[:sof + 5] + struct.pack(">HH", side, side) + small[sof + 9:]
        data = _HEAD.pack(*head[:3], int(ImageFormat.JPEG), *head[4:12], len(bomb)) + lm + bomb
        with pytest.raises(StreamError, match=words):
            decode_picture(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_records_raise_stream_error_or_parse(record: bytes, data: st.DataObject) -> None:
    buf = bytearray(record)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    try:
        decode_picture(bytes(buf[:cut]) if data.draw(st.booleans()) else bytes(buf))
    except StreamError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_stream_error_only(blob: bytes) -> None:
    try:
        decode_picture(blob)
    except StreamError:
        pass


def test_encode_refuses_what_the_record_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_picture(Picture(PictureKind.REFERENCE, face_image(128)[:, :100], landmarks()))
    with pytest.raises(ValueError):
        encode_picture(Picture(PictureKind.REFERENCE, face_image(32), landmarks(32)))
    with pytest.raises(ValueError):
        encode_picture(Picture(PictureKind.REFERENCE, face_image(), landmarks(), media_ms=-1))
    with pytest.raises(ValueError):
        encode_picture(Picture(PictureKind.REFERENCE, face_image(), landmarks(), inside=(0, 0, 200, 10)))
