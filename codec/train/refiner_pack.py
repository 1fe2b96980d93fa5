"""``talk-train renderer-pack``: the training data of ``talk-train renderer-gpu``, packed on a CPU machine.

The GPU machine has no MediaPipe, PyAV or corpus. This reads the training clips (as the CPU recipe
:mod:`codec.train.refiner` picks their frames), prepares each clip's portraits (segmentation, mesh:
:class:`codec.render.assets.PortraitAssets`, WebP) and keeps, for every frame, its landmarks (int16, 1/32
pixel) and the true frame around its repair mask (WebP): one file, about 32 MiB for the whole corpus,
which the device tool carries (git ignores ``.gpu/``).

    talk-train renderer-pack [--out .gpu/train.npz] [--frames-per-clip 20] [--sources 2] [--clip VIDEO ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from codec.logs import quiet_native_logs
from codec.media import read_video
from codec.paths import atomic_output
from codec.render.assets import PortraitAssets, pack_images
from codec.render.refine_batch import repair_crops
from codec.render.warp import GeometricWarp
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.refiner_gpu import DEFAULT_DATA, LANDMARK_SCALE, TRUTH_MARGIN


def pack(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """The training pairs' data: per clip its portraits (assets) and, per kept frame, landmarks and the true
    frame around its repair mask."""
    rng = np.random.default_rng(args.seed)
    root = corpus_dir()
    clips = [str(c) for c in args.clip] or list(corpus_split(root).train)[: args.clips or None]
    if not clips:
        raise ValueError(f"no training clips under {root}; set TALKCODEC_CORPUS")
    out: dict[str, np.ndarray] = {}
    landmarks: list[np.ndarray] = []
    crops: list[np.ndarray] = []
    boxes: list[tuple[int, int]] = []
    sources: list[tuple[int, int]] = []
    clip_of: list[int] = []
    names: list[str] = []
    for clip in clips:
        cl = clip_landmarks(root / clip)
        step = max(1, len(cl.landmarks) // args.frames_per_clip)
        keep, frames = [], []
        for i, f in enumerate(read_video(root / clip)):
            if i % step == 0 and cl.valid[i] and f.shape[:2] == (512, 512):
                keep.append(i)
                frames.append(f)
            if len(keep) >= args.frames_per_clip:
                break
        if len(keep) < 4:
            continue
        lm = cl.landmarks[keep].astype(np.float32)
        first = len(landmarks)
        box = repair_crops(torch.from_numpy(lm), 512, margin=TRUTH_MARGIN)
        h, w = box.mask.shape[-2:]
        for k, f in enumerate(frames):
            y0, x0 = int(box.y0[k]), int(box.x0[k])
            crops.append(f[y0:y0 + h, x0:x0 + w])
            boxes.append((y0, x0))
        landmarks += list(lm)
        clip_of += [len(names)] * len(frames)
        for s in sorted(rng.choice(len(keep), size=min(args.sources, len(keep)), replace=False).tolist()):
            warp = GeometricWarp(frames[s], lm[s], torch.device("cpu"))
            out |= PortraitAssets.from_warp(warp).to_arrays(f"s{len(sources)}_", "webp")
            sources.append((len(names), first + s))
        names.append(Path(clip).stem)
        log(f"  {clip}: {len(frames)} frames, {min(args.sources, len(keep))} portraits")
    out["clips"] = np.array(names)
    out["landmarks"] = np.round(np.stack(landmarks) * LANDMARK_SCALE).astype(np.int16)
    out["clip_of"] = np.array(clip_of, np.int32)
    out["sources"] = np.array(sources, np.int32)          # [S, 2]: clip, frame of each portrait
    out["truth_box"] = np.array(boxes, np.int16)           # [N, 2]: top-left of each true crop
    out["truth"], out["truth_offsets"] = pack_images(crops, "webp")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talk-train renderer-pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_DATA)
    p.add_argument("--frames-per-clip", type=int, default=20)
    p.add_argument("--sources", type=int, default=2, help="portraits per clip")
    p.add_argument("--clips", type=int, default=0, help="only the first N training clips (0: all)")
    p.add_argument("--clip", type=Path, action="append", default=[], help="pack this video instead (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.frames_per_clip < 4 or args.sources < 1:
        p.error("--frames-per-clip must be at least 4 and --sources at least 1")
    quiet_native_logs()
    torch.set_num_threads(1)
    try:
        arrays = pack(args)
    except (ValueError, OSError) as e:
        print(f"talk-train renderer-pack: error: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        np.savez_compressed(tmp, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB): {len(arrays['clips'])} clips, "
          f"{len(arrays['landmarks'])} frames, {len(arrays['sources'])} portraits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
