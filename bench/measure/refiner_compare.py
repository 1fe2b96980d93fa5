"""New refiner weights against the shipped ones on held-out clips; shipped only if better on all three counts.

"Better" is a higher mean, over the held-out clips, of SSIM, mouth SSIM and detail (``bench.metrics``:
detail is the face's Laplacian variance over the truth's; the refiner's known fault is to smooth it).
Two ways to measure:

* on the corpus (a CPU machine with the corpus; the default): ``bench.render_quality``'s held-out run with
  the neural renderer, once per weights file: the method of the README's figures. ``--ship`` then copies
  the candidate over ``codec/data/renderer.pt``, only if it is better;
* on a bundle (``--bundle .gpu/bench.npz``, the GPU machine, which has no MediaPipe or corpus): the held-out
  clips of ``bench.measure.gpu_bundle`` rendered by the device renderer and refiner; mouth SSIM and detail
  use the truth's tracked landmarks instead of re-tracking the true frames. A verdict to bring home and
  confirm on the corpus, never a reason to ship by itself.

    python -m bench.measure.refiner_compare --candidate renderer_gpu.pt [--ship] [--max-frames 100] [--stride 2]
    python -m bench.measure.refiner_compare --candidate renderer_gpu.pt --bundle .gpu/bench.npz --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from bench.metrics import face_oval_mask, laplacian_variance, mouth_ssim, ssim
from codec.neural import RENDERER_PATH, load_refiner
from codec.refine_batch import refine_batch
from codec.render_batch import BatchRenderer

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
    from bench.measure.gpu_bundle import load_bundle

    bundle = load_bundle(bundle_path)
    clips = [c for c in bundle.clips if c.name != "sample"] or bundle.clips  # the sample is a held-out clip too
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


def on_corpus(weights: dict[str, Path], args: argparse.Namespace) -> dict:
    """Per weights file, per held-out clip: ``bench.render_quality``'s neural run (CPU, the corpus)."""
    from bench.render_quality import measure_clip
    from codec.corpus import corpus_split
    from codec.render import RenderConfig

    clips = corpus_split().held_out
    if not clips:
        raise ValueError("no held-out clips: set TALKCODEC_CORPUS, or measure on a bundle with --bundle")
    ns = argparse.Namespace(max_frames=args.max_frames, stride=args.stride, tokens=False, strips="")
    rows = []
    for clip in clips:
        row: dict = {"clip": Path(clip).stem}
        for name, path in weights.items():
            config = RenderConfig(device=args.device, renderer="neural", refiner_path=str(path))
            r = measure_clip(clip, ns, config)
            row[name] = {k: r["neural"][k] for k in METRICS}
            row["frames"] = r["frames"]
        rows.append(row)
        print(f"  {row['clip']}: " + json.dumps({n: row[n] for n in weights}), flush=True)
    return {"method": "corpus (bench.render_quality, neural renderer)", "clips": rows}


def verdict(result: dict, names: tuple[str, str] = ("current", "candidate")) -> dict:
    """Means over clips and whether the candidate is better on every metric."""
    means = {n: {k: float(np.mean([r[n][k] for r in result["clips"]])) for k in METRICS}
             for n in result["clips"][0] if isinstance(result["clips"][0][n], dict)}
    cur, cand = (means[n] for n in names)
    better = {k: cand[k] > cur[k] for k in METRICS}
    return {"mean": means, "better": better, "beats": all(better.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.refiner_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", type=Path, required=True, help="new refiner weights")
    p.add_argument("--current", type=Path, default=RENDERER_PATH, help="weights to beat (default: the shipped)")
    p.add_argument("--bundle", type=Path, default=None, help="measure on this bundle (GPU machine) instead")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--max-frames", type=int, default=100, help="corpus: frames read per clip")
    p.add_argument("--stride", type=int, default=2, help="corpus: score every n-th frame")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ship", action="store_true", help="corpus only: copy the candidate over the shipped weights "
                                                       "if it is better on all three")
    p.add_argument("--json", default="", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ship and args.bundle is not None:
        p.error("--ship needs the corpus measurement (without --bundle)")
    try:
        for path in (args.candidate, args.current):
            if not path.exists():
                raise ValueError(f"{path}: no such weights file")
        if args.candidate.stat().st_size > MAX_BYTES:
            raise ValueError(f"{args.candidate}: over 16 MiB")
        load_refiner(args.candidate)  # a readable refiner, or a one-line error
        weights = {"current": args.current, "candidate": args.candidate}
        device = torch.device(args.device if args.device != "auto" else
                              ("cuda" if torch.cuda.is_available() else "cpu"))
        result = on_bundle(weights, args.bundle, device) if args.bundle else on_corpus(weights, args)
    except (ValueError, OSError, RuntimeError, KeyError) as e:
        print(f"bench.measure.refiner_compare: error: {e}", file=sys.stderr)
        return 1
    result |= verdict(result)
    m = result["mean"]
    for name in m:
        print(f"{name:10s} " + "  ".join(f"{k} {m[name][k]:.4f}" for k in METRICS))
    print(f"candidate better on {', '.join(k for k, v in result['better'].items() if v) or 'nothing'}; "
          f"{'beats' if result['beats'] else 'does not beat'} the current weights")
    if args.ship:
        if result["beats"]:
            tmp = RENDERER_PATH.with_name(RENDERER_PATH.name + ".tmp")
            shutil.copyfile(args.candidate, tmp)
            os.replace(tmp, RENDERER_PATH)
            print(f"shipped: {args.candidate} -> {RENDERER_PATH}")
        else:
            print("not shipped")
        result["shipped"] = bool(result["beats"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
