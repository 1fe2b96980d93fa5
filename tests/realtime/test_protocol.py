"""Control messages: round trips, the committed fixtures, and every kind of broken input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.bitstream import StreamHeader
from realtime.protocol import (
    CONTROL_VERSION,
    MAX_MESSAGE_BYTES,
    Accept,
    Bye,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Refuse,
    Report,
    SenderStats,
    Start,
    Timing,
    encode_message,
    parse_message,
)

FIXTURES = Path(__file__).parent / "fixtures"
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)

messages = st.one_of(
    st.builds(Hello, st.binary(min_size=1, max_size=1000)),
    st.just(Accept()),
    st.builds(Refuse, st.text(max_size=100)),
    st.builds(Start, u64),
    st.builds(Ping, u64),
    st.builds(Pong, u64, u64, u64),
    st.builds(Report, u32, u32, u32),
    st.builds(SenderStats, u32, u64, u64, st.integers(0, 255)),
    st.builds(Timing, st.integers(0, 0xFFFF), st.tuples(*[u32] * 5), st.tuples(*[st.integers(0, 0xFFFF)] * 5)),
    st.builds(Bye, st.text(max_size=100)),
)


@given(messages)
def test_round_trip(msg: object) -> None:
    assert parse_message(encode_message(msg)) == msg  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    try:
        parse_message(data)
    except ProtocolError:
        pass


@given(messages, st.data())
def test_truncation_is_always_detected(msg: object, data: st.DataObject) -> None:
    raw = encode_message(msg)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ProtocolError):
        parse_message(raw[:cut])


def test_valid_fixtures() -> None:
    hello = parse_message((FIXTURES / "control_hello.bin").read_bytes())
    assert isinstance(hello, Hello)
    assert StreamHeader.from_bytes(hello.header).layers == 4
    assert parse_message((FIXTURES / "control_accept.bin").read_bytes()) == Accept()
    assert parse_message((FIXTURES / "control_ping.bin").read_bytes()) == Ping(1_700_000_000_123_456)
    assert parse_message((FIXTURES / "control_pong.bin").read_bytes()) == Pong(1, 2, 3)
    report = parse_message((FIXTURES / "control_report.bin").read_bytes())
    assert report == Report(25, 23, 1) and isinstance(report, Report)
    assert report.loss == pytest.approx(2 / 25)
    assert parse_message((FIXTURES / "control_sender_stats.bin").read_bytes()) == SenderStats(250, 15750, 30000, 4)
    assert parse_message((FIXTURES / "control_bye.bin").read_bytes()) == Bye("sender finished")
    assert parse_message((FIXTURES / "control_start.bin").read_bytes()) == Start(1_700_000_000_000_000)
    assert isinstance(parse_message((FIXTURES / "control_refuse.bin").read_bytes()), Refuse)


@pytest.mark.parametrize("name, words", [
    ("control_truncated", "truncated"),
    ("control_short_body", "header says"),
    ("control_trailing", "header says"),
    ("control_bad_magic", "not a talkcodec"),
    ("control_bad_version", "version 2"),
    ("control_unknown_type", "unknown control message type"),
    ("control_ping_body_size", "PING body is 4 bytes"),
    ("control_accept_with_body", "ACCEPT body"),
    ("control_oversized", "exceeds"),
    ("control_empty_hello", "no stream header"),
])
def test_broken_fixtures(name: str, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_message((FIXTURES / f"{name}.bin").read_bytes())


def test_text_is_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        parse_message("hello")


def test_version_message_says_what_to_do() -> None:
    raw = bytearray(encode_message(Ping(1)))
    raw[2] = CONTROL_VERSION + 1
    with pytest.raises(ProtocolError, match="same talkcodec release"):
        parse_message(bytes(raw))


def test_encode_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_message(Hello(b"x" * MAX_MESSAGE_BYTES))
    with pytest.raises(Exception):
        encode_message(Ping(-1))


def test_report_loss_bounds() -> None:
    assert Report(0, 0, 0).loss == 0.0
    assert Report(10, 12, 0).loss == 0.0  # duplicates cannot make loss negative
    assert Report(10, 0, 0).loss == 1.0


def test_timing_carries_the_senders_stage_sums() -> None:
    from realtime.timing import SENDER_STAGES, StageSums

    sums = StageSums()
    sums.add_frame({"capture": 1.0, "queue": 2.5, "tracking": 9.0, "tokenizing": 2.0, "send": 0.4})
    sums.add_frame({"capture": 3.0, "queue": 0.5, "tracking": 11.0, "tokenizing": 2.0, "send": 99999.0})
    msg = parse_message(encode_message(Timing.of(sums)))
    assert isinstance(msg, Timing)
    heard = StageSums()
    msg.add_to(heard)
    means = heard.means()
    assert heard.frames == 2 and means["tracking"] == 10.0 and means["queue"] == 1.5
    assert heard.summary()["send"]["max"] == 6553.5  # clamped to the field, not an error
    assert list(heard.summary()) == list(SENDER_STAGES)
