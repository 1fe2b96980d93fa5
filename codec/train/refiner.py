"""``talk-train renderer``: trains the neural refinement stage on the corpus.

Self-supervised: a training clip's frame is the portrait, another frame of the
same clip is the target; the warp renders the target's landmarks from the
portrait and the refiner learns to turn that into the true frame. Losses: L1
(mouth and eyes weighted), SSIM at three scales, and a patch discriminator's
hinge loss, on the refined frame as the renderer makes it: the correction
applied inside the lips-and-eyes repair mask only. No pretrained network is used. Training runs on patches cut
around the face (mostly the mouth and eyes) and is bounded in wall-clock time,
so it fits a CPU.

    talk-train renderer [--minutes 15] [--batch 6] [--patch 192] [--out codec/data/renderer.pt]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec import regions as R
from codec.errors import MediaError, TalkcodecError
from codec.media import read_video
from codec.motion import TEMPLATE_PATH
from codec.render.refiner import (
    RENDERER_PATH,
    Refiner,
    RefinerConfig,
    load_refiner,
    refiner_inputs,
    repair_mask,
    save_refiner,
)
from codec.render.warp import GeometricWarp
from codec.tokenizer import TOKENIZER_PATH
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.losses import PatchDiscriminator, ms_ssim_loss, weight_map
from codec.train.output import add_output_arguments, check_model_output, training_split
from codec.validate import ArgumentParser


@dataclass
class ClipData:
    """Frames of one training clip held in memory and the warps of its portraits."""

    frames: np.ndarray       # [N, H, W, 3] uint8
    landmarks: np.ndarray    # [N, 478, 3]
    warps: list[GeometricWarp]
    sources: list[int]       # frame index of each warp's portrait


def load_clips(clips: list[str], frames_per_clip: int, sources: int, rng: np.random.Generator,
               log: Callable[[str], object] = print) -> list[ClipData]:
    """Reads every ``k``-th frame of each clip (up to ``frames_per_clip``) and builds ``sources`` warps per clip."""

    root = corpus_dir()
    out = []
    for clip in clips:
        cl = clip_landmarks(root / clip)
        step = max(1, len(cl.landmarks) // frames_per_clip)
        keep, frames = [], []
        for i, f in enumerate(read_video(root / clip)):
            if i % step == 0 and cl.valid[i] and f.shape[:2] == (512, 512):
                keep.append(i)
                frames.append(f)
            if len(keep) >= frames_per_clip:
                break
        if len(keep) < 4:
            continue
        lm = cl.landmarks[keep]
        src = sorted(rng.choice(len(keep), size=min(sources, len(keep)), replace=False).tolist())
        warps = [GeometricWarp(frames[s], lm[s], torch.device("cpu")) for s in src]
        out.append(ClipData(np.stack(frames), lm, warps, src))
        log(f"  {clip}: {len(keep)} frames, portraits at {src}")
    return out


def _patch_centre(lm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where to cut a patch: the mouth half the time, an eye a quarter, elsewhere on the face otherwise."""
    u = rng.random()
    if u < 0.5:
        c = lm[R.LIPS_OUTER, :2].mean(0)
    elif u < 0.75:
        c = lm[R.RIGHT_EYE_CONTOUR if rng.random() < 0.5 else R.LEFT_EYE_CONTOUR, :2].mean(0)
    else:
        lo, hi = lm[R.FACE_OVAL, :2].min(0), lm[R.FACE_OVAL, :2].max(0)
        c = lo + rng.random(2) * (hi - lo)
    return c + rng.normal(0, 12, 2)


def make_batch(data: list[ClipData], batch: int, patch: int,
               rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Inputs ``[B, 12, P, P]``, warped ``[B, 3, P, P]``, truth ``[B, 3, P, P]``, loss weights ``[B, 1, P, P]``
    and repair masks ``[B, 1, P, P]``."""
    xs, ws, ts, wm, ms = [], [], [], [], []
    for _ in range(batch):
        clip = data[rng.integers(len(data))]
        k = rng.integers(len(clip.warps))
        warp = clip.warps[k]
        t = int(rng.integers(len(clip.frames)))
        if rng.random() < 0.1:  # sometimes the portrait itself: the refiner must keep it
            t = clip.sources[k]
        lm = clip.landmarks[t]
        res = warp.warp(lm[None])
        x = refiner_inputs(res, warp.image[:, :3])
        size = x.shape[-1]
        c = _patch_centre(lm, rng)
        x0, y0 = (np.clip(np.round(c - patch / 2), 0, size - patch)).astype(int)
        sl = (slice(None), slice(None), slice(y0, y0 + patch), slice(x0, x0 + patch))
        xs.append(x[sl])
        ws.append(res.frames[sl])
        truth = torch.from_numpy(clip.frames[t]).permute(2, 0, 1)[None].float() / 255
        ts.append(truth[sl])
        wm.append(torch.from_numpy(weight_map(lm, x0, y0, patch))[None, None])
        ms.append(torch.from_numpy(repair_mask(lm[None], size)[sl]))
    return torch.cat(xs).clone(), torch.cat(ws).clone(), torch.cat(ts), torch.cat(wm), torch.cat(ms)


def train(data: list[ClipData], args: argparse.Namespace,
          log: Callable[[str], object] = print) -> tuple[Refiner, dict[str, float]]:
    rng = np.random.default_rng(args.seed + 1)
    model = Refiner(RefinerConfig())
    if args.init is not None:  # continue from earlier weights

        model = load_refiner(args.init).train()
    disc = PatchDiscriminator()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.99))
    start = time.monotonic()
    budget = args.minutes * 60
    adv_from = args.adv_start * budget
    step, hist = 0, []
    while time.monotonic() - start < budget and step < args.steps:
        x, warped, truth, weight, mask = make_batch(data, args.batch, args.patch, rng)
        out = model(x, warped, mask)
        l1 = (weight * (out - truth).abs()).mean() / weight.mean()
        base = (weight * (warped - truth).abs()).mean() / weight.mean()
        loss = l1 + args.ssim * ms_ssim_loss(out.clamp(0, 1), truth)
        use_adv = time.monotonic() - start > adv_from and args.adv > 0
        if use_adv:
            loss = loss + args.adv * (-disc(out).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if use_adv:
            d_loss = F.relu(1 - disc(truth)).mean() + F.relu(1 + disc(out.detach())).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        hist.append((l1.item(), base.item()))
        step += 1
        if step % 50 == 0:
            h = np.array(hist[-50:])
            log(f"  step {step:5d}  {(time.monotonic() - start) / 60:5.1f} min  L1 refined {h[:, 0].mean():.4f}"
                f"  warp {h[:, 1].mean():.4f}{'  (adversarial on)' if use_adv else ''}")
    h = np.array(hist[-200:]) if hist else np.zeros((1, 2))
    return model, {"steps": step, "minutes": (time.monotonic() - start) / 60,
                   "l1_refined_last200": float(h[:, 0].mean()), "l1_warp_last200": float(h[:, 1].mean())}


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="talk-train renderer", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=1_000_000, help="stop after this many steps")
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--patch", type=int, default=192, help="patch side (a multiple of 8)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ssim", type=float, default=0.5, help="weight of the multi-scale SSIM loss")
    p.add_argument("--adv", type=float, default=0.01, help="weight of the adversarial loss (0: off)")
    p.add_argument("--adv-start", type=float, default=0.3, help="share of the budget before the adversary joins")
    p.add_argument("--frames-per-clip", type=int, default=40)
    p.add_argument("--sources", type=int, default=2, help="portraits per clip")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="start from these weights instead of from zero")
    add_output_arguments(p, RENDERER_PATH)
    args = p.parse_args(argv)
    if args.patch % 8:
        p.error("--patch must be a multiple of 8")
    # --init may be the output (training on from the shipped weights): it is read whole before training,
    # and the output replaces it only at the end.
    check_model_output(args.out, args.overwrite, reads=(TOKENIZER_PATH, TEMPLATE_PATH))
    training_split()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    clips = list(corpus_split().train)
    print(f"talk-train renderer: {len(clips)} training clips")
    data = load_clips(clips, args.frames_per_clip, args.sources, rng)
    if not data:
        raise MediaError("no training clip has 4 frames with a face at 512x512: nothing to train on")
    model, stats = train(data, args)
    if not math.isfinite(stats["l1_refined_last200"]):
        raise TalkcodecError(f"training diverged (L1 {stats['l1_refined_last200']}): {args.out} left as it was")
    save_refiner(model, args.out, meta={**stats, "args": {k: str(v) for k, v in vars(args).items()}})
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB) after {stats['steps']} steps in {stats['minutes']:.1f} min;"
          f" last L1 refined {stats['l1_refined_last200']:.4f} vs warp {stats['l1_warp_last200']:.4f}")
    return 0
