"""Pictures on the reliable channel (realtime.pictures): chunking, pacing, reassembly, and hostile input."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.picture import MAX_PICTURE_BYTES
from realtime.netem import LinkShaper
from realtime.pictures import (
    BEGIN_BYTES,
    CHUNK_HEADER_BYTES,
    MAX_CALL_BYTES,
    PacingConfig,
    PictureInbox,
    PictureOutbox,
)
from realtime.protocol import (
    MAX_MESSAGE_BYTES,
    MessageType,
    NoPicture,
    NoPictureReason,
    PictureBegin,
    PictureData,
    ProtocolError,
    encode_message,
    parse_message,
)


def drain(outbox: PictureOutbox, step_s: float = 0.04, limit_s: float = 10_000.0) -> list[bytes]:
    """Every message the outbox releases, asking once per ``step_s``."""
    out, t = [], 0.0
    while outbox.pending or outbox.wait_s(t) is not None:
        raw = outbox.next_message(t)
        if raw is not None:
            out.append(raw)
        t += step_s
        assert t < limit_s, "the outbox stalled"
    return out


def deliver(messages: list[bytes], inbox: PictureInbox) -> list[bytes]:
    done = []
    for raw in messages:
        msg = parse_message(raw)
        if isinstance(msg, PictureBegin):
            inbox.begin(msg)
        else:
            assert isinstance(msg, PictureData)
            whole = inbox.data(msg)
            if whole is not None:
                done.append(whole)
    return done


# -- the messages ---------------------------------------------------------------------------------


def test_picture_messages_round_trip() -> None:
    for msg in (PictureBegin(7, 1234, hashlib.sha256(b"x").digest()), PictureData(65535, 2**32 - 1, b"\x00" * 4084),
                NoPicture(NoPictureReason.PRIVATE), NoPicture(NoPictureReason.NO_CAMERA)):
        raw = encode_message(msg)
        assert len(raw) <= MAX_MESSAGE_BYTES
        assert parse_message(raw) == msg


def framed(kind: MessageType, body: bytes) -> bytes:
    """A control message with a consistent prefix around any body."""
    return struct.pack(">2sBBH", b"TK", 1, int(kind), len(body)) + body


@pytest.mark.parametrize("raw, words", [
    (framed(MessageType.PICTURE_BEGIN, bytes(37)), "PICTURE_BEGIN body is 37 bytes, expected 38"),
    (framed(MessageType.PICTURE_BEGIN, bytes(39)), "PICTURE_BEGIN body is 39 bytes"),
    (framed(MessageType.PICTURE_DATA, bytes(6)), "PICTURE_DATA body is 6 bytes"),
    (framed(MessageType.PICTURE_DATA, b""), "PICTURE_DATA body is 0 bytes"),
    (framed(MessageType.NO_PICTURE, b"\x09"), "unknown reason 9"),
    (framed(MessageType.NO_PICTURE, b""), "NO_PICTURE body is 0 bytes"),
    (framed(MessageType.PICTURE_DATA, bytes(5000)), "exceeds"),
])
def test_broken_picture_messages_are_refused(raw: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_message(raw)


def test_messages_that_do_not_fit_are_not_encoded() -> None:
    with pytest.raises(ValueError):
        encode_message(PictureBegin(1, 10, b"short"))
    with pytest.raises(ValueError):
        encode_message(PictureData(1, 0, b""))
    with pytest.raises(ValueError):
        encode_message(PictureData(1, 0, b"x" * 5000))


# -- chunking and reassembly ----------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pictures=st.lists(st.binary(min_size=1, max_size=6000), min_size=1, max_size=4),
       kbps=st.sampled_from([4.0, 16.0, 64.0, 400.0]), step=st.sampled_from([0.01, 0.04, 0.13]))
def test_any_pictures_arrive_whole_and_in_priority_order(pictures: list[bytes], kbps: float, step: float) -> None:
    outbox = PictureOutbox(PacingConfig(kbps))
    priorities = [1 if i else 0 for i in range(len(pictures))]  # the first is the reference
    for data, prio in zip(reversed(pictures), reversed(priorities)):  # queued in any order
        outbox.add(data, prio)
    messages = drain(outbox, step)
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    got = deliver(messages, PictureInbox())
    assert got[0] == pictures[0]  # the reference first
    assert sorted(got) == sorted(pictures)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 20_000), kbps=st.sampled_from([8.0, 16.0, 32.0]), step=st.sampled_from([0.02, 0.04, 0.1]))
def test_the_pacing_keeps_to_its_rate(size: int, kbps: float, step: float) -> None:
    cfg = PacingConfig(kbps)
    outbox = PictureOutbox(cfg)
    outbox.add(b"p" * size)
    t, sent = 0.0, 0
    while outbox.pending or outbox.wait_s(t) is not None:
        raw = outbox.next_message(t)
        if raw is not None:
            sent += len(raw)
            # Never more than the rate since the start plus the bucket's two frames' worth.
            assert sent <= kbps * 1000 / 8 * t + cfg.depth + 1e-6
            assert len(raw) <= cfg.message_bytes
        t += step
    # And not much less when asked once a frame or more often (as behind 25 fps of motion packets): the whole
    # picture took about its bytes over the rate. Asked less often, a message carries one frame's worth at most.
    if step <= 0.04:
        overhead = BEGIN_BYTES + CHUNK_HEADER_BYTES * (size // 20 + 2)
        assert t <= (size + overhead) / (kbps * 1000 / 8) + 2 * step + 0.2


def test_a_chunk_fits_beside_a_motion_packet_on_a_32_kbps_link() -> None:
    # One chunk per 40 ms frame at 16 kbps: with a 63-byte motion packet, within the frame's 160 bytes.
    outbox = PictureOutbox(PacingConfig(16.0), now_s=0.0)
    outbox.add(b"q" * 5000)
    outbox.next_message(0.0)  # the announcement
    for k in range(1, 40):
        raw = outbox.next_message(k * 0.04)
        assert raw is not None
        if k > 2:  # past the full bucket of the start
            assert len(raw) + 63 <= 32_000 / 8 * 0.04


def test_wait_s_says_when_the_next_message_may_go() -> None:
    outbox = PictureOutbox(PacingConfig(8.0), now_s=0.0)
    assert outbox.wait_s(0.0) is None
    outbox.add(b"z" * 1000)
    while outbox.next_message(0.0) is not None:
        pass
    w = outbox.wait_s(0.0)
    assert w is not None and w > 0
    assert outbox.next_message(w * 0.5) is None
    assert outbox.next_message(w + 1e-6) is not None


def test_outbox_refuses_what_no_receiver_takes() -> None:
    with pytest.raises(ValueError):
        PictureOutbox().add(b"")
    with pytest.raises(ValueError):
        PictureOutbox().add(b"x" * (MAX_PICTURE_BYTES + 1))
    with pytest.raises(ValueError):
        PacingConfig(0.0)


# -- a hostile sender -----------------------------------------------------------------------------


def test_inbox_refuses_what_breaks_its_bounds() -> None:
    inbox = PictureInbox()
    with pytest.raises(ProtocolError, match="at most"):
        inbox.begin(PictureBegin(1, MAX_PICTURE_BYTES + 1, bytes(32)))
    with pytest.raises(ProtocolError, match="at most"):
        inbox.begin(PictureBegin(1, 0, bytes(32)))
    inbox.begin(PictureBegin(1, 100, bytes(32)))
    inbox.begin(PictureBegin(2, 100, bytes(32)))
    with pytest.raises(ProtocolError, match="in progress"):
        inbox.begin(PictureBegin(3, 100, bytes(32)))
    with pytest.raises(ProtocolError, match="announced twice"):
        inbox.begin(PictureBegin(2, 100, bytes(32)))
    assert inbox.in_progress == 1  # the twice-announced one is dropped too
    with pytest.raises(ProtocolError, match="not announced"):
        inbox.data(PictureData(9, 0, b"x"))
    with pytest.raises(ProtocolError, match="expected 0 of 100"):
        inbox.data(PictureData(1, 5, b"x"))  # out of order: the picture is dropped
    with pytest.raises(ProtocolError, match="not announced"):
        inbox.data(PictureData(1, 0, b"x"))


def test_inbox_refuses_a_chunk_past_the_end_and_a_wrong_hash() -> None:
    inbox = PictureInbox()
    inbox.begin(PictureBegin(1, 4, hashlib.sha256(b"abcd").digest()))
    with pytest.raises(ProtocolError, match="expected 0 of 4"):
        inbox.data(PictureData(1, 0, b"abcde"))
    inbox.begin(PictureBegin(2, 4, hashlib.sha256(b"abcd").digest()))
    assert inbox.data(PictureData(2, 0, b"ab")) is None
    with pytest.raises(ProtocolError, match="SHA-256"):
        inbox.data(PictureData(2, 2, b"cX"))
    inbox.begin(PictureBegin(3, 4, hashlib.sha256(b"abcd").digest()))
    assert inbox.data(PictureData(3, 0, b"abcd")) == b"abcd"
    assert inbox.completed == 1 and inbox.in_progress == 0


def test_inbox_refuses_more_than_a_call_may_send() -> None:
    inbox = PictureInbox(max_total=MAX_CALL_BYTES)
    sent = 0
    pid = 0
    with pytest.raises(ProtocolError, match="in one call"):
        while True:
            data = bytes([pid % 256]) * MAX_PICTURE_BYTES
            inbox.begin(PictureBegin(pid, len(data), hashlib.sha256(data).digest()))
            assert inbox.data(PictureData(pid, 0, data[:4000])) is None
            for off in range(4000, len(data), 4000):
                inbox.data(PictureData(pid, off, data[off:off + 4000]))
            sent += len(data)
            pid += 1
    assert sent <= MAX_CALL_BYTES


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.builds(PictureBegin, st.integers(0, 3), st.integers(0, 2 * MAX_PICTURE_BYTES), st.binary(min_size=32,
                                                                                              max_size=32)),
    st.builds(PictureData, st.integers(0, 3), st.integers(0, 70_000), st.binary(min_size=1, max_size=4000)),
), max_size=60))
def test_any_message_sequence_only_raises_protocol_errors_and_stays_bounded(msgs: list[object]) -> None:
    inbox = PictureInbox()
    for msg in msgs:
        try:
            if isinstance(msg, PictureBegin):
                inbox.begin(msg)
            else:
                assert isinstance(msg, PictureData)
                inbox.data(msg)
        except ProtocolError:
            pass
        held = sum(len(p.data) for p in inbox._pending.values())
        assert inbox.in_progress <= 2 and held <= 2 * MAX_PICTURE_BYTES
        assert inbox.bytes_received <= MAX_CALL_BYTES


# -- the simulated link ---------------------------------------------------------------------------


def test_link_shaper_queues_messages_first_in_first_out() -> None:
    link = LinkShaper(32.0)  # 4000 bytes/s
    assert link.delay_s(40, 0.0) == pytest.approx(0.010)
    assert link.delay_s(40, 0.0) == pytest.approx(0.020)  # waits for the first
    assert link.delay_s(40, 1.0) == pytest.approx(0.010)  # the link was idle again
    padded = LinkShaper(32.0, overhead_bytes=60)
    assert padded.delay_s(40, 0.0) == pytest.approx(0.025)
    with pytest.raises(ValueError):
        LinkShaper(0.0)
