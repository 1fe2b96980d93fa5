"""The wire model of talk-bench and the best-quality frontier of rd.png."""

from __future__ import annotations

import numpy as np

from bench.report import frontier
from bench.wire import DATA_CHANNEL_BYTES, RTP_BYTES, rtp_video_wire_kbps, talkcodec_wire_kbps
from codec.bitstream import ReferenceInfo, StreamHeader
from codec.stream import StreamWriter


def test_a_data_channel_message_costs_93_bytes_more_as_measured() -> None:
    # bench.measure.wire (and tests/realtime/test_wire.py) see a 60-byte message leave as a 153-byte datagram.
    assert DATA_CHANNEL_BYTES == 153 - 60


def test_talkcodec_on_the_wire_with_and_without_bundling() -> None:
    ref = ReferenceInfo(0, (0.0, 0.0, 0.0), (0.0,) * 4, (0.0, 0.0), 0.0, (512, 512))
    w = StreamWriter(StreamHeader(tokenizer_hash="ab", reference=ref))
    tokens = np.arange(48).reshape(4, 12) % 625
    packets = [w.encode(tokens, 40 * t) for t in range(75)]  # 3 s of 4-layer fixed frames
    assert len(packets[0]) == 5 + 56
    one = talkcodec_wire_kbps(packets, 3.0)
    assert one == (61 + 93) * 25 * 8 / 1000  # 30.8 kbps for 11.2 of payload
    three = talkcodec_wire_kbps(packets, 3.0, 3)
    # One message per three frames: 4 + 3 * 57 + 2 * 1 bytes and one set of transport headers.
    assert three == (4 + 3 * 57 + 2 + 93) * 25 / 3 * 8 / 1000


def test_video_frames_go_in_rtp_packets_of_1200_bytes() -> None:
    assert rtp_video_wire_kbps([100, 2500], 1.0) == (100 + RTP_BYTES + 2500 + 3 * RTP_BYTES) * 8 / 1000


def test_frontier_keeps_only_points_better_than_every_cheaper_one() -> None:
    pts = [(10.0, 0.80), (5.0, 0.70), (20.0, 0.75), (40.0, 0.90), (30.0, 0.85)]
    assert frontier(pts, higher_is_better=True) == [(5.0, 0.70), (10.0, 0.80), (30.0, 0.85), (40.0, 0.90)]
    assert frontier([(1.0, 0.05), (2.0, 0.06), (3.0, 0.01)], higher_is_better=False) == [(1.0, 0.05), (3.0, 0.01)]
