"""An end-to-end call over loopback: the real ``talk-send`` and ``talk-recv``, timed.

``talk-bench --latency`` runs one call per bench run, and the measuring
scripts (:mod:`bench.measure.latency`, :mod:`bench.measure.heavy_loss`,
:mod:`bench.measure.soak`) run theirs through :func:`measure_call` too:
``talk-recv`` renders live (``--show``: on a machine without a display the
frames go nowhere, but every one is rendered and handed over as to a
window), optionally records, and ``talk-send --video CLIP`` plays a clip at
real-time pace; both write their statistics at exit. Latency is from the
frame's capture on the sender to its rendered frame on the receiver (both
processes stamp frames with the same wall clock; over loopback it is the
same clock), and to its playout (decoded, out of the jitter buffer, before
rendering). The breakdown says where those milliseconds went, stage by
stage (:mod:`realtime.timing`).

Without a portrait ``talk-recv`` renders the caller's own picture, sent at the
call's start (a placeholder before it arrives); the result says when the
caller's face was first on screen and what the pictures cost. With one
(``--portrait``) it animates that face from the first frame.

    python -m bench.loopback CLIP [--seconds 10] [--layers 4] [--link-kbps 32] [--record OUT.mp4]
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec.errors import MediaError, TalkcodecError
from realtime.timing import RECEIVER_STAGES, SENDER_STAGES

# What talk-send says when its clip ran out and the call ended as planned.
NORMAL_END = "call ended: the source ended"
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
        record: where the receiver records the call (``--record``, rendered apart from the live view), or None.
        live: render live as for a window (``--show``); False with ``record``: a recording alone.
        sender_args, receiver_args: more flags for either program (``--link-kbps 32``, ``--no-portrait``,
            impairments, ``--save-motion``...).
        finish_timeout_s: how long the receiver may take after the call (finishing a recording).
    """

    seconds: float = 10.0
    layers: int = 4
    device: str = "auto"
    renderer: str = "warp"
    start_timeout_s: float = 90.0
    portrait: Path | None = None
    record: Path | None = None
    live: bool = True
    sender_args: tuple[str, ...] = ()
    receiver_args: tuple[str, ...] = ()
    finish_timeout_s: float = 600.0


@dataclass
class CallRun:
    """What a call left: both programs' statistics and their files.

    Attributes:
        recv, send: the ``--stats-json`` of talk-recv and talk-send.
        dir: the directory the call ran in (its statistics, both programs' stderr, any saved files).
        pids: the two programs' process ids while they ran (for RSS sampling).
    """

    recv: dict[str, Any]
    send: dict[str, Any]
    dir: Path
    pids: dict[str, int] = field(default_factory=dict)


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


def run_call(clip: Path, config: CallConfig, directory: Path,
             during: Callable[[dict[str, int]], None] | None = None,
             call_ended: Callable[[], None] | None = None) -> CallRun:
    """Runs one loopback call, leaving its files in ``directory``.

    Args:
        during: called with ``{"recv": pid, "send": pid}`` once the sender runs, on this thread, while the
            call goes on (it should return at once: start a sampler, say).
        call_ended: called when the sender has finished, before waiting for the receiver (which may
            still be finishing a recording).
    Raises:
        MediaError: the clip does not exist.
        TalkcodecError: either end failed (its last error line is in the message).
    """
    if not clip.is_file():
        raise MediaError(f"{clip}: no such file")
    # "--token=...": a random token may begin with "-", which argparse would take for an option.
    port, token = free_port(), secrets.token_urlsafe(12)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    recv_json, send_json = directory / "recv.json", directory / "send.json"
    recv_cmd = [sys.executable, "-m", "receiver.cli", "--listen", f"127.0.0.1:{port}", f"--token={token}", "--quiet",
                "--once", "--stats-json", str(recv_json), "--device", config.device, "--renderer", config.renderer]
    if config.live:
        recv_cmd.append("--show")
    if config.record is not None:
        recv_cmd += ["--record", str(config.record)]
    if config.portrait is not None:
        recv_cmd += ["--portrait", str(config.portrait)]
    recv = subprocess.Popen(recv_cmd + list(config.receiver_args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=REPO)
    pids = {"recv": recv.pid}
    try:
        wait_listening(port, recv, config.start_timeout_s)
        send = subprocess.Popen(
            [sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}", f"--token={token}",
             "--quiet", "--video", str(clip), "--loop", "--duration", f"{config.seconds:g}", "--wait", "30",
             "--layers", str(config.layers), "--stats-json", str(send_json), *config.sender_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
        pids["send"] = send.pid
        try:
            if during is not None:
                during(pids)
            _, send_err = send.communicate(timeout=config.seconds + 180)
        finally:
            if send.poll() is None:
                send.kill()
                send.wait()
        if call_ended is not None:
            call_ended()
        (directory / "send.err").write_bytes(send_err or b"")
        if send.returncode != 0:
            raise TalkcodecError(f"talk-send failed: {_last_line(send_err)}")
        try:
            _, err = recv.communicate(timeout=config.finish_timeout_s)
        except subprocess.TimeoutExpired:
            recv.send_signal(signal.SIGINT)
            _, err = recv.communicate(timeout=60)
        (directory / "recv.err").write_bytes(err or b"")
        if recv.returncode != 0 or not recv_json.exists():
            raise TalkcodecError(f"talk-recv failed: {_last_line(err)}")
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    return CallRun(json.loads(recv_json.read_text()), json.loads(send_json.read_text()), directory, pids)


def summarize(run: CallRun, config: CallConfig) -> dict[str, Any]:
    """The figures of one call, flat, as ``talk-bench`` reports them.

    Returns:
        ``{"latency_ms": {p50, p95, mean, n}`` capture -> rendered frame,
        ``"playout_latency_ms"``: capture -> playout, ``"breakdown_ms"``: per stage,
        ``"frames_sent"``, ``"frames_received"``, ``"frames_rendered"``, ``"motion_kbps"`` (token
        payload), ``"packet_loss"``, ``"seconds"``, ``"wire"`` (the sender's datagram rates:
        ``motion_kbps``, ``audio_kbps``, ``total_kbps``, ``reverse_kbps``), ``"layers"``, ``"device"``, ``"renderer"``,
        ``"recording"`` (with ``record``), ``"rate_control"``, ``"picture"`` (the receiver's: bytes, time
        to the caller's face), ``"pictures_sent"`` (the sender's: bytes, keyframes, reference timings),
        ``"link"`` (the simulated link's per-message delays, with ``--link-kbps``), ``"send_delay_ms"``}.
    """
    r, s = run.recv, run.send
    return {"latency_ms": r.get("latency_ms"), "shown_latency_ms": r.get("shown_latency_ms"),
            "playout_latency_ms": r.get("playout_latency_ms"), "breakdown_ms": breakdown(r, s),
            "frames_sent": _find(s, "frames_sent"), "frames_received": r.get("frames_received"),
            "frames_rendered": r.get("frames_rendered"), "frames_concealed": r.get("frames_concealed"),
            "frames_live_skipped": r.get("frames_live_skipped"), "motion_kbps": r.get("motion_kbps"),
            "packet_loss": r.get("packet_loss"), "seconds": config.seconds, "layers": config.layers,
            "wire": {k: (s.get("wire") or {}).get(k) for k in ("motion_kbps", "audio_kbps", "total_kbps",
                                                               "reverse_kbps")},
            "device": r.get("device", config.device), "renderer": config.renderer,
            "motion_packet_kbps": r.get("motion_packet_kbps"),
            "recording": r.get("recording"), "rate_control": s.get("rate_control"),
            "picture": r.get("picture"), "pictures_sent": s.get("pictures"), "link": s.get("link"),
            "send_delay_ms": s.get("send_delay_ms")}


def breakdown(recv: dict[str, Any], send: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Stage by stage, from capture to the screen: the sender's stages from its own statistics (per
    frame), the network from the receiver's capture -> arrival less the sender's stages (means), the
    receiver's stages from its statistics; and the totals."""
    sent = send.get("latency_breakdown_ms") or {}
    got = recv.get("latency_breakdown_ms") or {}
    out: dict[str, dict[str, Any]] = {}
    for stage in SENDER_STAGES:
        out[stage] = sent.get(stage) or got.get(stage) or {}
    for stage in RECEIVER_STAGES:  # network first
        out[stage] = got.get(stage) or {}
    for total in ("capture_to_arrival", "capture_to_rendered", "capture_to_shown"):
        out[total] = got.get(total) or {}
    return out


def breakdown_lines(b: dict[str, dict[str, Any]]) -> list[str]:
    """A markdown table of a breakdown: stage, p50, p95, mean."""
    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.1f}"

    lines = ["| stage | p50 ms | p95 ms | mean ms |", "|---|---|---|---|"]
    for stage, v in b.items():
        name = stage.replace("_", " ") if not stage.startswith("capture_to") else f"**{stage.replace('_', ' ')}**"
        lines.append(f"| {name} | {f(v.get('p50'))} | {f(v.get('p95'))} | {f(v.get('mean'))} |")
    means: list[float] = [m for m in (b[s].get("mean") for s in SENDER_STAGES + RECEIVER_STAGES if s in b)
                          if isinstance(m, (int, float))]
    if means and len(means) == len([s for s in SENDER_STAGES + RECEIVER_STAGES if s in b]):
        lines.append(f"| (sum of the stage means) | | | {sum(means):.1f} |")
    return lines


def measure_call(clip: Path, config: CallConfig = CallConfig()) -> dict[str, Any]:
    """Runs one loopback call and returns what both ends measured (:func:`summarize`).

    Raises:
        MediaError: the clip does not exist.
        TalkcodecError: either end failed (its last error line is in the message).
    """
    if not clip.is_file():
        raise MediaError(f"{clip}: no such file")
    with tempfile.TemporaryDirectory(prefix="talk-bench-call-") as tmp:
        return summarize(run_call(clip, config, Path(tmp)), config)


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


def call_end(send_err: Path) -> str:
    """How talk-send said its call ended (its "call ended: ..." line), or what it said last."""
    try:
        lines = [ln for ln in send_err.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "talk-send left no messages"
    ends = [ln for ln in lines if ln.startswith("call ended")]
    return (ends or lines or ["talk-send said nothing"])[-1]


def _last_line(err: bytes | None) -> str:
    lines = [ln for ln in (err or b"").decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no error message"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loopback", description=__doc__.splitlines()[0])
    p.add_argument("clip", type=Path)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--layers", type=int, default=4, choices=(1, 2, 3, 4))
    p.add_argument("--device", default="auto")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="also record the call")
    p.add_argument("--link-kbps", type=float, help="send through a simulated link of this rate (talk-send --link-kbps)")
    args = p.parse_args(argv)
    link = () if args.link_kbps is None else ("--link-kbps", f"{args.link_kbps:g}")
    try:
        out = measure_call(args.clip, CallConfig(seconds=args.seconds, layers=args.layers, device=args.device,
                                                 record=args.record, sender_args=link))
    except TalkcodecError as e:
        print(f"bench.loopback: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    print("\n".join(breakdown_lines(out["breakdown_ms"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
