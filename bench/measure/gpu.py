"""The receiver on a GPU: frame time, frames per second, streams per GPU, memory, and agreement with the CPU.

One run, bounded in time (8 minutes by default), on the file ``bench.measure.gpu_prepare`` makes
(:mod:`bench.measure.gpu_bundle`; the GPU machine needs no MediaPipe, PyAV or corpus). It measures, with the
device renderer
(:mod:`codec.render.batch`: rasterization, sampling and compositing on the device):

* agreement: the device's frames against the numba warp's and the CPU refiner's, rendered on the CPU
  when the bundle was made (SSIM on luma, as ``bench.metrics``);
* batch 1: milliseconds per frame, warp and warp + neural refiner, from the landmarks on the host to a
  uint8 frame on the device (what a hardware encoder would read), synchronized;
* throughput: frames per second against the batch size, each frame of another stream and another
  portrait (each stream's portrait its own copy in device memory), and the best;
* streams: the most 25-fps streams whose frames, one per stream per 40 ms tick, render within the tick;
* memory: device memory per stream (its portrait, resident) and per frame in flight (peak working memory);
* the rasterizer alone: the numba loop on this machine's CPU (one thread) against the torch one.

It writes everything to ``docs/gpu.json`` (after each stage, so a run stopped early keeps what it
measured). ``--rehearse`` runs every stage small (a few frames, batches up to 4), to check on a CPU
that the run cannot fail for a silly reason on the GPU.

    python -m bench.measure.gpu [--device cuda] [--bundle .gpu/bench.npz] [--budget-s 480] [--json docs/gpu.json]
    python -m bench.measure.gpu --device cpu --rehearse --json docs/gpu_rehearsal.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import numpy as np
import torch

from bench.measure.gpu_bundle import DEFAULT_PATH, Bundle, clip_targets, load_bundle
from bench.metrics.pixels import ssim
from codec.render.batch import BatchRenderer
from codec.render.raster import rasterize_batch
from codec.render.refine_batch import refine_batch
from codec.render.refiner import RENDERER_PATH, Refiner, load_refiner

TICK_MS = 40.0  # one frame per stream every 40 ms: 25 fps


@dataclass(frozen=True)
class GpuBenchConfig:
    """What one run measures, and how much.

    Attributes:
        budget_s: wall-clock budget of the whole run; stages are cut short to stay inside it.
        batches: batch sizes (streams per tick) tried for throughput, in order, until a tick takes
            longer than ``stop_tick_ms`` or memory runs out.
        repeats: timed ticks per batch size (after one warm-up tick).
        latency_frames: frames timed at batch 1.
        stop_tick_ms: largest tick worth measuring.
        neural: also time the refiner.
        tick_ms: the tick streams must render within: 40 ms, 25 fps (a rehearsal on a CPU takes longer ones).
    """

    budget_s: float = 480.0
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
    repeats: int = 8
    latency_frames: int = 50
    stop_tick_ms: float = 400.0
    neural: bool = True
    tick_ms: float = TICK_MS

    @staticmethod
    def rehearsal() -> GpuBenchConfig:
        return GpuBenchConfig(budget_s=240.0, batches=(1, 2, 4), repeats=2, latency_frames=4, stop_tick_ms=5000.0,
                              tick_ms=250.0)


@dataclass
class Clock:
    """The run's deadline."""

    budget_s: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


class Streams:
    """``B`` streams, each with its own copy of a portrait and its own target landmarks, rendered a tick at a time.

    Args:
        bank: a renderer of the distinct portraits; ``targets[k]``: ``[T, 478, 3]`` frames for portrait ``k``.
    """

    def __init__(self, bank: BatchRenderer, targets: list[np.ndarray], count: int) -> None:
        self.count = count
        self.faces = np.arange(count) % len(targets)
        self.renderer = bank.subset(torch.as_tensor(self.faces))
        self.targets = targets
        self.pid = torch.arange(count, device=bank.device)
        pin = bank.device.type == "cuda"
        self.host = torch.empty((count, 478, 3), dtype=torch.float32, pin_memory=pin)
        self.tick_index = 0

    def _next_targets(self) -> torch.Tensor:
        """This tick's landmarks, gathered on the host (as they arrive) and sent to the device."""
        t, host = self.tick_index, self.host.numpy()
        for k, seq in enumerate(self.targets):
            rows = np.flatnonzero(self.faces == k)
            host[rows] = seq[(t + rows) % len(seq)]
        self.tick_index += 1
        return self.host.to(self.renderer.device, non_blocking=True)

    def tick(self, refiner: Refiner | None = None) -> torch.Tensor:
        """One frame of every stream: ``[B, H, W, 3]`` uint8 on the device."""
        targets = self._next_targets()
        with torch.inference_mode():
            result = self.renderer.warp(self.pid, targets)
            frames = result.frames
            if refiner is not None:
                frames = refine_batch(refiner, result, self.renderer.image, targets, self.pid)
            return (frames * 255 + 0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn``, each synchronized, after one warm-up call."""
    fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(1000 * (time.perf_counter() - t))
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "min": float(np.min(ms)),
            "count": len(ms)}


def _u8(frames: torch.Tensor) -> np.ndarray:
    return (frames * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def agreement(bundle: Bundle, bank: BatchRenderer, refiner: Refiner | None) -> dict:
    """The device's frames against the CPU's (numba warp, CPU refiner) on every reference frame of the bundle."""
    warp_ssim, neural_ssim, diffs = [], [], []
    for k, clip in enumerate(bundle.clips):
        pid = torch.full((len(clip.ref_targets),), k, dtype=torch.long, device=bank.device)
        targets = torch.as_tensor(clip.ref_targets, device=bank.device)
        with torch.inference_mode():
            result = bank.warp(pid, targets)
            got = _u8(result.frames)
            warp_ssim += ssim(got, clip.ref_warp).tolist()
            diffs.append(np.abs(got.astype(np.int16) - clip.ref_warp).mean())
            if refiner is not None and clip.ref_neural is not None:
                refined = refine_batch(refiner, bank.warp(pid[:1], targets[:1]), bank.image, targets[:1], pid[:1])
                neural_ssim += ssim(_u8(refined), clip.ref_neural).tolist()
    out = {"frames": len(warp_ssim), "portraits": len(bundle.clips), "warp_ssim_min": float(np.min(warp_ssim)),
           "warp_ssim_mean": float(np.mean(warp_ssim)), "warp_mean_abs_diff_levels": float(np.mean(diffs))}
    if neural_ssim:
        out |= {"neural_frames": len(neural_ssim), "neural_ssim_min": float(np.min(neural_ssim)),
                "neural_ssim_mean": float(np.mean(neural_ssim))}
    return out


def raster_alone(bank: BatchRenderer, targets: np.ndarray, device: torch.device, repeats: int) -> dict:
    """Milliseconds per frame of the rasterization alone: numba on this CPU (one thread), torch on the device."""
    pid = torch.zeros(1, dtype=torch.long, device=device)
    t = torch.as_tensor(targets[:1], device=device)
    tv, sv_t, _ = bank.geometry(pid, t)
    args = [x[0].cpu().numpy() for x in (bank.tris[pid], bank.bias[pid], bank.kind[pid])]
    tris, bias, kind = args[0].astype(np.int32), args[1], args[2].astype(np.int8)
    tv_np, sv = tv.cpu().numpy(), sv_t.cpu().numpy()
    numba_ms = timed_ms(lambda: rasterize_batch(tv_np, sv, tris, bias, kind, bank.size), torch.device("cpu"), repeats)
    torch_ms = timed_ms(lambda: bank.flow(pid, t), device, repeats)
    return {"numba_cpu_1_thread": _stats(numba_ms), "torch_device": _stats(torch_ms)}


def latency(bank: BatchRenderer, targets: np.ndarray, refiner: Refiner | None, frames: int) -> dict:
    """Milliseconds per frame at batch 1 (host landmarks -> uint8 frame on the device), warp and warp + refiner."""
    streams = Streams(bank.subset(torch.zeros(1, dtype=torch.long)), [targets], 1)
    out = {"warp": _stats(timed_ms(streams.tick, bank.device, frames))}
    if refiner is not None:
        out["warp_and_refiner"] = _stats(timed_ms(lambda: streams.tick(refiner), bank.device, frames))
    return out


def throughput(bank: BatchRenderer, targets: list[np.ndarray], refiner: Refiner | None, config: GpuBenchConfig,
               clock: Clock, reserve_s: float) -> list[dict]:
    """Tick time and frames per second against the number of streams, until a tick is too long, memory runs
    out, or the time left would not cover the next size."""
    rows: list[dict] = []
    for count in config.batches:
        if rows:
            last = rows[-1]
            guess_s = (config.repeats + 2) * last["tick_ms"]["median"] * count / last["streams"] / 1000 + 1.0
            if last["tick_ms"]["median"] > config.stop_tick_ms or clock.left() - reserve_s < guess_s:
                break
        try:
            row = _measure(bank, targets, count, refiner, config)
        except torch.cuda.OutOfMemoryError:
            rows.append({"streams": count, "out_of_memory": True})
            break
        rows.append(row)
        _print_row(row)
    # Narrow the streams a 40 ms tick holds down to a tenth, between the sizes tried.
    while True:
        ok = [r["streams"] for r in rows if r.get("within_tick")]
        if not ok:
            break
        lo = max(ok)
        over = [r["streams"] for r in rows if "fps" in r and not r["within_tick"] and r["streams"] > lo]
        if not over:
            break
        hi = min(over)
        mid = (lo + hi) // 2
        guess_s = (config.repeats + 2) * config.tick_ms * 1.5 / 1000 + 1.0
        if hi - lo <= max(1, lo // 10) or clock.left() - reserve_s < guess_s:
            break
        try:
            row = _measure(bank, targets, mid, refiner, config)
        except torch.cuda.OutOfMemoryError:
            break
        rows = sorted(rows + [row], key=lambda r: r["streams"])
        _print_row(row)
    return rows


def _print_row(row: dict) -> None:
    print(f"  {row['streams']:5d} streams: tick {row['tick_ms']['median']:8.2f} ms (p90 {row['tick_ms']['p90']:.2f}), "
          f"{row['fps']:8.1f} frames/s", flush=True)


def _measure(bank: BatchRenderer, targets: list[np.ndarray], count: int, refiner: Refiner | None,
             config: GpuBenchConfig) -> dict:
    """One row of :func:`throughput`: ``count`` streams' tick time, frames per second and device memory."""
    device = bank.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    streams = Streams(bank, targets, count)
    ms = timed_ms(lambda: streams.tick(refiner), device, config.repeats)
    row = {"streams": count, "tick_ms": _stats(ms), "fps": 1000 * count / float(np.median(ms)),
           "within_tick": bool(np.percentile(ms, 90) <= config.tick_ms)}
    if device.type == "cuda":
        resident = streams.renderer.portrait_bytes() * count
        peak = torch.cuda.max_memory_allocated(device) - base
        row["memory_mib"] = {"portraits_resident": resident / 2**20, "peak_total": peak / 2**20,
                             "working_per_frame": max(0, peak - resident) / count / 2**20}
    return row


def summarize(rows: list[dict], tick_ms: float) -> dict:
    """The best frames per second and the most streams that render within a tick (p90)."""
    ok = [r for r in rows if "fps" in r]
    if not ok:
        return {}
    best = max(ok, key=lambda r: r["fps"])
    within = [r["streams"] for r in ok if r["within_tick"]]
    return {"best_batch": best["streams"], "best_fps": best["fps"], "tick_ms": tick_ms,
            "streams": max(within) if within else 0,
            "note": f"streams: the most streams tried whose 90th-percentile tick (one frame each) is within "
                    f"{tick_ms:g} ms" + (" (25 fps)" if tick_ms == TICK_MS else " (a rehearsal's tick, not 25 fps)")}


class _Stop(Exception):
    """The run's hard deadline passed."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run(args: argparse.Namespace, config: GpuBenchConfig) -> dict:
    """Every stage, writing the result after each."""
    clock = Clock(config.budget_s)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch finds no CUDA GPU")
    result: dict = {
        "what": "bench.measure.gpu: the device renderer (torch rasterizer) on one device",
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "rehearsal": args.rehearse,
        "config": asdict(config),
        "machine": {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_start": os.getloadavg()[0]},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result["machine"] |= {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
                              "cuda": torch.version.cuda, "capability": f"{props.major}.{props.minor}"}
    out = Path(args.json)

    def save(stage: str) -> None:
        result["stages_done"] = result.get("stages_done", []) + [stage]
        result["elapsed_s"] = clock.elapsed()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
        print(f"[{clock.elapsed():6.1f} s] {stage} done", flush=True)

    torch.set_num_threads(args.threads)
    bundle = load_bundle(Path(args.bundle))
    faces = [c.assets for c in bundle.clips] + bundle.extra
    bank = BatchRenderer(faces, device)
    refiner = load_refiner(RENDERER_PATH, device) if config.neural and RENDERER_PATH.exists() else None
    # Each distinct face moves as one of the clips does (extra portraits borrow the clips' motion).
    targets = [c.targets for c in bundle.clips]
    targets += [clip_targets(a.landmarks, bundle.clips[j % len(bundle.clips)].landmarks)
                for j, a in enumerate(bundle.extra)]
    result["bundle"] = {"clips": [c.name for c in bundle.clips], "distinct_portraits": len(faces),
                        "portrait_size": bank.size}
    save("load")
    result["agreement"] = agreement(bundle, bank, refiner)
    save("agreement")
    result["batch1_ms"] = latency(bank, targets[0], refiner, config.latency_frames)
    save("batch 1")
    result["raster_alone_ms"] = raster_alone(bank, targets[0], device, max(2, config.repeats))
    save("rasterizer alone")
    reserve = 0.35 * clock.left() if refiner is not None else 5.0
    result["throughput_warp"] = throughput(bank, targets, None, config, clock, reserve)
    result["warp"] = summarize(result["throughput_warp"], config.tick_ms)
    save("throughput (warp)")
    if refiner is not None:
        result["throughput_warp_and_refiner"] = throughput(bank, targets, refiner, config, clock, 5.0)
        result["warp_and_refiner"] = summarize(result["throughput_warp_and_refiner"], config.tick_ms)
        save("throughput (warp + refiner)")
    result["machine"]["load_average_end"] = os.getloadavg()[0]
    save("end")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--bundle", default=str(DEFAULT_PATH), help="from bench.measure.gpu_prepare")
    p.add_argument("--json", default="",
                   help="where to write (default docs/gpu.json; rehearsals docs/gpu_rehearsal.json)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 480; rehearsal 240)")
    p.add_argument("--rehearse", action="store_true", help="every stage, small: a check on the CPU")
    p.add_argument("--no-refiner", action="store_true", help="skip the neural refiner")
    p.add_argument("--max-streams", type=int, default=0, help="try at most this many streams at once (0: no cap)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    config = GpuBenchConfig.rehearsal() if args.rehearse else GpuBenchConfig()
    batches = tuple(b for b in config.batches if not args.max_streams or b <= args.max_streams)
    config = GpuBenchConfig(**{**asdict(config), "neural": not args.no_refiner, "batches": batches or (1,),
                               **({"budget_s": args.budget_s} if args.budget_s else {})})
    args.json = args.json or ("docs/gpu_rehearsal.json" if args.rehearse else "docs/gpu.json")
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(config.budget_s + 60))  # past the budget by a minute: stop, keeping what was written
    try:
        result = run(args, config)
    except ValueError as e:
        print(f"bench.measure.gpu: error: {e}", file=sys.stderr)
        return 1
    except _Stop:
        print(f"bench.measure.gpu: stopped at the time budget ({config.budget_s:.0f} s + 60 s); "
              f"{args.json} holds the stages done", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    w, n = result.get("warp", {}), result.get("warp_and_refiner", {})
    a, b1 = result["agreement"], result["batch1_ms"]
    print(f"agreement with the CPU: warp SSIM min {a['warp_ssim_min']:.4f} mean {a['warp_ssim_mean']:.4f}"
          + (f", refiner SSIM min {a['neural_ssim_min']:.4f}" if "neural_ssim_min" in a else ""))
    print(f"batch 1: warp {b1['warp']['median']:.2f} ms/frame"
          + (f", warp + refiner {b1['warp_and_refiner']['median']:.2f} ms/frame" if "warp_and_refiner" in b1 else ""))
    if w:
        print(f"warp: best {w['best_fps']:.0f} frames/s at {w['best_batch']} streams; "
              f"{w['streams']} streams within a {w['tick_ms']:g} ms tick")
    if n:
        print(f"warp + refiner: best {n['best_fps']:.0f} frames/s at {n['best_batch']} streams; "
              f"{n['streams']} streams within a {n['tick_ms']:g} ms tick")
    print(f"wrote {args.json} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
