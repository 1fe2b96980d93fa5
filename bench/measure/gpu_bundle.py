"""The data a GPU machine needs for ``bench.measure.gpu`` and ``bench.measure.refiner_compare``, packed on the CPU.

The GPU machine has torch, OpenCV and numba but no MediaPipe, no PyAV and no corpus: everything that
needs them is done here, once, and written to one file (default ``.gpu/bench.npz``, which git ignores
and the device tool carries). For each clip (the bundled sample; with the corpus, every held-out clip):

* the portrait (the clip's first frame, as ``bench.render_quality`` takes it) prepared as
  :class:`codec.render_assets.PortraitAssets` (lossless);
* the tracked landmarks of its first frames (the device derives the target frames from them);
* reference frames rendered here by the numba warp and by the CPU refiner, with their targets
  (lossless), for the CUDA/CPU agreement;
* true frames (WebP) and their landmarks, for the refiner comparison's SSIM, mouth SSIM and detail.

With the corpus it adds a few portraits from training clips (``extra``), so that the streams measured
on the GPU show many faces. Run it before a GPU session:

    python -m bench.measure.gpu_bundle [--out .gpu/bench.npz] [--frames 100] [--extra 24] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec import regions as R
from codec.motion import motion_from_landmarks, relative, transfer
from codec.neural import Refiner
from codec.render_assets import PortraitAssets, pack_images, unpack_images
from codec.warp import GeometricWarp

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "clip.mp4"
DEFAULT_OUT = Path(".gpu") / "bench.npz"


def clip_targets(portrait_landmarks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Target frames of a clip on its portrait: each frame's motion relative to frame 0, transferred
    (as ``bench.render_quality`` does). ``[T, 478, 3]`` landmarks -> ``[T, 478, 3]`` float32."""
    delta = relative(motion_from_landmarks(landmarks), motion_from_landmarks(landmarks[:1]))
    return transfer(portrait_landmarks, delta).astype(np.float32)


def _reference_frames(landmarks: np.ndarray, count: int) -> list[int]:
    """Frames worth comparing: the widest mouth, the largest head turn, then spread over the clip."""
    st = motion_from_landmarks(landmarks)
    turn = np.abs(relative(st, motion_from_landmarks(landmarks[:1])).rotation).sum(-1)
    picks = [int(np.argmax(R.mouth_opening(landmarks))), int(np.argmax(turn))]
    picks += np.linspace(0, len(landmarks) - 1, count).astype(int).tolist()
    return list(dict.fromkeys(picks))[:count]


def clip_entry(prefix: str, frames: np.ndarray, landmarks: np.ndarray, args: argparse.Namespace,
               refiner: Refiner | None) -> dict[str, np.ndarray]:
    """One clip's arrays (see the module docstring), names starting with ``prefix``.

    Args:
        frames: ``[T, H, H, 3]`` uint8 RGB, every one with a face; landmarks: ``[T, 478, 3]`` tracked.
    """
    from codec.neural import refine
    from codec.portrait import prepare_portrait

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
    from codec.corpus import clip_landmarks
    from codec.media import read_video

    cl = clip_landmarks(path)
    frames = np.stack(list(read_video(path, max_frames)))
    valid = cl.valid[:len(frames)]
    if not valid[0]:
        raise ValueError(f"{path.name}: no face in frame 0")
    return frames[valid], cl.landmarks[:len(frames)][valid]


def build(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """Every array of the bundle."""
    from codec.corpus import corpus_dir, corpus_split
    from codec.neural import RENDERER_PATH, load_refiner

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
        from codec.portrait import prepare_portrait

        frames, _ = _read_clip(root / clip, 1)
        p = prepare_portrait(frames[0], size=frames.shape[1], crop=False)
        warp = GeometricWarp(p.image, p.landmarks, torch.device("cpu"))
        arrays |= PortraitAssets.from_warp(warp).to_arrays(f"x{len(names)}_", "webp")
        names.append(Path(clip).stem)
    arrays["extra"] = np.array(names)
    if names:
        log(f"  {len(names)} extra portraits from training clips")
    return arrays


@dataclass
class BundleClip:
    """One clip of a bundle, read back.

    Attributes:
        name: the clip's name.
        assets: its portrait.
        landmarks: ``[T, 478, 3]`` tracked landmarks of its first frames.
        targets: ``[T, 478, 3]`` the target frames on the portrait (:func:`clip_targets`).
        ref_index, ref_targets: reference frames' indices ``[K]`` and targets ``[K, 478, 3]``.
        ref_warp: ``[K, H, W, 3]`` uint8 the numba warp's frames; ref_neural: ``[1, H, W, 3]`` the CPU
            refiner's frame of the first reference, or None.
        eval_index: ``[E]`` frames kept for the refiner comparison; truth: ``[E, H, W, 3]`` uint8 (WebP).
    """

    name: str
    assets: PortraitAssets
    landmarks: np.ndarray
    targets: np.ndarray
    ref_index: np.ndarray
    ref_targets: np.ndarray
    ref_warp: np.ndarray
    ref_neural: np.ndarray | None
    eval_index: np.ndarray
    truth: np.ndarray


@dataclass
class Bundle:
    """A bundle read back: its clips and the extra portraits (see the module docstring)."""

    clips: list[BundleClip]
    extra: list[PortraitAssets]


def load_bundle(path: Path) -> Bundle:
    """Reads a bundle written by :func:`main`.

    Raises:
        ValueError: a missing or unreadable file (with what to run).
    """
    if not path.exists():
        raise ValueError(f"{path} is missing: run `python -m bench.measure.gpu_bundle --out {path}` on a CPU machine")
    try:
        z = np.load(path)
        clips = []
        for i, name in enumerate(z["clips"]):
            p = f"c{i}_"
            assets = PortraitAssets.from_arrays(z, p + "portrait_")
            neural = unpack_images(z[p + "ref_neural"], z[p + "ref_neural_offsets"]) \
                if p + "ref_neural" in z.files else None
            clips.append(BundleClip(
                name=str(name), assets=assets, landmarks=z[p + "landmarks"],
                targets=clip_targets(assets.landmarks, z[p + "landmarks"]), ref_index=z[p + "ref_index"],
                ref_targets=z[p + "ref_targets"],
                ref_warp=np.stack(unpack_images(z[p + "ref_warp"], z[p + "ref_warp_offsets"])),
                ref_neural=np.stack(neural) if neural else None, eval_index=z[p + "eval_index"],
                truth=np.stack(unpack_images(z[p + "truth"], z[p + "truth_offsets"]))))
        extra = [PortraitAssets.from_arrays(z, f"x{j}_") for j in range(len(z["extra"]))]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable bundle ({e}); make it again with bench.measure.gpu_bundle") from None
    return Bundle(clips, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.gpu_bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--frames", type=int, default=100, help="frames read per clip")
    p.add_argument("--references", type=int, default=2, help="reference frames per clip (numba warp)")
    p.add_argument("--eval-stride", type=int, default=4, help="true frames kept for the refiner comparison")
    p.add_argument("--extra", type=int, default=24, help="extra portraits from training clips (with the corpus)")
    p.add_argument("--quick", action="store_true", help="the bundled sample only (a rehearsal)")
    args = p.parse_args(argv)
    if args.frames < 2 or args.references < 1 or args.eval_stride < 1:
        p.error("--frames must be at least 2, --references and --eval-stride at least 1")
    from codec.logs import quiet_native_logs

    quiet_native_logs()
    torch.set_num_threads(1)
    start = time.monotonic()
    try:
        arrays = build(args)
    except (ValueError, OSError) as e:
        print(f"bench.measure.gpu_bundle: error: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {len(arrays['clips'])} clips, "
          f"{len(arrays['extra'])} extra portraits) in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
