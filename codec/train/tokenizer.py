"""``talk-train tokenizer``: trains the GRFSQ motion tokenizer on the corpus.

Each example is a pair of frames from one training clip: a reference and a
target. The delta between them goes through the tokenizer, and the loss is
measured where it matters, on the landmarks the decoded delta produces when
applied back to the reference, with lips and eyes weighted far above the rest
(the reference design weighs those regions heavily, since lip sync and blinks
are what a viewer reads). Random references teach the tokenizer deltas from
any starting expression; quantizer dropout (a random number of residual
layers per example) keeps every prefix of layers decodable.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.motion import TEMPLATE_PATH, MotionState, motion_from_landmarks, relative
from codec.tokenizer import (
    REGION_WEIGHT,
    TOKENIZER_PATH,
    MotionLoss,
    MotionTokenizer,
    TokenizerConfig,
    load_tokenizer,
    save_tokenizer,
)
from codec.train.corpus import clip_landmarks, corpus_dir, corpus_split
from codec.train.output import add_output_arguments, check_model_output, training_split
from codec.validate import ArgumentParser, integer_in


@dataclass(frozen=True)
class TrainConfig:
    """Tokenizer training settings (defaults reproduce the shipped weights)."""

    steps: int = 8000
    batch: int = 512
    lr: float = 2e-3
    pose_augment: float = 0.5     # share of examples given an extra random head movement
    region_weight: float = REGION_WEIGHT   # lips and eyes over the rest, per landmark
    feature_weight: float = 1.0   # gaze and blink values
    refs_per_clip: int = 12
    dropout_prob: float = 0.5     # share of examples trained with fewer than all layers
    seed: int = 0
    threads: int = 1


def _clip_states(clips: list[Path]) -> list[MotionState]:
    states = []
    for clip in clips:
        cl = clip_landmarks(clip)
        states.append(motion_from_landmarks(cl.landmarks[cl.valid]))
    return states


def training_clips() -> list[Path]:
    """The corpus's training split (identities not held out).

    Raises:
        MediaError: the corpus has no training clips.
    """
    root = corpus_dir()
    return [root / c for c in training_split(root).train]


def _take(st: MotionState, idx: np.ndarray | int) -> MotionState:
    return MotionState(st.rotation[idx], st.translation[idx], st.scale[idx], st.expression[idx],
                       st.gaze[idx], st.blink[idx])


def build_pairs(states: list[MotionState], refs_per_clip: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Delta vectors and what the loss needs for (reference, target) pairs of each clip."""
    deltas, rots, exps = [], [], []
    for st in states:
        n = st.scale.shape[0]
        refs = np.concatenate([[0], rng.choice(n, size=min(refs_per_clip - 1, n), replace=False)])
        for r in refs:
            ref = _take(st, int(r))
            deltas.append(relative(st, ref).to_vector())
            rots.append(np.broadcast_to(ref.rotation, (n, 3, 3)))
            exps.append(np.broadcast_to(ref.expression, (n, 478, 3)))
    f = lambda xs: torch.from_numpy(np.concatenate(xs).astype(np.float32))  # noqa: E731
    return {"delta": f(deltas), "ref_rot": f(rots), "ref_exp": f(exps)}


# Spread of the extra head movement: rotation (rad), translation and log-scale (in
# face sizes). The corpus's calm speakers rarely move this much, but callers do.
_AUG_SPREAD = torch.tensor([0.25, 0.25, 0.15, 0.6, 0.6, 0.05, 0.12])


def _augment_pose(delta: torch.Tensor, share: float) -> torch.Tensor:
    """Adds random head movements to a share of the examples (the loss recomputes the truth from them)."""
    pick = (torch.rand(delta.shape[0], 1) < share).float()
    out = delta.clone()
    out[:, :7] += pick * torch.randn(delta.shape[0], 7) * _AUG_SPREAD
    return out


@torch.no_grad()
def fit_projection(model: MotionTokenizer, delta: torch.Tensor) -> None:
    """Principal components of the expression part and feature statistics, from training deltas."""
    k = model.config.expression_components
    exp = delta[:, 7:7 + 478 * 3]
    mean = exp.mean(0)
    sub = exp[torch.randperm(exp.shape[0])[:20000]] - mean
    _, _, vt = torch.linalg.svd(sub, full_matrices=False)
    model.exp_mean.copy_(mean)
    model.exp_basis.copy_(vt[:k])
    feat = model.features(_augment_pose(delta, 0.5))
    model.feat_mean.copy_(feat.mean(0))
    model.feat_std.copy_(feat.std(0).clamp_min(1e-4))


def train_tokenizer(cfg: TrainConfig = TrainConfig(), clips: list[Path] | None = None,
                    log_every: int = 250) -> MotionTokenizer:
    """Trains a tokenizer and returns it (not saved).

    Args:
        clips: videos to learn from (default: the corpus's training split).
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    data = build_pairs(_clip_states(clips or training_clips()), cfg.refs_per_clip, rng)
    n = data["delta"].shape[0]
    print(f"tokenizer: {n} training pairs")

    model = MotionTokenizer(TokenizerConfig())
    fit_projection(model, data["delta"])
    loss_of = MotionLoss(cfg.region_weight)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    t0 = time.time()
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (cfg.batch,))
        delta, ref_rot, ref_exp = data["delta"][idx], data["ref_rot"][idx], data["ref_exp"][idx]
        delta = _augment_pose(delta, cfg.pose_augment)
        layers = torch.where(torch.rand(cfg.batch) < cfg.dropout_prob,
                             torch.randint(1, model.config.grfsq.residuals + 1, (cfg.batch,)),
                             torch.full((cfg.batch,), model.config.grfsq.residuals))
        recon, _ = model(delta, layers)
        terms = loss_of(recon, delta, ref_rot, ref_exp)
        loss_lm, loss_feat = terms[0].mean(), terms[1].mean()
        loss = loss_lm + cfg.feature_weight * loss_feat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            print(f"step {step:5d}  landmark rms {loss_lm.sqrt().item():.4f} IOD  "
                  f"gaze/blink {loss_feat.sqrt().item():.4f}  {time.time() - t0:.0f}s", flush=True)
    return model.eval()


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="talk-train tokenizer", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=integer_in(1, 10_000_000), default=TrainConfig.steps)
    parser.add_argument("--threads", type=integer_in(1, 256), default=TrainConfig.threads)
    add_output_arguments(parser, TOKENIZER_PATH)
    args = parser.parse_args(argv)
    check_model_output(args.out, args.overwrite, reads=(TEMPLATE_PATH,))
    model = train_tokenizer(TrainConfig(steps=args.steps, threads=args.threads))
    save_tokenizer(model, args.out)
    print(f"tokenizer -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


def corpus_tokens(split: str = "train", reference_frame: int = 0) -> list[np.ndarray]:
    """Tokens of every corpus clip in a split, relative to each clip's reference frame.

    Args:
        split: ``"train"`` or ``"held_out"``.
    Returns:
        one ``[T, R, G]`` int64 array per clip (frames without a face left out).
    """
    root = corpus_dir()
    clips = getattr(corpus_split(root), split)
    tok = load_tokenizer()
    out = []
    for clip in clips:
        cl = clip_landmarks(root / clip)
        lm = cl.landmarks[cl.valid]
        state = motion_from_landmarks(lm)
        ref = motion_from_landmarks(lm[reference_frame])
        out.append(tok.encode(relative(state, ref).to_vector()))
    return out
