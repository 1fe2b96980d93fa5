"""talk-send's one-line errors and exit codes."""

from __future__ import annotations

import subprocess
import sys
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


def test_audio_only_needs_speech(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--audio-only")
    assert code == 2 and "--audio-only needs speech" in err and "\n" not in err


def test_audio_only_with_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "--audio-only", "--audio", str(tmp_path / "missing.wav"))
    assert code == 2 and "no such file" in err and "\n" not in err


def test_audio_only_with_a_file_that_is_not_audio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "speech.wav"
    f.write_bytes(b"\x00" * 100)
    code, err = run(capsys, "--audio-only", "--audio", str(f))
    assert code == 2 and "not a readable media file" in err and "\n" not in err
    image = Path(__file__).resolve().parents[2] / "samples" / "portrait.jpg"
    code, err = run(capsys, "--audio-only", "--audio", str(image))
    assert code == 2 and "has no audio stream" in err and "\n" not in err


def test_audio_only_without_a_microphone(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as on a server without PortAudio
    code, err = run(capsys, "--audio-only", "--mic")
    assert code == 2 and err.startswith("talk-send: microphone") and "\n" not in err


def test_sounddevice_is_imported_only_for_a_microphone() -> None:
    code = "import sys, sender.cli, sender.speech; print('sounddevice' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("flags, words", [
    (["--video", "x.mp4", "--portrait", "me.jpg"], "--portrait goes with --audio-only"),
    (["--audio-only", "--audio", "x.wav", "--portrait", "me.jpg", "--no-portrait"], "contradict"),
    (["--video", "x.mp4", "--picture-kbps", "0"], "--picture-kbps"),
    (["--video", "x.mp4", "--link-kbps", "-3"], "--link-kbps"),
])
def test_picture_flags_that_do_not_go_together(capsys: pytest.CaptureFixture[str], flags: list[str],
                                               words: str) -> None:
    code, err = run(capsys, *flags)
    assert code == 2 and words in err and "\n" not in err


def test_audio_only_with_a_photo_without_a_face(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import numpy as np

    from tests.realtime.harness import speech_wav

    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    code, err = run(capsys, "--audio-only", "--audio", str(speech_wav(tmp_path)), "--portrait", str(blank),
                    "--connect", "ws://127.0.0.1:9")
    assert code == 2 and "no face" in err and "\n" not in err


@pytest.mark.parametrize("flags,message", [
    (["--audio-kbps", "4"], "--audio-kbps: must be in [6, 32] kbps"),
    (["--max-wire-kbps", "0"], "--max-wire-kbps must be positive"),
    (["--ice-server", "http://x"], "is not a stun:HOST"),
    (["--ice-server", "turn:127.0.0.1:3478"], "needs --ice-user and --ice-password"),
    (["--relay-only"], "--relay-only needs a TURN server"),
])
def test_bad_wire_and_ice_settings(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    code, err = run(capsys, "--video", "x.mp4", *flags)
    assert code == 2 and message in err and "\n" not in err


# --------------------------------------------------------------------------- bad input (issue 14)

CLIP = Path(__file__).resolve().parents[2] / "samples" / "clip.mp4"


@pytest.mark.parametrize("args,message", [
    (["--max-kbps", "0"], "--max-kbps: must be in ["),
    (["--max-kbps", "inf"], "--max-kbps: expected a finite number"),
    (["--audio-kbps", "100000"], "--audio-kbps: must be in [6, 32] kbps"),
    (["--audio-kbps", "0"], "--audio-kbps: must be in [6, 32] kbps"),
    (["--duration", "0"], "--duration: must be in (0, 86400] seconds"),
    (["--duration", "-2"], "--duration: must be in (0, 86400] seconds"),
    (["--wait", "-5"], "--wait: must be in [0, 86400] seconds"),
    (["--netem-jitter-ms", "nan"], "--netem-jitter-ms: expected a finite number"),
    (["--netem-outage", "5:1"], "START must come before END"),
    (["--seed", "4"], "--seed applies to --audio-only"),
    (["--refine-steps", "-1"], "--refine-steps: must be an integer in 0..1000"),
    (["--stats-json", "nodir/s.json"], "--stats-json nodir/s.json: folder nodir does not exist"),
    (["--stats-json", str(CLIP)], "is the same file as --video"),
])
def test_bad_arguments_are_refused_before_the_call(capsys: pytest.CaptureFixture[str], args: list[str],
                                                   message: str) -> None:
    code, err = run(capsys, "--connect", "ws://127.0.0.1:9", "--video", str(CLIP), *args)
    assert code == 2 and message in err and "\n" not in err, err


def test_an_empty_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--token", "", "--video", str(CLIP)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--token: must not be empty" in err and "\n" not in err
