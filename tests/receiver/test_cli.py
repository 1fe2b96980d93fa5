"""talk-recv's one-line errors and exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from receiver.cli import main, parse_listen


def test_listen_parsing() -> None:
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    with pytest.raises(Exception):
        parse_listen("nocolon")


def test_missing_portrait(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["--token", "t", "--quiet", "--portrait", str(tmp_path / "none.jpg")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("talk-recv: ") and "\n" not in err


def test_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["--token", "t", "--quiet", "--device", "cpu", "--listen", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "cannot listen" in err and "\n" not in err


def test_a_turn_server_needs_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--token", "t", "--quiet", "--ice-server", "turn:127.0.0.1:3478", "--relay-only"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs --ice-user and --ice-password" in err and "\n" not in err
