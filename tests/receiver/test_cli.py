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


# --------------------------------------------------------------------------- bad input (issue 14)


@pytest.mark.parametrize("args,message", [
    (["--size", "0"], "--size: must be a multiple of 8 in 64..2048"),
    (["--size", "513"], "--size: must be a multiple of 8 in 64..2048"),
    (["--device", "foo"], "--device: must be auto, cpu, cuda"),
    (["--jitter-ms", "-5"], "--jitter-ms: must be in [0, 5000] ms"),
    (["--duration", "0"], "--duration: must be in (0, 86400] seconds"),
    (["--duration", "nan"], "--duration: expected a finite number"),
    (["--seed", "3"], "--seed applies to --animate-from-audio"),
    (["--renderer", "foo"], "invalid choice: 'foo'"),
    (["--stats-json", "nodir/r.json"], "--stats-json nodir/r.json: folder nodir does not exist"),
    (["--record", "call.png"], "--record call.png: a video's name must end in .mp4"),
    (["--record", "nodir/call.mp4"], "folder nodir does not exist"),
])
def test_bad_arguments_are_refused_before_loading(capsys: pytest.CaptureFixture[str], args: list[str],
                                                  message: str) -> None:
    code = main(["--token", "t", "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err


def test_the_recording_may_not_be_the_portrait(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    video = tmp_path / "me.mp4"
    video.write_bytes(b"keep me")
    code = main(["--token", "t", "--quiet", "--portrait", str(video), "--record", str(video)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "same file as --portrait" in err and video.read_bytes() == b"keep me"


def test_renderer_choices_match_the_renderers() -> None:
    from codec.render.pipeline import RENDERERS
    from receiver.cli import RENDERER_NAMES

    assert tuple(RENDERER_NAMES) == tuple(RENDERERS)
