"""Measures the renderer on held-out corpus clips (issue: renderer).

Self-reenactment: each held-out clip's frame 0 is the portrait (as it is, no
crop); every frame is rendered from the clip's own tracked landmarks,
transferred onto the portrait (relative motion from frame 0), and compared
with the true frame. Baseline: the portrait held still. With the motion
tokenizer present, the same is done through tokens (encode, decode, transfer).
Metrics come from :mod:`bench.metrics.scores` (SSIM, PSNR, mouth SSIM, landmark NME
re-tracked on the rendered frames, face detail ratio). Speed: 512x512 frames
at batch 1, wall clock and CPU time.

    python -m bench.measure.render_quality [--renderer warp|neural] [--max-frames 100] [--stride 2]
                                   [--device cpu] [--strips docs] [--json OUT.json]

The machine may be shared: the speed line also gives frames per CPU second of
this process and the load average while measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from bench.metrics.reference import Reference
from bench.metrics.scores import score_clip
from codec import regions as R
from codec.api import EncoderConfig, decode_stream, encode_landmarks
from codec.media import read_video
from codec.motion import motion_from_landmarks, relative, transfer
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.tokenizer import TOKENIZER_PATH
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split

METRICS = ("ssim", "psnr", "mouth_ssim", "nme", "detail")


def _token_targets(lm: np.ndarray, valid: np.ndarray, portrait_landmarks: np.ndarray) -> np.ndarray | None:
    """Target landmarks through the tokenizer (4 layers), or None when it is not available."""
    if not TOKENIZER_PATH.exists():
        return None
    stream = encode_landmarks(lm, valid, EncoderConfig(layers=4), reference_frame=0)
    return decode_stream(stream.header, stream.packets, portrait_landmarks).astype(np.float32)


def _strip(frames: list[np.ndarray], size: int) -> np.ndarray:
    """One row of frames side by side, each resized to ``size``."""
    return np.concatenate([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames], 1)


def _save_small_png(image: np.ndarray, path: Path) -> None:
    """Writes ``[H, W, 3]`` uint8 RGB as a 256-colour dithered PNG (a third of the size, fine to look at)."""
    Image.fromarray(image).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                    dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def _strip_frames(lm: np.ndarray) -> list[int]:
    """Frames worth looking at: widest mouth, most closed eyes, largest head turn."""
    st = motion_from_landmarks(lm)
    rel = st.rotation @ st.rotation[0].T
    turn = np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1, 1))  # angle from frame 0
    picks = [int(np.argmax(R.mouth_opening(lm))), int(np.argmin(st.blink.sum(-1))), int(np.argmax(turn))]
    return list(dict.fromkeys(picks))


def measure_clip(clip: str, args: argparse.Namespace, config: RenderConfig) -> dict:
    root = corpus_dir()
    cl = clip_landmarks(root / clip)
    n = min(args.max_frames, len(cl.landmarks))
    frames = np.stack(list(read_video(root / clip, n)))
    n = len(frames)
    lm, valid = cl.landmarks[:n], cl.valid[:n]
    if not valid[0]:
        raise ValueError(f"{clip}: no face in frame 0")
    portrait = prepare_portrait(frames[0], size=frames.shape[1], crop=False)
    renderer = Renderer(portrait, config)

    idx = np.flatnonzero(valid)[:: args.stride]
    ref = Reference.of(frames[idx])
    delta = relative(motion_from_landmarks(lm[idx]), motion_from_landmarks(lm[0]))
    targets = transfer(portrait.landmarks, delta).astype(np.float32)
    name = config.renderer
    runs = {"still": np.repeat(frames[:1], len(idx), 0),
            name: np.concatenate([renderer.render(targets[i:i + 8]) for i in range(0, len(idx), 8)])}
    tok = _token_targets(lm, valid, portrait.landmarks) if args.tokens else None
    if tok is not None:
        tok = tok[idx]
        runs[f"{name}_tokens"] = np.concatenate([renderer.render(tok[i:i + 8]) for i in range(0, len(idx), 8)])
    row: dict = {"clip": clip, "frames": len(idx)}
    for method, decoded in runs.items():
        s = score_clip(decoded, ref, identity=False)
        row[method] = {k: getattr(s, k) for k in METRICS} | {"face_detected": s.face_detected}

    if args.strips:
        picks = [int(np.argmin(np.abs(idx - t))) for t in _strip_frames(lm[idx])]
        rows = [_strip([frames[idx[i]], frames[0], runs[name][i]], args.strip_size) for i in picks]
        out = Path(args.strips) / f"render_{Path(clip).stem}{'' if name == 'warp' else '_' + name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        _save_small_png(np.concatenate(rows, 0), out)
        row["strip"] = out.name
    return row


def measure_speed(clip: str, config: RenderConfig, frames: int = 100) -> dict:
    """Frames per second at batch 1, wall clock and per CPU second of this process."""
    root = corpus_dir()
    lm = clip_landmarks(root / clip).landmarks
    first = next(read_video(root / clip, 1))
    portrait = prepare_portrait(first, size=first.shape[0], crop=False)
    renderer = Renderer(portrait, config)
    delta = relative(motion_from_landmarks(lm), motion_from_landmarks(lm[0]))
    targets = transfer(portrait.landmarks, delta).astype(np.float32)
    for t in targets[:5]:  # compile and warm up
        renderer.render(t)
    if renderer.device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(frames):
        renderer.render(targets[i % len(targets)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"device": str(renderer.device), "threads": torch.get_num_threads(), "frames": frames,
            "fps_wall": frames / wall, "fps_cpu": frames / cpu, "ms_per_frame": 1000 * wall / frames,
            "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}


def _methods(rows: list[dict]) -> list[str]:
    return [m for m in ("still", "warp", "warp_tokens", "neural", "neural_tokens") if any(m in r for r in rows)]


def _table(rows: list[dict]) -> str:
    methods = _methods(rows)
    head = f"{'clip':36s} {'method':12s} " + " ".join(f"{k:>10s}" for k in METRICS)
    lines = [head, "-" * len(head)]
    for r in rows + [_mean_row(rows, methods)]:
        for m in methods:
            if m in r:
                lines.append(f"{Path(r['clip']).stem:36s} {m:12s} " + " ".join(f"{r[m][k]:10.4f}" for k in METRICS))
    return "\n".join(lines)


def _mean_row(rows: list[dict], methods: list[str]) -> dict:
    out: dict = {"clip": "MEAN"}
    for m in methods:
        have = [r[m] for r in rows if m in r]
        out[m] = {k: float(np.mean([h[k] for h in have])) for k in METRICS}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.render_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-frames", type=int, default=100, help="frames read per clip")
    p.add_argument("--stride", type=int, default=2, help="score every n-th frame")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--renderer", default="warp")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--strips", default="", help="folder for truth | still | warp strips (PNG)")
    p.add_argument("--strip-size", type=int, default=256)
    p.add_argument("--clips", nargs="*", help="held-out clips to score (default: all)")
    p.add_argument("--no-tokens", dest="tokens", action="store_false",
                   help="skip the run through the motion tokenizer")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed measurement")
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = RenderConfig(device=args.device, renderer=args.renderer)

    clips = corpus_split().held_out
    if args.clips:
        clips = tuple(c for c in clips if Path(c).stem in args.clips or c in args.clips)
    rows = []
    for clip in clips:
        rows.append(measure_clip(clip, args, config))
        print(f"{clip}: " + json.dumps({k: v for k, v in rows[-1].items() if k != "clip"}), flush=True)
    speed = measure_speed(clips[0], config) if args.speed else {}
    result = {"config": {"renderer": args.renderer, "max_frames": args.max_frames, "stride": args.stride},
              "clips": rows, "mean": _mean_row(rows, _methods(rows)),
              "speed": speed}
    print()
    print(_table(rows))
    if speed:
        print(f"\nspeed ({speed['device']}, {speed['threads']} thread(s), batch 1, 512x512): "
              f"{speed['fps_wall']:.1f} fps wall, {speed['fps_cpu']:.1f} fps per CPU second, "
              f"{speed['ms_per_frame']:.1f} ms/frame (load average {speed['load_average']:.1f} on "
              f"{speed['cpus']} CPUs)")
    print(json.dumps(result, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
