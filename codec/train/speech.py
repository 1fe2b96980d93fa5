"""``talk-train speech``: fits the speech units, then trains the motion generator.

1. Speech units (``codec/data/speech_units.npz``): Whisper-base layer-4 features
   of the corpus speech, computed with the live stream's windows, are
   clustered by k-means. The speech is the training clips' soundtracks, every
   recording in ``audio/`` (English, Chinese, German, French, Italian,
   Japanese, Korean, Spanish, Russian) and, when ``espeak-ng`` is installed,
   synthetic sentences in those languages and a few more
   (:data:`SYNTHETIC_SPEECH`), so the inventory is not fitted to English alone.
   Held-out clips are never used.
2. Generator (``codec/data/speech_generator.pt``): trained on what the
   training clips' speech sounds like to it (``--speech states``, the shipped
   choice: the continuous Whisper states, projected on their 64 leading
   principal axes; ``--speech units``: the k-means units) and their motion
   tokens. Motion is taken relative to each clip's rest frame (mouth closed,
   head near its median pose), so that generated motion applies to a
   portrait at rest. Spans of each soundtrack are also replaced by digital
   silence, with the lower face put back at rest there, and each clip's
   start is also given 2 s of digital silence before it, so that silence
   keeps the mouth closed, also when a stream starts quiet. The loss is the
   cross-entropy of each token's FSQ digits plus a lip regression
   (:class:`LipReadout`): the expected digits, decoded through the frozen
   tokenizer, against the true lips, so that a near miss costs less than a
   far one. A quarter of the windows give no known frames, so layer 1 is
   also learned from speech alone. The generator overfits quickly: noise on
   the speech features, dropout 0.3 and 3,000 steps (on validation speakers
   the correlation peaked at 2,000-3,000 steps and fell after).
   The generator records the hash of the motion tokenizer whose tokens it
   learned: retrain it whenever the tokenizer is retrained.
3. Lower face (:func:`fit_readout`, :class:`codec.speech.stream.LowerFace`):
   a ridge regression from the speech of frames k-2..k to the tracked lower
   face of frame k (the conditional mean of the lips, which a sampler's lips
   are not), its weight chosen by cross-validation over whole speakers. The
   stream sends this readout plus half the generator's own lip movement,
   scaled toward rest by a guard (:data:`LOWER_FACE`). ``--calibrate-only``
   fits the readout again for the shipped weights.
   ``--validate FOLD`` trains without one fold of training speakers and
   reports, for each guard scale, their lip sync as the stream makes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.errors import TalkcodecError, UsageError
from codec.media import read_audio
from codec.motion import DELTA_DIM, MotionDelta, load_template, lower_face, motion_from_landmarks, relative, transfer
from codec.paths import cache_dir
from codec.regions import LIPS, MOUTH_INNER_LIPS, mouth_opening
from codec.speech.generator import (
    GENERATOR_PATH,
    GeneratorConfig,
    LowerFaceConfig,
    LowerFaceReadout,
    MotionGenerator,
    load_generator,
    param_count,
    save_generator,
    stack_past,
    token_digits,
)
from codec.speech.stream import LowerFace, MotionRoller
from codec.speech.units import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    UNITS_PATH,
    SpeechUnitizer,
    UnitConfig,
    kmeans,
    load_units,
    nearest,
    save_units,
)
from codec.speech.vad import voice_gate
from codec.tokenizer import TOKENIZER_PATH, MotionTokenizer, load_tokenizer, weights_hash
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split, speaker, speaker_folds
from codec.train.output import add_output_arguments, check_model_output, training_split
from codec.validate import ArgumentParser, integer_in, number_in

# A few sentences per language for espeak-ng: the units should cover the phones of
# every language a caller may speak, not only the corpus's mostly English speech.
SYNTHETIC_SPEECH = {
    "en-us": ["The quick brown fox jumps over the lazy dog.",
              "Could you share your screen again? The picture froze for a moment.",
              "We will meet on Thursday at half past nine to review the budget."],
    "de": ["Guten Morgen, wie geht es Ihnen heute?",
           "Die Besprechung beginnt um zehn Uhr im kleinen Saal.",
           "Ich höre dich leider nur sehr leise, kannst du lauter sprechen?"],
    "fr-fr": ["Bonjour à tous, merci d'être venus si nombreux.",
              "Le train de huit heures est parti sans nous ce matin.",
              "Pouvez-vous répéter la question, s'il vous plaît ?"],
    "it": ["Buongiorno, oggi parliamo del nuovo progetto.",
           "La riunione è stata spostata a giovedì pomeriggio.",
           "Mi senti bene adesso? La connessione era instabile."],
    "es": ["Hola, ¿me escuchas bien desde allí?",
           "Mañana vamos a presentar los resultados del trimestre.",
           "El perro corre por el parque junto al río."],
    "ru": ["Здравствуйте, меня хорошо слышно?",
           "Завтра мы обсудим план работы на следующий месяц.",
           "Погода сегодня отличная, давайте погуляем в парке."],
    "cmn": ["大家好，今天我们讨论新的项目计划。",
            "你能听清楚我说话吗？网络好像有点慢。",
            "明天上午九点我们在会议室见面。"],
    "ja": ["こんにちは、今日はいい天気ですね。",
           "会議は午後三時から始まります。",
           "すみません、もう一度言っていただけますか。"],
    "ko": ["안녕하세요, 제 목소리 잘 들리세요?",
           "내일 아침에 회의가 있습니다.",
           "오늘 날씨가 정말 좋네요."],
    "pt-br": ["Bom dia, vamos começar a reunião agora.",
              "Você pode compartilhar a sua tela, por favor?"],
    "nl": ["Goedemorgen, kunnen jullie mij goed horen?"],
    "pl": ["Dzień dobry, czy wszyscy mnie dobrze słyszą?"],
    "tr": ["Günaydın, toplantıya başlayabilir miyiz?"],
    "hi": ["नमस्ते, क्या आप मुझे सुन सकते हैं?"],
    "ar": ["مرحبا، هل تسمعني جيدا؟"],
}


def synthetic_speech() -> list[np.ndarray]:
    """espeak-ng renderings of :data:`SYNTHETIC_SPEECH` at two speeds, 16 kHz; [] without espeak-ng."""
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as d:
        for lang, sentences in SYNTHETIC_SPEECH.items():
            for speed in (140, 185):
                wav = Path(d) / f"{lang}-{speed}.wav"
                try:
                    subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), "-w", str(wav),
                                    "  ".join(sentences)], check=True, capture_output=True, timeout=60)
                except (OSError, subprocess.SubprocessError):
                    return out
                out.append(read_audio(wav, SAMPLE_RATE))
    return out


# Frames of digital silence put before each clip's first LEAD_SPEECH frames.
LEAD_IN = 50
LEAD_SPEECH = 75


@dataclass
class ClipData:
    """One training clip, frame-aligned: speech ``[T]`` unit ids (or ``[T, 512]`` Whisper states for a generator
    that hears states), tokens ``[T, R, G]``, controls ``[T, 9]``."""

    name: str
    units: np.ndarray
    tokens: np.ndarray
    controls: np.ndarray
    # The original clips only (not the training copies): the tracked lower face relative to the rest
    # frame [T, L, 3] and the voice-activity gate of the soundtrack [T], for validation.
    lower: np.ndarray | None = None
    gate: np.ndarray | None = None


def rest_frame(landmarks: np.ndarray) -> int:
    """A frame with the mouth closed and the head near its median pose."""
    state = motion_from_landmarks(landmarks)
    med = motion_from_landmarks(landmarks[len(landmarks) // 2])
    angle = np.linalg.norm(relative(state, med).rotation, axis=-1)
    angle = angle - np.median(angle)
    opening = mouth_opening(landmarks)
    calm = angle < np.percentile(angle, 50)
    cand = np.flatnonzero(calm)
    # The 5th percentile rather than the minimum: single-frame tracking glitches are not rest.
    order = cand[np.argsort(opening[cand])]
    return int(order[len(order) // 20])


def clip_motion(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delta vectors from the rest frame ``[T, 1447]``, the same with the lower face at rest, controls ``[T, 9]``."""
    state = motion_from_landmarks(landmarks)
    ref = motion_from_landmarks(landmarks[rest_frame(landmarks)])
    delta = relative(state, ref)
    lower = lower_face()
    quiet = relative(state, ref)
    quiet.expression = quiet.expression.copy()
    quiet.expression[:, lower] = 0.0
    controls = np.concatenate([delta.rotation, delta.gaze, delta.blink], -1).astype(np.float32)
    return delta.to_vector(), quiet.to_vector(), controls


def silence_spans(t: int, rng: np.random.Generator) -> np.ndarray:
    """``[T]`` bool: a few random spans of 0.6 to 2 s."""
    mask = np.zeros(t, bool)
    for _ in range(max(1, t // 250)):
        n = int(rng.integers(15, 50))
        if t > n + 2:
            s = int(rng.integers(0, t - n))
            mask[s:s + n] = True
    return mask


def cached_features(unitizer: SpeechUnitizer, audio: np.ndarray, frames: int | None = None) -> np.ndarray:
    """:meth:`SpeechUnitizer.features`, cached by the audio's content and the unit config."""

    h = hashlib.sha1(np.ascontiguousarray(audio, np.float32).tobytes())
    h.update(json.dumps([unitizer.config.to_dict(), frames]).encode())
    path = cache_dir() / "speech_features" / f"{h.hexdigest()[:20]}.npy"
    if path.exists():
        return np.load(path)
    f = unitizer.features(audio, frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), f)
    path.with_suffix(".tmp.npy").replace(path)
    return f


# A clip's Whisper states, those of its copy with silence spans, the spans, those of its copy with a lead-in,
# and its voice-activity gate.
ClipFeatures = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def build_units(args: argparse.Namespace, log: Callable[[str], object]) -> tuple[UnitConfig, np.ndarray, ClipFeatures]:
    """The unit inventory (fitted, or the shipped one with ``--keep-units``) and, for each training clip, the
    Whisper states of its soundtrack, of its copy with spans of digital silence (and those spans) and of its copy
    with a silent lead-in, and its voice-activity gate."""
    cfg = UnitConfig(units=args.units)
    root = corpus_dir()
    split = corpus_split(root)
    unitizer = SpeechUnitizer(cfg)
    feats, clip_feats = [], {}
    rng = np.random.default_rng(0)
    for clip in split.train:
        if not clip.startswith("clips/"):
            continue
        t = len(clip_landmarks(root / clip).valid)
        audio = read_audio(root / clip, SAMPLE_RATE)
        f = cached_features(unitizer, audio, t)
        # The same soundtrack with spans of digital silence, for the generator.
        sil = silence_spans(t, rng)
        quiet = audio.copy()
        for k in np.flatnonzero(sil):
            quiet[k * SAMPLES_PER_FRAME:(k + 1) * SAMPLES_PER_FRAME] = 0.0
        # And with 2 s of digital silence before it: a stream that starts quiet.
        lead = np.concatenate([np.zeros(LEAD_IN * SAMPLES_PER_FRAME, np.float32),
                               audio[:LEAD_SPEECH * SAMPLES_PER_FRAME]])
        clip_feats[clip] = (f, cached_features(unitizer, quiet, t), sil,
                            cached_features(unitizer, lead, LEAD_IN + min(t, LEAD_SPEECH)), voice_gate(audio, t))
        feats.append(f)
        log(f"features {clip}: {t} frames")
    for wav in sorted((root / "audio").glob("*.wav")):
        feats.append(cached_features(unitizer, read_audio(wav, SAMPLE_RATE)))
    n_audio = sum(len(f) for f in feats)
    synth = synthetic_speech() if not args.no_synthetic else []
    for x in synth:
        feats.append(cached_features(unitizer, x))
    log(f"k-means: {n_audio} corpus frames + {sum(len(f) for f in feats) - n_audio} synthetic frames"
        f" ({len(synth)} espeak-ng recordings)")
    if args.keep_units:
        kept, centroids = load_units()
        if kept != cfg:
            raise TalkcodecError(f"--keep-units: the shipped units are {kept}, not {cfg}")
        log("k-means: keeping the shipped units")
        return cfg, centroids, clip_feats
    allf = np.concatenate(feats)
    sub = allf[rng.permutation(len(allf))[:args.kmeans_frames]]
    centroids = kmeans(sub, cfg.units, iters=args.kmeans_iters)
    languages = ",".join(["corpus"] + (list(SYNTHETIC_SPEECH) if synth else []))
    save_units(cfg, centroids, args.units_path, languages=languages)
    return cfg, load_units(args.units_path)[1], clip_feats  # as shipped (float16), so training sees the live units


def build_clips(clip_feats: ClipFeatures, centroids: np.ndarray, speech: str = "units") -> tuple[list[ClipData], str]:
    """Training clips and the hash of the motion tokenizer that made their tokens.

    Args:
        clip_feats: :func:`build_units`'s Whisper states of each clip and of its copies.
        centroids: the unit inventory.
        speech: what the generator hears: ``"units"`` (the nearest centroids) or ``"states"``.
    """
    # Hash the very bytes the tokenizer is loaded from: it may be retrained meanwhile.
    tokenizer_hash = weights_hash(TOKENIZER_PATH)
    tok = load_tokenizer(TOKENIZER_PATH)
    root = corpus_dir()

    def hear(feats: np.ndarray) -> np.ndarray:
        return nearest(feats, centroids) if speech == "units" else feats.astype(np.float32)

    low = lower_face()
    out = []
    for clip, (feats, quiet_feats, sil, lead_feats, gate) in clip_feats.items():
        cl = clip_landmarks(root / clip)
        lm = cl.landmarks.copy()
        # Frames without a face take the nearest tracked frame's landmarks.
        idx = np.flatnonzero(cl.valid)
        fill = idx[np.clip(np.searchsorted(idx, np.arange(len(lm))), 0, len(idx) - 1)]
        lm = lm[fill]
        delta, quiet, controls = clip_motion(lm)
        tokens = tok.encode(delta)
        true_lower = MotionDelta.from_vector(delta).expression[:, low]
        out.append(ClipData(clip, hear(feats), tokens, controls, true_lower, gate))
        tokens_q = tokens.copy()
        tokens_q[sil] = tok.encode(quiet[sil])
        out.append(ClipData(clip + "#silence", hear(quiet_feats), tokens_q, controls))
        n = len(lead_feats) - LEAD_IN
        rest = np.repeat(tok.encode(quiet[:1]), LEAD_IN, 0)
        out.append(ClipData(clip + "#lead-in", hear(lead_feats), np.concatenate([rest, tokens[:n]]),
                            np.concatenate([np.repeat(controls[:1], LEAD_IN, 0), controls[:n]])))
    if weights_hash(TOKENIZER_PATH) != tokenizer_hash:
        raise TalkcodecError("the motion tokenizer changed while training the speech generator: run it again")
    return out, tokenizer_hash


# What the stream sends as the lower face (codec.speech.generator.LowerFaceConfig): the readout plus MOTION
# times the generator's lip movement around its running mean over TAU frames, all scaled by SCALE toward rest,
# the guard: a speaker whose lips move less than the training speakers' is better left near rest than given
# an average speaker's lips. Chosen with `--validate 3` (6 clips of 6 speakers never trained on), as sent
# (through the tokenizer): SCALE is the largest that left every one of them with a lip error at least
# SAFETY_MARGIN under that of a mouth at rest, MOTION the one with the best gated correlation there
# (0 / 0.3 / 0.5 / 0.7: 0.40 / 0.45 / 0.48 / 0.50 at that scale); see docs/speech_mode.md.
LOWER_FACE = LowerFaceConfig(scale=0.5, motion=0.7, tau=25.0)
# Training speakers are dealt into this many folds; --validate trains without one of them.
VALIDATION_FOLDS = 8


def split_validation(clips: list[ClipData], fold: int) -> tuple[list[ClipData], list[ClipData]]:
    """Training clips (with their copies) without the speakers of ``fold``, and those speakers' clips (no copies)."""
    names = sorted({c.name.split("#")[0] for c in clips})
    held = {names[i] for i in speaker_folds([speaker(n) for n in names], VALIDATION_FOLDS)[fold]}
    return ([c for c in clips if c.name.split("#")[0] not in held],
            [c for c in clips if c.name in held])


# Coarse layers carry the lips and the head; they get most of the training.
LAYER_WEIGHTS = (0.45, 0.3, 0.15, 0.1)
# How the known frames of a training window are drawn: none (the first window of a
# stream, and layer 1 from speech alone), the live case (all but the last block), or
# a random split.
CONTEXT_NONE, CONTEXT_LIVE = 0.25, 0.3


def sample_batch(clips: list[ClipData], batch: int, window: int, hop: int, n_units: int,
                 rng: np.random.Generator) -> dict[str, torch.Tensor]:
    lens = np.array([len(c.units) for c in clips], np.float64)
    units, tokens, controls, known, layer = [], [], [], [], []
    for _ in range(batch):
        c = clips[rng.choice(len(clips), p=lens / lens.sum())]
        t = window if rng.random() < 0.85 else int(rng.integers(hop, window + 1))
        t = min(t, len(c.units))
        s = int(rng.integers(0, len(c.units) - t + 1))
        u = c.units[s:s + t].copy()
        noise = rng.random(t) < 0.05
        # A few frames hear something else: a random unit, or the state of a random frame of the clip.
        u[noise] = (rng.integers(0, n_units, noise.sum()) if u.ndim == 1
                    else c.units[rng.integers(0, len(c.units), noise.sum())])
        x = rng.random()
        n_ctx = (0 if x < CONTEXT_NONE else t - hop if x < CONTEXT_NONE + CONTEXT_LIVE
                 else int(rng.integers(0, t - hop + 1)))
        r = int(rng.choice(4, p=LAYER_WEIGHTS))
        k = np.zeros((window, 4), bool)
        k[:n_ctx] = True
        k[n_ctx:t, :r] = True
        k[t:] = True  # padding: "known", so it is never a target
        pad = window - t
        # Padding hears "no audio": the extra unit id, or a state of NaNs.
        units.append(np.pad(u, (0, pad), constant_values=n_units) if u.ndim == 1
                     else np.pad(u, ((0, pad), (0, 0)), constant_values=np.nan))
        tokens.append(np.pad(c.tokens[s:s + t], ((0, pad), (0, 0), (0, 0))))
        ctrl = c.controls[s:s + t] if rng.random() < 0.5 else np.full((t, 9), np.nan, np.float32)
        controls.append(np.pad(ctrl, ((0, pad), (0, 0)), constant_values=np.nan))
        known.append(k)
        layer.append(r)
    return {"units": torch.as_tensor(np.stack(units)), "tokens": torch.as_tensor(np.stack(tokens)),
            "controls": torch.as_tensor(np.stack(controls)), "known": torch.as_tensor(np.stack(known)),
            "layer": torch.as_tensor(layer)}


class LipReadout(torch.nn.Module):
    """Lip landmarks of GRFSQ codes through the (frozen) motion tokenizer's decoder.

    The token cross-entropy treats codes as unrelated classes; this gives the
    generator a loss that knows how far apart two codes put the lips.
    """

    basis: torch.Tensor
    mean: torch.Tensor

    def __init__(self, tok: MotionTokenizer) -> None:
        super().__init__()
        self.tok = tok
        for p in tok.parameters():
            p.requires_grad_(False)
        idx = torch.as_tensor((LIPS[:, None] * 3 + np.arange(3)).reshape(-1))
        self.register_buffer("basis", tok.exp_basis[:, idx].clone())
        self.register_buffer("mean", tok.exp_mean[idx].clone())
        lips = list(LIPS)
        self.gap = (lips.index(MOUTH_INNER_LIPS[0]), lips.index(MOUTH_INNER_LIPS[1]))

    def stages(self, codes: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        """Latent contribution ``[N, dim]`` of codes ``[N, G, digits]`` (in [-1, 1]) at layers ``[N]``."""
        q = self.tok.quantizer
        out = torch.stack([q._stage_out(k, codes) for k in range(q.config.residuals)], 1)
        return out.gather(1, layer.view(-1, 1, 1, 1).expand(-1, 1, *out.shape[2:]))[:, 0].flatten(1)

    def lips(self, latent: torch.Tensor) -> torch.Tensor:
        """``[N, 40, 3]`` lip expression (canonical frame) of latents ``[N, dim]``."""
        tok = self.tok
        feat = tok.decoder(latent) * tok.feat_std + tok.feat_mean
        k = tok.config.expression_components
        return (self.mean + feat[:, 7:7 + k] @ self.basis).view(-1, len(self.mean) // 3, 3)

    def loss(self, probs: torch.Tensor, tokens: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        """Lip error of the expected codes of layer ``r`` on top of the true layers ``< r``.

        Args:
            probs: ``[N, G, digits, levels]`` predicted digit probabilities.
            tokens: ``[N, R, G]`` true tokens of the same frames.
            layer: ``[N]`` the layer ``r`` predicted.
        """
        q = self.tok.quantizer
        levels = probs.shape[-1]
        values = (torch.arange(levels, dtype=probs.dtype) - levels // 2) / (levels // 2)
        expected = (probs * values).sum(-1)
        true_codes = torch.stack([q.fsq.indices_to_codes(tokens[:, k]) for k in range(tokens.shape[1])], 1)
        n = len(layer)
        prefix = torch.zeros(())
        for k in range(tokens.shape[1]):
            prefix = prefix + self.stages(true_codes[:, k], torch.full((n,), k)) * (layer > k).float()[:, None]
        target = self.lips(prefix + self.stages(true_codes.gather(1, layer.view(-1, 1, 1, 1).expand(
            -1, 1, *true_codes.shape[2:]))[:, 0], layer))
        pred = self.lips(prefix + self.stages(expected, layer))
        a, b = self.gap
        # Lip landmarks move by ~0.02 units; the inner-lip gap (the mouth opening) counts most.
        opening = (pred[:, b, 1] - pred[:, a, 1]) - (target[:, b, 1] - target[:, a, 1])
        err = ((pred - target) ** 2).mean((1, 2)) + 3 * opening ** 2
        return err.mean() / 0.02 ** 2


def train_generator(clips: list[ClipData], centroids: np.ndarray, args: argparse.Namespace, unit_cfg: UnitConfig,
                    log: Callable[[str], object],
                    callback: Callable[[MotionGenerator, int], None] | None = None) -> tuple[MotionGenerator, int]:
    """Trains a generator on ``clips`` (with their copies); ``callback(model, step)`` every 500 steps, in eval mode.

    Returns:
        the generator in eval mode, and the steps it took.
    """
    cfg = GeneratorConfig(units=unit_cfg.units, window=args.window, speech=args.speech, unit_dim=args.unit_dim,
                          dropout=args.dropout)
    torch.manual_seed(0)
    model = MotionGenerator(cfg)
    model.unit_noise = args.unit_noise
    if args.init:
        model.load_state_dict(load_generator(Path(args.init)).state_dict())
        log(f"generator: continuing from {Path(args.init).name}")
    else:
        model.set_unit_features(centroids)
        if cfg.speech == "states":
            model.set_state_features(np.concatenate([c.units for c in clips if "#" not in c.name]))
    readout = LipReadout(load_tokenizer(TOKENIZER_PATH))
    log(f"generator: {param_count(model) / 1e6:.2f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    rng = np.random.default_rng(1)
    start = time.time()
    step, avg = 0, None
    while step < args.steps and time.time() - start < args.minutes * 60:
        # The schedule follows whichever budget, steps or minutes, runs out first.
        frac = max(step / args.steps, (time.time() - start) / (args.minutes * 60))
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + np.cos(np.pi * frac))
        b = sample_batch(clips, args.batch, cfg.window, unit_cfg.hop, cfg.units, rng)
        hidden = model.hidden(b["units"], b["tokens"], b["known"], b["layer"], b["controls"])
        layer = b["layer"].view(-1, 1).expand(-1, cfg.window)
        target = b["tokens"].gather(2, b["layer"].view(-1, 1, 1, 1).expand(-1, cfg.window, 1, cfg.groups))[:, :, 0]
        mask = ~b["known"].gather(2, b["layer"].view(-1, 1, 1).expand(-1, cfg.window, 1))[..., 0]
        # Only frames being generated are scored: the head runs on those alone.
        logits = model.logits(hidden[mask])
        digits = ((token_digits(target[mask], cfg.levels, cfg.digits) + 1) * (cfg.levels // 2)).round().long()
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.levels), digits.reshape(-1),
                                               label_smoothing=0.02)
        lip = readout.loss(torch.softmax(logits, -1), b["tokens"][mask], layer[mask])
        loss = ce + args.lip_weight * lip
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        now = np.array([ce.item(), lip.item()])
        avg = now if avg is None else 0.98 * avg + 0.02 * now
        step += 1
        if step % 100 == 0:
            log(f"step {step}: digit loss {avg[0]:.3f}, lip loss {avg[1]:.3f} ({time.time() - start:.0f} s)")
        if callback is not None and step % 500 == 0:
            model.eval()
            callback(model, step)
            model.train()
    model.unit_noise = 0.0
    return model.eval(), step


@dataclass
class GeneratedClip:
    """A clip's motion as the stream generates it, block by block, before its lower face is shaped and gated."""

    clip: ClipData
    blocks: list[tuple[np.ndarray, np.ndarray]]  # each block's tokens [n, R, G] and the speech heard [W(, 512)]


def generate_clips(model: MotionGenerator, clips: list[ClipData], hop: int) -> list[GeneratedClip]:
    """Runs the generator the way the stream runs it (blocks of ``hop`` frames, default temperature, seed 0)
    on each clip's own soundtrack (its training copies left out)."""
    out = []
    for c in clips:
        if "#" in c.name:
            continue  # the copies with silence spans are for training only
        roller = MotionRoller(model, seed=0)
        blocks = [(roller.step(c.units[i:i + hop]), roller.heard.copy()) for i in range(0, len(c.units), hop)]
        out.append(GeneratedClip(c, blocks))
    return out


# Ridge weights tried for the lower-face readout, and the frames before k it reads.
READOUT_WEIGHTS = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
READOUT_PAST = 2


def fit_readout(model: MotionGenerator, clips: list[ClipData], log: Callable[[str], object]) -> LowerFaceReadout:
    """Ridge regression from the speech the generator hears (frames k-2..k) to the tracked lower face of frame k,
    on the original clips; the ridge weight by cross-validation over folds of whole speakers."""
    real = [c for c in clips if "#" not in c.name and c.lower is not None]
    with torch.no_grad():
        feats = [model.speech_features(torch.as_tensor(c.units)[None])[0].numpy() for c in real]
    xs = [stack_past(f, READOUT_PAST).astype(np.float64) for f in feats]
    ys = [c.lower.reshape(len(c.lower), -1).astype(np.float64) for c in real if c.lower is not None]
    err = np.zeros(len(READOUT_WEIGHTS))
    for fold in speaker_folds([speaker(c.name) for c in real], VALIDATION_FOLDS):
        fit = np.setdiff1d(np.arange(len(real)), fold)
        w, mx, my = _ridge([xs[i] for i in fit], [ys[i] for i in fit], READOUT_WEIGHTS)
        x, y = np.concatenate([xs[i] for i in fold]), np.concatenate([ys[i] for i in fold])
        err += [float((((x - mx) @ wj + my - y) ** 2).sum()) for wj in w]
    best = READOUT_WEIGHTS[int(np.argmin(err))]
    w, mx, my = _ridge(xs, ys, (best,))
    log(f"lower-face readout: ridge weight {best:g} ({len(real)} clips, {sum(len(x) for x in xs)} frames)")
    return LowerFaceReadout(w[0].astype(np.float32), mx.astype(np.float32), my.astype(np.float32), READOUT_PAST)


def _ridge(xs: list[np.ndarray], ys: list[np.ndarray],
           weights: tuple[float, ...]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Ridge solutions ``y ~ (x - mx) W + my`` for each weight, from one eigendecomposition."""
    x, y = np.concatenate(xs), np.concatenate(ys)
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    s, v = np.linalg.eigh(xc.T @ xc)
    b = v.T @ (xc.T @ (y - my))
    return [v @ (b / (s + lam)[:, None]) for lam in weights], mx, my


def lip_sync(model: MotionGenerator, clips: list[ClipData], hop: int, scales: tuple[float, ...] = (1.0,),
             generated: list[GeneratedClip] | None = None) -> dict[float, dict]:
    """Lip sync on ``clips`` (validation speakers) as the stream sends it: lower face shaped
    (:class:`LowerFace`, with ``model.lower_face`` but each guard scale of ``scales``), gated, encoded, decoded.

    For each scale: the mouth-opening correlation (pooled, each clip's mean removed; gated as sent) and the lip
    error against the lips at rest (pooled and per clip), both against the tracked lips.
    """
    rest = load_template().shape * 100.0
    low = lower_face()
    tok = load_tokenizer()
    generated = generated if generated is not None else generate_clips(model, clips, hop)
    base_config = model.lower_face
    out: dict[float, dict] = {}
    try:
        for scale in scales:
            model.lower_face = LowerFaceConfig(scale, base_config.motion, base_config.tau)
            sent, truth, err, base, per_clip = [], [], [], [], {}
            for g in generated:
                c = g.clip
                assert c.lower is not None and c.gate is not None
                shaper, tokens, i = LowerFace(model), [], 0
                for block, heard in g.blocks:
                    tokens.append(shaper.apply(block, heard, c.gate[i:i + len(block)]))
                    i += len(block)
                delta = MotionDelta.from_vector(tok.decode(np.concatenate(tokens)))
                o = mouth_opening(transfer(rest, delta))
                sent.append(o - o.mean())
                t = c.lower[:, np.searchsorted(np.flatnonzero(low), LIPS)]
                truth_delta = MotionDelta.from_vector(np.zeros((len(c.lower), DELTA_DIM), np.float32))
                expression = np.zeros_like(truth_delta.expression)
                expression[:, low] = c.lower
                truth_delta.expression = expression
                ot = mouth_opening(transfer(rest, truth_delta))
                truth.append(ot - ot.mean())
                err.append(np.linalg.norm(delta.expression[:, LIPS] - t, axis=-1).mean(-1))
                base.append(np.linalg.norm(t, axis=-1).mean(-1))
                per_clip[c.name] = float(1 - err[-1].mean() / base[-1].mean())
            out[scale] = {"opening_corr_gated": float(np.corrcoef(np.concatenate(sent), np.concatenate(truth))[0, 1]),
                          "lip_error_reduction": float(1 - np.concatenate(err).mean() / np.concatenate(base).mean()),
                          "clips": per_clip}
    finally:
        model.lower_face = base_config
    return out


# Guard scales tried on the validation speakers (--validate).
SCALES = tuple(float(x) for x in np.round(np.arange(1.0, 0.25, -0.05), 2))


# How far under a mouth at rest every validation clip's lip error must stay for a guard scale to count as safe:
# sending a lower face through the tokenizer moves a clip's lip error by about this much either way.
SAFETY_MARGIN = 0.01


def largest_safe_scale(sync: dict[float, dict], margin: float = SAFETY_MARGIN) -> float | None:
    """The largest guard scale of :func:`lip_sync`'s results with every clip's lip error ``margin`` under the
    lips at rest."""
    safe = [s for s, r in sync.items() if min(r["clips"].values()) >= margin]
    return max(safe) if safe else None


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="talk-train speech", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=integer_in(2, 65536), default=512, help="speech-unit inventory size")
    parser.add_argument("--kmeans-frames", type=integer_in(1, 10_000_000), default=40000)
    parser.add_argument("--kmeans-iters", type=integer_in(1, 10_000), default=25)
    parser.add_argument("--no-synthetic", action="store_true", help="fit the units on corpus speech only")
    parser.add_argument("--window", type=integer_in(4, 1024), default=32, help="generator window in frames")
    parser.add_argument("--keep-units", action="store_true",
                        help="reuse the shipped speech_units.npz instead of fitting k-means again")
    parser.add_argument("--speech", choices=("units", "states"), default="states",
                        help="what the generator hears: k-means speech units or the continuous Whisper states")
    parser.add_argument("--unit-dim", type=integer_in(1, 512), default=64,
                        help="principal coordinates of the speech fed per frame")
    parser.add_argument("--dropout", type=number_in(0.0, 0.95), default=0.3)
    parser.add_argument("--steps", type=integer_in(1, 10_000_000), default=3000)
    parser.add_argument("--minutes", type=number_in(0.0, 100_000.0, "minutes", lo_open=True), default=38.0,
                        help="stop training after this long")
    parser.add_argument("--batch", type=integer_in(1, 4096), default=16)
    parser.add_argument("--lr", type=number_in(0.0, 1.0, lo_open=True), default=2e-3)
    parser.add_argument("--unit-noise", type=number_in(0.0, 100.0), default=0.6,
                        help="noise on speech features while training")
    parser.add_argument("--lip-weight", type=number_in(0.0, 1000.0), default=3.0,
                        help="weight of the lip regression loss")
    parser.add_argument("--lower-face-scale", type=number_in(0.0, 1.0), default=LOWER_FACE.scale,
                        help="the guard: the stream scales the lower face by this, toward rest (--validate reports "
                             "the largest value with no validation speaker worse than a mouth at rest)")
    parser.add_argument("--lower-face-motion", type=number_in(0.0, 4.0), default=LOWER_FACE.motion,
                        help="how much of the generator's own lip movement the stream adds to the speech's readout")
    parser.add_argument("--lower-face-tau", type=number_in(1.0, 10_000.0, "frames"), default=LOWER_FACE.tau,
                        help="frames over which the running mean of the generated lower face is taken")
    parser.add_argument("--threads", type=integer_in(1, 256), default=1)
    parser.add_argument("--init", type=Path, help="continue training this generator checkpoint")
    parser.add_argument("--validate", type=integer_in(0, VALIDATION_FOLDS - 1), metavar="FOLD",
                        help=f"train without the speakers of this fold (0-{VALIDATION_FOLDS - 1}) of the training "
                             "clips and report their lip sync every 500 steps (for choosing settings; the held-out "
                             "clips stay unseen)")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="keep the shipped generator's weights; only fit its lower-face readout again and store "
                             "the --lower-face-* settings")
    add_output_arguments(parser, GENERATOR_PATH)
    parser.epilog = (f"Units fitted again (without --keep-units) are written beside --out as {UNITS_PATH.name}, "
                     "under the same --overwrite rule.")
    args = parser.parse_args(argv)
    if args.calibrate_only:
        args.keep_units = True
    args.generator_path = args.out
    args.units_path = args.out.parent / UNITS_PATH.name
    # The generator read by --calibrate-only or --init may be the output: it is read whole before training and
    # replaced only at the end. The units are read (--keep-units) or written, never both.
    reads = [TOKENIZER_PATH] + ([UNITS_PATH] if args.keep_units else [])
    check_model_output(args.generator_path, args.overwrite, reads=reads)
    if not args.keep_units:
        check_model_output(args.units_path, args.overwrite, reads=[TOKENIZER_PATH, args.generator_path])
    if args.init is not None and not args.init.is_file():
        raise UsageError(f"--init: {args.init} is not a file")
    training_split()  # a missing corpus is one line, before any model is loaded or file written
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(f"talk-train speech: {msg}", flush=True)

    if args.calibrate_only and not GENERATOR_PATH.exists():
        raise TalkcodecError(f"--calibrate-only needs a trained {GENERATOR_PATH.name}: run `talk-train speech`")
    unit_cfg, centroids, clip_feats = build_units(args, log)
    clips, tokenizer_hash = build_clips(clip_feats, centroids,
                                        load_generator().config.speech if args.calibrate_only else args.speech)
    val: list[ClipData] = []
    if args.calibrate_only:
        model = load_generator(GENERATOR_PATH)
        if model.tokenizer_hash != tokenizer_hash:
            raise TalkcodecError("the shipped generator was trained for another motion tokenizer: train it again")
        meta: dict[str, object] = model.meta
    else:
        callback = None
        if args.validate is not None:
            clips, val = split_validation(clips, args.validate)
            log(f"validation: {len(val)} clips of the speakers of fold {args.validate}, not trained on")

            def callback(m: MotionGenerator, step: int) -> None:
                r = lip_sync(m, val, unit_cfg.hop)[1.0]
                log(f"step {step}: validation, generated lips alone: opening correlation {r['opening_corr_gated']:.3f}"
                    f" (gated), lip error vs rest {-100 * r['lip_error_reduction']:+.1f}%")

        model, steps = train_generator(clips, centroids, args, unit_cfg, log, callback)
        meta = {"steps": steps, "clips": len(clips) // 3, "speech": args.speech, "tokenizer": tokenizer_hash,
                "frames": sum(len(c.units) for c in clips if "#" not in c.name)}
    model.readout = fit_readout(model, clips, log)
    model.lower_face = LowerFaceConfig(args.lower_face_scale, args.lower_face_motion, args.lower_face_tau)
    if val:
        sync = lip_sync(model, val, unit_cfg.hop, SCALES)
        for scale, r in sync.items():
            log(f"validation, lower face x{scale:.2f}: opening correlation {r['opening_corr_gated']:.3f} (gated), "
                f"lip error vs rest {-100 * r['lip_error_reduction']:+.1f}%, "
                "per clip " + " ".join(f"{-100 * v:+.1f}%" for v in r["clips"].values()))
        log(f"validation: the largest guard scale with no clip worse than the lips at rest: "
            f"{largest_safe_scale(sync)}")
    save_generator(model, args.generator_path, **meta)
    log(f"{args.generator_path} " + ("saved" if args.calibrate_only else f"saved after {meta['steps']} steps"))
    return 0
