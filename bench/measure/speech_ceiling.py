"""How much lip sync the corpus allows: upper bounds for the speech-driven mode.

    python -m bench.measure.speech_ceiling [--json out.json] [--plot curve.png]

:mod:`bench.measure.speech_quality` scores the shipped generator against the issue's
targets (mouth-opening correlation >= 0.5, lip error 30 % under the "mouth at
rest" baseline, mouth closed in >= 90 % of silent frames). This module asks
what any model fitted on the same training clips could reach, with models
that cannot do worse than a linear map would, and without the motion
tokenizer in between (tokens only add error):

* ``truth``: the filmed speakers themselves, scored by the silence rule
  (mouth under the rest opening plus the margin on silent frames);
  ``truth_gated``: the same lips with the voice-activity gate applied, a
  perfect lip predictor that closes the mouth where nobody speaks.
* ``mean_lips``: one constant lip shape, the training clips' mean, on every
  frame: the lip error any model gets by opening the mouth "on average".
* ``readout_*``: ridge regression from speech features of the frames around
  frame ``k`` to the lower-face expression of frame ``k`` (the landmarks below
  the nose tip, in the head's canonical frame, relative to the clip's rest
  frame), fitted on the training clips, its ridge weight chosen by
  leave-one-clip-out on the training clips alone. Variants: the speech units
  (their centroids' principal coordinates, what the generator sees) or the
  continuous Whisper layer-4 states before k-means; past frames only (what the
  live stream holds at 240 ms latency) or also 2 frames (80 ms) of future,
  which the latency budget (<= 250 ms) does not allow. Each is scored as it
  is and with the voice-activity gate applied to its lower face, as the
  shipped mode does.

A readout is the conditional mean: it maximises correlation and minimises
the squared lip error among linear models, so the generator, a sampler, is
not expected to beat the better of them on these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bench.measure.speech_quality import MARGIN, silent_frames
from codec.media import read_audio
from codec.motion import DELTA_DIM, NUM_LANDMARKS, MotionDelta, lower_face, transfer
from codec.regions import LIPS, mouth_opening
from codec.speech.generator import GeneratorConfig, unit_features
from codec.speech.units import SAMPLE_RATE, load_unitizer, load_units, nearest
from codec.speech.vad import voice_gate
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split, speaker, speaker_folds
from codec.train.speech import cached_features, clip_motion, rest_frame

RIDGE_WEIGHTS = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
# Cross-validation folds for the ridge weight: at most this many, never splitting a speaker.
MAX_FOLDS = 8
# The curve over training minutes: random subsets of whole training clips of about this many minutes
# (and all of them), CURVE_DRAWS subsets each.
CURVE_MINUTES = (2.0, 4.0, 8.0)
CURVE_DRAWS = 4
FRAMES_PER_MINUTE = 1500


@dataclass
class ClipSpeech:
    """One clip's speech features and lip truth, frame by frame."""

    name: str
    units: np.ndarray  # [T, D] unit features (centroid principal coordinates)
    states: np.ndarray  # [T, 512] Whisper layer-4 states
    lower: np.ndarray  # [T, L, 3] lower-face expression relative to the rest frame
    rest: np.ndarray  # [478, 3] rest-frame landmarks
    true_open: np.ndarray  # [T]
    silent: np.ndarray  # [T] bool
    gate: np.ndarray  # [T] voice-activity gate


def stack_context(x: np.ndarray, past: int, future: int) -> np.ndarray:
    """``[T, D]`` -> ``[T, (past + 1 + future) D]``: each frame with its neighbours, edges repeated."""
    p = np.pad(x, ((past, future), (0, 0)), mode="edge")
    return np.concatenate([p[i:i + len(x)] for i in range(past + future + 1)], 1)


def fit_ridge(x: np.ndarray, y: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression ``y ~ (x - mx) W + my``; returns ``(W, mx, my)``."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + weight * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, mx, my


def choose_ridge(xs: list[np.ndarray], ys: list[np.ndarray], weights: tuple[float, ...] = RIDGE_WEIGHTS,
                 groups: list[str] | None = None) -> float:
    """The ridge weight with the lowest cross-validated squared error on the clips ``xs``, ``ys``.

    Folds hold whole groups (default: one clip each, i.e. leave-one-clip-out when
    there are at most :data:`MAX_FOLDS` clips). One eigendecomposition per fold
    serves every weight.
    """
    groups = groups if groups is not None else [str(i) for i in range(len(xs))]
    gram = [x.T @ x for x in xs]
    cross = [x.T @ y for x, y in zip(xs, ys)]
    sx, sy, n = [x.sum(0) for x in xs], [y.sum(0) for y in ys], [len(x) for x in xs]
    err = np.zeros(len(weights))
    for fold in speaker_folds(groups, MAX_FOLDS):
        fit = np.setdiff1d(np.arange(len(xs)), fold)
        m = sum(n[i] for i in fit)
        mx, my = sum(sx[i] for i in fit) / m, sum(sy[i] for i in fit) / m
        g = sum(gram[i] for i in fit) - m * np.outer(mx, mx)
        c = sum(cross[i] for i in fit) - m * np.outer(mx, my)
        s, v = np.linalg.eigh(g)
        b = v.T @ c
        z = np.concatenate([xs[i] for i in fold]) @ v - mx @ v
        y = np.concatenate([ys[i] for i in fold]) - my
        for j, lam in enumerate(weights):
            err[j] += float(((z @ (b / (s + lam)[:, None]) - y) ** 2).sum())
    return float(weights[int(np.argmin(err))])


def pooled_corr(pred: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Pearson correlation pooled over clips, each clip's mean removed (as :mod:`bench.measure.speech_quality`)."""
    a = np.concatenate([p - p.mean() for p in pred])
    b = np.concatenate([t - t.mean() for t in truth])
    return float(np.corrcoef(a, b)[0, 1])


def score(clips: list[ClipSpeech], lower: list[np.ndarray]) -> dict:
    """Opening correlation, lip error reduction (pooled, and the worst clip's) and silent frames closed.

    Args:
        clips: the clips scored.
        lower: each clip's predicted lower face ``[T, L, 3]``.
    """
    mask = lower_face()
    lips_in_lower = np.searchsorted(np.flatnonzero(mask), LIPS)
    opens, err, base, closed = [], [], [], []
    for c, pred in zip(clips, lower):
        delta = MotionDelta.from_vector(np.zeros((len(pred), DELTA_DIM), np.float32))
        expr = np.zeros((len(pred), NUM_LANDMARKS, 3), np.float32)
        expr[:, mask] = pred
        delta.expression = expr
        o = mouth_opening(transfer(c.rest, delta))
        opens.append(o)
        err.append(np.linalg.norm(pred[:, lips_in_lower] - c.lower[:, lips_in_lower], axis=-1).mean(-1))
        base.append(np.linalg.norm(c.lower[:, lips_in_lower], axis=-1).mean(-1))
        closed.append(o[c.silent] < mouth_opening(c.rest) + MARGIN)
    moving = np.concatenate([o - o.mean() for o in opens]).std() > 1e-6
    corr = pooled_corr(opens, [c.true_open for c in clips]) if moving else float("nan")
    return {"opening_corr": corr,
            "lip_error_reduction": float(1 - np.concatenate(err).mean() / np.concatenate(base).mean()),
            "worst_clip_lip_error_reduction": float(min(1 - e.mean() / b.mean() for e, b in zip(err, base))),
            "silent_closed": float(np.concatenate(closed).mean())}


def load_clips(names: Sequence[str], log: Callable[[str], object]) -> list[ClipSpeech]:
    """Speech features, lip truth and voice gate of the corpus clips ``names`` (those with speech)."""
    root = corpus_dir()
    unitizer = load_unitizer()
    _, centroids = load_units()
    # What a units generator hears of a unit: its centroid's leading principal coordinates.
    unit_feat = unit_features(centroids, GeneratorConfig().unit_dim)
    mask = lower_face()
    out = []
    for name in names:
        if not name.startswith("clips/"):
            continue  # clips_noaudio/ has no speech
        cl = clip_landmarks(root / name)
        t = len(cl.valid)
        idx = np.flatnonzero(cl.valid)
        lm = cl.landmarks[idx[np.clip(np.searchsorted(idx, np.arange(t)), 0, len(idx) - 1)]]
        audio = read_audio(root / name, SAMPLE_RATE)
        states = cached_features(unitizer, audio, t)
        delta, _, _ = clip_motion(lm)
        expr = delta[:, 7:7 + 478 * 3].reshape(t, 478, 3)
        out.append(ClipSpeech(name, unit_feat[nearest(states, centroids)], states, expr[:, mask],
                              lm[rest_frame(lm)], mouth_opening(lm), silent_frames(audio, t), voice_gate(audio, t)))
        log(f"{name}: {t} frames")
    return out


# (features, future frames): what the live stream sees at 240 ms (frames k-2..k), and 2 frames more (320 ms).
READOUTS = (("units", 0), ("units", 2), ("states", 0), ("states", 2))


def readout(train: list[ClipSpeech], test: list[ClipSpeech], feat: str, future: int) -> dict:
    """A ridge readout of ``feat`` (frames k-2..k+future) to the lower face, fitted on ``train``, scored on ``test``."""
    xs = [stack_context(getattr(c, feat), 2, future) for c in train]
    ys = [c.lower.reshape(len(c.lower), -1) for c in train]
    lam = choose_ridge(xs, ys, groups=[speaker(c.name) for c in train])
    w, mx, my = fit_ridge(np.concatenate(xs), np.concatenate(ys), lam)
    pred = [((stack_context(getattr(c, feat), 2, future) - mx) @ w + my).reshape(c.lower.shape) for c in test]
    return {"ridge_weight": lam, "latency_ms": 240 + 40 * future, **score(test, pred),
            "gated": score(test, [p * c.gate[:, None, None] for p, c in zip(pred, test)])}


def subsets(clips: list[ClipSpeech], minutes: float, draws: int, rng: np.random.Generator) -> list[list[int]]:
    """``draws`` random sets of whole clips, each the first clips of a shuffle that reach ``minutes``."""
    out = []
    for _ in range(draws):
        order = rng.permutation(len(clips))
        frames = np.cumsum([len(clips[i].gate) for i in order])
        out.append(sorted(order[:int(np.searchsorted(frames, minutes * FRAMES_PER_MINUTE)) + 1].tolist()))
    return out


def curve(train: list[ClipSpeech], test: list[ClipSpeech], log: Callable[[str], object],
          minutes: tuple[float, ...] = CURVE_MINUTES, draws: int = CURVE_DRAWS) -> list[dict]:
    """Every readout fitted on random subsets of the training clips of about ``minutes`` each."""
    rng = np.random.default_rng(0)
    points = []
    for m in minutes:
        for d, pick in enumerate(subsets(train, m, draws, rng)):
            sub = [train[i] for i in pick]
            point: dict = {"minutes": m, "draw": d, "clips": len(sub), "frames": int(sum(len(c.gate) for c in sub))}
            for feat, future in READOUTS:
                point[f"readout_{feat}_future{future}"] = readout(sub, test, feat, future)
            log(f"curve {m} min, draw {d}: {point}")
            points.append(point)
    return points


def ceilings(log: Callable[[str], object] = print, with_curve: bool = True) -> dict[str, Any]:
    """Truth, constant lips and every readout fitted on all training clips; the curve over training minutes."""
    split = corpus_split(corpus_dir())
    train = load_clips(split.train, log)
    test = load_clips(split.held_out, log)
    res: dict = {"train_clips": len(train), "train_frames": int(sum(len(c.gate) for c in train)),
                 "held_out_clips": len(test), "held_out_frames": int(sum(len(c.gate) for c in test))}
    res["truth"] = score(test, [c.lower for c in test])
    # A perfect lip predictor with the shipped gate: what closing the mouth in pauses costs by itself.
    res["truth_gated"] = score(test, [c.lower * c.gate[:, None, None] for c in test])
    mean = np.concatenate([c.lower for c in train]).mean(0)
    res["mean_lips"] = score(test, [np.broadcast_to(mean, c.lower.shape) for c in test])
    # Each held-out clip's own mean lips: an oracle for the speaker's average mouth, no lip sync at all.
    res["own_mean_lips"] = score(test, [np.broadcast_to(c.lower.mean(0), c.lower.shape) for c in test])
    for feat, future in READOUTS:
        key = f"readout_{feat}_future{future}"
        res[key] = readout(train, test, feat, future)
        log(f"{key}: {res[key]}")
    if with_curve:
        res["curve"] = curve(train, test, log)
    return res


def plot_curve(res: dict, points: list[tuple[str, float, dict]], path: str) -> None:
    """Correlation and lip error of the readouts over training minutes (subset means, with their range),
    gated as shipped, and the generators of ``points`` (label, training minutes, :mod:`bench.speech_quality` JSON)."""
    full = {"minutes": res["train_frames"] / FRAMES_PER_MINUTE, **res}
    rows = res.get("curve", []) + [full]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, metric, sign, title in ((axes[0], "opening_corr", 1, "mouth-opening correlation (gated)"),
                                    (axes[1], "lip_error_reduction", -100, "lip error vs mouth at rest, % (gated)")):
        for feat, future in READOUTS:
            key = f"readout_{feat}_future{future}"
            xs = sorted({r["minutes"] for r in rows})
            vals = [[sign * r[key]["gated"][metric] for r in rows if r["minutes"] == x] for x in xs]
            ax.errorbar([x if x < full["minutes"] - 1e-6 else full["minutes"] for x in xs], [np.mean(v) for v in vals],
                        yerr=[[np.mean(v) - min(v) for v in vals], [max(v) - np.mean(v) for v in vals]],
                        marker="o", capsize=3,
                        label=f"{feat} readout, {240 + 40 * future} ms")
        for label, minutes, q in points:
            held = q["held_out"]
            ax.plot([minutes], [sign * held[metric]], marker="*", markersize=14, linestyle="none", label=label)
        ax.axhline(0.5 if sign > 0 else -30, color="grey", linestyle=":", label="target")
        ax.set_xlabel("training minutes (speech with video)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _no_nan(x: Any) -> Any:
    """NaN (a constant predictor's correlation) as null: the file stays valid JSON."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and np.isnan(x) else x


def _point(spec: str) -> tuple[str, float, dict]:
    label, minutes, path = spec.rsplit(":", 2)
    with open(path) as f:
        return label, float(minutes), json.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.measure.speech_ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--no-curve", action="store_true", help="only the readouts fitted on all training clips")
    parser.add_argument("--plot", help="draw the curve into this PNG")
    parser.add_argument("--from-json", help="plot the figures of this earlier --json run instead of measuring")
    parser.add_argument("--point", action="append", default=[], metavar="LABEL:MINUTES:JSON",
                        help="a generator's bench.speech_quality JSON to put on the plot at its training minutes")
    args = parser.parse_args(argv)
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    torch.set_num_threads(1)
    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
    else:
        res = _no_nan(ceilings(with_curve=not args.no_curve))
        print(json.dumps(res, indent=1))
    if args.json and not args.from_json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, args.json)
    if args.plot:
        plot_curve(res, [_point(p) for p in args.point], args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
