"""A long loopback call with loss on: does either program's memory grow? (a soak, outside CI)

Runs one loopback call (the real ``talk-send`` and ``talk-recv``, :mod:`bench.loopback`)
for ``--minutes`` (default 30) with the motion channel impaired as issue 15's
heavy loss (20% loss, ±50 ms jitter, and 300 ms bursts every 10 s on average), the receiver
rendering live and recording, and samples the resident memory (RSS) of the
sender, the receiver and the receiver's recording process every
``--every`` seconds. It reports each one's RSS at the start (after a minute
of warm-up), at the end, its largest, and the growth per 10 minutes fitted
over the call after the warm-up; plus the call's own figures (frames,
loss, concealment, layers, latency).

Usage (about ``minutes`` plus a few; run it niced on a shared machine)::

    nice -n 10 python -m bench.measure.soak [--minutes 30] [--json OUT.json] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.loopback import NORMAL_END, CallConfig, call_end, run_call, summarize
from bench.measure.latency import Sampler, recording_frames
from codec.errors import TalkcodecError

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "clip.mp4"
WARMUP_S = 60.0
IMPAIRMENT = ("--netem-loss", "0.2", "--netem-jitter-ms", "50", "--netem-burst", "300:10", "--netem-seed", "30")


def memory(samples: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per process: RSS at the start (after the warm-up), at the end, the largest, and the fitted growth."""
    if not samples:
        return {}
    t0 = samples[0]["t"]
    out: dict[str, dict[str, float | None]] = {}
    names = sorted({k for s in samples for k in s["rss_mb"]})
    for name in names:
        pts = [(s["t"] - t0, s["rss_mb"].get(name)) for s in samples]
        pts = [(t, v) for t, v in pts if v]  # None: gone; 0: exiting (a zombie has no resident pages)
        if not pts:
            continue
        settled = [(t, v) for t, v in pts if t >= WARMUP_S] or pts
        t, v = np.array([p[0] for p in settled]), np.array([p[1] for p in settled])
        slope = float(np.polyfit(t, v, 1)[0]) * 600 if len(settled) >= 3 else None
        out[name] = {"start_mb": round(settled[0][1], 1), "end_mb": round(settled[-1][1], 1),
                     "max_mb": round(max(p[1] for p in pts), 1),
                     "growth_mb_per_10min": None if slope is None else round(slope, 2),
                     "first_sample_mb": round(pts[0][1], 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="length of the call (default: %(default)s)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between memory samples (default: %(default)s)")
    p.add_argument("--no-record", action="store_true", help="live view only, no recording")
    p.add_argument("--size", type=int, default=512,
                   help="the receiver's frame side (default: %(default)s; smaller leaves more CPU to the call on a "
                   "loaded machine, where both ends and the renderer share the cores)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write every figure and sample as JSON")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0:
        print("bench.measure.soak: --minutes and --every must be > 0", file=sys.stderr)
        return 2
    seconds = args.minutes * 60
    load = os.getloadavg()
    print(f"bench.measure.soak: {args.minutes:g} min loopback call, {' '.join(IMPAIRMENT)}, "
          f"{'live view only' if args.no_record else 'live view + recording'} at {args.size} px; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; nice {os.nice(0)}", file=sys.stderr)
    sampler = Sampler(args.every)
    try:
        with tempfile.TemporaryDirectory(prefix="talk-soak-") as tmp:
            # The receiver's default: the caller's own picture, sent at the call's start.
            config = CallConfig(seconds=seconds, device="cpu", live=True, sender_args=IMPAIRMENT,
                                receiver_args=("--size", str(args.size)),
                                record=None if args.no_record else Path(tmp) / "call.mp4", finish_timeout_s=3600)
            try:
                run = run_call(CLIP, config, Path(tmp), during=sampler.start)
            finally:
                machine = sampler.stop()
            frames_in_file = None if args.no_record else recording_frames(Path(tmp) / "call.mp4")
            ended = call_end(run.dir / "send.err")
    except TalkcodecError as e:
        # The call failed (a lost peer, say): the memory sampled until then is still worth reporting.
        print(f"bench.measure.soak: error: {e}", file=sys.stderr)
        machine = sampler.stop()
        out = {"error": str(e), "minutes": args.minutes, "impairment": " ".join(IMPAIRMENT), "load_before": load,
               "machine_during_call": machine, "nice": os.nice(0), "memory": memory(sampler.samples),
               "sampled_s": round(sampler.samples[-1]["t"] - sampler.samples[0]["t"], 1) if sampler.samples else 0,
               "samples": sampler.samples}
        print("\n".join([f"# Soak FAILED after {out['sampled_s']} s: {e}", "", *memory_lines(out["memory"])]))
        if args.json is not None:
            args.json.write_text(json.dumps(out, indent=1) + "\n")
        return 1
    out = summarize(run, config)
    # The sender captures every frame of the call (sent or skipped): its count is the call's length.
    call_s = run.send.get("frames_captured", 0) / 25.0
    whole = ended == NORMAL_END and call_s >= 0.95 * seconds  # a starved reader may lose a few frames
    out.update({"call_s": round(call_s, 1), "call_whole": whole, "call_ended": ended,
                "minutes": args.minutes, "impairment": " ".join(IMPAIRMENT), "load_before": load,
                "machine_during_call": machine, "nice": os.nice(0), "memory": memory(sampler.samples),
                "recording_frames_in_file": frames_in_file, "samples": sampler.samples})
    lines = [f"# Soak: {args.minutes:g} min loopback call with loss ({out['impairment']})", "",
             f"- load average before {load[0]:.2f}, 1-min load up to {machine.get('load1_max')} during the call; "
             f"CPUs {machine['cpu_busy']:.0%} busy during the call; nice {out['nice']}",
             f"- the call ran {call_s:.0f} of {seconds:.0f} s ({'whole' if whole else 'ENDED EARLY'}): {ended}",
             f"- frames: {out.get('frames_sent')} sent, {out.get('frames_received')} received, "
             f"{out.get('frames_concealed')} ticks concealed, packet loss {out.get('packet_loss')}; "
             f"capture -> rendered {out.get('latency_ms')}",
             f"- recording: {frames_in_file} frames in the file; {out.get('recording')}",
             f"- layers: {(out.get('rate_control') or {}).get('layer_seconds')}", "", *memory_lines(out["memory"])]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if whole else 1


def memory_lines(mem: dict[str, dict[str, float | None]]) -> list[str]:
    """The RSS table."""
    lines = ["| process | RSS start MB (after 1 min) | RSS end MB | max MB | growth MB / 10 min |",
             "|---|---|---|---|---|"]
    for name, m in mem.items():
        lines.append(f"| {name} | {m['start_mb']} | {m['end_mb']} | {m['max_mb']} | {m['growth_mb_per_10min']} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
