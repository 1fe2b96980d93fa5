"""Measures the codec core on held-out corpus clips (issue: codec core).

Self-reenactment through the tokenizer: each held-out clip's first frame is
the reference and the portrait; every frame's motion is tokenized, decoded with
the first r = 1..4 residual layers, and transferred back onto the first frame.
Reports landmark NME (normalized by inter-ocular distance) per region and layer
count against the zero-motion baseline (the reference held still), the
mouth-opening correlation, codebook use, and encoding speed on one core.
Tokens are the sender's: refined against the decoder (``--refine-steps``,
0 for the encoder network's alone).

    python -m bench.measure.codec_fidelity [--refine-steps N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from bench.metrics.landmarks import nme
from codec import regions as R
from codec.bitstream import pack_fixed
from codec.face import FaceTracker
from codec.media import read_video
from codec.motion import MotionDelta, motion_from_landmarks, relative, transfer
from codec.tokenizer import REFINE_STEPS, load_tokenizer
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.tokenizer import corpus_tokens


def _nme(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Clip-mean NME over the mesh and per region (lips, eyes, rest)."""
    return {k: float(v.mean()) for k, v in nme(pred, true).items()}


def fidelity(steps: int = REFINE_STEPS) -> dict:
    root = corpus_dir()
    tok = load_tokenizer()
    per_clip = []
    for clip in corpus_split(root).held_out:
        cl = clip_landmarks(root / clip)
        lm = cl.landmarks[cl.valid].astype(np.float64)
        ref = motion_from_landmarks(lm[0])
        delta = relative(motion_from_landmarks(lm), ref)
        tokens = tok.refine(delta.to_vector(), ref, steps)
        row: dict[str, Any] = {"clip": clip, "frames": len(lm), "baseline": _nme(np.broadcast_to(lm[0], lm.shape), lm)}
        mo_true = R.mouth_opening(lm)
        for r in range(1, tok.config.grfsq.residuals + 1):
            pred = transfer(lm[0], MotionDelta.from_vector(tok.decode(tokens[:, :r])))
            row[f"L{r}"] = _nme(pred, lm)
            row[f"L{r}"]["mouth_corr"] = float(np.corrcoef(R.mouth_opening(pred), mo_true)[0, 1])
        per_clip.append(row)
    return {"clips": per_clip}


def utilization() -> dict:
    """Share of the 625 codes used at least once, per layer and group, over the whole corpus."""
    toks = np.concatenate(corpus_tokens("train") + corpus_tokens("held_out"))
    used = np.zeros(toks.shape[1:], np.int64)
    for r in range(toks.shape[1]):
        for g in range(toks.shape[2]):
            used[r, g] = np.unique(toks[:, r, g]).size
    return {"frames": int(toks.shape[0]), "share": (used / 625).round(3).tolist(),
            "mean_share_per_layer": (used / 625).mean(1).round(3).tolist()}


def speed(frames: int = 100, steps: int = REFINE_STEPS) -> dict:
    """ms/frame on one core: face tracking, and motion + tokenizer (+ packing when present)."""

    torch.set_num_threads(1)
    clip = corpus_dir() / corpus_split().held_out[0]
    video = list(read_video(clip, frames))
    tok = load_tokenizer()
    with FaceTracker() as tracker:
        tracker.track(video[0])
        t0 = time.perf_counter()
        lms = [tracker.track(f) for f in video]
        t_track = (time.perf_counter() - t0) / len(video)
    ref = motion_from_landmarks(lms[0])
    t0 = time.perf_counter()
    for lm in lms:
        tok.refine(relative(motion_from_landmarks(lm), ref).to_vector()[None], ref, steps)
    t_tok = (time.perf_counter() - t0) / len(video)
    out = {"track_ms": 1e3 * t_track, "tokenize_ms": 1e3 * t_tok}
    try:
        tokens = tok.encode(relative(motion_from_landmarks(np.stack(lms)), ref).to_vector())
        t0 = time.perf_counter()
        for t in tokens:
            pack_fixed(t)
        out["pack_ms"] = 1e3 * (time.perf_counter() - t0) / len(tokens)
    except ImportError:
        pass
    out["total_ms"] = sum(out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--refine-steps", type=int, default=REFINE_STEPS,
                        help="the sender's refinement steps (default: %(default)s; 0: the encoder network alone)")
    args = parser.parse_args()
    res = {"refine_steps": args.refine_steps, "fidelity": fidelity(args.refine_steps), "utilization": utilization(),
           "speed": speed(steps=args.refine_steps)}
    print(f"{'clip':40s} {'frames':>6s} {'still':>7s} " + " ".join(f"{'L' + str(r):>7s}" for r in range(1, 5))
          + "   mouth corr L4")
    for row in res["fidelity"]["clips"]:
        print(f"{row['clip']:40s} {row['frames']:6d} {row['baseline']['all']:7.4f} "
              + " ".join(f"{row[f'L{r}']['all']:7.4f}" for r in range(1, 5)) + f"   {row['L4']['mouth_corr']:.3f}")
    clips = res["fidelity"]["clips"]
    for region in ("lips", "eyes", "rest", "all"):
        base = np.mean([c["baseline"][region] for c in clips])
        vals = [np.mean([c[f"L{r}"][region] for c in clips]) for r in range(1, 5)]
        print(f"mean NME {region:5s} still {base:.4f}  " + "  ".join(f"L{r} {v:.4f}" for r, v in enumerate(vals, 1))
              + f"   L4/still {vals[-1] / base:.1%}")
    print("mouth corr per layer:", [round(float(np.mean([c[f'L{r}']['mouth_corr'] for c in clips])), 3)
                                   for r in range(1, 5)])
    print("codebook use per layer:", res["utilization"]["mean_share_per_layer"])
    print("speed ms/frame:", {k: round(v, 2) for k, v in res["speed"].items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
