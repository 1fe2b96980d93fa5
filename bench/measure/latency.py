"""Is the call's latency bounded with a live view and a recording, on a quiet and on a busy machine?

One command runs two loopback calls (the real ``talk-send`` and ``talk-recv``
on this machine, :mod:`bench.loopback`), each ``--seconds`` long, with the
receiver rendering live (``--show``) and recording (``--record``) at once:

* **quiet**: nothing else started (whatever else runs on the machine is
  reported: load average and how busy the CPUs were during the call);
* **busy**: ``--busy N`` (default 2) busy loops kept running beside the call,
  one per core on a 2-core machine, at normal priority (stopped when the call
  ends; the recording may then still be catching up).

For each it reports capture -> rendered frame p50/p95 (and capture -> shown,
capture -> playout), how complete the recording is (frames in the MP4 over
the call's ticks, and when it was finished), the layers the sender used over
the call (no layer may be dropped: no loss is injected, so a drop would be
the CPU's doing), and the breakdown of where the milliseconds go, stage by
stage. The targets (p95 <= 100 ms quiet, <= 250 ms busy, recording >= 98%,
no layer dropped) are checked and printed beside the figures; a machine that
was not quiet for the quiet run is said to be so.

Usage::

    python -m bench.measure.latency [--seconds 30] [--busy 2] [--json OUT.json] [--clip CLIP]

It takes about ``2 * seconds`` plus a minute or two (start-up, finishing the
recordings). Run it on a machine with nothing else to do for the quiet figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.loopback import CallConfig, CallRun, breakdown_lines, run_call, summarize
from codec.errors import TalkcodecError

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "clip.mp4"
# The receiver animates this from the first frame (the caller's own picture would show a placeholder, which
# costs nothing to draw, for the first seconds).
PORTRAIT = REPO / "samples" / "portrait.jpg"
TARGET_QUIET_P95_MS = 100.0
TARGET_BUSY_P95_MS = 250.0
TARGET_RECORDING = 0.98
QUIET_LOAD = 1.5
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far (/proc/stat)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process (MB), None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the receiver's recording process)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def process_role(pid: int) -> str:
    """What a child of the receiver is: its recording process, or multiprocessing's resource tracker."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"child{pid}"
    return "resource_tracker" if b"resource_tracker" in cmd else "recording" if b"spawn_main" in cmd else f"child{pid}"


class Sampler:
    """Samples the machine (load, CPU busy share) and the call's processes (RSS) every ``interval_s``."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.pids: dict[str, int] = {}
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = cpu_times()
        self._result: dict[str, Any] = {}

    def start(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._cpu0 = cpu_times()
        self._thread.start()

    def _run(self) -> None:
        last = self._cpu0
        while not self._stop.wait(self.interval_s):
            now = cpu_times()
            busy = (now[0] - last[0]) / max(1.0, now[1] - last[1])
            last = now
            rss = {k: rss_mb(p) for k, p in self.pids.items()}
            if "recv" in self.pids:
                for c in children(self.pids["recv"]):
                    rss[f"recv_{process_role(c)}"] = rss_mb(c)
            self.samples.append({"t": time.monotonic(), "load1": os.getloadavg()[0], "cpu_busy": busy, "rss_mb": rss})

    def stop(self) -> dict[str, Any]:
        if self._stop.is_set():
            return self._result
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        end = cpu_times()
        busy = (end[0] - self._cpu0[0]) / max(1.0, end[1] - self._cpu0[1])
        loads = [s["load1"] for s in self.samples]
        self._result = {"cpu_busy": round(busy, 3), "load1_max": round(max(loads), 2) if loads else None,
                        "load1_end": round(loads[-1], 2) if loads else None}
        return self._result


def start_busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes that spin at normal priority: the other work of a busy machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass"]) for _ in range(n)]


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def recording_frames(path: Path) -> int | None:
    """Video frames in an MP4 (decoded, so a broken file says so), None if there is none."""
    import av

    if not path.exists():
        return None
    try:
        with av.open(str(path)) as c:
            return sum(1 for _ in c.decode(video=0))
    except Exception:  # an unfinished file: no frames to count
        return 0


def scenario(name: str, clip: Path, seconds: float, busy: int, device: str) -> dict[str, Any]:
    """One call with a live view and a recording; ``busy`` busy loops beside it."""
    load_before = os.getloadavg()
    print(f"bench.measure.latency: {name}: {seconds:g} s call, live view + recording, {busy} busy loops; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", file=sys.stderr)
    spinners = start_busy_loops(busy)
    sampler = Sampler()
    try:
        if busy:
            time.sleep(2.0)  # let them take the cores before the call starts
        with tempfile.TemporaryDirectory(prefix="talk-latency-") as tmp:
            config = CallConfig(seconds=seconds, device=device, record=Path(tmp) / "call.mp4", live=True,
                                portrait=PORTRAIT)
            ended: dict[str, Any] = {}

            def call_ended() -> None:
                ended["machine"] = sampler.stop()
                stop_all(spinners)

            run: CallRun = run_call(clip, config, Path(tmp), during=sampler.start, call_ended=call_ended)
            machine = ended.get("machine") or sampler.stop()
            frames_in_file = recording_frames(Path(tmp) / "call.mp4")
    finally:
        sampler.stop()
        stop_all(spinners)
    out = summarize(run, config)
    rec = out.get("recording") or {}
    ticks = rec.get("ticks") or run.recv.get("frames_played") or 0
    rc = out.get("rate_control") or {}
    out.update({
        "scenario": name, "busy_loops": busy, "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before], "machine_during_call": machine,
        "recording_frames_in_file": frames_in_file, "recording_ticks": ticks,
        "recording_complete": None if not ticks or frames_in_file is None else round(frames_in_file / ticks, 4),
        "layers_dropped": [c for c in rc.get("layer_changes", []) if c["to"] < c["from"]],
    })
    return out


def verdicts(r: dict[str, Any], target_p95: float) -> dict[str, bool | None]:
    p95 = (r.get("latency_ms") or {}).get("p95")
    complete = r.get("recording_complete")
    return {f"capture->rendered p95 <= {target_p95:g} ms": None if p95 is None else p95 <= target_p95,
            f"recording >= {TARGET_RECORDING:.0%} of the frames": None if complete is None
            else complete >= TARGET_RECORDING,
            "no layer dropped (no loss was injected)": not r.get("layers_dropped")}


def report(results: list[dict[str, Any]]) -> list[str]:
    def f(v: Any, d: int = 0) -> str:
        return "–" if v is None else f"{v:.{d}f}"

    lines = ["# Latency with a live view and a recording (bench.measure.latency)", ""]
    for r in results:
        lat, shown, play = r.get("latency_ms") or {}, r.get("shown_latency_ms") or {}, r.get("playout_latency_ms") or {}
        m, rec, rc = r["machine_during_call"], r.get("recording") or {}, r.get("rate_control") or {}
        lb = r["load_before"]
        lines += [f"## {r['scenario']}: {r['busy_loops']} busy loops beside the call", "",
                  f"- machine: {r['cpus']} CPUs; load average before {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f} "
                  f"(1/5/15 min), 1-min load up to {f(m['load1_max'], 2)} during the call; the CPUs were "
                  f"{m['cpu_busy']:.0%} busy during the call (every process on the machine)",
                  f"- capture -> rendered p50 {f(lat.get('p50'))} / p95 {f(lat.get('p95'))} ms "
                  f"({lat.get('n')} fresh frames rendered live); capture -> shown p50 {f(shown.get('p50'))} / "
                  f"p95 {f(shown.get('p95'))} ms; capture -> playout p50 {f(play.get('p50'))} / "
                  f"p95 {f(play.get('p95'))} ms",
                  f"- frames: {r.get('frames_sent')} sent, {r.get('frames_received')} received, "
                  f"{r.get('frames_concealed')} ticks concealed, {r.get('frames_rendered')} rendered live, "
                  f"{r.get('frames_live_skipped')} ticks skipped by the live view (newest shown instead)",
                  f"- recording: {r.get('recording_frames_in_file')} frames in the file for "
                  f"{r.get('recording_ticks')} ticks ({f((r.get('recording_complete') or 0) * 100, 1)}%); "
                  f"{rec.get('from_live')} from the live view, {rec.get('rendered_apart')} rendered apart; "
                  f"at most {rec.get('behind_max_frames')} frames behind; finished "
                  f"{f(rec.get('finished_after_s'), 1)} s after the call",
                  f"- layers: time at each count {rc.get('layer_seconds')}; changes {rc.get('layer_changes')}; "
                  f"lossy reports {rc.get('lossy_reports')}, held for the sender's CPU {rc.get('held_for_cpu')}",
                  ""]
        target = TARGET_QUIET_P95_MS if r["busy_loops"] == 0 else TARGET_BUSY_P95_MS
        for what, ok in verdicts(r, target).items():
            lines.append(f"- {'PASS' if ok else 'FAIL' if ok is not None else 'n/a '} {what}")
        if r["busy_loops"] == 0 and lb[0] > QUIET_LOAD:
            lines.append(f"- NOTE: the machine was not quiet (1-min load {lb[0]:.2f} > {QUIET_LOAD}): other work "
                         "shared the CPUs, so this is not the quiet-machine figure")
        lines += ["", *breakdown_lines(r.get("breakdown_ms") or {}), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.latency", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="length of each call (default: %(default)s)")
    p.add_argument("--busy", type=int, default=2, help="busy loops beside the busy call (default: %(default)s)")
    p.add_argument("--only", choices=("quiet", "busy"), help="run one scenario")
    p.add_argument("--clip", type=Path, default=CLIP, help="what the sender plays, looped (default: the sample)")
    p.add_argument("--device", default="cpu", help="the receiver's render device (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write every figure as JSON")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.busy < 0:
        print("bench.measure.latency: --seconds must be > 0 and --busy >= 0", file=sys.stderr)
        return 2
    runs = [("quiet", 0), ("busy", args.busy)]
    results = []
    try:
        for name, busy in runs:
            if args.only in (None, name):
                results.append(scenario(name, args.clip, args.seconds, busy, args.device))
    except TalkcodecError as e:
        print(f"bench.measure.latency: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(report(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
