"""Ctrl-C at any moment ends a tool quietly: no traceback, exit 0 or 130 (the entry points in codec.launch)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.realtime.harness import free_port

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "clip.mp4"


def ctrl_c(entry: str, args: list[str], after_s: float) -> tuple[int, str, float]:
    """Starts a tool through its console-script entry point, sends SIGINT after ``after_s``; rc, output, exit time."""
    code = f"import sys; from codec.launch import {entry}; sys.argv[1:] = {args!r}; sys.exit({entry}())"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(after_s)
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, _ = p.communicate(timeout=120)
    return p.returncode, out, time.monotonic() - t0


def test_a_ctrl_c_inside_a_native_import_counts_as_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """MediaPipe's native init turns a Ctrl-C into ImportError("initialization failed") raised from it."""
    import types

    from codec import launch

    def main() -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setitem(sys.modules, "fake_tool", types.SimpleNamespace(main=main))
    assert launch._run("fake_tool") == 130
    assert launch.interrupted(ImportError("x")) is False

    def failing() -> int:
        raise ImportError("initialization failed")  # not a Ctrl-C: the traceback stays

    monkeypatch.setitem(sys.modules, "fake_tool", types.SimpleNamespace(main=failing))
    with pytest.raises(ImportError):
        launch._run("fake_tool")


@pytest.mark.parametrize("after_s", [0.3, 1.5, 5.0])
def test_receiver_ctrl_c_while_importing_starting_or_serving(after_s: float) -> None:
    rc, out, _ = ctrl_c("talk_recv", ["--token", "t", "--quiet", "--listen", f"127.0.0.1:{free_port()}"], after_s)
    assert rc in (0, 130) and "Traceback" not in out, out


def test_sender_ctrl_c_while_waiting_for_a_receiver() -> None:
    args = ["--token", "t", "--quiet", "--video", str(CLIP), "--connect", f"ws://127.0.0.1:{free_port()}",
            "--wait", "600"]
    rc, out, took = ctrl_c("talk_send", args, 8.0)
    assert rc in (0, 130) and "Traceback" not in out, out
    assert took < 60  # it stops waiting at once, not after --wait 600


def test_encode_ctrl_c_leaves_no_file(tmp_path: Path) -> None:
    """Ctrl-C during an encode leaves no half-written .tok and no temporary file.

    On a quiet machine the encode may be over before the Ctrl-C comes (exit 0), or the
    Ctrl-C may land while the interpreter is exiting, after the file was complete, when
    Python's own handler is gone (killed by SIGINT): either way the .tok must be whole.
    """
    from codec.container import read_tok

    out_tok = tmp_path / "v.tok"
    rc, out, _ = ctrl_c("talk_codec", ["encode", str(CLIP), "-o", str(out_tok)], 3.0)
    assert rc in (0, 130, -signal.SIGINT) and "Traceback" not in out, out
    left = sorted(p.name for p in tmp_path.iterdir())
    if rc == 130:
        assert left == []  # no half-written .tok, no temporary file
    else:
        assert left == ["v.tok"], left
        assert len(read_tok(out_tok).packets) > 0  # complete: it parses and holds the motion
