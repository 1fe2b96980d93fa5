"""The caller's picture as bytes: a still image of the face and its landmarks.

The sender shows the receiver what its face looks like: the frame its motion
is coded against (the *reference*) and, later in the call, a few keyframes of
what the reference lacks (the mouth open, the eyes closed, the head turned).
Each travels as one picture record, the same bytes on the call's reliable
channel (:mod:`realtime.pictures` chunks them) and in a ``.tok`` file
(:mod:`codec.container`)::

    magic         b"TKPI"   4 bytes
    version       u8        (PICTURE_VERSION)
    kind          u8        (PictureKind)
    format        u8        (ImageFormat of the image bytes)
    flags         u8        0 (reserved)
    media_ms      u32       sender media time of the frame shown
    size          u16       side of the square image, pixels
    inside        4 x u16   x0, y0, x1, y1: the part of the image that was inside the camera frame
    landmarks_len u16       bytes of the landmark block
    image_len     u32       bytes of the image
    landmarks     landmarks_len bytes: zlib (RFC 1950) of little-endian int16 [3, 478] (x, y, z rows)
                            in 1/8 px, each row delta-coded along the mesh order
    image         image_len bytes: AVIF, WebP or JPEG, size x size RGB

All integers are big-endian. Parsing (:func:`parse_picture`) checks every
length and bound before anything is allocated from it, and decoding the image
(:func:`decode_picture`) reads its dimensions from its header before decoding
pixels, so a hostile peer cannot make the reader allocate much: at most
:data:`MAX_PICTURE_BYTES` of record and a :data:`MAX_SIDE` square of pixels.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from codec.errors import StreamError
from codec.regions import NUM_LANDMARKS

MAGIC = b"TKPI"
PICTURE_VERSION = 1
MAX_PICTURE_BYTES = 64 * 1024
"""A 512 px picture is 6-12 kB at the default quality; anything past this is refused."""
MIN_SIDE, MAX_SIDE = 64, 1024
LANDMARK_STEP = 8
"""Landmarks are sent in 1/8 px: far finer than the tracker's own noise (about a pixel)."""
_LANDMARK_RAW = NUM_LANDMARKS * 3 * 2
_MAX_LANDMARK_BLOB = 2 * _LANDMARK_RAW  # deflate never grows 2.8 kB past this
DEFAULT_QUALITY = 55
"""AVIF quality: 7.2 kB mean (9.6 kB at most) for the 7 held-out clips' 512 px reference crops, SSIM 0.988,
dlib identity distance 0.05 to the uncompressed crop (see docs/caller_picture.md)."""

_HEAD = struct.Struct(">4sBBBBIH4HHI")


class PictureKind(enum.IntEnum):
    """What a picture shows. The reference comes first; keyframes add what it lacks."""

    REFERENCE = 0
    MOUTH = 1
    EYES_CLOSED = 2
    TURN_LEFT = 3
    TURN_RIGHT = 4

    @property
    def label(self) -> str:
        """The name the renderer's keyframes use (``codec.render.keyframes.Keyframe.kind``)."""
        return _LABELS[self]

    @staticmethod
    def of_label(label: str) -> PictureKind:
        """The kind of a :attr:`label`.

        Raises:
            ValueError: no kind has that label.
        """
        for kind, name in _LABELS.items():
            if name == label:
                return kind
        raise ValueError(f"no picture kind is called {label!r}")


_LABELS = {PictureKind.REFERENCE: "reference", PictureKind.MOUTH: "mouth", PictureKind.EYES_CLOSED: "eyes_closed",
           PictureKind.TURN_LEFT: "turn_left", PictureKind.TURN_RIGHT: "turn_right"}


class ImageFormat(enum.IntEnum):
    """How the image is compressed (every browser decodes all three)."""

    JPEG = 1
    WEBP = 2
    AVIF = 3


_PIL_FORMAT = {ImageFormat.JPEG: "JPEG", ImageFormat.WEBP: "WEBP", ImageFormat.AVIF: "AVIF"}


@dataclass(frozen=True, eq=False)
class Picture:
    """One still of the caller, as the receiver's renderer takes it.

    Attributes:
        kind: what it shows.
        image: ``[S, S, 3]`` uint8 RGB, the square crop the renderer animates (for keyframes: the reference's
            crop box, so every picture of a call is framed alike).
        landmarks: ``[478, 3]`` float32 in ``image``'s pixels (z in the same scale), as the sender tracked them.
        media_ms: sender media time of the frame.
        inside: ``(x0, y0, x1, y1)`` the part of ``image`` that lay inside the camera frame; outside it the
            crop was padded and shows nothing real.
    """

    kind: PictureKind
    image: np.ndarray
    landmarks: np.ndarray
    media_ms: int = 0
    inside: tuple[int, int, int, int] | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def inside_box(self) -> tuple[int, int, int, int]:
        """``inside``, or the whole image when it was not given."""
        return self.inside if self.inside is not None else (0, 0, self.size, self.size)


@dataclass(frozen=True)
class PictureRecord:
    """A parsed picture record whose image is not decoded yet (see :func:`parse_picture`).

    Attributes:
        kind, media_ms, inside: as in :class:`Picture`.
        format: the image's compression.
        size: the image's side, pixels.
        landmarks: ``[478, 3]`` float32.
        image: the compressed image bytes.
    """

    kind: PictureKind
    format: ImageFormat
    media_ms: int
    size: int
    inside: tuple[int, int, int, int]
    landmarks: np.ndarray
    image: bytes


# --- landmarks -------------------------------------------------------------------------------


def encode_landmarks(landmarks: np.ndarray) -> bytes:
    """``[478, 3]`` pixels -> the record's landmark block (about 2.3 kB).

    Raises:
        ValueError: wrong shape, not finite, or beyond ±4095 px.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (NUM_LANDMARKS, 3) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be finite [{NUM_LANDMARKS}, 3], got {lm.shape}")
    q = np.round(lm * LANDMARK_STEP)
    if np.abs(q).max() > 32767:
        raise ValueError("landmarks lie beyond ±4095 px of the picture")
    planar = q.astype(np.int32).T  # [3, 478]: x, y and z rows, each smooth along the mesh order
    delta = np.diff(planar, axis=1, prepend=0)
    # Deltas of int16 values wrap in int16 arithmetic and unwrap exactly on decoding.
    return zlib.compress(delta.astype("<i2").tobytes(), 9)


def decode_landmarks(blob: bytes) -> np.ndarray:
    """The record's landmark block -> ``[478, 3]`` float32 pixels.

    Raises:
        StreamError: not a deflate stream of exactly the expected size.
    """
    if len(blob) > _MAX_LANDMARK_BLOB:
        raise StreamError(f"picture landmarks of {len(blob)} bytes exceed {_MAX_LANDMARK_BLOB}")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(blob, _LANDMARK_RAW)  # never more than the expected size
    except zlib.error as e:
        raise StreamError(f"picture landmarks are corrupt ({e})") from None
    if len(raw) != _LANDMARK_RAW or d.unconsumed_tail or not d.eof or d.unused_data:
        raise StreamError("picture landmarks are corrupt (wrong length)")
    delta = np.frombuffer(raw, "<i2").reshape(3, NUM_LANDMARKS)
    planar = np.cumsum(delta.astype(np.int64), axis=1).astype(np.int16)  # undoes the int16 wrap too
    return (planar.T.astype(np.float32) / LANDMARK_STEP).astype(np.float32)


# --- images ----------------------------------------------------------------------------------


def available_formats() -> tuple[ImageFormat, ...]:
    """The formats this Pillow can write, best first."""
    from PIL import features

    out = [f for f, name in ((ImageFormat.AVIF, "avif"), (ImageFormat.WEBP, "webp")) if features.check(name)]
    return (*out, ImageFormat.JPEG)


def encode_image(image: np.ndarray, fmt: ImageFormat | None = None, quality: int = DEFAULT_QUALITY) -> tuple[
        ImageFormat, bytes]:
    """Compresses ``[S, S, 3]`` uint8 RGB; ``fmt`` None: the best this Pillow writes (AVIF, else WebP, else JPEG)."""
    fmt = fmt if fmt is not None else available_formats()[0]
    out = io.BytesIO()
    options: dict[str, object] = {"quality": int(quality)}
    if fmt is ImageFormat.AVIF:
        options["speed"] = 6  # 0.25 s for 512 px on one core; speed 4 saves 6% for 7x the time
    elif fmt is ImageFormat.WEBP:
        options["method"] = 6
    else:
        options.update(optimize=True, progressive=True)
    Image.fromarray(np.ascontiguousarray(image, np.uint8), "RGB").save(out, _PIL_FORMAT[fmt], **options)
    return fmt, out.getvalue()


def decode_image(data: bytes, fmt: ImageFormat, size: int) -> np.ndarray:
    """Compressed image -> ``[size, size, 3]`` uint8 RGB, checking its dimensions before decoding its pixels.

    Raises:
        StreamError: not an image of that format, another size, or corrupt.
    """
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]]) as im:
            if im.size != (size, size):
                raise StreamError(f"picture image is {im.size[0]}x{im.size[1]}, its record says {size}x{size}")
            rgb = np.asarray(im.convert("RGB"))
    except StreamError:
        raise
    except Exception as e:  # Pillow raises many kinds on a corrupt image; all mean the same here
        raise StreamError(f"picture image is not a valid {fmt.name} ({type(e).__name__})") from None
    if rgb.shape != (size, size, 3) or rgb.dtype != np.uint8:
        raise StreamError(f"picture image decoded to {rgb.shape}, expected ({size}, {size}, 3)")
    return np.ascontiguousarray(rgb)


# --- records ---------------------------------------------------------------------------------


def encode_picture(picture: Picture, fmt: ImageFormat | None = None, quality: int = DEFAULT_QUALITY) -> bytes:
    """A :class:`Picture` -> its record bytes.

    Raises:
        ValueError: the picture does not fit the record (size, landmarks, or a record over the limit).
    """
    image = np.asarray(picture.image)
    size = image.shape[0] if image.ndim == 3 else 0
    if image.shape != (size, size, 3) or image.dtype != np.uint8 or not MIN_SIDE <= size <= MAX_SIDE:
        raise ValueError(f"picture image must be [S, S, 3] uint8 with {MIN_SIDE} <= S <= {MAX_SIDE}, "
                         f"got {image.shape} {image.dtype}")
    if not 0 <= picture.media_ms < 2**32:
        raise ValueError(f"picture media time {picture.media_ms} ms does not fit u32")
    inside = _check_inside(picture.inside_box, size, ValueError)
    lm = encode_landmarks(picture.landmarks)
    fmt, img = encode_image(image, fmt, quality)
    head = _HEAD.pack(MAGIC, PICTURE_VERSION, int(picture.kind), int(fmt), 0, int(picture.media_ms), size,
                      *inside, len(lm), len(img))
    data = head + lm + img
    if len(data) > MAX_PICTURE_BYTES:
        raise ValueError(f"picture record of {len(data)} bytes exceeds {MAX_PICTURE_BYTES}: lower the quality")
    return data


def _check_inside(box: tuple[int, int, int, int], size: int, error: type[Exception]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise error(f"picture inside-box {box} is not within the {size} px image")
    return x0, y0, x1, y1


def parse_picture(data: bytes) -> PictureRecord:
    """Parses a picture record without decoding its image.

    Raises:
        StreamError: wrong magic or version, unknown kind or format, bad size, a length that does not add up,
            or corrupt landmarks.
    """
    data = bytes(data)
    if len(data) > MAX_PICTURE_BYTES:
        raise StreamError(f"picture record of {len(data)} bytes exceeds {MAX_PICTURE_BYTES}")
    if len(data) < _HEAD.size:
        raise StreamError(f"picture record truncated: {len(data)} bytes, its header needs {_HEAD.size}")
    magic, version, kind, fmt, flags, media_ms, size, x0, y0, x1, y1, lm_len, img_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise StreamError(f"not a talkcodec picture (magic {magic!r})")
    if version != PICTURE_VERSION:
        raise StreamError(f"picture version {version}, this build reads {PICTURE_VERSION}: "
                          "run the same talkcodec release on both ends")
    try:
        kind_ = PictureKind(kind)
    except ValueError:
        raise StreamError(f"picture of unknown kind {kind}") from None
    try:
        fmt_ = ImageFormat(fmt)
    except ValueError:
        raise StreamError(f"picture image in unknown format {fmt}") from None
    if flags != 0:
        raise StreamError(f"picture flags {flags:#x} are not known to this build")
    if not MIN_SIDE <= size <= MAX_SIDE:
        raise StreamError(f"picture side {size} px is outside {MIN_SIDE}..{MAX_SIDE}")
    inside = _check_inside((x0, y0, x1, y1), size, StreamError)
    if _HEAD.size + lm_len + img_len != len(data):
        raise StreamError(f"picture record is {len(data)} bytes, its header says {_HEAD.size + lm_len + img_len}")
    if img_len == 0:
        raise StreamError("picture record holds no image")
    landmarks = decode_landmarks(data[_HEAD.size:_HEAD.size + lm_len])
    return PictureRecord(kind_, fmt_, media_ms, size, inside, landmarks, data[_HEAD.size + lm_len:])


def decode_picture(data: bytes) -> Picture:
    """A picture record -> :class:`Picture` (the image decoded). Raises StreamError as :func:`parse_picture`."""
    rec = parse_picture(data)
    return Picture(rec.kind, decode_image(rec.image, rec.format, rec.size), rec.landmarks, rec.media_ms, rec.inside)
