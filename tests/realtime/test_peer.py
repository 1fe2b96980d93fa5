"""The control link's heartbeat: a stall of this process is not the peer's silence."""

from __future__ import annotations

from realtime.peer import STALL_MS, stall_ms


def test_a_punctual_or_slightly_late_wake_up_is_no_stall() -> None:
    assert stall_ms(500.0, 500.0) == 0.0
    assert stall_ms(500.0 + STALL_MS, 500.0) == 0.0


def test_oversleeping_counts_as_this_process_stalling() -> None:
    assert stall_ms(4500.0, 500.0) == 4000.0
