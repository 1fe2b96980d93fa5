"""Writes the binary fixtures of tests/realtime/fixtures (run once; the files are committed).

Valid messages come from the encoders; broken ones are valid ones damaged
the way a faulty or hostile peer would: truncated, padded, another version,
an unknown type, a wrong magic, an inconsistent length.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from codec.bitstream import ReferenceInfo, StreamHeader
from codec.stream import StreamWriter
from realtime.protocol import (
    Accept,
    Bye,
    Hello,
    Message,
    Ping,
    Pong,
    Refuse,
    Report,
    SenderStats,
    Start,
    encode_message,
)

HERE = Path(__file__).parent / "fixtures"


def header() -> StreamHeader:
    ref = ReferenceInfo(frame_index=0, rotation=(0.0, 0.1, 0.0), gaze=(0.0, 0.0, 0.0, 0.0),
                        blink=(0.3, 0.3), mouth_opening=0.05, image_size=(512, 512))
    return StreamHeader(tokenizer_hash="0123456789abcdef", reference=ref)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    h = header()
    valid: dict[str, Message] = {
        "control_hello": Hello(h.to_bytes()),
        "control_accept": Accept(),
        "control_refuse": Refuse("sender's tokenizer weights differ"),
        "control_start": Start(1_700_000_000_000_000),
        "control_ping": Ping(1_700_000_000_123_456),
        "control_pong": Pong(1, 2, 3),
        "control_report": Report(25, 23, 1),
        "control_sender_stats": SenderStats(250, 15750, 30000, 4),
        "control_bye": Bye("sender finished"),
    }
    for name, msg in valid.items():
        (HERE / f"{name}.bin").write_bytes(encode_message(msg))
    ping = encode_message(Ping(42))
    broken = {
        "control_truncated": ping[:5],
        "control_short_body": ping[:-1],  # length field says 8, 7 follow
        "control_trailing": ping + b"\x00",
        "control_bad_magic": b"XX" + ping[2:],
        "control_bad_version": ping[:2] + b"\x02" + ping[3:],
        "control_unknown_type": ping[:3] + b"\x7f" + ping[4:],
        "control_ping_body_size": ping[:4] + struct.pack(">H", 4) + b"\x00" * 4,
        "control_accept_with_body": encode_message(Accept())[:4] + struct.pack(">H", 1) + b"\x00",
        "control_oversized": ping[:4] + struct.pack(">H", 5000) + b"\x00" * 5000,
        "control_empty_hello": encode_message(Ping(0))[:3] + b"\x01" + struct.pack(">H", 0),
    }
    for name, data in broken.items():
        (HERE / f"{name}.bin").write_bytes(data)

    w = StreamWriter(h)
    tokens = np.arange(48).reshape(4, 12) * 13 % 625
    (HERE / "motion_4layers.bin").write_bytes(w.encode(tokens, 40))
    (HERE / "motion_1layer.bin").write_bytes(w.encode(tokens[:1], 80))
    no_face = w.encode(None, 120)
    (HERE / "motion_no_face.bin").write_bytes(no_face)
    good = w.encode(tokens, 160)
    (HERE / "motion_truncated.bin").write_bytes(good[:30])
    # Byte-format version 2: seq u16 | time u16 | flags u8 | payload (codec.bitstream).
    (HERE / "motion_header_only_short.bin").write_bytes(good[:4])
    (HERE / "motion_oversized.bin").write_bytes(good + b"\x00" * 2000)
    (HERE / "motion_reserved_flags.bin").write_bytes(good[:4] + bytes([good[4] | 0x80]) + good[5:])
    (HERE / "motion_payload_out_of_range.bin").write_bytes(good[:5] + b"\xff" * (len(good) - 5))


if __name__ == "__main__":
    main()
