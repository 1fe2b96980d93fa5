"""Coarse-to-fine motion generator: speech units -> GRFSQ motion tokens (VQTalker-style).

A bidirectional transformer looks at a window of frames. For residual layer
``r`` it predicts the 12 group tokens of layer ``r`` for every frame still to
be generated, all at once, from

* the speech unit of every frame in the window,
* the motion tokens already known: every layer of the context frames (the
  frames generated in earlier windows) and layers ``< r`` of the frames being
  generated, fed as their FSQ digits (four numbers in [-1, 1] per token),
* which layer it is predicting, and
* optional controls (head rotation, gaze, blink as motion-delta values).

The same weights serve all four layers, run one after the other (coarse to
fine). Tokens are sampled with a temperature: speech pins down the lips, so
two runs share their lip motion while head, brows and eyes differ; ``seed``
makes a run repeatable.

Motion is relative to a face at rest (mouth closed): the training targets are
deltas from each clip's rest frame (see :mod:`codec.speech.train`).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

GENERATOR_PATH = Path(__file__).resolve().parents[1] / "data" / "speech_generator.pt"

# Motion-delta values a caller may fix: rotation (3), gaze (4), blink (2).
CONTROL_DIM = 9


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generator; saved in its checkpoint.

    Attributes:
        units: speech-unit inventory size (one more id stands for "no audio").
        window: frames the transformer sees at once.
        dim, depth, heads, ff: transformer width, layers, attention heads, feed-forward width.
        residuals, groups, codebook, digits: the motion token layout (GRFSQ).
        dropout: during training.
    """

    units: int = 512
    window: int = 32
    dim: int = 96
    depth: int = 2
    heads: int = 4
    ff: int = 256
    residuals: int = 4
    groups: int = 12
    codebook: int = 625
    digits: int = 4
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "GeneratorConfig":
        return GeneratorConfig(**d)


def token_digits(tokens: torch.Tensor, levels: int = 5, digits: int = 4) -> torch.Tensor:
    """FSQ digits of tokens: ``[..., R, G]`` int -> ``[..., R, G, digits]`` float in [-1, 1]."""
    basis = levels ** torch.arange(digits, device=tokens.device)
    d = (tokens[..., None] // basis) % levels
    half = levels // 2
    return (d.float() - half) / half


class MotionGenerator(nn.Module):
    """Predicts one residual layer's tokens for a window of frames."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        motion_in = c.residuals * c.groups * c.digits + c.residuals
        self.unit_emb = nn.Embedding(c.units + 1, c.dim)
        self.motion_in = nn.Linear(motion_in, c.dim)
        self.control_in = nn.Linear(CONTROL_DIM + 1, c.dim)
        self.layer_emb = nn.Embedding(c.residuals, c.dim)
        self.target_emb = nn.Embedding(2, c.dim)
        self.pos = nn.Parameter(torch.randn(c.window, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, c.ff, c.dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.groups * c.codebook)

    def forward(self, units: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor, layer: torch.Tensor,
                controls: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of layer ``layer``'s tokens: :meth:`hidden`, then :meth:`logits`.

        Returns:
            ``[B, T, G, codebook]`` logits (meaningful where layer ``r`` is unknown).
        """
        return self.logits(self.hidden(units, tokens, known, layer, controls))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Token logits ``[..., G, codebook]`` of hidden states ``[..., dim]``."""
        return self.head(hidden).view(*hidden.shape[:-1], self.config.groups, self.config.codebook)

    def hidden(self, units: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor, layer: torch.Tensor,
               controls: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of every frame for predicting layer ``layer``.

        Args:
            units: ``[B, T]`` int64 speech units (``config.units`` for no audio).
            tokens: ``[B, T, R, G]`` int64 motion tokens; only the ``known`` layers are read.
            known: ``[B, T, R]`` bool, which layers of which frames are given.
            layer: ``[B]`` int64, the layer ``r`` (0-based) to predict.
            controls: ``[B, T, 9]`` float (NaN where not given) or None.
        Returns:
            ``[B, T, dim]``.
        """
        c = self.config
        b, t = units.shape
        kf = known.float()
        dig = token_digits(tokens.clamp(0, c.codebook - 1), 5, c.digits) * kf[..., None, None]
        h = self.unit_emb(units) + self.motion_in(torch.cat([dig.reshape(b, t, -1), kf], -1))
        if controls is not None:
            given = ~torch.isnan(controls[..., :1])
            ctrl = torch.where(torch.isnan(controls), torch.zeros_like(controls), controls)
            h = h + self.control_in(torch.cat([ctrl, given.float()], -1))
        target = ~known.gather(2, layer.view(b, 1, 1).expand(b, t, 1))[..., 0]
        h = h + self.layer_emb(layer)[:, None] + self.target_emb(target.long()) + self.pos[:t]
        return self.norm(self.encoder(h))

    @torch.no_grad()
    def generate(self, units: torch.Tensor, context: torch.Tensor, n_context: int,
                 controls: torch.Tensor | None = None, temperature: float = 0.8,
                 generator: torch.Generator | None = None, top_p: float = 0.8) -> torch.Tensor:
        """Fills in the frames after the context, coarse to fine.

        Args:
            units: ``[T]`` int64 speech units of the window.
            context: ``[n_context, R, G]`` tokens of the window's first frames.
            n_context: frames of context; the other ``T - n_context`` are generated.
            controls: ``[T, 9]`` float (NaN where not given) or None.
            temperature: sampling temperature; 0 takes the most likely token.
            top_p: sample among the most likely tokens that make up this much probability.
            generator: random source (seeded for repeatable runs).
        Returns:
            ``[T - n_context, R, G]`` int64 tokens.
        """
        c = self.config
        t = units.shape[0]
        tokens = torch.zeros(1, t, c.residuals, c.groups, dtype=torch.int64)
        tokens[0, :n_context] = context
        known = torch.zeros(1, t, c.residuals, dtype=torch.bool)
        known[0, :n_context] = True
        ctrl = None if controls is None else controls[None]
        for r in range(c.residuals):
            h = self.hidden(units[None], tokens, known, torch.tensor([r]), ctrl)[0, n_context:]
            logits = self.logits(h)
            if temperature <= 0:
                new = logits.argmax(-1)
            else:
                p = torch.softmax(logits.float() / temperature, -1).reshape(-1, c.codebook)
                # Nucleus sampling: the long tail of unlikely tokens is where lips go wrong.
                sp, order = p.sort(-1, descending=True)
                sp = torch.where(sp.cumsum(-1) - sp > top_p, torch.zeros_like(sp), sp)
                pick = torch.multinomial(sp, 1, generator=generator)
                new = order.gather(-1, pick).view(t - n_context, c.groups)
            tokens[0, n_context:, r] = new
            known[0, n_context:, r] = True
        return tokens[0, n_context:]


def save_generator(model: MotionGenerator, path: Path = GENERATOR_PATH, **meta: object) -> None:
    """Saves the weights in float16 (the shipped file stays small)."""
    buf = io.BytesIO()
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "state": state, "meta": meta}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


@lru_cache(maxsize=2)
def load_generator(path: Path = GENERATOR_PATH) -> MotionGenerator:
    """The shipped generator, in eval mode on the CPU."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train speech`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = MotionGenerator(GeneratorConfig.from_dict(ckpt["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()})
    model.tokenizer_hash = str(ckpt.get("meta", {}).get("tokenizer", ""))
    _check_tokenizer(model.tokenizer_hash)
    return model.eval()


def _check_tokenizer(trained_on: str) -> None:
    # Tokens only mean something to the tokenizer they were learned from.
    from codec.tokenizer import TOKENIZER_PATH, weights_hash

    if TOKENIZER_PATH.exists() and trained_on and weights_hash() != trained_on:
        warnings.warn(f"{GENERATOR_PATH.name} was trained for motion tokenizer {trained_on}, but the installed "
                      f"one is {weights_hash()}: run `talk-train speech` again", stacklevel=3)


def param_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
