"""Ships new refiner weights only if they beat the shipped ones on the held-out corpus clips.

``bench.measure.render_quality``'s held-out run with the neural renderer (the method of the README's
figures), once with the shipped ``codec/data/renderer.pt`` and once with the candidate; the candidate
is copied over the shipped file only if its mean SSIM, mouth SSIM and detail are all higher
(:func:`bench.measure.refiner_compare.verdict`). Needs the corpus (CPU machine).

    python -m bench.measure.refiner_ship --candidate renderer_gpu.pt [--ship] [--max-frames 100] [--stride 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench.measure.refiner_compare import METRICS, check_weights, report, verdict
from bench.measure.render_quality import measure_clip
from codec.paths import write_bytes_atomic
from codec.render.pipeline import RenderConfig
from codec.render.refiner import RENDERER_PATH
from codec.train.corpus import corpus_split


def on_corpus(weights: dict[str, Path], args: argparse.Namespace) -> dict:
    """Per weights file, per held-out clip: ``bench.measure.render_quality``'s neural run."""
    clips = corpus_split().held_out
    if not clips:
        raise ValueError("no held-out clips: set TALKCODEC_CORPUS")
    ns = argparse.Namespace(max_frames=args.max_frames, stride=args.stride, tokens=False, strips="")
    rows = []
    for clip in clips:
        row: dict = {"clip": Path(clip).stem}
        for name, path in weights.items():
            r = measure_clip(clip, ns, RenderConfig(device=args.device, renderer="neural", refiner_path=str(path)))
            row[name] = {k: r["neural"][k] for k in METRICS}
            row["frames"] = r["frames"]
        rows.append(row)
        print(f"  {row['clip']}: " + json.dumps({n: row[n] for n in weights}), flush=True)
    return {"method": "corpus (bench.measure.render_quality, neural renderer)", "clips": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.refiner_ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", type=Path, required=True, help="new refiner weights")
    p.add_argument("--current", type=Path, default=RENDERER_PATH, help="weights to beat (default: the shipped)")
    p.add_argument("--ship", action="store_true", help="copy the candidate over the shipped weights if it is better")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--max-frames", type=int, default=100, help="frames read per clip")
    p.add_argument("--stride", type=int, default=2, help="score every n-th frame")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        check_weights(args.candidate, args.current)
        result = on_corpus({"current": args.current, "candidate": args.candidate}, args)
    except (ValueError, OSError) as e:
        print(f"bench.measure.refiner_ship: error: {e}", file=sys.stderr)
        return 1
    result |= verdict(result)
    report(result)
    if args.ship:
        if result["beats"]:
            write_bytes_atomic(RENDERER_PATH, args.candidate.read_bytes())
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
