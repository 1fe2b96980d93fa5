"""Speech-driven mode on held-out speech: lip sync, silence, other languages, speed.

    python -m bench.measure.speech_quality [--json out.json]

Held-out clips (identities never trained on) give the truth: their tracked
landmarks. Generated tokens are decoded (tokens -> delta) and transferred onto
the clip's rest frame (mouth closed, head near its median pose), the face the
generator's motion is relative to; the true motion is taken from the same
rest frame.

* Lip sync: Pearson correlation of generated and true mouth opening (inner-lip
  distance over inter-ocular distance) per frame, pooled over clips; and the
  lip-landmark error in the head's canonical frame (pose removed, inter-ocular
  units), against the "mouth at rest" baseline that keeps the lips at rest.
* Silence: on frames whose audio is silent (energy 35 dB under the clip's
  loud frames), the share with the mouth closed (opening under the rest
  opening plus :data:`MARGIN`); also for 4 s of digital silence.
* Other languages (corpus ``audio/``, no video): speech/silence agreement of
  the mouth: closed on silent frames, moving (opening range over 0.4 s above
  :data:`MARGIN`) on speech frames; their balanced mean per language.
* Speed: real-time factor of tokenizer + generator + voice gate (one thread)
  on a whole clip, and of the live stream fed 20 ms chunks; the algorithmic
  latency; the voice gate's own cost per frame (the detector on every frame,
  the lower-face re-encoding on the frames it closes).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.media import read_audio
from codec.motion import MotionDelta, load_template, transfer
from codec.regions import LIPS, mouth_opening
from codec.speech import SpeechMotionStream, speech_to_tokens
from codec.speech.stream import gate_lower_face, speech_inputs, units_to_tokens
from codec.speech.units import load_unitizer
from codec.speech.vad import voice_gate
from codec.tokenizer import load_tokenizer
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.speech import clip_motion, rest_frame

MARGIN = 0.03
SILENCE_DB = -35.0


def frame_energy_db(samples: np.ndarray, frames: int) -> np.ndarray:
    """Per-frame RMS in dB relative to the recording's 95th-percentile frame ``[T]``."""
    x = np.zeros(frames * 640, np.float32)
    n = min(len(samples), len(x))
    x[:n] = samples[:n]
    rms = np.sqrt((x.reshape(frames, 640) ** 2).mean(1) + 1e-12)
    return 20 * np.log10(rms / max(np.percentile(rms, 95), 1e-6))


def silent_frames(samples: np.ndarray, frames: int) -> np.ndarray:
    """``[T]`` bool: the frame and its neighbours (±2) are quiet, so short stops are not silence."""
    quiet = frame_energy_db(samples, frames) < SILENCE_DB
    k = np.ones(5)
    return np.convolve(quiet.astype(float), k, "same") >= 5


TEMPERATURE = 0.2


def tokens_for(audio: np.ndarray, frames: int, seeds: tuple[int, ...], gated: bool = True) -> list[np.ndarray]:
    """Generated tokens ``[T, 4, 12]`` for each seed, voice-gated as live unless ``gated`` is False
    (speech features and gate computed once)."""
    units = speech_inputs(audio, frames)
    gate = voice_gate(audio, frames) if gated else np.ones(frames, np.float32)
    return [units_to_tokens(units, seed=s, temperature=TEMPERATURE, gate=gate) for s in seeds]


def openings(tokens: np.ndarray, rest_landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening ``[T]`` and canonical lip expression ``[T, 40, 3]`` of tokens applied to a rest face."""
    delta = MotionDelta.from_vector(load_tokenizer().decode(tokens))
    lm = transfer(rest_landmarks, delta)
    return mouth_opening(lm), delta.expression[:, LIPS]


@dataclass
class ClipTruth:
    """A filmed clip's soundtrack and what its speaker's lips did."""

    audio: np.ndarray  # [N] float32 at 16 kHz
    frames: int
    rest: np.ndarray  # [478, 3] landmarks of the rest frame (mouth closed, head near its median pose)
    opening: np.ndarray  # [T] mouth opening
    lips: np.ndarray  # [T, 40, 3] lip expression relative to the rest frame, canonical frame


def clip_truth(path: Path) -> ClipTruth:
    """Soundtrack and tracked lips of a video clip (landmarks cached, see :func:`codec.train.corpus.clip_landmarks`)."""
    lm = clip_landmarks(path).landmarks
    t = len(lm)
    delta, _, _ = clip_motion(lm)
    return ClipTruth(read_audio(path), t, lm[rest_frame(lm)], mouth_opening(lm),
                     delta[:, 7:7 + 478 * 3].reshape(t, 478, 3)[:, LIPS])


def lip_errors(tokens: np.ndarray, truth: ClipTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generated mouth opening ``[T]``, lip error ``[T]`` and the mouth-at-rest baseline's lip error ``[T]``."""
    o, lips = openings(tokens, truth.rest)
    return (o, np.linalg.norm(lips - truth.lips, axis=-1).mean(-1),
            np.linalg.norm(truth.lips, axis=-1).mean(-1))


def held_out(seed: int, log: Callable[[str], object]) -> dict[str, Any]:
    """Lip sync and quiet frames on the held-out clips (gated as live; lip sync also ungated)."""
    root = corpus_dir()
    gen_o, true_o, err, base, sil_closed, sil_true_closed, per_clip = [], [], [], [], [], [], {}
    seed_corr: list[float] = []
    free_o: list[np.ndarray] = []  # without the voice gate
    free_err: list[np.ndarray] = []
    for clip in corpus_split(root).held_out:
        truth = clip_truth(root / clip)
        audio, t, rest, true_open = truth.audio, truth.frames, truth.rest, truth.opening
        rest_open = mouth_opening(rest)
        tokens, tokens2 = tokens_for(audio, t, (seed, seed + 1))
        o, e, b = lip_errors(tokens, truth)
        o2, _ = openings(tokens2, rest)
        of, ef, _ = lip_errors(tokens_for(audio, t, (seed,), gated=False)[0], truth)
        free_o.append(of - of.mean())
        free_err.append(ef)
        seed_corr.append(np.corrcoef(o, o2)[0, 1])
        gen_o.append(o - o.mean())
        true_o.append(true_open - true_open.mean())
        err.append(e)
        base.append(b)
        sil = silent_frames(audio, t)
        sil_closed.append(o[sil] < rest_open + MARGIN)
        sil_true_closed.append(true_open[sil] < rest_open + MARGIN)
        per_clip[clip] = {"frames": t, "corr": float(np.corrcoef(o, true_open)[0, 1]),
                          "lip_error": float(err[-1].mean()), "rest_error": float(base[-1].mean()),
                          "lip_error_reduction": float(1 - err[-1].mean() / base[-1].mean()),
                          "ungated_corr": float(np.corrcoef(of, true_open)[0, 1]),
                          "ungated_lip_error_reduction": float(1 - free_err[-1].mean() / base[-1].mean()),
                          "silent_frames": int(sil.sum())}
        log(f"{clip}: {per_clip[clip]}")
    e, b = np.concatenate(err).mean(), np.concatenate(base).mean()
    return {
        "clips": per_clip,
        "opening_corr": float(np.corrcoef(np.concatenate(gen_o), np.concatenate(true_o))[0, 1]),
        "opening_corr_mean_per_clip": float(np.mean([c["corr"] for c in per_clip.values()])),
        "lip_error": float(e), "rest_baseline_error": float(b), "lip_error_reduction": float(1 - e / b),
        "silent_frames": int(sum(len(s) for s in sil_closed)),
        "silent_closed": float(np.concatenate(sil_closed).mean()) if sil_closed else float("nan"),
        "silent_closed_true_video": float(np.concatenate(sil_true_closed).mean()) if sil_true_closed else float("nan"),
        "two_seeds_opening_corr": float(np.mean(seed_corr)),
        "ungated": {"opening_corr": float(np.corrcoef(np.concatenate(free_o), np.concatenate(true_o))[0, 1]),
                    "lip_error_reduction": float(1 - np.concatenate(free_err).mean() / b)},
    }


def digital_silence(seed: int) -> dict:
    """The mouth on 4 s of digital silence."""
    rest = load_template().shape * 100.0
    o, _ = openings(speech_to_tokens(np.zeros(4 * 16000, np.float32), seed=seed, temperature=TEMPERATURE), rest)
    return {"zeros_closed": float((o < mouth_opening(rest) + MARGIN).mean()),
            "zeros_max_opening": float(o.max())}


def languages(seed: int, log: Callable[[str], object]) -> dict[str, Any]:
    """Speech/silence agreement of the mouth on the corpus's recordings without video, per language."""
    root = corpus_dir()
    lang = {}
    with open(root / "index.csv") as f:
        for row in csv.DictReader(f):
            if row["name"].startswith("audio/"):
                lang[row["name"]] = row["language"]
    rest = load_template().shape * 100.0
    rest_open = mouth_opening(rest)
    acc: defaultdict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: {"closed": [], "moving": []})
    for name, language in sorted(lang.items()):
        audio = read_audio(root / name)
        t = int(round(len(audio) / 640))
        o, _ = openings(tokens_for(audio, t, (seed,))[0], rest)
        sil = silent_frames(audio, t)
        speech = frame_energy_db(audio, t) > SILENCE_DB + 15
        pad = np.pad(o, 5, mode="edge")
        rng_ = np.array([np.ptp(pad[i:i + 11]) for i in range(t)])
        acc[language]["closed"].append(o[sil] < rest_open + MARGIN)
        acc[language]["moving"].append(rng_[speech] > MARGIN)
    out = {}
    for language, a in sorted(acc.items()):
        closed = np.concatenate(a["closed"])
        moving = np.concatenate(a["moving"])
        c = float(closed.mean()) if len(closed) else float("nan")
        m = float(moving.mean()) if len(moving) else float("nan")
        out[language] = {"recordings": len(a["closed"]), "silent_frames": int(len(closed)),
                         "silent_closed": c, "speech_moving": m,
                         "agreement": float(np.nanmean([c, m]))}
        log(f"{language}: {out[language]}")
    return out


def speed() -> dict:
    """Real-time factors (one thread) and latency of the speech mode on a held-out clip.

    Wall-clock factors, and the same in this process's CPU time (``cpu_*``): on a machine shared with
    other jobs the wall clock counts their time too, the CPU time only the speech mode's.
    """
    torch.set_num_threads(1)
    root = corpus_dir()
    clip = next(c for c in corpus_split(root).held_out if "feifeili_clip1" in c)
    audio = read_audio(root / clip)
    dur = len(audio) / 16000
    speech_to_tokens(audio[:16000], seed=0)
    t0 = time.perf_counter()
    load_unitizer().units(audio)
    t1, c1 = time.perf_counter(), time.process_time()
    speech_to_tokens(audio, seed=0)
    t2, c2 = time.perf_counter(), time.process_time()
    stream = SpeechMotionStream(seed=0)
    frames, worst = 0, 0.0
    t3, c3 = time.perf_counter(), time.process_time()
    for i in range(0, len(audio), 320):
        s = time.perf_counter()
        frames += len(stream.push(audio[i:i + 320]))
        worst = max(worst, time.perf_counter() - s)
    t4, c4 = time.perf_counter(), time.process_time()
    voice_gate(audio)
    t5 = time.perf_counter()
    tokens = speech_to_tokens(audio, seed=0)
    half = np.full(3, 0.5, np.float32)  # every frame re-encoded, in the stream's blocks of 3
    t6 = time.perf_counter()
    for i in range(0, len(tokens) - 2, 3):
        gate_lower_face(tokens[i:i + 3], half)
    t7 = time.perf_counter()
    return {"audio_s": dur, "rtf_units": (t1 - t0) / dur,
            "rtf_offline_total": (t2 - t1) / dur, "rtf_stream": (t4 - t3) / dur,
            "cpu_rtf_offline_total": (c2 - c1) / dur, "cpu_rtf_stream": (c4 - c3) / dur,
            "stream_worst_push_ms": worst * 1000, "stream_frames": frames,
            "algorithmic_latency_ms": stream.latency_ms,
            "vad_ms_per_frame": (t5 - t4) * 1000 / frames,
            "reencode_ms_per_gated_frame": (t7 - t6) * 1000 / (len(tokens) // 3 * 3)}


def main(argv: list[str] | None = None) -> int:
    global TEMPERATURE
    parser = argparse.ArgumentParser(prog="bench.measure.speech_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE, help="generator sampling temperature")
    parser.add_argument("--skip", nargs="*", default=[], choices=["held_out", "languages", "speed"])
    args = parser.parse_args(argv)
    TEMPERATURE = args.temperature
    torch.set_num_threads(1)
    res: dict = {}
    if "speed" not in args.skip:
        res["speed"] = speed()
        print("speed", json.dumps(res["speed"]))
    if "held_out" not in args.skip:
        res["held_out"] = held_out(args.seed, print)
        res["digital_silence"] = digital_silence(args.seed)
        print("held_out", json.dumps({k: v for k, v in res["held_out"].items() if k != "clips"}))
        print("digital_silence", json.dumps(res["digital_silence"]))
    if "languages" not in args.skip:
        res["languages"] = languages(args.seed, print)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
