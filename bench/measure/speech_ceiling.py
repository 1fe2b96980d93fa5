"""How much lip sync the corpus allows: upper bounds for the speech-driven mode.

    python -m bench.measure.speech_ceiling [--json out.json]

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure.speech_quality import MARGIN, silent_frames
from codec.media import read_audio
from codec.motion import DELTA_DIM, NUM_LANDMARKS, MotionDelta, lower_face, transfer
from codec.regions import LIPS, mouth_opening
from codec.speech.generator import load_generator
from codec.speech.units import SAMPLE_RATE, load_unitizer, load_units, nearest
from codec.speech.vad import voice_gate
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.speech import cached_features, clip_motion, rest_frame

RIDGE_WEIGHTS = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)


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


def choose_ridge(xs: list[np.ndarray], ys: list[np.ndarray], weights: tuple[float, ...] = RIDGE_WEIGHTS) -> float:
    """The ridge weight with the lowest leave-one-clip-out squared error."""
    best, best_err = weights[0], np.inf
    for lam in weights:
        err = 0.0
        for k in range(len(xs)):
            w, mx, my = fit_ridge(np.concatenate(xs[:k] + xs[k + 1:]), np.concatenate(ys[:k] + ys[k + 1:]), lam)
            err += float((((xs[k] - mx) @ w + my - ys[k]) ** 2).sum())
        if err < best_err:
            best, best_err = lam, err
    return best


def pooled_corr(pred: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Pearson correlation pooled over clips, each clip's mean removed (as :mod:`bench.measure.speech_quality`)."""
    a = np.concatenate([p - p.mean() for p in pred])
    b = np.concatenate([t - t.mean() for t in truth])
    return float(np.corrcoef(a, b)[0, 1])


def score(clips: list[ClipSpeech], lower: list[np.ndarray]) -> dict:
    """Opening correlation, lip error reduction and silent frames closed of predicted lower faces."""

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
            "silent_closed": float(np.concatenate(closed).mean())}


def load_clips(names: Sequence[str], log: Callable[[str], object]) -> list[ClipSpeech]:

    root = corpus_dir()
    unitizer = load_unitizer()
    _, centroids = load_units()
    unit_feat = load_generator().unit_feat.float().numpy()
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


def ceilings(log: Callable[[str], object] = print) -> dict[str, Any]:

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
    for feat in ("units", "states"):
        for future in (0, 2):
            xs = [stack_context(getattr(c, feat), 2, future) for c in train]
            ys = [c.lower.reshape(len(c.lower), -1) for c in train]
            lam = choose_ridge(xs, ys)
            w, mx, my = fit_ridge(np.concatenate(xs), np.concatenate(ys), lam)
            pred = [((stack_context(getattr(c, feat), 2, future) - mx) @ w + my).reshape(c.lower.shape) for c in test]
            key = f"readout_{feat}_future{future}"
            res[key] = {"ridge_weight": lam, "latency_ms": 240 + 40 * future, **score(test, pred),
                        "gated": score(test, [p * c.gate[:, None, None] for p, c in zip(pred, test)])}
            log(f"{key}: {res[key]}")
    return res


def _no_nan(x: Any) -> Any:
    """NaN (a constant predictor's correlation) as null: the file stays valid JSON."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    return None if isinstance(x, float) and np.isnan(x) else x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.measure.speech_ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    torch.set_num_threads(1)
    res = _no_nan(ceilings())
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
