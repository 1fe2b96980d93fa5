"""``talk-train renderer-gpu``: the neural refiner trained on one GPU in minutes, the training data in its memory.

The CPU recipe (:mod:`codec.train.refiner`) renders one warp per patch on the CPU. Here every training
pair (a portrait of a clip, another frame of the same clip) is warped once, on the device, by the
device renderer (:mod:`codec.render.batch`), and the refiner's inputs inside each pair's repair-mask
crop (:mod:`codec.render.refine_batch`, the crop the renderer refines at run time) stay in GPU memory with
the true frames. Steps then only cut patches out of them: mixed precision (bfloat16), a large batch,
horizontal flips, a time-based cosine learning rate, an average of the weights (EMA) as the result.
Losses are the CPU recipe's (:mod:`codec.train.losses`): L1 weighted on the mouth and eyes, SSIM at
three scales, a patch discriminator's hinge loss after a share of the budget.

The GPU machine has no MediaPipe, PyAV or corpus, so the data are packed on a CPU machine first
(:mod:`codec.train.refiner_pack`), and nothing here reads a video:

    talk-train renderer-pack [--out .gpu/train.npz] [--frames-per-clip 20] [--sources 2]
    talk-train renderer-gpu --data .gpu/train.npz --out renderer_gpu.pt [--minutes 6] [--device cuda]
                            [--init codec/data/renderer.pt]

It writes only to ``--out`` (atomically, after success) and refuses the shipped
``codec/data/renderer.pt`` unless ``--replace-shipped``: ``python -m bench.measure.refiner_ship``
decides whether new weights are shipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.paths import atomic_output
from codec.render.assets import PortraitAssets, decode_image
from codec.render.batch import BatchRenderer
from codec.render.refine_batch import crop_inputs, repair_crops
from codec.render.refiner import RENDERER_PATH, Refiner, RefinerConfig, load_refiner, save_refiner
from codec.train.losses import PatchDiscriminator, ms_ssim_loss, weight_map

DEFAULT_DATA = Path(".gpu") / "train.npz"
LANDMARK_SCALE = 32.0  # landmarks are packed as int16 in 1/32 pixel
TRUTH_MARGIN = 8  # true frames are kept this far around the repair mask (the SSIM window's reach)
FLOW_X = 6  # the refiner input channel holding the flow's x (negated when a pair is flipped)


@dataclass
class PairData:
    """Every training pair's tensors on the device, cut to one crop size ``h x w``.

    Attributes:
        inputs: ``[P, 16, h, w]`` bfloat16: the refiner's 12 inputs, the warped crop (3), the repair mask (1).
        target: ``[P]`` int64 the pair's target frame; identity: ``[I]`` int64 the pairs whose target is
            their portrait.
        truth: ``[N, 3, h, w]`` uint8 true frames; known: ``[N, 1, h, w]`` bool where they were kept;
        weight: ``[N, 1, h, w]`` float the loss weight (mouth 4, eyes 3, elsewhere 1).
    """

    inputs: torch.Tensor
    target: torch.Tensor
    identity: torch.Tensor
    truth: torch.Tensor
    known: torch.Tensor
    weight: torch.Tensor


def load_pairs(path: Path, device: torch.device, log: Callable[[str], None] = print, chunk: int = 64) -> PairData:
    """Reads a pack, warps every pair on the device and keeps the crops there."""
    if not path.exists():
        raise ValueError(f"{path} is missing: run `talk-train renderer-pack --out {path}` on a CPU machine")
    z = np.load(path)
    lm = z["landmarks"].astype(np.float32) / LANDMARK_SCALE
    clip_of, sources, boxes = z["clip_of"], z["sources"], z["truth_box"].astype(np.int64)
    offsets = z["truth_offsets"]
    with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
        crops = list(pool.map(lambda i: decode_image(z["truth"][offsets[i]:offsets[i + 1]]), range(len(lm))))
        assets = list(pool.map(lambda j: PortraitAssets.from_arrays(z, f"s{j}_"), range(len(sources))))
    bank = BatchRenderer(assets, device)
    size = bank.size
    pairs = [(j, t) for j, (c, _) in enumerate(sources) for t in np.flatnonzero(clip_of == c)]
    portrait = torch.tensor([p[0] for p in pairs], device=device)
    target = torch.tensor([p[1] for p in pairs], device=device)
    landmarks = torch.from_numpy(lm).to(device)
    # One crop size for every pair: the largest frame's.
    h = w = 8
    for i in range(0, len(lm), chunk):
        c = repair_crops(landmarks[i:i + chunk], size)
        h, w = max(h, c.mask.shape[-2]), max(w, c.mask.shape[-1])
    log(f"  {len(sources)} portraits, {len(lm)} frames, {len(pairs)} pairs, crops {h}x{w}")
    origin = torch.zeros((len(lm), 2), dtype=torch.long, device=device)
    inputs = torch.empty((len(pairs), 16, h, w), dtype=torch.bfloat16, device=device)
    for i in range(0, len(pairs), chunk):
        pid, tid = portrait[i:i + chunk], target[i:i + chunk]
        with torch.inference_mode():
            result = bank.warp(pid, landmarks[tid])
            c = repair_crops(landmarks[tid], size, shape=(h, w))
            x, warped = crop_inputs(result, bank.image, c, pid)
            inputs[i:i + len(pid)] = torch.cat([x, warped, c.mask], 1).to(torch.bfloat16)
        origin[tid] = torch.stack([c.y0, c.x0], 1).to(device)
    # True frames in the crops' coordinates, and where they are known.
    origin_np = origin.cpu().numpy()
    truth = np.zeros((len(lm), 3, h, w), np.uint8)
    known = np.zeros((len(lm), 1, h, w), bool)
    weight = np.zeros((len(lm), 1, h, w), np.float32)
    for n, crop in enumerate(crops):
        dy, dx = boxes[n] - origin_np[n]
        ys, xs = slice(max(dy, 0), min(dy + crop.shape[0], h)), slice(max(dx, 0), min(dx + crop.shape[1], w))
        part = crop[ys.start - dy:ys.stop - dy, xs.start - dx:xs.stop - dx]
        truth[n, :, ys, xs] = part.transpose(2, 0, 1)
        known[n, :, ys, xs] = True
        weight[n, 0] = weight_map(lm[n], int(origin_np[n, 1]), int(origin_np[n, 0]), max(h, w))[:h, :w]
    identity = torch.tensor([i for i, p in enumerate(pairs) if sources[p[0]][1] == p[1]], dtype=torch.long,
                            device=device)
    return PairData(inputs, target, identity, torch.from_numpy(truth).to(device), torch.from_numpy(known).to(device),
                    torch.from_numpy(weight).to(device))


def _patches(t: torch.Tensor, index: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, side: int) -> torch.Tensor:
    """``t[index[b], :, oy[b]:oy[b] + side, ox[b]:ox[b] + side]`` for each ``b`` -> ``[B, C, side, side]``."""
    r = torch.arange(side, device=t.device)
    ys, xs = oy[:, None] + r, ox[:, None] + r
    return t[index[:, None, None], :, ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)


def batch(data: PairData, size: int, side: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A batch of patches: inputs ``[B, 12, s, s]``, warped, mask, truth (the warp where unknown), weight."""
    dev = data.inputs.device
    n = len(data.target)
    pick = torch.randint(0, n, (size,), device=dev, generator=generator)
    ident = data.identity
    if len(ident):  # a tenth of the time the portrait itself: the refiner must keep it
        swap = torch.rand(size, device=dev, generator=generator) < 0.1
        pick = torch.where(swap, ident[torch.randint(0, len(ident), (size,), device=dev, generator=generator)], pick)
    h, w = data.inputs.shape[-2:]
    oy = torch.randint(0, h - side + 1, (size,), device=dev, generator=generator)
    ox = torch.randint(0, w - side + 1, (size,), device=dev, generator=generator)
    tgt = data.target[pick]
    x = _patches(data.inputs, pick, oy, ox, side).float()
    truth = _patches(data.truth, tgt, oy, ox, side).float() / 255
    known = _patches(data.known, tgt, oy, ox, side)
    weight = _patches(data.weight, tgt, oy, ox, side)
    flip = torch.rand(size, device=dev, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    x[:, FLOW_X] = torch.where(flip[:, None, None], -x[:, FLOW_X], x[:, FLOW_X])
    truth = torch.where(flip[:, None, None, None], truth.flip(-1), truth)
    known = torch.where(flip[:, None, None, None], known.flip(-1), known)
    weight = torch.where(flip[:, None, None, None], weight.flip(-1), weight)
    inputs, warped, mask = x[:, :12], x[:, 12:15], x[:, 15:]
    return inputs, warped, mask, torch.where(known, truth, warped), weight


def train(data: PairData, args: argparse.Namespace, deadline: float,
          log: Callable[[str], None] = print) -> tuple[Refiner, dict]:
    """Trains until ``deadline`` (``time.monotonic()``) or ``args.steps``; returns the averaged weights."""
    dev = data.inputs.device
    generator = torch.Generator(device=dev).manual_seed(args.seed)
    model = (load_refiner(args.init) if args.init else Refiner(RefinerConfig())).to(dev).train()
    ema = copy.deepcopy(model).eval()
    disc = PatchDiscriminator().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.99))
    start = time.monotonic()
    budget = max(deadline - start, 1e-3)
    step, hist = 0, []
    while time.monotonic() < deadline and step < args.steps:
        done = (time.monotonic() - start) / budget
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        x, warped, mask, truth, weight = batch(data, args.batch, args.patch, generator)
        with torch.autocast(dev.type, torch.bfloat16, enabled=args.amp):
            out = model(x, warped, mask)
        out = out.float()
        l1 = (weight * (out - truth).abs()).mean() / weight.mean()
        base = (weight * (warped - truth).abs()).mean() / weight.mean()
        loss = l1 + args.ssim * ms_ssim_loss(out.clamp(0, 1), truth)
        use_adv = args.adv > 0 and done > args.adv_start
        if use_adv:
            with torch.autocast(dev.type, torch.bfloat16, enabled=args.amp):
                loss = loss + args.adv * (-disc(out).float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if use_adv:
            with torch.autocast(dev.type, torch.bfloat16, enabled=args.amp):
                d_loss = F.relu(1 - disc(truth).float()).mean() + F.relu(1 + disc(out.detach()).float()).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        hist.append(torch.stack([l1.detach(), base.detach()]))
        step += 1
        if step % args.log_every == 0:
            h = torch.stack(hist[-args.log_every:]).mean(0).tolist()
            log(f"  step {step:6d}  {(time.monotonic() - start) / 60:5.2f} min  L1 refined {h[0]:.4f}  warp {h[1]:.4f}"
                f"{'  (adversarial on)' if use_adv else ''}")
    last = torch.stack(hist[-200:]).mean(0).tolist() if hist else [math.nan, math.nan]
    return ema.cpu(), {"steps": step, "minutes": (time.monotonic() - start) / 60, "l1_refined_last200": last[0],
                       "l1_warp_last200": last[1], "device": str(dev)}


def _train_main(args: argparse.Namespace) -> int:
    start = time.monotonic()
    deadline = start + 60 * args.minutes - args.save_reserve_s
    out = Path(args.out)
    if out.resolve() == RENDERER_PATH.resolve() and not args.replace_shipped:
        raise ValueError(f"--out is the shipped {RENDERER_PATH.name}: write elsewhere, compare with "
                         "bench.measure.refiner_ship, or pass --replace-shipped")
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch finds no CUDA GPU")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"talk-train renderer-gpu: loading {args.data} onto {device}", flush=True)
    data = load_pairs(Path(args.data), device)
    if min(data.inputs.shape[-2:]) < args.patch:
        raise ValueError(f"--patch {args.patch} is larger than the crops {tuple(data.inputs.shape[-2:])}")
    print(f"  loaded in {time.monotonic() - start:.1f} s", flush=True)
    model, stats = train(data, args, deadline)
    stats["load_s"] = time.monotonic() - start - 60 * stats["minutes"]
    if device.type == "cuda":
        stats["gpu"] = torch.cuda.get_device_name(device)
        stats["gpu_memory_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if not math.isfinite(stats["l1_refined_last200"]):
        print("talk-train renderer-gpu: error: the loss is not finite; nothing written", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        save_refiner(model, tmp, meta={**stats, "recipe": "renderer-gpu",
                                       "args": {k: str(v) for k, v in vars(args).items()}})
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB) after {stats['steps']} steps, "
          f"{stats['minutes']:.2f} min of training, {time.monotonic() - start:.0f} s in all; last L1 refined "
          f"{stats['l1_refined_last200']:.4f} vs warp {stats['l1_warp_last200']:.4f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talk-train renderer-gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="from talk-train renderer-pack")
    p.add_argument("--out", type=Path, required=True, help="where to write the weights")
    p.add_argument("--stats", type=Path, default=None, help="also write the training figures here (JSON)")
    p.add_argument("--replace-shipped", action="store_true", help="allow --out to be the shipped weights")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--minutes", type=float, default=6.0, help="wall-clock budget of the whole command")
    p.add_argument("--save-reserve-s", type=float, default=10.0, help="kept from the budget for writing")
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--patch", type=int, default=160, help="patch side (a multiple of 8)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (cosine to 0 over the budget)")
    p.add_argument("--ssim", type=float, default=1.0, help="weight of the multi-scale SSIM loss")
    p.add_argument("--adv", type=float, default=0.003, help="weight of the adversarial loss (0: off)")
    p.add_argument("--adv-start", type=float, default=0.3, help="share of the budget before the adversary joins")
    p.add_argument("--ema", type=float, default=0.999, help="decay of the weights' moving average")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="float32 instead of bfloat16 autocast")
    p.add_argument("--init", type=Path, default=None, help="start from these weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=200)
    args = p.parse_args(argv)
    if args.patch % 8 or args.patch < 48:
        p.error("--patch must be a multiple of 8, at least 48")
    try:
        return _train_main(args)
    except (ValueError, OSError) as e:
        print(f"talk-train renderer-gpu: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
