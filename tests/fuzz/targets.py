"""The fuzz targets: one per parser of bytes that come from outside the process.

Each target takes one input (``bytes``) and runs it through a parser the way
talkcodec meets such bytes: a stream header, motion packets in fixed and in
entropy mode (a sequence, so the entropy reader's prediction state is
exercised), a ``.tok`` file, control messages (with a HELLO's stream header
and the picture messages' reassembly), signaling messages, picture records
and their images, and image files as ``codec.media.read_image`` reads a
portrait. A target may raise only the project's own errors, listed in
:attr:`Target.allowed`; anything else (an ``IndexError``, a ``MemoryError``,
numpy's or Pillow's own exceptions) is a crash, and so is an input that takes
longer than the runner's per-input time limit.

Imports of the parsers are deferred to :func:`load` so that the atheris runner
can instrument them for coverage.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
# The modules whose code the fuzzer watches for coverage.
PARSER_MODULES = ("codec.bitstream", "codec.stream", "codec.entropy", "codec.container", "codec.picture",
                  "codec.media", "realtime.protocol", "realtime.signaling", "realtime.pictures")


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing.

    Attributes:
        name: the target's name (its corpus folder under ``tests/fuzz/corpus``).
        run: parses one input; raises only ``allowed``.
        allowed: the exceptions a bad input may raise.
        seeds: valid and deliberately broken inputs to start from.
    """

    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


_targets: dict[str, Target] | None = None


def load() -> dict[str, Target]:
    """Imports the parsers and builds the targets (once)."""
    global _targets
    if _targets is None:
        _targets = _build()
    return _targets


def corpus_inputs(name: str) -> Iterator[tuple[Path, bytes]]:
    """The kept inputs of a target's corpus folder."""
    folder = CORPUS / name
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file():
                yield p, p.read_bytes()


def _split(data: bytes, max_parts: int = 64) -> list[bytes]:
    """Cuts one input into several: each part is a u16 big-endian length and that many bytes (fewer at the end)."""
    out, pos = [], 0
    while pos < len(data) and len(out) < max_parts:
        n = int.from_bytes(data[pos:pos + 2], "big")
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def _join(parts: list[bytes]) -> bytes:
    """The inverse of :func:`_split`."""
    return b"".join(len(p).to_bytes(2, "big") + p for p in parts)


def _build() -> dict[str, Target]:
    import numpy as np

    from codec.bitstream import STREAM_VERSION, ReferenceInfo, StreamHeader, bundle
    from codec.container import parse_tok, tok_bytes
    from codec.entropy import load_entropy_model
    from codec.errors import TalkcodecError
    from codec.grfsq import GRFSQConfig
    from codec.media import read_image
    from codec.picture import ImageFormat, Picture, PictureKind, decode_picture, encode_picture
    from codec.stream import StreamReader, StreamWriter
    from realtime.pictures import PictureInbox, PictureOutbox
    from realtime.protocol import Hello, PictureBegin, PictureData, Timing, encode_message, parse_message
    from realtime.signaling import Answer, Challenge, Offer, Reject, encode_signal, parse_signal
    from realtime.timing import StageSums

    ref = ReferenceInfo(frame_index=0, rotation=(0.1, -0.2, 0.0), gaze=(0.0, 0.1, 0.0, -0.1), blink=(0.3, 0.3),
                        mouth_opening=0.05, image_size=(512, 512))
    model = load_entropy_model()
    fixed = StreamHeader(tokenizer_hash="0123456789abcdef", reference=ref, tokenizer=GRFSQConfig())
    entropy = StreamHeader(tokenizer_hash="0123456789abcdef", reference=ref, tokenizer=GRFSQConfig(),
                           mode="entropy", entropy_hash=model.hash)
    rng = np.random.default_rng(0)

    def packets(header: StreamHeader, n: int = 12) -> list[bytes]:
        w = StreamWriter(header)
        walk = rng.integers(0, 625, (4, 12))
        out = []
        for t in range(n):
            walk = (walk + rng.integers(-3, 4, walk.shape)) % 625
            out.append(w.encode(None if t == 5 else walk[: 1 + t % 4], t * 40))
        return out

    def picture(fmt: ImageFormat) -> bytes:
        image = np.zeros((64, 64, 3), np.uint8)
        image[16:48, 16:48] = (200, 120, 90)
        lm = rng.uniform(10, 54, (478, 3)).astype(np.float32)
        return encode_picture(Picture(PictureKind.REFERENCE, image, lm, 0, (0, 0, 64, 64)), fmt, quality=30)

    # -- the targets ------------------------------------------------------------------------

    def header(data: bytes) -> None:
        # Odd first byte: the rest is the JSON body, given the prefix its length says (a fuzzer seldom keeps a
        # length field right while it grows the body); even: the bytes as they came.
        if data[:1] and data[0] & 1:
            body = data[1:]
            data = struct.pack(">4sBI", b"TKCD", STREAM_VERSION, len(body)) + body
        StreamHeader.from_bytes(data)

    def motion(reader_header: StreamHeader) -> Callable[[bytes], None]:
        def run(data: bytes) -> None:
            reader = StreamReader(reader_header, model if reader_header.mode == "entropy" else None)
            # Odd first byte: the parts are messages of several frames (the wire's bundles), else one-frame packets.
            bundled = bool(data[:1]) and data[0] & 1
            for part in _split(data[1:]):
                try:
                    if bundled:
                        reader.decode_message(part)
                    else:
                        reader.decode(part)
                except TalkcodecError:
                    pass  # one bad packet costs its frame; the reader goes on with the next
        return run

    def tok(data: bytes) -> None:
        parse_tok(data, "fuzz.tok")

    def control(data: bytes) -> None:
        inbox = PictureInbox()
        sender_stages = StageSums()
        for part in _split(data):
            try:
                msg = parse_message(part)
                if isinstance(msg, Hello):
                    StreamHeader.from_bytes(msg.header)
                elif isinstance(msg, PictureBegin):
                    inbox.begin(msg)
                elif isinstance(msg, PictureData):
                    whole = inbox.data(msg)
                    if whole is not None:
                        decode_picture(whole)
                elif isinstance(msg, Timing):  # added up as the receiver does, then summarised
                    msg.add_to(sender_stages)
                    sender_stages.summary()
            except TalkcodecError:
                pass  # the receiver drops the message and goes on

    def signal(data: bytes) -> None:
        parse_signal(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        parse_signal(text)

    def pictures(data: bytes) -> None:
        decode_picture(data)

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    image_dir = Path(tempfile.mkdtemp(prefix="talkcodec-fuzz-", dir=shm))
    atexit.register(shutil.rmtree, image_dir, True)

    def image(data: bytes) -> None:
        path = image_dir / f"portrait-{os.getpid()}.img"
        path.write_bytes(data)
        read_image(path)

    # -- seeds ------------------------------------------------------------------------------

    fixtures = ROOT / "tests" / "codec" / "fixtures"
    rt_fixtures = ROOT / "tests" / "realtime" / "fixtures"

    def files(folder: Path, prefix: str) -> list[bytes]:
        return [p.read_bytes() for p in sorted(folder.glob(f"{prefix}*.bin"))]

    def header_seeds() -> list[bytes]:
        bodies = [b"\x01" + h.to_bytes()[9:] for h in (fixed, entropy)]
        return [fixed.to_bytes(), entropy.to_bytes(), *bodies, *files(fixtures, "header_")]

    def fixed_seeds() -> list[bytes]:
        return [b"\x00" + _join(packets(fixed)), b"\x00" + _join(files(fixtures, "packet_")),
                b"\x00" + _join(files(rt_fixtures, "motion_")), b"\x01" + _join(bundles(fixed))]

    def entropy_seeds() -> list[bytes]:
        good = packets(entropy, 30)
        return [b"\x00" + _join(good), b"\x00" + _join(good[3:] + good[:3]),
                b"\x00" + _join([good[0], good[2], good[1]]), b"\x01" + _join(bundles(entropy))]

    def bundles(header: StreamHeader) -> list[bytes]:
        frames = packets(header, 12)
        return [bundle(frames[i:i + 3]) for i in range(0, 12, 3)]

    def tok_seeds() -> list[bytes]:
        return [tok_bytes(fixed, packets(fixed), b"OggS-not-really-audio", [picture(ImageFormat.JPEG)]),
                tok_bytes(entropy, packets(entropy)), *files(fixtures, "tok_")]

    def control_seeds() -> list[bytes]:
        pic = picture(ImageFormat.JPEG)
        outbox = PictureOutbox()
        outbox.add(pic)
        chunks, t = [], 0.0
        while (m := outbox.next_message(t)) is not None or outbox.pending:
            if m is not None:
                chunks.append(m)
            t += 1.0
        timing = StageSums()
        timing.add_frame({"capture": 3.0, "queue": 1.0, "tracking": 20.0, "tokenizing": 4.0, "send": 0.5})
        return [_join([encode_message(Hello(fixed.to_bytes()))] + chunks + [encode_message(Timing.of(timing))]),
                _join(files(rt_fixtures, "control_"))]

    def signal_seeds() -> list[bytes]:
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        return [encode_signal(m).encode() for m in (Challenge(bytes(16)), Offer(sdp, bytes(32)),
                                                    Offer(sdp, bytes(32), "watch"), Answer(sdp, bytes(32)),
                                                    Reject("busy"))]

    def picture_seeds() -> list[bytes]:
        return [picture(f) for f in (ImageFormat.JPEG, ImageFormat.WEBP)]

    def image_seeds() -> list[bytes]:
        import cv2

        img = np.zeros((24, 24, 3), np.uint8)
        img[4:20, 6:18] = (40, 160, 220)
        out = []
        for ext, flags in ((".png", []), (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 40]), (".webp", [])):
            ok, buf = cv2.imencode(ext, img, flags)
            if ok:
                out.append(buf.tobytes())
        return out

    stream_errors: tuple[type[BaseException], ...] = (TalkcodecError,)
    targets = [
        Target("header", header, stream_errors, header_seeds),
        Target("motion_fixed", motion(fixed), stream_errors, fixed_seeds),
        Target("motion_entropy", motion(entropy), stream_errors, entropy_seeds),
        Target("tok", tok, stream_errors, tok_seeds),
        Target("control", control, stream_errors, control_seeds),
        Target("signaling", signal, stream_errors, signal_seeds),
        Target("picture", pictures, stream_errors, picture_seeds),
        Target("image", image, stream_errors, image_seeds),
    ]
    return {t.name: t for t in targets}


def check(target: Target, data: bytes) -> BaseException | None:
    """Runs one input; the exception that is a crash (not in ``target.allowed``), else None."""
    try:
        target.run(data)
    except target.allowed:
        return None
    except Exception as e:  # noqa: BLE001 - anything else is what fuzzing looks for
        return e
    return None


def describe(e: BaseException) -> str:
    return f"{type(e).__module__}.{type(e).__name__}: {e}"[:300]

