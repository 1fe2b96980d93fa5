"""New refiner weights against the shipped ones, on the held-out clips of a GPU bundle.

"Better" is a higher mean, over the held-out clips, of SSIM, mouth SSIM and detail (``bench.metrics``:
detail is the face's Laplacian variance over the truth's; the refiner's known fault is to smooth it).
This runs where the weights are trained, on the GPU machine (no MediaPipe or corpus there): the clips of
:mod:`bench.measure.gpu_bundle`, rendered by the device renderer and refiner, with mouth SSIM and detail
taken on the truth's tracked landmarks. It is a verdict to bring home, never a reason to ship by itself:
``bench.measure.refiner_ship`` measures again on the corpus and ships.

    python -m bench.measure.refiner_compare --candidate renderer_gpu.pt [--bundle .gpu/bench.npz] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from bench.measure.gpu_bundle import DEFAULT_PATH, load_bundle
from bench.metrics.pixels import mouth_ssim, ssim
from bench.metrics.sharpness import face_oval_mask, laplacian_variance
from codec.render.batch import BatchRenderer
from codec.render.refine_batch import refine_batch
from codec.render.refiner import RENDERER_PATH, load_refiner

METRICS = ("ssim", "mouth_ssim", "detail")
MAX_BYTES = 16 * 2**20


def _u8(frames: torch.Tensor) -> np.ndarray:
    return (frames * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def score_frames(decoded: np.ndarray, truth: np.ndarray, truth_landmarks: np.ndarray) -> dict[str, float]:
    """SSIM, mouth SSIM and detail of ``[T, H, W, 3]`` frames against the truth and its ``[T, 478, 3]`` landmarks."""
    shape = (int(truth.shape[1]), int(truth.shape[2]))
    masks = np.stack([face_oval_mask(lm, shape) for lm in truth_landmarks])
    detail = np.nanmean(laplacian_variance(decoded, masks)) / np.nanmean(laplacian_variance(truth, masks))
    return {"ssim": float(ssim(decoded, truth).mean()),
            "mouth_ssim": float(mouth_ssim(decoded, truth, truth_landmarks).mean()), "detail": float(detail)}


def on_bundle(weights: dict[str, Path], bundle_path: Path, device: torch.device, chunk: int = 16) -> dict:
    """Per weights file (and the plain warp), per held-out clip of the bundle: :func:`score_frames`."""
    bundle = load_bundle(bundle_path)
    clips = [c for c in bundle.clips if c.name != "sample"] or bundle.clips  # the sample is a held-out clip's start
    bank = BatchRenderer([c.assets for c in clips], device)
    models = {name: load_refiner(path, device) for name, path in weights.items()}
    rows = []
    for k, clip in enumerate(clips):
        targets = torch.as_tensor(clip.targets[clip.eval_index], device=device)
        decoded: dict[str, list[np.ndarray]] = {name: [] for name in ["warp", *models]}
        for i in range(0, len(targets), chunk):
            t = targets[i:i + chunk]
            pid = torch.full((len(t),), k, dtype=torch.long, device=device)
            with torch.inference_mode():
                result = bank.warp(pid, t)
                decoded["warp"].append(_u8(result.frames))
                for name, model in models.items():
                    decoded[name].append(_u8(refine_batch(model, result, bank.image, t, pid)))
        truth_lm = clip.landmarks[clip.eval_index]
        rows.append({"clip": clip.name, "frames": len(targets)}
                    | {name: score_frames(np.concatenate(d), clip.truth, truth_lm) for name, d in decoded.items()})
        print(f"  {clip.name}: " + json.dumps({n: rows[-1][n] for n in decoded}), flush=True)
    return {"method": "bundle (device renderer; truth landmarks as tracked)", "clips": rows}


def verdict(result: dict, names: tuple[str, str] = ("current", "candidate")) -> dict:
    """Means over clips and whether the candidate is better on every metric."""
    means = {n: {k: float(np.mean([r[n][k] for r in result["clips"]])) for k in METRICS}
             for n in result["clips"][0] if isinstance(result["clips"][0][n], dict)}
    cur, cand = (means[n] for n in names)
    better = {k: cand[k] > cur[k] for k in METRICS}
    return {"mean": means, "better": better, "beats": all(better.values())}


def check_weights(candidate: Path, current: Path) -> None:
    """Both files exist, the candidate is at most 16 MiB and reads as a refiner.

    Raises:
        ValueError: with what is wrong.
    """
    for path in (candidate, current):
        if not path.exists():
            raise ValueError(f"{path}: no such weights file")
    if candidate.stat().st_size > MAX_BYTES:
        raise ValueError(f"{candidate}: over 16 MiB")
    try:
        load_refiner(candidate)
    except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{candidate}: not refiner weights ({type(e).__name__})") from None


def report(result: dict) -> None:
    """Prints the means and the verdict."""
    m = result["mean"]
    for name in m:
        print(f"{name:10s} " + "  ".join(f"{k} {m[name][k]:.4f}" for k in METRICS))
    print(f"candidate better on {', '.join(k for k, v in result['better'].items() if v) or 'nothing'}; "
          f"{'beats' if result['beats'] else 'does not beat'} the current weights")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.refiner_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", type=Path, required=True, help="new refiner weights")
    p.add_argument("--current", type=Path, default=RENDERER_PATH, help="weights to beat (default: the shipped)")
    p.add_argument("--bundle", type=Path, default=DEFAULT_PATH, help="from bench.measure.gpu_prepare")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        check_weights(args.candidate, args.current)
        result = on_bundle({"current": args.current, "candidate": args.candidate}, args.bundle, device)
    except (ValueError, OSError) as e:
        print(f"bench.measure.refiner_compare: error: {e}", file=sys.stderr)
        return 1
    result |= verdict(result)
    report(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
