"""talk-bench's run: talkcodec against H.264 and VP8 at matched bitrates (:mod:`bench.cli` parses its arguments).

For every clip: self-reenactment through talkcodec (the clip's first face
frame is the portrait; its motion is encoded at 1-4 residual layers, fixed
and entropy mode, decoded and rendered), then H.264 and VP8 at a ladder of
target bitrates (talkcodec's, then doubling up to about 350 kbps), each at
its best setting (see :mod:`bench.baselines`). Every output is scored against
the true frames (see :mod:`bench.metrics.scores`) and written by :mod:`bench.report`.
The clip's first 5 s (at most half of it) are a lead-in: talkcodec's keyframes are
picked there, as a sender picks them early in a call, and no codec is scored on it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bench import loopback, report
from bench.baselines import CODECS, SIZES, BaselineSearch, sample_frames
from bench.metrics.reference import Reference
from bench.metrics.scores import score_clip
from bench.metrics.sharpness import cpbd
from bench.pictures import KEYFRAME_SECONDS, clip_pictures, keyframe_window
from bench.wire import rtp_video_wire_kbps, talkcodec_wire_kbps
from codec.api import EncoderConfig, FrameEncoder, decode_stream, encode_landmarks, track_video
from codec.errors import MediaError, StreamError, TalkcodecError
from codec.media import probe_video, read_video
from codec.render.pipeline import RENDERERS, RenderConfig, Renderer
from codec.render.portrait import portrait_from_picture
from codec.render.video import hand_keyframe
from codec.tokenizer import LIVE_REFINE_BUDGET_MS, LIVE_REFINE_STEPS
from codec.train.corpus import corpus_dir, corpus_split

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
MAX_KBPS = 360.0
"""The target ladder doubles talkcodec's bitrate up to this."""


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one run.

    Attributes:
        max_frames: frames scored per clip, after the keyframes' lead-in (None: all).
        max_clips: clips to run (None: all).
        multiples: target bitrates as multiples of talkcodec's full fixed-rate
            bitrate; None: every talkcodec bitrate, then doubling to :data:`MAX_KBPS`.
        device: render device (``auto``, ``cpu``, ``cuda``).
        latency: time talkcodec frame by frame (sender tracking + encoding one
            frame, rendering one frame) instead of amortized over a batch, and
            time a 10 s loopback call end to end (:mod:`bench.loopback`).
        stride: identity and CPBD are scored on every ``stride``-th frame.
        search_frames: frames used to score each baseline candidate.
        sizes: the baselines' ladder of frame sizes.
        neural_layers: layer counts rendered with the neural renderer too, when
            its weights exist (it is slow on a CPU).
    """

    max_frames: int | None = None
    max_clips: int | None = None
    multiples: tuple[float, ...] | None = None
    device: str = "auto"
    latency: bool = False
    stride: int = 10
    search_frames: int = 25
    sizes: tuple[int, ...] = SIZES
    neural_layers: tuple[int, ...] = (1, 2, 3, 4)


QUICK = BenchConfig(max_frames=100, max_clips=2, multiples=(1, 2, 4, 8), stride=10, search_frames=9,
                    sizes=(512, 256, 128, 64), neural_layers=(4,))

NOMINAL_KBPS = 11.2
"""talkcodec's nominal fixed-rate bitrate, the ladder's base when talkcodec cannot run."""


# --- inputs ---------------------------------------------------------------------------------


def find_clips(clips: str | None) -> list[Path]:
    """The clips to run.

    Args:
        clips: a folder (all videos in it), one video file, or None (the
            corpus's held-out clips).
    Raises:
        MediaError: missing folder or file, no videos, or a file that is not a readable video.
    """
    if clips is None:
        root = corpus_dir()
        if not root.is_dir():
            raise MediaError(f"no corpus at {root}; pass --clips DIR or set TALKCODEC_CORPUS")
        paths = [root / c for c in corpus_split(root).held_out]
    else:
        p = Path(clips)
        if not p.exists():
            raise MediaError(f"{p}: no such file or folder")
        paths = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise MediaError(f"{clips or 'the corpus'}: no video clips ({', '.join(sorted(VIDEO_SUFFIXES))}) found")
    for f in paths:
        info = probe_video(f)
        if info.width != info.height:
            raise MediaError(f"{f}: {info.width}x{info.height}; talk-bench needs square clips (the corpus is 512x512)")
    return paths


def load_frames(path: Path, max_frames: int | None) -> tuple[np.ndarray, int, float]:
    """A clip's ``[T, H, W, 3]`` uint8 RGB frames: a lead-in, then at most ``max_frames`` to score; the lead-in's
    length and the frame rate.

    The lead-in is the window keyframes come from (:func:`bench.pictures.keyframe_window`: 5 s, at most half
    the clip): a receiver that renders with a keyframe shows frames after it, so the frames keyframes are
    picked from are not scored (for any codec), and every codec is scored on the same frames after them.
    """
    fps = probe_video(path).fps
    limit = None if max_frames is None else max_frames + int(round(KEYFRAME_SECONDS * fps))
    frames = np.stack(list(read_video(path, limit)))
    lead = keyframe_window(len(frames), fps)
    if max_frames is not None:
        frames = frames[:lead + max_frames]
    return frames, lead, fps


# --- talkcodec ------------------------------------------------------------------------------


def run_talkcodec(path: Path, frames: np.ndarray, lead: int, fps: float, cfg: BenchConfig,
                  score: Callable[[np.ndarray], dict[str, Any]], tick: Callable[[], None],
                  grow: Callable[[int], None]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Self-reenactment: the clip's motion through talkcodec, rendered on its first face frame.

    The first face frame travels as a sender sends it (:mod:`bench.pictures`): compressed, its bytes counted,
    and talkcodec renders on the decoded picture with its keyframes, picked from the lead-in (the first
    ``lead`` frames); the frames after it are rendered and scored.

    Args:
        path: the clip (the sender tracks it as :func:`codec.api.track_video` does).
        frames: its ``[T, H, W, 3]`` frames, the lead-in first (:func:`load_frames`).
        lead: frames in the lead-in.
        fps: frame rate.
        cfg: settings.
        score: decoded frames -> metric dict.
        tick: advances the progress bar once per (layers, mode, renderer).
        grow: adds steps to the progress bar (for renderers beyond the warp).
    Returns:
        records, and each renderer's frames of the 4-layer fixed stream at :func:`strip_index`
        (for the strip).
    """
    t = len(frames)
    t0 = time.perf_counter()
    landmarks, face, _, size = track_video(path, t)
    track_ms = (time.perf_counter() - t0) * 1000 / t
    if not face.any():
        raise MediaError(f"{path}: no face in any frame")
    ref_index = int(np.argmax(face))
    pictures = clip_pictures(frames, landmarks, face, fps, ref_index, window=lead)
    scored = t - lead
    portrait = portrait_from_picture(pictures.reference)
    records: list[dict] = []
    headline_frames: dict[str, np.ndarray] = {}
    for renderer_name in [r for r in ("warp", "neural") if r in RENDERERS]:
        try:
            renderer = Renderer(portrait, RenderConfig(device=cfg.device, renderer=renderer_name))
        except FileNotFoundError as e:  # the neural stage without trained weights
            if renderer_name == "warp":
                raise
            print(f"talk-bench: skipping the {renderer_name} renderer: {e}", file=sys.stderr)
            continue
        for kf in pictures.keyframes:
            hand_keyframe(renderer, kf)
        layer_counts = (1, 2, 3, 4) if renderer_name == "warp" else cfg.neural_layers
        if renderer_name != "warp":
            grow(2 * len(layer_counts))
        device = str(renderer.device)
        for layers in layer_counts:
            rendered: tuple[np.ndarray, np.ndarray, dict, float] | None = None
            for entropy in (False, True):
                mode = "entropy" if entropy else "fixed"
                t0 = time.perf_counter()
                try:
                    config = EncoderConfig(layers=layers, entropy=entropy, fps=fps)
                    stream = encode_landmarks(landmarks, face, config, ref_index, size)
                except StreamError as e:
                    print(f"talk-bench: skipping talkcodec {mode} mode: {e}", file=sys.stderr)
                    tick()
                    continue
                encode_ms = track_ms + (time.perf_counter() - t0) * 1000 / t
                kbps = sum(len(p) for p in stream.packets) * 8 / (t / fps) / 1000
                wire = {"wire_kbps": talkcodec_wire_kbps(stream.packets, t / fps),
                        "wire_kbps_3fpp": talkcodec_wire_kbps(stream.packets, t / fps, 3)}
                t0 = time.perf_counter()
                target = decode_stream(stream.header, stream.packets, portrait.landmarks, smooth=True)
                decode_ms = (time.perf_counter() - t0) * 1000 / t
                # Entropy coding is lossless: the same tokens render the same frames, scored once.
                if rendered is None or not np.array_equal(rendered[0], target):
                    t0 = time.perf_counter()
                    out = np.concatenate([renderer.render(target[i:i + 16]) for i in range(lead, t, 16)])
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    render_ms = decode_ms + (time.perf_counter() - t0) * 1000 / scored
                    rendered = (target, out, score(out), render_ms)
                _, out, scores, render_ms = rendered
                if cfg.latency:
                    encode_ms, render_ms = _latency(path, frames[lead:], layers, entropy, fps, renderer,
                                                    target[lead:])
                records.append({"clip": path.name, "codec": "talkcodec",
                                "setting": f"talkcodec {layers} layers {mode} {renderer_name}",
                                "kbps": kbps, **wire, **scores, "encode_ms": encode_ms, "render_ms": render_ms,
                                "device": device, "layers": layers, "mode": mode, "renderer": renderer_name,
                                **pictures.record(kbps, t / fps)})
                if layers == 4 and not entropy:
                    headline_frames[renderer_name] = out[strip_index(scored)]
                tick()
    return records, headline_frames


def _latency(path: Path, frames: np.ndarray, layers: int, entropy: bool, fps: float, renderer: Any,
             target: np.ndarray, n: int = 20) -> tuple[float, float]:
    """Median per-frame sender time (track + encode one frame) and receiver time (render one frame), ms."""
    # As talk-send encodes: its refinement steps and time bound.
    enc = FrameEncoder(EncoderConfig(layers=layers, entropy=entropy, fps=fps, refine_steps=LIVE_REFINE_STEPS,
                                     refine_budget_ms=LIVE_REFINE_BUDGET_MS))
    send = []
    for i, f in enumerate(frames[:n]):
        t0 = time.perf_counter()
        enc.encode(f, int(i * 1000 / fps))
        send.append(time.perf_counter() - t0)
    enc.close()
    recv = []
    for lm in target[:n]:
        t0 = time.perf_counter()
        renderer.render(lm[None])
        if str(renderer.device).startswith("cuda"):
            torch.cuda.synchronize()
        recv.append(time.perf_counter() - t0)
    return float(np.median(send[1:] or send)) * 1000, float(np.median(recv)) * 1000


# --- baselines ------------------------------------------------------------------------------


def targets(tc_records: list[dict], cfg: BenchConfig) -> tuple[float, list[tuple[float, float]]]:
    """talkcodec's full fixed-rate bitrate and the ``(multiple, kbps)`` targets for the baselines."""
    base = next((r["kbps"] for r in tc_records if r.get("layers") == 4 and r.get("mode") == "fixed"), NOMINAL_KBPS)
    if cfg.multiples is not None:
        return base, [(float(m), base * m) for m in cfg.multiples]
    out = {round(r["kbps"], 1): r["kbps"] / base for r in tc_records}
    m = 2.0
    while base * m <= MAX_KBPS:
        out[round(base * m, 1)] = m
        m *= 2
    out[round(base, 1)] = 1.0
    return base, sorted(((mult, k) for k, mult in out.items()), key=lambda x: x[1])


# --- the run --------------------------------------------------------------------------------


def run(paths: list[Path], out: Path, cfg: BenchConfig) -> dict[str, Any]:
    """Runs the bench over ``paths`` and writes every output into ``out``.

    Returns:
        the ``bench.json`` document.
    """
    paths = paths[: cfg.max_clips] if cfg.max_clips else paths
    out.mkdir(parents=True, exist_ok=True)
    (out / "strips").mkdir(exist_ok=True)
    # One step per talkcodec (layers, mode) with the warp renderer; others and the baselines join
    # the total once known.
    bar = tqdm(total=len(paths) * 8, desc="talk-bench", unit="run", file=sys.stderr)
    t_start = time.perf_counter()
    records: list[dict] = []
    tc_status: dict[str, str] = {}
    truth_cpbd: dict[str, float] = {}
    done: list[str] = []

    def write(call: dict[str, Any] | None) -> dict[str, Any]:
        meta = {"clips": done if len(done) < len(paths) else [p.name for p in paths],
                "complete": len(done) == len(paths), "config": dict(cfg.__dict__), "call": call,
                "elapsed_s": time.perf_counter() - t_start,
                "talkcodec": tc_status or "ok", "truth_cpbd": truth_cpbd}
        summary = report.summarize(records, meta)
        report.write_json(records, summary, out / "bench.json")
        report.plot_rd(records, out / "rd.png")
        report.write_markdown(records, summary, out / "report.md")
        return {"records": records, "summary": summary}

    for path in paths:
        bar.set_postfix_str(path.name)
        everything, lead, fps = load_frames(path, cfg.max_frames)
        frames = everything[lead:]  # scored: after the frames keyframes come from
        ref = Reference.of(frames)
        if not ref.valid.any():
            raise MediaError(f"{path}: no face found in any frame")
        truth_cpbd[path.name] = float(np.nanmean([cpbd(f) for f in frames[:: cfg.stride]]))

        def score(decoded: np.ndarray) -> dict[str, Any]:
            s = score_clip(decoded, ref, identity=True, stride=cfg.stride)
            return s.to_dict()

        tc_records: list[dict] = []
        tc_frames: dict[str, np.ndarray] = {}
        start, expected = bar.n, [8]

        def grow(n: int) -> None:
            expected[0] += n
            bar.total += n
            bar.refresh()

        try:
            tc_records, tc_frames = run_talkcodec(path, everything, lead, fps, cfg, score, bar.update, grow)
        except (MediaError, KeyboardInterrupt):
            raise
        except Exception as e:  # report a talkcodec failure on one clip, keep the baselines
            tc_status[path.name] = f"failed: {type(e).__name__}: {e}"
            print(f"talk-bench: {path.name}: talkcodec failed ({type(e).__name__}: {e}); "
                  f"baselines at {NOMINAL_KBPS} kbps", file=sys.stderr)
        # After a failure fewer steps ran than were planned.
        bar.total -= expected[0] - (bar.n - start)
        bar.refresh()
        records += tc_records
        base, ladder = targets(tc_records, cfg)
        bar.total += len(CODECS) * len(ladder)
        bar.refresh()
        search = BaselineSearch(ref, fps, sample=sample_frames(len(frames), cfg.search_frames), sizes=cfg.sizes)
        strip_frames = {}
        for codec in CODECS:
            for mult, kbps in ladder:
                c = search.best(codec, kbps)
                if c is None:
                    print(f"talk-bench: {path.name}: {codec} cannot reach {kbps:.1f} kbps on any rung",
                          file=sys.stderr)
                    bar.update()
                    continue
                decoded, decode_ms = search.decoded(c)
                records.append({"clip": path.name, "codec": codec, "setting": c.setting.describe(fps),
                                "kbps": c.kbps,
                                "wire_kbps": rtp_video_wire_kbps([len(p) for p in c.encoded.packets],
                                                                 len(frames) / fps),
                                **score(decoded), "encode_ms": c.encoded.encode_ms,
                                "render_ms": decode_ms, "device": "cpu", "target_kbps": kbps,
                                "multiple": mult})
                if mult == 1 and codec not in strip_frames:
                    strip_frames[codec] = (c.setting.describe(fps), decoded[strip_index(len(frames))])
                bar.update()
        _strip(path, frames, tc_frames, base, strip_frames, out / "strips" / f"{path.stem}.png")
        done.append(path.name)
        if len(done) < len(paths):  # a long run leaves its results so far, should it be cut short
            write(None)
    bar.close()
    call = _call(paths[0], cfg) if cfg.latency else None
    return write(call)


LINK_KBPS = 32.0
"""The narrow link of the second ``--latency`` call: how long the caller's face takes to come there."""


def _call(clip: Path, cfg: BenchConfig) -> dict[str, Any]:
    """``--latency``: a 10 s loopback call with the real talk-send and talk-recv (see :mod:`bench.loopback`),
    then a 15 s one over a simulated :data:`LINK_KBPS` link (motion and pictures; no speech, which alone would
    fill it) for the time to the caller's face and the motion packets' delay there."""
    print(f"talk-bench: timing a 10 s loopback call on {clip.name}", file=sys.stderr)
    device = "cuda" if has_cuda(cfg.device) else "cpu"
    try:
        out = {"clip": clip.name, **loopback.measure_call(clip, loopback.CallConfig(seconds=10.0, device=device))}
    except TalkcodecError as e:  # the quality results stand without it
        print(f"talk-bench: the loopback call failed: {e}", file=sys.stderr)
        return {"clip": clip.name, "error": str(e)}
    print(f"talk-bench: a 15 s call over a simulated {LINK_KBPS:g} kbps link", file=sys.stderr)
    try:
        link = loopback.measure_call(clip, loopback.CallConfig(
            seconds=15.0, device=device, sender_args=("--no-audio", "--link-kbps", f"{LINK_KBPS:g}")))
        picture = link.get("picture") or {}
        out["narrow_link"] = {"kbps": LINK_KBPS, "time_to_face_ms": picture.get("time_to_face_ms"),
                              "reference_arrival_ms": picture.get("reference_arrival_ms"),
                              "motion_delay_ms": ((link.get("link") or {}).get("delay_ms") or {}).get("motion"),
                              "pictures_sent": link.get("pictures_sent"),
                              "playout_latency_ms": link.get("playout_latency_ms")}
    except TalkcodecError as e:
        print(f"talk-bench: the narrow-link call failed: {e}", file=sys.stderr)
        out["narrow_link"] = {"kbps": LINK_KBPS, "error": str(e)}
    return out


def strip_index(t: int, n: int = 4) -> np.ndarray:
    """The frames shown in a clip's strip."""
    return np.linspace(0, t - 1, n).round().astype(int)


def _strip(path: Path, frames: np.ndarray, tc: dict[str, np.ndarray], base: float,
           baselines: dict[str, tuple[str, np.ndarray]], dest: Path) -> None:
    """truth | talkcodec | H.264 | VP8 at talkcodec's bitrate; the inputs hold the strip's frames only."""
    rows = {"truth": frames[strip_index(len(frames))]}
    rows.update({f"talkcodec {name} {base:.1f} kbps": f for name, f in tc.items()})
    rows.update({setting: dec for setting, dec in baselines.values()})
    report.write_strip(rows, dest)


def has_cuda(device: str) -> bool:
    """Whether ``--device`` renders on a CUDA GPU."""
    if device == "auto":
        return bool(torch.cuda.is_available())
    return device.startswith("cuda")
