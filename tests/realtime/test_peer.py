"""The control link's heartbeat: a stall of this process is not the peer's silence."""

from __future__ import annotations

import pytest

from realtime.peer import STALL_MS, stall_ms


def test_a_punctual_or_slightly_late_wake_up_is_no_stall() -> None:
    assert stall_ms(500.0, 500.0) == 0.0
    assert stall_ms(500.0 + STALL_MS, 500.0) == 0.0


def test_oversleeping_counts_as_this_process_stalling() -> None:
    assert stall_ms(4500.0, 500.0) == 4000.0


class _Channel:
    readyState = "connecting"

    def on(self, event: str, handler: object = None) -> object:
        return handler if handler is not None else (lambda f: f)


class _Pc:
    def createDataChannel(self, label: str, **kwargs: object) -> _Channel:  # noqa: N802 (aiortc's name)
        return _Channel()

    def on(self, event: str, handler: object = None) -> object:
        return handler if handler is not None else (lambda f: f)


def test_a_silent_peer_is_said_at_once_and_given_up_only_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer silent for PEER_SILENT_S is warned about and counted; the call ends only after PEER_TIMEOUT_S."""
    import realtime.peer as peer

    now = [1000.0]
    monkeypatch.setattr(peer, "monotonic_ms", lambda: now[0])
    link = peer.PeerLink(_Pc(), delayed_sack=False)
    assert link.timeout_s == peer.PEER_TIMEOUT_S > peer.PEER_SILENT_S
    now[0] += (peer.PEER_SILENT_S - 0.5) * 1000
    assert link._check_silence() is False and link.silences == 0
    now[0] += 1000  # silent past PEER_SILENT_S: said, counted, not ended
    assert link._check_silence() is False and link.silences == 1
    now[0] += 2000
    assert link._check_silence() is False and link.silences == 1  # the same silence, counted once
    link._heard()  # the peer is back
    assert link.silence_report() == {"count": 1, "longest_s": round(peer.PEER_SILENT_S + 2.5, 1)}
    now[0] += (peer.PEER_TIMEOUT_S - 1) * 1000  # a second, longer silence, still within the timeout
    assert link._check_silence() is False and link.silences == 2
    now[0] += 2000
    assert link._check_silence() is True  # gone
