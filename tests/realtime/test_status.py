"""The live status line: rewritten in place on a terminal, throttled into a pipe."""

from __future__ import annotations

import io

from realtime.status import StatusLine, format_status, percentiles


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_line_is_rewritten_in_place() -> None:
    out = Tty()
    s = StatusLine(out)
    s.update("a")
    s.update("b")
    s.message("event")
    assert out.getvalue() == "\ra\x1b[K\rb\x1b[K\r\x1b[Kevent\n"


def test_pipe_gets_a_line_now_and_then() -> None:
    out = io.StringIO()
    s = StatusLine(out)
    for i in range(100):
        s.update(f"status {i}")
    assert out.getvalue() == "status 0\n"


def test_quiet_shows_only_events() -> None:
    out = Tty()
    s = StatusLine(out, enabled=False)
    s.update("x")
    s.message("event")
    assert out.getvalue() == "event\n"


def test_format() -> None:
    line = format_status(25.0, 12.6, 3.2, 0.1, 96.0, "4 layers")
    assert line == "25.0 fps |  12.6 kbps | RTT   3 ms | loss 10.0% | latency  96 ms | 4 layers"
    assert "RTT  -- ms" in format_status(0, 0, None, 0)


def test_percentiles() -> None:
    p = percentiles([float(x) for x in range(1, 101)])
    assert p["p50"] == 50.5 and p["p95"] == 95.0 and p["n"] == 100
