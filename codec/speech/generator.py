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
deltas from each clip's rest frame (see :mod:`codec.train.speech`).
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

from codec.checkpoint import half_state, load_checkpoint
from codec.paths import DATA_DIR, write_bytes_atomic
from codec.tokenizer import TOKENIZER_PATH, weights_hash

GENERATOR_PATH = DATA_DIR / "speech_generator.pt"

# Motion-delta values a caller may fix: rotation (3), gaze (4), blink (2).
CONTROL_DIM = 9


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generator; saved in its checkpoint.

    Attributes:
        units: speech-unit inventory size (one more id stands for "no audio").
        window: frames the transformer sees at once.
        dim, depth, heads, ff: transformer width, layers, attention heads, feed-forward width.
        residuals, groups, codebook, digits, levels: the motion token layout (GRFSQ:
            ``codebook = levels ** digits``).
        unit_dim: principal coordinates fed per frame (of its unit's k-means centroid, or of its
            Whisper state).
        dropout: during training.
        speech: what the generator hears per frame: ``"units"`` (k-means unit ids, the centroids'
            principal coordinates) or ``"states"`` (the continuous Whisper states before k-means,
            projected on their principal axes; ``state_dim`` wide).
        state_dim: width of a Whisper state.
    """

    units: int = 512
    window: int = 32
    dim: int = 128
    depth: int = 3
    heads: int = 4
    ff: int = 256
    residuals: int = 4
    groups: int = 12
    codebook: int = 625
    digits: int = 4
    levels: int = 5
    unit_dim: int = 64
    dropout: float = 0.3
    speech: str = "units"
    state_dim: int = 512

    def __post_init__(self) -> None:
        if self.speech not in ("units", "states"):
            raise ValueError(f"speech must be 'units' or 'states', not {self.speech!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "GeneratorConfig":
        return GeneratorConfig(**d)


@dataclass(frozen=True)
class LowerFaceConfig:
    """What the stream sends as the lower face (:class:`codec.speech.stream.LowerFace`); saved with the generator.

    The lower face sent is ``scale * (readout + motion * moving)``, then voice-gated: ``readout`` the linear
    readout of the speech (:class:`LowerFaceReadout`), ``moving`` the generated lower face minus its running
    mean (time constant ``tau`` frames).

    Attributes:
        scale: the guard: shrinks the whole lower face toward rest, so that a speaker whose lips move less
            than the training speakers' is not given worse lips than a mouth at rest.
        motion: how much of the generator's own lip movement is added to the readout's.
        tau: frames over which the generated lower face's running mean is taken.
    """

    scale: float = 1.0
    motion: float = 1.0
    tau: float = 25.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LowerFaceReadout:
    """Ridge regression from the speech features of frames ``k - past .. k`` to the lower face of frame ``k``:
    the conditional mean of the lips given the speech the live stream holds (fitted by ``talk-train speech``).

    Attributes:
        weights: ``[(past + 1) * unit_dim, L * 3]``.
        x_mean: ``[(past + 1) * unit_dim]`` mean of the stacked features it was fitted on.
        y_mean: ``[L * 3]`` mean lower face it was fitted on.
        past: frames before ``k`` it reads (the first frames of a stream repeat their first frame).
    """

    weights: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    past: int = 2

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``[T, unit_dim]`` speech features (:meth:`MotionGenerator.speech_features`) -> ``[T, L, 3]`` lower face."""
        x = stack_past(np.asarray(features, np.float32), self.past)
        return ((x - self.x_mean) @ self.weights + self.y_mean).reshape(len(x), -1, 3)

    def to_dict(self) -> dict[str, object]:
        return {"weights": torch.as_tensor(self.weights, dtype=torch.float16),
                "x_mean": torch.as_tensor(self.x_mean), "y_mean": torch.as_tensor(self.y_mean), "past": self.past}

    @staticmethod
    def from_dict(d: dict) -> LowerFaceReadout:
        return LowerFaceReadout(d["weights"].float().numpy(), d["x_mean"].float().numpy(),
                                d["y_mean"].float().numpy(), int(d["past"]))


def stack_past(x: np.ndarray, past: int) -> np.ndarray:
    """``[T, D]`` -> ``[T, (past + 1) D]``: frames ``k - past .. k`` side by side, the first frame repeated before
    the start."""
    p = np.concatenate([np.repeat(x[:1], past, 0), x])
    return np.concatenate([p[i:i + len(x)] for i in range(past + 1)], 1)


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and leading principal axes ``[D, dim]`` of rows ``[N, D]``, scaled so that projections
    ``(x - mean) @ axes`` have unit variance overall."""
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    axes = np.linalg.svd(x - mean, full_matrices=False)[2][:dim].T
    return mean, axes / ((x - mean) @ axes).std()


def unit_features(centroids: np.ndarray, dim: int) -> np.ndarray:
    """What a unit feeds the generator: its k-means centroid's leading principal coordinates ``[units, dim]``."""
    mean, axes = principal_axes(centroids, dim)
    return (np.asarray(centroids, np.float64) - mean) @ axes


def token_digits(tokens: torch.Tensor, levels: int = 5, digits: int = 4) -> torch.Tensor:
    """FSQ digits of tokens: ``[..., R, G]`` int -> ``[..., R, G, digits]`` float in [-1, 1]."""
    basis = levels ** torch.arange(digits, device=tokens.device)
    d = (tokens[..., None] // basis) % levels
    half = levels // 2
    return (d.float() - half) / half


class MotionGenerator(nn.Module):
    """Predicts one residual layer's tokens for a window of frames.

    A unit enters as the principal coordinates of its k-means centroid (a
    fixed table, ``unit_feat``, saved with the weights), not as a learned
    embedding: units that sound alike mean alike, and a few thousand training
    frames cannot overfit a table of 512 free vectors. A token is predicted as its four FSQ digits (5 levels
    each), not as one of 625 unrelated classes: neighbouring codes share their
    digits, and the expected digits give a differentiable motion for the
    training's lip regression (see :mod:`codec.train.speech`).
    """

    unit_feat: torch.Tensor  # a buffer: [units + 1, unit_dim]
    state_mean: torch.Tensor  # a buffer with speech="states": [state_dim]
    state_axes: torch.Tensor  # a buffer with speech="states": [state_dim, unit_dim]

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        c = config
        if c.levels ** c.digits != c.codebook:
            raise ValueError(f"codebook {c.codebook} is not {c.levels} ** {c.digits}")
        self.config = c
        motion_in = c.residuals * c.groups * c.digits + c.residuals
        self.register_buffer("unit_feat", torch.zeros(c.units + 1, c.unit_dim))
        if c.speech == "states":
            self.register_buffer("state_mean", torch.zeros(c.state_dim))
            self.register_buffer("state_axes", torch.zeros(c.state_dim, c.unit_dim))
        self.unit_noise = 0.0  # set while training
        self.unit_in = nn.Sequential(nn.Linear(c.unit_dim, c.dim), nn.GELU(), nn.Linear(c.dim, c.dim))
        # Neighbouring units (±2 frames) before attention: lips follow the sounds around them.
        self.unit_conv = nn.Conv1d(c.dim, c.dim, 5, padding=2, groups=c.dim // 16)
        self.motion_in = nn.Linear(motion_in, c.dim)
        self.control_in = nn.Linear(CONTROL_DIM + 1, c.dim)
        self.layer_emb = nn.Embedding(c.residuals, c.dim)
        self.target_emb = nn.Embedding(2, c.dim)
        self.pos = nn.Parameter(torch.randn(c.window, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, c.ff, c.dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.groups * c.digits * c.levels)
        # Fitted after training (see codec.train.speech): the speech's linear readout to the lower face,
        # and how the stream combines it with the generated lower face.
        self.readout: LowerFaceReadout | None = None
        self.lower_face = LowerFaceConfig()
        self.meta: dict[str, object] = {}  # how it was trained (saved with the weights)
        self.tokenizer_hash = ""

    def set_unit_features(self, centroids: np.ndarray) -> None:
        """Fills ``unit_feat`` with the centroids' leading principal coordinates (unit variance overall)."""
        c = self.config
        f = unit_features(centroids, c.unit_dim)
        with torch.no_grad():
            self.unit_feat.zero_()
            self.unit_feat[:c.units, :f.shape[1]] = torch.as_tensor(f, dtype=torch.float32)

    def set_state_features(self, states: np.ndarray) -> None:
        """With ``speech="states"``: the principal axes of Whisper states ``[N, state_dim]`` (unit variance overall)."""
        mean, axes = principal_axes(states, self.config.unit_dim)
        with torch.no_grad():
            self.state_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.state_axes.zero_()
            self.state_axes[:, :axes.shape[1]] = torch.as_tensor(axes, dtype=torch.float32)

    def readout_lower_face(self, speech: np.ndarray) -> np.ndarray | None:
        """The readout's lower face ``[T, L, 3]`` of speech ``[T]`` (units) or ``[T, state_dim]`` (states) as the
        generator hears it, frame ``k`` from frames ``k - past .. k``; None without a readout."""
        if self.readout is None:
            return None
        with torch.no_grad():
            f = self.speech_features(torch.as_tensor(speech)[None])[0].numpy()
        return self.readout.predict(f)

    def speech_features(self, speech: torch.Tensor) -> torch.Tensor:
        """What a frame's speech feeds the network: ``[B, T]`` unit ids or ``[B, T, state_dim]`` states
        -> ``[B, T, unit_dim]``.

        Unit id ``config.units``, or a state of NaNs, stands for "no audio" (padding): zeros.
        """
        if self.config.speech == "units":
            return self.unit_feat[speech]
        f = (speech.float() - self.state_mean) @ self.state_axes
        return torch.nan_to_num(f, nan=0.0)

    def forward(self, speech: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor, layer: torch.Tensor,
                controls: torch.Tensor | None = None) -> torch.Tensor:
        """Digit logits of layer ``layer``'s tokens: :meth:`hidden`, then :meth:`logits`.

        Returns:
            ``[B, T, G, digits, levels]`` logits (meaningful where layer ``r`` is unknown).
        """
        return self.logits(self.hidden(speech, tokens, known, layer, controls))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Digit logits ``[..., G, digits, levels]`` of hidden states ``[..., dim]``."""
        c = self.config
        return self.head(hidden).view(*hidden.shape[:-1], c.groups, c.digits, c.levels)

    def hidden(self, speech: torch.Tensor, tokens: torch.Tensor, known: torch.Tensor, layer: torch.Tensor,
               controls: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of every frame for predicting layer ``layer``.

        Args:
            speech: ``[B, T]`` int64 speech units (``config.units`` for no audio), or with
                ``speech="states"`` ``[B, T, state_dim]`` float Whisper states (NaN for no audio).
            tokens: ``[B, T, R, G]`` int64 motion tokens; only the ``known`` layers are read.
            known: ``[B, T, R]`` bool, which layers of which frames are given.
            layer: ``[B]`` int64, the layer ``r`` (0-based) to predict.
            controls: ``[B, T, 9]`` float (NaN where not given) or None.
        Returns:
            ``[B, T, dim]``.
        """
        c = self.config
        b, t = speech.shape[:2]
        kf = known.float()
        dig = token_digits(tokens.clamp(0, c.codebook - 1), c.levels, c.digits) * kf[..., None, None]
        f = self.speech_features(speech)
        if self.training and self.unit_noise > 0:
            # Unseen voices land near, not on, the training voices' features.
            f = f + self.unit_noise * torch.randn_like(f)
        u = self.unit_in(f)
        u = u + self.unit_conv(u.transpose(1, 2)).transpose(1, 2)
        h = u + self.motion_in(torch.cat([dig.reshape(b, t, -1), kf], -1))
        if controls is not None:
            given = ~torch.isnan(controls[..., :1])
            ctrl = torch.where(torch.isnan(controls), torch.zeros_like(controls), controls)
            h = h + self.control_in(torch.cat([ctrl, given.float()], -1))
        target = ~known.gather(2, layer.view(b, 1, 1).expand(b, t, 1))[..., 0]
        h = h + self.layer_emb(layer)[:, None] + self.target_emb(target.long()) + self.pos[:t]
        return self.norm(self.encoder(h))

    def sample(self, logits: torch.Tensor, temperature: float, top_p: float,
               generator: torch.Generator | None) -> torch.Tensor:
        """Tokens ``[...]`` from digit logits ``[..., digits, levels]``, digit by digit.

        Temperature 0 takes each digit's most likely level; otherwise each digit is
        drawn among its most likely levels that make up ``top_p`` of its probability.
        """
        c = self.config
        if temperature <= 0:
            d = logits.argmax(-1)
        else:
            p = torch.softmax(logits.float() / temperature, -1).reshape(-1, c.levels)
            # Nucleus sampling: the unlikely levels are where lips go wrong.
            sp, order = p.sort(-1, descending=True)
            sp = torch.where(sp.cumsum(-1) - sp > top_p, torch.zeros_like(sp), sp)
            d = order.gather(-1, torch.multinomial(sp, 1, generator=generator)).view(logits.shape[:-1])
        basis = c.levels ** torch.arange(c.digits)
        return (d * basis).sum(-1)

    @torch.no_grad()
    def generate(self, speech: torch.Tensor, context: torch.Tensor, n_context: int,
                 controls: torch.Tensor | None = None, temperature: float = 0.8,
                 generator: torch.Generator | None = None, top_p: float = 0.8) -> torch.Tensor:
        """Fills in the frames after the context, coarse to fine.

        Args:
            speech: ``[T]`` int64 speech units of the window, or ``[T, state_dim]`` states (see :meth:`hidden`).
            context: ``[n_context, R, G]`` tokens of the window's first frames.
            n_context: frames of context; the other ``T - n_context`` are generated.
            controls: ``[T, 9]`` float (NaN where not given) or None.
            temperature: sampling temperature; 0 takes the most likely digits.
            top_p: sample among the most likely levels of a digit that make up this much probability.
            generator: random source (seeded for repeatable runs).
        Returns:
            ``[T - n_context, R, G]`` int64 tokens.
        """
        c = self.config
        t = speech.shape[0]
        tokens = torch.zeros(1, t, c.residuals, c.groups, dtype=torch.int64)
        tokens[0, :n_context] = context
        known = torch.zeros(1, t, c.residuals, dtype=torch.bool)
        known[0, :n_context] = True
        ctrl = None if controls is None else controls[None]
        for r in range(c.residuals):
            h = self.hidden(speech[None], tokens, known, torch.tensor([r]), ctrl)[0, n_context:]
            tokens[0, n_context:, r] = self.sample(self.logits(h), temperature, top_p, generator)
            known[0, n_context:, r] = True
        return tokens[0, n_context:]


def save_generator(model: MotionGenerator, path: Path = GENERATOR_PATH, **meta: object) -> None:
    """Saves the weights in float16 (the shipped file stays small), with the lower-face readout and settings."""
    buf = io.BytesIO()
    state = half_state(model.state_dict())
    ckpt: dict[str, object] = {"config": model.config.to_dict(), "state": state, "meta": meta}
    if model.readout is not None:
        ckpt["readout"] = model.readout.to_dict()
    ckpt["lower_face"] = model.lower_face.to_dict()
    torch.save(ckpt, buf)
    # Whole or not at all: a stream may be loading the file meanwhile.
    write_bytes_atomic(path, buf.getvalue())


@lru_cache(maxsize=2)
def load_generator(path: Path = GENERATOR_PATH) -> MotionGenerator:
    """The shipped generator, in eval mode on the CPU."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train speech`")
    ckpt = load_checkpoint(path)
    model = MotionGenerator(GeneratorConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state"])
    if "readout" in ckpt:
        model.readout = LowerFaceReadout.from_dict(ckpt["readout"])
    model.lower_face = LowerFaceConfig(**ckpt.get("lower_face", {}))
    model.meta = dict(ckpt.get("meta", {}))
    model.tokenizer_hash = str(model.meta.get("tokenizer", ""))
    _check_tokenizer(model.tokenizer_hash)
    return model.eval()


def _check_tokenizer(trained_on: str) -> None:
    # Tokens only mean something to the tokenizer they were learned from.

    if TOKENIZER_PATH.exists() and trained_on and weights_hash() != trained_on:
        warnings.warn(f"{GENERATOR_PATH.name} was trained for motion tokenizer {trained_on}, but the installed "
                      f"one is {weights_hash()}: run `talk-train speech` again", stacklevel=3)


def param_count(model: nn.Module) -> int:
    """Trainable and frozen parameters of a module."""
    return sum(math.prod(p.shape) for p in model.parameters())
