"""Measures the renderer on held-out corpus clips, as a call would see them (issues: renderer, 16).

Self-reenactment: each held-out clip's frame 0 is the portrait (as it is, no
crop); frames are rendered from the clip's own tracked landmarks, transferred
onto the portrait (relative motion from frame 0), and compared with the true
frames. As in a call, keyframes (picked as the sender picks them,
:mod:`codec.keyframe_select`) may only come from the clip's beginning, the
first ``--keyframe-seconds`` (5 s; at most half of a short clip), and frames
are scored only after it. Runs:

- ``still``: the portrait held still;
- ``warp``: the renderer on the true landmarks;
- ``warp_tokens``: through the motion tokenizer (4 layers), decoded as the
  receiver decodes (with its smoothing unless ``--no-smoothing``), with keyframes
  unless ``--no-keyframes`` -- what a call shows;
- ``h264`` (``--h264``): H.264 at the same bitrate (``--kbps``), its best
  setting found as ``talk-bench`` finds it, on the same frames.

Scores (:mod:`bench.metrics`): SSIM, PSNR, mouth SSIM, landmark NME re-tracked
on the rendered frames, identity distance, face detail; the mouth interior's
mean luma against the truth's on the 20% widest-open frames (``mouth_lum_diff``);
eye-region SSIM on the frames with closed eyes (``eye_ssim_closed``); SSIM,
NME, identity distance and detail on the frames turned farthest from the
portrait (``turned``: the fifth of the scored frames with the largest |yaw|,
identity on every one of them); and, per clip, the decoded landmarks' jitter
over the truth's. ``--no-turns`` renders without taking faces from turn
keyframes (the renderer before :mod:`codec.render.turns`). Speed: 512x512 frames at
batch 1, wall clock and CPU time.

    python -m bench.measure.render_quality [--renderer warp|neural] [--max-frames N] [--stride 2]
        [--no-keyframes] [--no-turns] [--no-smoothing] [--h264] [--strips docs] [--save-strips DIR] [--before DIR]
        [--turn-strip docs/render_turn.png] [--split held_out|train]
        [--json OUT.json] [--compare BEFORE.json --markdown OUT.md]

``--save-strips DIR`` keeps the rendered strip frames, and ``--before DIR`` puts
such frames from an earlier run (another version of the renderer) beside this
one's: truth | before | after. The machine may be shared: the speed line also
gives frames per CPU second of this process and the load average while measuring.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from bench.baselines import BaselineSearch, sample_frames
from bench.metrics.features import closed_eyes, eye_boxes, eye_ssim, jitter, mouth_interior_luma, widest_open
from bench.metrics.pixels import lip_box
from bench.metrics.reference import Reference
from bench.metrics.scores import score_clip
from bench.pictures import KEYFRAME_SECONDS, keyframe_window
from codec import regions as R
from codec.api import EncoderConfig, decode_stream, encode_landmarks
from codec.keyframe_select import KeyframeBudget, clip_frame_picture, pick_keyframes
from codec.media import read_video
from codec.motion import motion_from_landmarks, relative, transfer
from codec.picture import PictureKind, decode_picture, encode_picture
from codec.render.keyframes import Keyframe
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.render.turns import yaws
from codec.render.warp import WarpConfig
from codec.tokenizer import TOKENIZER_PATH
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split

METRICS = ("ssim", "psnr", "mouth_ssim", "nme", "id_dist", "detail", "mouth_lum_diff", "eye_ssim_closed")
TURNED_SHARE = 0.2
"""Share of a clip's scored frames, those turned farthest from the portrait, scored apart (``turned``)."""
TURNED_METRICS = ("ssim", "nme", "id_dist", "detail")
H264_KBPS = 12.6
"""talkcodec's 4-layer rate with packet headers, the rate ``talk-bench`` matches H.264 to."""


def decode_tokens(lm: np.ndarray, valid: np.ndarray, portrait_landmarks: np.ndarray,
                  smooth: bool) -> np.ndarray | None:
    """Target landmarks ``[T, 478, 3]`` through the tokenizer (4 layers), or None when it is not available."""
    if not TOKENIZER_PATH.exists():
        return None
    stream = encode_landmarks(lm, valid, EncoderConfig(layers=4), reference_frame=0)
    out = decode_stream(stream.header, stream.packets, portrait_landmarks, smooth=smooth)
    return np.asarray(out, np.float32)


def add_keyframes(renderer: Renderer, frames: np.ndarray, lm: np.ndarray, picks: list[tuple[int, str]],
                  fps: float) -> int:
    """Gives the renderer the picked keyframes as a receiver gets them: cut (a mouth alone), compressed and
    decoded again, within the call's keyframe budget; returns their records' bytes."""
    spend = KeyframeBudget()
    for i, kind in picks:
        picture = clip_frame_picture(frames[i], lm[i].astype(np.float32), PictureKind.of_label(kind),
                                     int(round(i * 1000 / fps)))
        record = encode_picture(picture)
        if spend.take(picture.kind, len(record)):
            got = decode_picture(record)
            renderer.add_keyframe(Keyframe(got.image, got.landmarks.astype(np.float32), kind))
    return spend.spent


def _strip(frames: list[np.ndarray], size: int) -> np.ndarray:
    """One row of frames side by side, each resized to ``size``."""
    return np.concatenate([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames], 1)


def _save_small_png(image: np.ndarray, path: Path) -> None:
    """Writes ``[H, W, 3]`` uint8 RGB as a 256-colour dithered PNG (a third of the size, fine to look at)."""
    Image.fromarray(image).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                    dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def strip_picks(lm: np.ndarray) -> dict[str, int]:
    """Scored frames worth looking at: the widest mouth, the most closed eyes, the largest head turn.

    Args:
        lm: ``[T, 478, 3]`` the truth's landmarks of the scored frames.
    Returns:
        ``{"mouth", "blink", "turn"} -> index into lm``.
    """
    st = motion_from_landmarks(lm)
    rel = st.rotation @ st.rotation[0].T
    turn = np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    return {"mouth": int(np.argmax(R.mouth_opening(lm))), "blink": int(np.argmin(st.blink.sum(-1))),
            "turn": int(np.argmax(turn))}


def _zoom(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The square around ``box`` (x0, y0, x1, y1), scaled to ``size``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 16)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    h, w = frame.shape[:2]
    a, b = int(np.clip(cx - side // 2, 0, w - side)), int(np.clip(cy - side // 2, 0, h - side))
    return cv2.resize(frame[b:b + side, a:a + side], (size, size), interpolation=cv2.INTER_CUBIC)


def _feature_box(kind: str, lm: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    if kind == "mouth":
        return lip_box(lm, shape, margin=0.4)
    if kind == "blink":
        (a0, b0, a1, b1), (c0, d0, c1, d1) = eye_boxes(lm, shape, margin=0.3)
        return min(a0, c0), min(b0, d0), max(a1, c1), max(b1, d1)
    return lip_box(lm, shape, margin=1.6)  # the head turn: most of the face


def turned_frames(lm: np.ndarray, portrait_landmarks: np.ndarray, share: float = TURNED_SHARE) -> np.ndarray:
    """Indices into ``lm [T, 478, 3]`` of the ``share`` of frames whose head is turned farthest (|yaw|) from the
    portrait's, farthest first."""
    yaw = yaws(motion_from_landmarks(lm.astype(np.float64)).rotation,
               motion_from_landmarks(portrait_landmarks.astype(np.float64)).rotation)
    return np.argsort(-np.abs(yaw), kind="stable")[:max(1, int(math.ceil(share * len(lm))))]


def score_run(decoded: np.ndarray, ref: Reference, widest: np.ndarray, closed: np.ndarray,
              truth_mouth: np.ndarray, turned: np.ndarray | None = None) -> dict[str, Any]:
    """Every score of one run on the scored frames (and on the ``turned`` ones apart, when given)."""
    s = score_clip(decoded, ref, identity=True)
    row: dict[str, Any] = {k: float(getattr(s, k)) for k in ("ssim", "psnr", "mouth_ssim", "nme", "id_dist", "detail")}
    ours = mouth_interior_luma(decoded[widest], ref.landmarks[widest])
    diff = np.abs(ours - truth_mouth)
    row["mouth_lum"] = float(np.nanmean(ours)) if np.isfinite(ours).any() else math.nan
    row["mouth_lum_diff"] = float(np.nanmean(diff)) if np.isfinite(diff).any() else math.nan
    row["eye_ssim_closed"] = (float(eye_ssim(decoded[closed], ref.frames[closed], ref.landmarks[closed]).mean())
                              if len(closed) else math.nan)
    row["face_detected"] = float(s.face_detected)
    if turned is not None:
        t = score_clip(decoded[turned], ref.subset(turned), identity=True, stride=1)
        row["turned"] = {k: float(getattr(t, k)) for k in TURNED_METRICS}
    return row


def measure_clip(clip: str, args: argparse.Namespace, config: RenderConfig,
                 turn_rows: list[np.ndarray] | None = None) -> dict[str, Any]:
    """One clip's scores (see the module's docstring); appends its strip of the frame turned farthest from the
    portrait to ``turn_rows`` when given and the renderer has a turn picture."""
    root = corpus_dir()
    cl = clip_landmarks(root / clip)
    n = min(args.max_frames or len(cl.landmarks), len(cl.landmarks))
    frames = np.stack(list(read_video(root / clip, n)))
    n = len(frames)
    lm, valid = cl.landmarks[:n], cl.valid[:n]
    if not valid[0]:
        raise ValueError(f"{clip}: no face in frame 0")
    k = keyframe_window(n, cl.fps, args.keyframe_seconds)
    portrait = prepare_portrait(frames[0], size=frames.shape[1], crop=False)
    renderer = Renderer(portrait, config)
    picks = pick_keyframes(lm[:k], valid[:k], frames[:k], cl.fps) if args.keyframes else []
    keyframe_bytes = add_keyframes(renderer, frames, lm, picks, cl.fps)

    idx = k + np.flatnonzero(valid[k:])[:: args.stride]
    ref = Reference.of(frames[idx])
    delta = relative(motion_from_landmarks(lm[idx]), motion_from_landmarks(lm[0]))
    targets = transfer(portrait.landmarks, delta).astype(np.float32)
    name = config.renderer

    def render(t: np.ndarray) -> np.ndarray:
        return np.concatenate([renderer.render(t[i:i + 8]) for i in range(0, len(t), 8)])

    runs = {"still": np.repeat(frames[:1], len(idx), 0), name: render(targets)}
    row: dict[str, Any] = {"clip": clip, "frames": len(idx), "first_scored": k,
                           "keyframes": [[i, kind] for i, kind in picks], "keyframe_bytes": keyframe_bytes}
    ref_yaw = motion_from_landmarks(lm[0].astype(np.float64)).rotation
    row["keyframe_yaws"] = [float(yaws(motion_from_landmarks(lm[i].astype(np.float64)).rotation, ref_yaw))
                            for i, _ in picks]
    row["turn_pictures"] = [float(t.yaw) for t in renderer.warp._turns]
    turned = turned_frames(lm[idx], lm[0])
    turned_yaw = np.abs(yaws(motion_from_landmarks(lm[idx[turned]].astype(np.float64)).rotation, ref_yaw))
    row["turned"] = {"frames": len(turned), "share": TURNED_SHARE, "yaw_min": float(turned_yaw.min()),
                     "yaw_mean": float(turned_yaw.mean()), "yaw_max": float(turned_yaw.max())}
    decoded = decode_tokens(lm, valid, portrait.landmarks, args.smoothing) if args.tokens else None
    if decoded is not None:
        runs[f"{name}_tokens"] = render(decoded[idx])
        after = np.flatnonzero(valid[k:]) + k
        cont = after[: np.argmax(np.diff(np.append(after, -1)) != 1) + 1]  # the first run of consecutive frames
        jt, jd = jitter(lm[cont]), jitter(decoded[cont])
        row["jitter"] = {"truth": jt, "decoded": jd, "ratio": jd / jt}
    if args.h264:
        search = BaselineSearch(Reference.of(frames), cl.fps, sample=sample_frames(n, 25))
        cand = search.best("h264", args.kbps)
        if cand is not None:
            full, _ = search.decoded(cand)
            runs["h264"] = full[idx]
            row["h264_setting"] = cand.setting.describe(cl.fps)
            row["h264_kbps"] = cand.kbps

    widest = widest_open(ref.landmarks)
    closed = closed_eyes(ref.landmarks, reference=ref.landmarks)
    truth_mouth = mouth_interior_luma(ref.frames[widest], ref.landmarks[widest])
    row["truth_mouth_lum"] = float(np.nanmean(truth_mouth))
    row["closed_frames"] = len(closed)
    for method, out in runs.items():
        row[method] = score_run(out, ref, widest, closed, truth_mouth,
                                turned if method.startswith(name) else None)

    main = runs.get(f"{name}_tokens", runs[name])
    shown = strip_picks(ref.landmarks)
    row["strip_frames"] = {kind: int(idx[i]) for kind, i in shown.items()}
    saved = {**shown, "yaw": int(turned[0])}  # and the frame turned farthest from the portrait
    if args.save_strips:
        folder = Path(args.save_strips)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / f"{Path(clip).stem}.npz", **{kind: main[i] for kind, i in saved.items()},
                            **{f"{kind}_index": idx[i] for kind, i in saved.items()})
    before = None
    if args.before:
        path = Path(args.before) / f"{Path(clip).stem}.npz"
        before = np.load(path) if path.exists() else None
    if turn_rows is not None and row["turn_pictures"]:
        i = saved["yaw"]
        cols = [ref.frames[i]]
        if before is not None and "yaw_index" in before and int(before["yaw_index"]) == idx[i]:
            cols.append(before["yaw"])
        cols.append(main[i])
        box = _feature_box("turn", ref.landmarks[i], (ref.frames.shape[1], ref.frames.shape[2]))
        turn_rows.append(np.concatenate([_strip(cols, args.strip_size),
                                         *[_zoom(c, box, args.strip_size) for c in cols]], 1))
        row["turn_strip_frame"] = int(idx[i])
    if args.strips:
        rows = []
        for kind, i in shown.items():
            cols = [ref.frames[i]]
            if before is not None and int(before[f"{kind}_index"]) == idx[i]:
                cols.append(before[kind])
            cols.append(main[i])
            box = _feature_box(kind, ref.landmarks[i], (ref.frames.shape[1], ref.frames.shape[2]))
            rows.append(np.concatenate([_strip(cols, args.strip_size),
                                        *[_zoom(c, box, args.strip_size) for c in cols]], 1))
        path = Path(args.strips) / f"render_{Path(clip).stem}{'' if name == 'warp' else '_' + name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_small_png(np.concatenate(rows, 0), path)
        row["strip"] = path.name
    return row


def measure_speed(clip: str, config: RenderConfig, keyframes: bool, frames: int = 100) -> dict[str, Any]:
    """Frames per second at batch 1 (with the clip's keyframes, when used), wall clock and per CPU second."""
    root = corpus_dir()
    cl = clip_landmarks(root / clip)
    lm = cl.landmarks
    video = np.stack(list(read_video(root / clip, keyframe_window(len(lm), cl.fps) or 1)))
    portrait = prepare_portrait(video[0], size=video.shape[1], crop=False)
    renderer = Renderer(portrait, config)
    if keyframes:
        add_keyframes(renderer, video, lm, pick_keyframes(lm[: len(video)], cl.valid[: len(video)], video, cl.fps),
                      cl.fps)
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


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    known = ("still", "warp", "warp_tokens", "neural", "neural_tokens", "h264")
    return [m for m in known if any(m in r for r in rows)]


def _mean_row(rows: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"clip": "MEAN"}
    for m in methods:
        have = [r[m] for r in rows if m in r]
        out[m] = {k: float(np.nanmean([h[k] for h in have])) for k in METRICS}
    jit = [r["jitter"]["ratio"] for r in rows if "jitter" in r]
    if jit:
        out["jitter"] = {"ratio": float(np.mean(jit)), "max_ratio": float(np.max(jit))}
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    methods = _methods(rows)
    head = f"{'clip':32s} {'method':12s} " + " ".join(f"{k[:10]:>10s}" for k in METRICS) + "     jitter"
    lines = [head, "-" * len(head)]
    for r in rows + [_mean_row(rows, methods)]:
        for m in methods:
            if m in r:
                jit = f"{r['jitter']['ratio']:10.3f}" if m.endswith("_tokens") and "jitter" in r else ""
                lines.append(f"{Path(r['clip']).stem:32s} {m:12s} "
                             + " ".join(f"{r[m][k]:10.4f}" for k in METRICS) + f" {jit}")
    return "\n".join(lines)


REPORT = (("ssim", "SSIM", 3), ("mouth_ssim", "mouth SSIM", 3), ("nme", "NME", 4), ("id_dist", "identity dist.", 3),
          ("detail", "detail", 2), ("mouth_lum_diff", "mouth interior Δ luma", 1),
          ("eye_ssim_closed", "eye SSIM, closed eyes", 3))


def markdown(after: dict[str, Any], before: dict[str, Any] | None) -> str:
    """Per-clip tables of the call-like run (through tokens): ``before → after`` when ``before`` is given."""
    run = "warp_tokens" if any("warp_tokens" in r for r in after["clips"]) else "warp"
    old = {r["clip"]: r for r in before["clips"]} if before else {}
    head = "| clip | " + " | ".join(name for _, name, _ in REPORT) + " | jitter ratio | H.264 mouth SSIM |"
    lines = [head, "|" + "---|" * (len(REPORT) + 3)]

    def cell(new: float, prev: float | None, digits: int) -> str:
        fmt = f"{{:.{digits}f}}"
        if prev is None or math.isnan(prev):
            return "–" if math.isnan(new) else fmt.format(new)
        return f"{fmt.format(prev)} → {fmt.format(new)}"

    rows = after["clips"] + [{"clip": "MEAN", **after["mean"]}]
    for r in rows:
        p = old.get(r["clip"]) if r["clip"] != "MEAN" else (before or {}).get("mean")
        cells = [cell(r[run][k], None if p is None else p[run][k], d) for k, _, d in REPORT]
        jit = r.get("jitter", {}).get("ratio", math.nan)
        pj = None if p is None else p.get("jitter", {}).get("ratio")
        h264 = (r.get("h264") or (p or {}).get("h264") or {}).get("mouth_ssim", math.nan)
        lines.append(f"| {Path(r['clip']).stem} | " + " | ".join(cells) + f" | {cell(jit, pj, 2)} | "
                     + ("–" if math.isnan(h264) else f"{h264:.3f}") + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.measure.render_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-frames", type=int, default=0, help="frames read per clip (default: all)")
    p.add_argument("--stride", type=int, default=2, help="score every n-th frame")
    p.add_argument("--keyframe-seconds", type=float, default=KEYFRAME_SECONDS,
                   help="keyframes come from this many first seconds (at most half a clip); scores from the rest")
    p.add_argument("--no-keyframes", dest="keyframes", action="store_false", help="render without keyframes")
    p.add_argument("--no-turns", dest="turns", action="store_false",
                   help="never take the face from a turn keyframe (the renderer before codec.render.turns)")
    p.add_argument("--no-smoothing", dest="smoothing", action="store_false",
                   help="decode tokens without the receiver's smoothing")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    p.add_argument("--renderer", default="warp")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--h264", action="store_true", help="also score H.264 at --kbps on the same frames")
    p.add_argument("--kbps", type=float, default=H264_KBPS, help="H.264's bitrate for --h264")
    p.add_argument("--strips", default="", help="folder for truth | [before |] after strips (PNG)")
    p.add_argument("--strip-size", type=int, default=256)
    p.add_argument("--turn-strip", default="",
                   help="PNG of truth | [before |] after at each clip's frame turned farthest from the portrait "
                        "(clips whose renderer has a turn keyframe)")
    p.add_argument("--save-strips", default="", help="keep this run's strip frames here (for a later --before)")
    p.add_argument("--before", default="", help="strip frames saved by an earlier run's --save-strips")
    p.add_argument("--clips", nargs="*", help="held-out clips to score (default: all)")
    p.add_argument("--split", choices=("held_out", "train"), default="held_out",
                   help="score the held-out clips (default) or, to check a setting on other clips, training clips")
    p.add_argument("--no-tokens", dest="tokens", action="store_false",
                   help="skip the run through the motion tokenizer")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed measurement")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--compare", default="", help="an earlier run's --json: tables give before -> after")
    p.add_argument("--markdown", default="", help="write the per-clip tables (markdown) here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = RenderConfig(device=args.device, renderer=args.renderer, warp=WarpConfig(turns=args.turns))

    clips = getattr(corpus_split(), args.split)
    if args.clips:
        clips = tuple(c for c in clips if Path(c).stem in args.clips or c in args.clips)
    rows: list[dict[str, Any]] = []
    turn_rows: list[np.ndarray] = []
    for clip in clips:
        rows.append(measure_clip(clip, args, config, turn_rows if args.turn_strip else None))
        print(f"{clip}: " + json.dumps({k: v for k, v in rows[-1].items() if k != "clip"}), flush=True)
    if args.turn_strip and turn_rows:
        Path(args.turn_strip).parent.mkdir(parents=True, exist_ok=True)
        _save_small_png(np.concatenate(turn_rows, 0), Path(args.turn_strip))
    speed = measure_speed(clips[0], config, args.keyframes) if args.speed else {}
    result = {"config": {"renderer": args.renderer, "max_frames": args.max_frames, "stride": args.stride,
                         "keyframe_seconds": args.keyframe_seconds, "keyframes": args.keyframes,
                         "turns": args.turns,
                         "smoothing": args.smoothing, "h264_kbps": args.kbps if args.h264 else None},
              "clips": rows, "mean": _mean_row(rows, _methods(rows)), "speed": speed}
    print()
    print(_table(rows))
    if speed:
        print(f"\nspeed ({speed['device']}, {speed['threads']} thread(s), batch 1, 512x512): "
              f"{speed['fps_wall']:.1f} fps wall, {speed['fps_cpu']:.1f} fps per CPU second, "
              f"{speed['ms_per_frame']:.1f} ms/frame (load average {speed['load_average']:.1f} on "
              f"{speed['cpus']} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    if args.markdown:
        before = json.loads(Path(args.compare).read_text()) if args.compare else None
        Path(args.markdown).write_text(markdown(json.loads(json.dumps(result, default=float)), before) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
