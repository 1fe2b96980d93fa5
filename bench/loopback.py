"""An end-to-end call over loopback: the real ``talk-send`` and ``talk-recv``, timed.

``talk-bench --latency`` runs one call per bench run: ``talk-recv`` renders
live (as it does when someone watches: here a viewer page is served, no
browser needs to connect), ``talk-send --video CLIP`` plays a clip at real-time
pace, and both write their statistics at exit. Latency is from the frame's
capture on the sender to its rendered frame on the receiver (both processes
stamp frames with the same wall clock; over loopback it is the same clock),
and to its playout (decoded, out of the jitter buffer, before rendering).

``talk-recv`` is given no portrait: it renders the caller's own picture, sent
at the call's start (a placeholder before it arrives); the result says when
the caller's face was first on screen and what the pictures cost.

    python -m bench.loopback CLIP [--seconds 10] [--layers 4] [--link-kbps 32]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codec.errors import MediaError, TalkcodecError

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CallConfig:
    """One loopback call.

    Attributes:
        seconds: how long the sender plays the clip (it loops a shorter one).
        layers: residual layers the sender may use.
        device: the receiver's render device.
        renderer: the receiver's renderer (``warp`` or ``neural``).
        start_timeout_s: how long the receiver may take to start listening.
        portrait: a portrait for the receiver (avatar mode), or None for the caller's own picture.
        sender_args: more ``talk-send`` flags (``--link-kbps 32``, ``--no-portrait``, ...).
        record: where the receiver records the call (``--record``), or None.
        receiver_args: more ``talk-recv`` flags (``--no-smoothing``, ...).
    """

    seconds: float = 10.0
    layers: int = 4
    device: str = "auto"
    renderer: str = "warp"
    start_timeout_s: float = 90.0
    portrait: Path | None = None
    sender_args: tuple[str, ...] = ()
    record: Path | None = None
    receiver_args: tuple[str, ...] = ()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[Any], timeout: float) -> None:
    """Waits until ``proc`` (a talk-recv) accepts connections on ``port``.

    Raises:
        TalkcodecError: it exited first, or did not listen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TalkcodecError(f"talk-recv exited before listening (exit {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise TalkcodecError(f"talk-recv did not listen within {timeout:.0f} s")


def measure_call(clip: Path, config: CallConfig = CallConfig()) -> dict[str, Any]:
    """Runs one loopback call and returns what both ends measured.

    Returns:
        ``{"latency_ms": {p50, p95, mean, n}`` capture -> rendered frame,
        ``"playout_latency_ms"``: capture -> playout, ``"frames_sent"``,
        ``"frames_received"``, ``"frames_rendered"``, ``"motion_kbps"`` (token
        payload), ``"packet_loss"``, ``"seconds"``, ``"wire"`` (the sender's
        datagram rates: ``motion_kbps``, ``audio_kbps``, ``total_kbps``, ``reverse_kbps``),
        ``"layers"``, ``"device"``, ``"renderer"``, ``"picture"`` (the receiver's: bytes, time to the
        caller's face), ``"pictures_sent"`` (the sender's: bytes, keyframes, reference timings),
        ``"link"`` (the simulated link's per-message delays, with ``--link-kbps``)}.
    Raises:
        MediaError: the clip does not exist.
        TalkcodecError: either end failed (its last error line is in the message).
    """
    if not clip.is_file():
        raise MediaError(f"{clip}: no such file")
    port, token = free_port(), secrets.token_urlsafe(12)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="talk-bench-call-") as tmp:
        recv_json, send_json = Path(tmp) / "recv.json", Path(tmp) / "send.json"
        extra = ([] if config.portrait is None else ["--portrait", str(config.portrait)]) + (
            [] if config.record is None else ["--record", str(config.record)])
        recv = subprocess.Popen(
            [sys.executable, "-m", "receiver.cli", "--listen", f"127.0.0.1:{port}", "--token", token, "--quiet",
             "--once", "--serve-browser", "--stats-json", str(recv_json), "--device", config.device,
             "--renderer", config.renderer, *extra, *config.receiver_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
        try:
            wait_listening(port, recv, config.start_timeout_s)
            send = subprocess.run(
                [sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}", "--token", token,
                 "--quiet", "--video", str(clip), "--loop", "--duration", f"{config.seconds:g}", "--wait", "30",
                 "--layers", str(config.layers), "--stats-json", str(send_json), *config.sender_args],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO,
                timeout=config.seconds + 180)
            if send.returncode != 0:
                raise TalkcodecError(f"talk-send failed: {_last_line(send.stderr)}")
            try:
                _, err = recv.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                recv.send_signal(signal.SIGINT)
                _, err = recv.communicate(timeout=60)
            if recv.returncode != 0 or not recv_json.exists():
                raise TalkcodecError(f"talk-recv failed: {_last_line(err)}")
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.wait()
        r, s = json.loads(recv_json.read_text()), json.loads(send_json.read_text())
    return {"latency_ms": r.get("latency_ms"), "playout_latency_ms": r.get("playout_latency_ms"),
            "frames_sent": _find(s, "frames_sent"), "frames_received": r.get("frames_received"),
            "frames_rendered": r.get("frames_rendered"), "motion_kbps": r.get("motion_kbps"),
            "motion_packet_kbps": r.get("motion_packet_kbps"),
            "packet_loss": r.get("packet_loss"), "seconds": config.seconds,
            "wire": {k: (s.get("wire") or {}).get(k) for k in ("motion_kbps", "audio_kbps", "total_kbps",
                                                               "reverse_kbps")},
            "layers": config.layers, "device": r.get("device", config.device), "renderer": config.renderer,
            "picture": r.get("picture"), "pictures_sent": s.get("pictures"), "link": s.get("link"),
            "send_delay_ms": s.get("send_delay_ms")}


def _find(doc: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a JSON document (the two ends nest their stats)."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _last_line(err: bytes | None) -> str:
    lines = [ln for ln in (err or b"").decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no error message"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loopback", description=__doc__.splitlines()[0])
    p.add_argument("clip", type=Path)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--layers", type=int, default=4, choices=(1, 2, 3, 4))
    p.add_argument("--device", default="auto")
    p.add_argument("--link-kbps", type=float, help="send through a simulated link of this rate (talk-send --link-kbps)")
    args = p.parse_args(argv)
    link = () if args.link_kbps is None else ("--link-kbps", f"{args.link_kbps:g}")
    try:
        out = measure_call(args.clip, CallConfig(seconds=args.seconds, layers=args.layers, device=args.device,
                                                 sender_args=link))
    except TalkcodecError as e:
        print(f"bench.loopback: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
