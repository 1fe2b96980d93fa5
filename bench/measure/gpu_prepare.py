"""Makes ``.gpu/bench.npz`` (:mod:`bench.measure.gpu_bundle`) on a CPU machine, before a GPU session.

It prepares each clip's portrait (MediaPipe), reads its frames (PyAV) and landmarks (the corpus's cache),
and renders the reference frames with the numba warp and the CPU refiner: what the GPU machine cannot.
Without the corpus (or with ``--quick``) only the bundled sample goes in.

    python -m bench.measure.gpu_prepare [--out .gpu/bench.npz] [--frames 100] [--extra 24] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.measure.gpu_bundle import DEFAULT_PATH, clip_targets
from codec import regions as R
from codec.logs import quiet_native_logs
from codec.media import read_video
from codec.motion import motion_from_landmarks, relative
from codec.paths import atomic_output
from codec.render.assets import PortraitAssets, pack_images
from codec.render.portrait import prepare_portrait
from codec.render.refiner import RENDERER_PATH, Refiner, load_refiner, refine
from codec.render.warp import GeometricWarp
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "clip.mp4"


def _reference_frames(landmarks: np.ndarray, count: int) -> list[int]:
    """Frames worth comparing: the widest mouth, the largest head turn, then spread over the clip."""
    st = motion_from_landmarks(landmarks)
    turn = np.abs(relative(st, motion_from_landmarks(landmarks[:1])).rotation).sum(-1)
    picks = [int(np.argmax(R.mouth_opening(landmarks))), int(np.argmax(turn))]
    picks += np.linspace(0, len(landmarks) - 1, count).astype(int).tolist()
    return list(dict.fromkeys(picks))[:count]


def clip_entry(prefix: str, frames: np.ndarray, landmarks: np.ndarray, args: argparse.Namespace,
               refiner: Refiner | None) -> dict[str, np.ndarray]:
    """One clip's arrays (see :mod:`bench.measure.gpu_bundle`), names starting with ``prefix``.

    Args:
        frames: ``[T, H, H, 3]`` uint8 RGB, every one with a face; landmarks: ``[T, 478, 3]`` tracked.
    """
    portrait = prepare_portrait(frames[0], size=frames.shape[1], crop=False)
    warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
    out = PortraitAssets.from_warp(warp).to_arrays(prefix + "portrait_", "webp-lossless")
    targets = clip_targets(portrait.landmarks, landmarks)
    ref = _reference_frames(landmarks, args.references)
    rendered = warp.warp(targets[ref])
    to_u8 = lambda f: (f * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    out[prefix + "landmarks"] = landmarks.astype(np.float32)
    out[prefix + "ref_index"] = np.array(ref, np.int64)
    out[prefix + "ref_targets"] = targets[ref]
    out[prefix + "ref_warp"], out[prefix + "ref_warp_offsets"] = pack_images(to_u8(rendered.frames), "webp-lossless")
    if refiner is not None:
        with torch.inference_mode():
            refined = refine(refiner, warp.warp(targets[ref[:1]]), warp.image[:, :3], targets[ref[:1]])
        out[prefix + "ref_neural"], out[prefix + "ref_neural_offsets"] = pack_images(to_u8(refined), "webp-lossless")
    evals = np.arange(0, len(frames), args.eval_stride)
    out[prefix + "eval_index"] = evals
    out[prefix + "truth"], out[prefix + "truth_offsets"] = pack_images(frames[evals], "webp")
    return out


def _read_clip(path: Path, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The first frames with a face of a clip (up to ``max_frames``) and their tracked landmarks."""
    cl = clip_landmarks(path)
    frames = np.stack(list(read_video(path, max_frames)))
    valid = cl.valid[:len(frames)]
    if not valid[0]:
        raise ValueError(f"{path.name}: no face in frame 0")
    return frames[valid], cl.landmarks[:len(frames)][valid]


def build(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """Every array of the bundle."""
    refiner = load_refiner() if RENDERER_PATH.exists() else None
    clips: list[tuple[str, Path]] = [("sample", SAMPLE)]
    root = corpus_dir()
    held, train = ((), ()) if args.quick or not (root / "clips").is_dir() else \
        (corpus_split(root).held_out, corpus_split(root).train)
    clips += [(Path(c).stem, root / c) for c in held]
    arrays: dict[str, np.ndarray] = {"clips": np.array([name for name, _ in clips])}
    for i, (name, path) in enumerate(clips):
        frames, lm = _read_clip(path, args.frames)
        arrays |= clip_entry(f"c{i}_", frames, lm, args, refiner)
        log(f"  {name}: {len(frames)} frames")
    extra = [train[k] for k in np.linspace(0, len(train) - 1, min(args.extra, len(train))).astype(int)] if train else []
    names: list[str] = []
    for clip in dict.fromkeys(extra):
        frames, _ = _read_clip(root / clip, 1)
        p = prepare_portrait(frames[0], size=frames.shape[1], crop=False)
        warp = GeometricWarp(p.image, p.landmarks, torch.device("cpu"))
        arrays |= PortraitAssets.from_warp(warp).to_arrays(f"x{len(names)}_", "webp")
        names.append(Path(clip).stem)
    arrays["extra"] = np.array(names)
    if names:
        log(f"  {len(names)} extra portraits from training clips")
    return arrays


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.gpu_prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_PATH)
    p.add_argument("--frames", type=int, default=100, help="frames read per clip")
    p.add_argument("--references", type=int, default=2, help="reference frames per clip (numba warp)")
    p.add_argument("--eval-stride", type=int, default=4, help="true frames kept for the refiner comparison")
    p.add_argument("--extra", type=int, default=24, help="extra portraits from training clips (with the corpus)")
    p.add_argument("--quick", action="store_true", help="the bundled sample only (a rehearsal)")
    args = p.parse_args(argv)
    if args.frames < 2 or args.references < 1 or args.eval_stride < 1:
        p.error("--frames must be at least 2, --references and --eval-stride at least 1")
    quiet_native_logs()
    torch.set_num_threads(1)
    start = time.monotonic()
    try:
        arrays = build(args)
    except (ValueError, OSError) as e:
        print(f"bench.measure.gpu_prepare: error: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        np.savez_compressed(tmp, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {len(arrays['clips'])} clips, "
          f"{len(arrays['extra'])} extra portraits) in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
