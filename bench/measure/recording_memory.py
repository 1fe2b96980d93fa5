"""Does the recording process's memory stay flat when it falls behind again and again? (outside CI)

The recording process (:mod:`receiver.recording`) renders the ticks the live
view skipped, in batches, when it gets CPU: on a loaded machine it falls
behind and catches up many times in a call. This drives one with the real
renderer (the sample portrait, ``--size`` px) at 25 ticks a second, the live
view's frame with most ticks, and each ``--cycle`` seconds begins by stopping
the process (SIGSTOP) for ``--stall`` seconds while ticks keep coming, half of
them without a frame, as a starved one would; it then has the rest of the
cycle to catch up, and the process's resident memory (RSS) is sampled at the
end of each cycle and once more when the last backlog has drained. A heap that
ratchets up with each catch-up shows as RSS rising from cycle to cycle.

Usage (about ``cycles * cycle`` seconds)::

    python -m bench.measure.recording_memory [--cycles 12] [--size 512] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import functools
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PORTRAIT = REPO / "samples" / "portrait.jpg"
TICK_S = 0.04


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _speech(k: int) -> Any:
    import av

    f = av.AudioFrame.from_ndarray(np.full((1, 1920), 3000, np.int16), format="s16", layout="stereo")
    f.sample_rate, f.pts, f.time_base = 48_000, k * 960, fractions.Fraction(1, 48_000)
    return f


async def drive(path: Path, size: int, cycles: int, cycle_s: float, stall_s: float) -> dict[str, Any]:
    from codec.render.pipeline import RenderConfig, Renderer
    from codec.render.portrait import prepare_portrait
    from realtime.jitterbuffer import PlayoutKind
    from receiver.playout import Tick
    from receiver.recording import RecordingConfig, RecordingProcess, check_writable

    portrait = prepare_portrait(PORTRAIT)
    make = functools.partial(Renderer, portrait, RenderConfig(device="cpu", size=size))
    rec = RecordingProcess(RecordingConfig(check_writable(path), size, make))
    rec.start()
    await rec.wait_ready()
    rec.begin_call()
    pid = rec.pid
    assert pid is not None
    rng = np.random.default_rng(0)
    rest = portrait.landmarks.astype(np.float32)
    frame = rng.integers(0, 255, (size, size, 3), np.uint8)
    samples: list[dict[str, Any]] = [{"cycle": -1, "rss_mb": rss_mb(pid)}]
    index = 0
    t0 = time.monotonic()
    for c in range(cycles):
        for stalled, seconds in ((True, stall_s), (False, cycle_s - stall_s)):
            if stalled:
                os.kill(pid, signal.SIGSTOP)
            try:
                for j in range(int(round(seconds / TICK_S))):
                    jitter = rng.normal(0.0, 1.0, rest.shape).astype(np.float32)
                    tick = Tick(index, index * TICK_S * 1000, rest + jitter, PlayoutKind.FRESH, True, 0.0)
                    rec.add(tick)
                    rec.resolve(tick, frame.copy() if not stalled or j % 2 else None)
                    rec.add_audio(_speech(2 * index))
                    rec.add_audio(_speech(2 * index + 1))
                    index += 1
                    await asyncio.sleep(max(0.0, t0 + index * TICK_S - time.monotonic()))
            finally:
                if stalled:
                    os.kill(pid, signal.SIGCONT)
        samples.append({"cycle": c, "ticks": index, "behind": rec.behind, "rss_mb": rss_mb(pid)})
        print(f"cycle {c + 1}/{cycles}: {index} ticks, {rec.behind} behind, RSS {samples[-1]['rss_mb']:.1f} MB",
              file=sys.stderr)
    while rec.behind > 0 and rec.stats.error is None:  # the backlog drains: what memory stays?
        rec.poll()
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    drained = rss_mb(pid)
    print(f"caught up: RSS {drained:.1f} MB", file=sys.stderr)
    rec.call_ended()
    await rec.close(600)
    rss = [s["rss_mb"] for s in samples[1:] if s["rss_mb"] is not None]
    return {"size": size, "cycles": cycles, "cycle_s": cycle_s, "stall_s": stall_s, "samples": samples,
            "rss_after_first_mb": rss[0] if rss else None, "rss_last_mb": rss[-1] if rss else None,
            "rss_max_mb": max(rss) if rss else None, "rss_caught_up_mb": drained, "recording": rec.stats.to_dict(),
            "load_after": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.recording_memory", description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=12, help="stall-and-catch-up cycles (default: %(default)s)")
    p.add_argument("--cycle", type=float, default=20.0, help="seconds per cycle (default: %(default)s)")
    p.add_argument("--stall", type=float, default=5.0, help="seconds stopped per cycle (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="frame side in pixels (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write every figure as JSON")
    args = p.parse_args(argv)
    if args.cycles < 1 or not 0 < args.stall < args.cycle:
        p.error("needs --cycles >= 1 and 0 < --stall < --cycle")
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(drive(Path(tmp) / "rec.mp4", args.size, args.cycles, args.cycle, args.stall))
    print(f"recording process RSS after the first cycle {out['rss_after_first_mb']:.1f} MB, after the last "
          f"{out['rss_last_mb']:.1f} MB, largest {out['rss_max_mb']:.1f} MB, "
          f"caught up {out['rss_caught_up_mb']:.1f} MB; recording {out['recording']}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
