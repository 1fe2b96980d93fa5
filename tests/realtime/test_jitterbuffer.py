"""The jitter buffer as a pure state machine: time is passed in, nothing sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.jitterbuffer import JitterBuffer, PlayoutKind, PushResult, unwrap_seq

IV = 40  # ms between frames


def push_frames(jb: JitterBuffer[int], seqs: list[int], transit: float = 10.0, base_seq: int = 0) -> None:
    for s in seqs:
        ts = (s - base_seq) * IV
        jb.push(s % 65536, ts, s, arrival_ms=ts + transit)


def test_in_order_frames_play_fresh() -> None:
    jb: JitterBuffer[int] = JitterBuffer(target_delay_ms=30)
    push_frames(jb, list(range(5)))
    assert jb.playout_time(0) == pytest.approx(0 + 10 + 30)
    out = [jb.pop(i * IV) for i in range(5)]
    assert [o.kind for o in out] == [PlayoutKind.FRESH] * 5
    assert [o.frame.value for o in out if o.frame] == [0, 1, 2, 3, 4]
    assert jb.stats.loss == 0.0 and jb.stats.received == 5


def test_reordering_is_undone() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    for s in (0, 2, 1, 4, 3):
        jb.push(s, s * IV, s, arrival_ms=100 + s)
    assert [jb.pop(i * IV).frame.value for i in range(5)] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]


def test_missing_frame_is_interpolated_when_a_later_one_is_here() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    push_frames(jb, [0, 1, 3, 4])
    assert jb.pop(0).kind is PlayoutKind.FRESH
    assert jb.pop(IV).kind is PlayoutKind.FRESH
    p = jb.pop(2 * IV)
    assert p.kind is PlayoutKind.INTERPOLATED and p.concealed
    assert p.frame is not None and p.after is not None
    assert (p.frame.value, p.after.value, p.alpha) == (1, 3, pytest.approx(0.5))
    assert jb.pop(3 * IV).kind is PlayoutKind.FRESH
    assert jb.stats.expected == 5 and jb.stats.received == 4
    assert jb.stats.loss == pytest.approx(0.2)


def test_missing_frame_is_held_when_nothing_later_is_here() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    push_frames(jb, [0])
    jb.pop(0)
    p = jb.pop(IV)
    assert p.kind is PlayoutKind.HELD and p.frame is not None and p.frame.value == 0


def test_nothing_yet_is_empty() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    assert not jb.started
    assert jb.pop(0).kind is PlayoutKind.EMPTY
    with pytest.raises(RuntimeError):
        jb.playout_time(0)


def test_late_frame_is_dropped_and_counted() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    push_frames(jb, [0, 2])
    jb.pop(0)
    jb.pop(IV)  # frame 1 missing: interpolated
    assert jb.push(1, IV, 1, arrival_ms=500) is PushResult.LATE
    assert jb.stats.late == 1
    assert jb.pop(2 * IV).frame.value == 2  # type: ignore[union-attr]


def test_duplicates_are_dropped() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    assert jb.push(7, 0, 7, 10) is PushResult.ACCEPTED
    assert jb.push(7, 0, 7, 11) is PushResult.DUPLICATE
    jb.pop(0)
    assert jb.push(7, 0, 7, 12) is PushResult.DUPLICATE
    assert jb.stats.duplicates == 2 and jb.stats.received == 1


def test_sequence_wrap() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    seqs = list(range(65530, 65536 + 6))
    for i, s in enumerate(seqs):
        jb.push(s % 65536, i * IV, s, arrival_ms=i * IV + 5)
    assert jb.stats.expected == len(seqs) and jb.stats.loss == 0.0
    assert [jb.pop(i * IV).frame.value for i in range(len(seqs))] == seqs  # type: ignore[union-attr]


def test_wrap_with_reordering_across_the_boundary() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    order = [65534, 0, 65535, 1]
    for s in order:
        ext = s if s > 60000 else s + 65536
        jb.push(s, (ext - 65534) * IV, ext, arrival_ms=100)
    assert [jb.pop(i * IV).frame.value for i in range(4)] == [65534, 65535, 65536, 65537]  # type: ignore[union-attr]


@given(st.integers(0, 2**16 - 1), st.integers(-30000, 30000))
def test_unwrap_finds_the_nearest(ref: int, delta: int) -> None:
    ext_ref = ref + 10 * 65536
    assert unwrap_seq((ext_ref + delta) % 65536, ext_ref, 16) == ext_ref + delta


def test_far_timestamps_are_out_of_range() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    push_frames(jb, [0, 1])
    assert jb.push(2, 10**9, 2, arrival_ms=100) is PushResult.OUT_OF_RANGE
    assert jb.stats.out_of_range == 1
    assert jb.playout_time(0) == pytest.approx(10 + jb.target_delay_ms)  # the base is untouched


def test_capacity_bounds_memory() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=8)
    push_frames(jb, list(range(100)))
    assert len(jb) == 8


def test_delay_follows_the_spread_of_transits() -> None:
    jb: JitterBuffer[int] = JitterBuffer(target_delay_ms=20, max_delay_ms=200)
    for s in range(50):  # every other frame 60 ms slower
        ts = s * IV
        jb.push(s, ts, s, arrival_ms=ts + 10 + (60 if s % 2 else 0))
    assert jb.delay_ms == pytest.approx(60)
    jb2: JitterBuffer[int] = JitterBuffer(target_delay_ms=20, max_delay_ms=100)
    for s in range(50):
        ts = s * IV
        jb2.push(s, ts, s, arrival_ms=ts + 10 + (500 if s % 2 else 0))
    assert jb2.delay_ms == 100  # capped


def test_base_transit_tracks_the_fastest_path() -> None:
    jb: JitterBuffer[int] = JitterBuffer(target_delay_ms=0)
    jb.push(0, 0, 0, arrival_ms=50)
    jb.push(1, IV, 1, arrival_ms=IV + 20)
    assert jb.playout_time(100) >= 100 + 20


@given(st.permutations(list(range(20))), st.sets(st.integers(0, 19), max_size=6))
def test_any_arrival_order_and_loss_plays_in_order(order: list[int], lost: set[int]) -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    for s in order:
        if s not in lost:
            jb.push(s, s * IV, s, arrival_ms=0)
    shown = []
    for i in range(20):
        p = jb.pop(i * IV)
        if p.kind is PlayoutKind.FRESH:
            assert p.frame is not None
            shown.append(p.frame.value)
        else:
            assert i in lost or p.kind is PlayoutKind.EMPTY
    assert shown == [s for s in range(20) if s not in lost]


def test_peek_after_shows_the_next_frame_and_keeps_it() -> None:
    jb: JitterBuffer[int] = JitterBuffer()
    push_frames(jb, [0, 1, 3])
    assert jb.pop(0).frame.value == 0  # type: ignore[union-attr]
    nxt = jb.peek_after(0)
    assert nxt is not None and nxt.value == 1
    assert jb.pop(IV).frame.value == 1  # type: ignore[union-attr]
    nxt = jb.peek_after(IV)
    assert nxt is not None and nxt.value == 3  # across the gap: the caller decides whether it is near enough
    assert jb.pop(3 * IV).frame.value == 3  # type: ignore[union-attr]
    assert jb.peek_after(3 * IV) is None
