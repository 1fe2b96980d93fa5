"""talk-send's one-line errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sender.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--token", "t", "--quiet", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_video(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "--video", str(tmp_path / "missing.mp4"))
    assert code == 2
    assert err.startswith("talk-send: ") and "no such file" in err and "\n" not in err


def test_not_a_video(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "a.mp4"
    f.write_bytes(b"\x00" * 100)
    code, err = run(capsys, "--video", str(f))
    assert code == 2 and "not a readable media file" in err and "\n" not in err


def test_missing_camera(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--camera", "97")
    assert code == 2 and "camera 97" in err and "\n" not in err


def test_no_receiver(capsys: pytest.CaptureFixture[str]) -> None:
    clip = Path(__file__).resolve().parents[2] / "samples" / "clip.mp4"
    code, err = run(capsys, "--connect", "ws://127.0.0.1:9", "--video", str(clip))
    assert code == 1 and "is talk-recv running" in err and "\n" not in err


def test_bad_netem(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--video", "x.mp4", "--netem-loss", "2")
    assert code == 2 and "loss" in err
