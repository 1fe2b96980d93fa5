"""Motion tokenizer: motion delta -> 120-d latent -> GRFSQ tokens -> motion delta.

The encoder and decoder are small networks around
:class:`~codec.grfsq.GroupResidualFSQ`, working on a compact standardized
feature of the delta (see :class:`MotionTokenizer`). Its loss
(:class:`MotionLoss`) is measured on the landmarks a decoded delta gives,
lips and eyes weighed far above the rest; training (:mod:`codec.train.tokenizer`)
minimizes it over the network, and a sender may go on minimizing it for each
frame's own tokens (:meth:`MotionTokenizer.refine`): the encoder network is one
guess for every face, the decoder is what every receiver runs.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec import regions as R
from codec.checkpoint import half_state, load_checkpoint
from codec.grfsq import GRFSQConfig, GroupResidualFSQ
from codec.motion import DELTA_DIM, DELTA_PARTS, MotionState, load_template
from codec.paths import DATA_DIR, write_bytes_atomic
from codec.regions import NUM_LANDMARKS

TOKENIZER_PATH = DATA_DIR / "tokenizer.pt"


@dataclass(frozen=True)
class TokenizerConfig:
    """Shape of the tokenizer; saved in its checkpoint.

    Attributes:
        grfsq: the quantizer.
        input_dim: size of a motion delta vector.
        expression_components: principal components kept of the expression part.
        hidden: width of the encoder and decoder MLPs.
    """

    grfsq: GRFSQConfig = field(default_factory=GRFSQConfig)
    input_dim: int = DELTA_DIM
    expression_components: int = 64
    hidden: int = 256

    @property
    def feature_dim(self) -> int:
        """Pose (7) + expression coefficients + gaze and blink (6)."""
        return 7 + self.expression_components + 6

    def to_dict(self) -> dict:
        return {"grfsq": self.grfsq.to_dict(), "input_dim": self.input_dim,
                "expression_components": self.expression_components, "hidden": self.hidden}

    @staticmethod
    def from_dict(d: dict) -> "TokenizerConfig":
        return TokenizerConfig(GRFSQConfig.from_dict(d["grfsq"]), int(d["input_dim"]),
                               int(d["expression_components"]), int(d["hidden"]))


REGION_WEIGHT = 50.0
"""Weight of a lip or eye landmark in the loss, over 1 for the rest of the face."""

REFINE_STEPS = 10
"""Refinement steps of an encoder by default (:class:`~codec.api.EncoderConfig`; ``talk-codec encode``)."""

LIVE_REFINE_STEPS = 3
"""Refinement steps of a live sender (``talk-send``): about 4.3 ms a frame on one core, where 10 take 12; on the
held-out clips the decoded lips come 22% nearer the tracked ones with 3 steps, 29% with 10."""

LIVE_REFINE_BUDGET_MS = 10.0
"""A live sender's bound on the refinement of one frame (the steps left are skipped on a slow or busy machine)."""

REFINE_LR = 0.005
"""Step of the per-frame refinement (Adam on the latent, which the encoder sets at about unit scale)."""


def delta_slices() -> dict[str, slice]:
    """Where each part of a delta vector lies (:data:`~codec.motion.DELTA_PARTS`)."""
    out, i = {}, 0
    for name, n in DELTA_PARTS:
        out[name] = slice(i, i + n)
        i += n
    return out


# The cross-product matrix [a]x of a vector a, row-major, as a linear map of a: (a @ _CROSS).view(3, 3).
_CROSS = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0],
                       [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],
                       [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])


def rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``[B, 3]`` -> rotation matrices ``[B, 3, 3]``."""
    k = (aa @ _CROSS).view(-1, 3, 3)  # [aa]x: the unit axis's cross-product matrix times the angle
    angle2 = (aa * aa).sum(-1)[:, None, None].clamp_min(1e-16)
    angle = angle2.sqrt()
    return torch.eye(3) + (torch.sin(angle) / angle) * k + ((1 - torch.cos(angle)) / angle2) * (k @ k)


def delta_landmarks(delta: torch.Tensor, ref_rot: torch.Tensor, ref_exp: torch.Tensor,
                    tpl: torch.Tensor) -> torch.Tensor:
    """Landmarks ``[B, 478, 3]`` a delta gives applied to its reference, in units of the reference's scale,
    relative to its translation (``ref_rot [B, 3, 3]``, ``ref_exp [B, 478, 3]``, template ``[478, 3]``)."""
    s = delta_slices()
    rot = rodrigues(delta[:, s["rotation"]]) @ ref_rot
    canon = tpl + ref_exp + delta[:, s["expression"]].view(-1, NUM_LANDMARKS, 3)
    scale = torch.exp(delta[:, s["log_scale"]])[..., None]
    return scale * torch.einsum("bij,bnj->bni", rot, canon) + delta[:, None, s["translation"]]


class MotionLoss:
    """How far a decoded delta lands from the true one, per example.

    Two terms: the landmarks' squared distance (in reference face sizes),
    weighted :data:`REGION_WEIGHT` on lips and eyes and normalized over the
    face, and the squared error of the gaze and blink values.
    """

    def __init__(self, region_weight: float = REGION_WEIGHT) -> None:
        self.template = torch.from_numpy(load_template().shape.astype(np.float32))
        w = torch.ones(NUM_LANDMARKS)
        w[torch.from_numpy(np.concatenate([R.LIPS, R.EYES]))] = region_weight
        self.weights = (w / w.sum())[None, :, None]
        s = delta_slices()
        self.features = torch.cat([torch.arange(s["gaze"].start, s["gaze"].stop),
                                   torch.arange(s["blink"].start, s["blink"].stop)])

    def __call__(self, recon: torch.Tensor, delta: torch.Tensor, ref_rot: torch.Tensor,
                 ref_exp: torch.Tensor, truth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmark and feature terms ``[B]`` each (``truth``: the true delta's landmarks, when already known)."""
        if truth is None:
            truth = delta_landmarks(delta, ref_rot, ref_exp, self.template)
        pred = delta_landmarks(recon, ref_rot, ref_exp, self.template)
        landmarks = (((pred - truth) ** 2).sum(-1, keepdim=True) * self.weights).sum((1, 2))
        return landmarks, ((recon[:, self.features] - delta[:, self.features]) ** 2).mean(1)


class _Coder(nn.Module):
    """A linear map plus a small MLP correction: fast to fit, still non-linear."""

    def __init__(self, i: int, h: int, o: int) -> None:
        super().__init__()
        self.linear = nn.Linear(i, o)
        self.mlp = nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, o))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


_EXP = slice(7, 7 + NUM_LANDMARKS * 3)


class MotionTokenizer(nn.Module):
    """Delta vectors ``[T, 1447]`` <-> tokens ``[T, R, G]``.

    The 1434 expression values live on a low-dimensional manifold, so they are
    first projected on principal components of the training deltas (64 keep
    ~99.8% of the variance, NME ≈ 0.002); pose, coefficients, gaze and blink
    are standardized into a 77-d feature that the encoder maps to the 120-d
    GRFSQ latent.
    """

    exp_mean: torch.Tensor
    exp_basis: torch.Tensor
    feat_mean: torch.Tensor
    feat_std: torch.Tensor

    def __init__(self, config: TokenizerConfig = TokenizerConfig()) -> None:
        super().__init__()
        self.config = config
        k, f = config.expression_components, config.feature_dim
        self.register_buffer("exp_mean", torch.zeros(NUM_LANDMARKS * 3))
        self.register_buffer("exp_basis", torch.zeros(k, NUM_LANDMARKS * 3))
        self.register_buffer("feat_mean", torch.zeros(f))
        self.register_buffer("feat_std", torch.ones(f))
        self.encoder = _Coder(f, config.hidden, config.grfsq.dim)
        self.quantizer = GroupResidualFSQ(config.grfsq)
        self.decoder = _Coder(config.grfsq.dim, config.hidden, f)

    def features(self, delta: torch.Tensor) -> torch.Tensor:
        """``[B, 1447]`` deltas -> ``[B, 77]`` unnormalized features."""
        coeff = (delta[:, _EXP] - self.exp_mean) @ self.exp_basis.T
        return torch.cat([delta[:, :7], coeff, delta[:, _EXP.stop:]], 1)

    def delta(self, feat: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`features` (up to the dropped components)."""
        k = self.config.expression_components
        exp = self.exp_mean + feat[:, 7:7 + k] @ self.exp_basis
        return torch.cat([feat[:, :7], exp, feat[:, 7 + k:]], 1)

    def forward(self, delta: torch.Tensor,
                layers: torch.Tensor | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``delta [B, D]`` -> reconstruction ``[B, D]`` and tokens ``[B, R, G]``."""
        z = self.encoder((self.features(delta) - self.feat_mean) / self.feat_std)
        zq, tokens = self.quantizer(z, layers)
        return self.delta(self.decoder(zq) * self.feat_std + self.feat_mean), tokens

    @torch.no_grad()
    def encode(self, delta: np.ndarray) -> np.ndarray:
        """Tokens of motion deltas.

        Args:
            delta: ``[T, D]`` float delta vectors (:meth:`MotionDelta.to_vector`).
        Returns:
            ``[T, R, G]`` int64 tokens in ``0 .. 624``.
        """
        x = torch.as_tensor(np.asarray(delta, np.float32))
        _, tokens = self.quantizer(self.encoder((self.features(x) - self.feat_mean) / self.feat_std))
        return tokens.numpy()

    def refine(self, delta: np.ndarray, reference: MotionState, steps: int, lr: float = REFINE_LR,
               budget_s: float | None = None) -> np.ndarray:
        """Tokens of motion deltas chosen by what the decoder makes of them.

        Starts from the encoder's latent and takes ``steps`` Adam steps on it
        against :class:`MotionLoss` of the decoded (quantized) delta, the
        gradient passing straight through the rounding, and keeps each frame's
        best latent met (the encoder's own included: never worse than
        :meth:`encode` by that loss). Each frame's latent moves on its own
        gradient alone, so a frame gets the same tokens whatever it is batched
        with (unless ``budget_s`` cuts the steps short). The stream does not
        change: any decoder reads the tokens, and every prefix of layers still
        decodes (the residual stages quantize coarse to fine as before).

        Args:
            delta: ``[T, D]`` float delta vectors relative to ``reference``.
            reference: the reference's :class:`~codec.motion.MotionState` (one frame).
            steps: 0 gives :meth:`encode`'s tokens.
            budget_s: stop stepping after this much time (a live sender's bound on its latency), None for none.
        Returns:
            ``[T, R, G]`` int64 tokens in ``0 .. 624``.
        """
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        x = torch.as_tensor(np.asarray(delta, np.float32))
        with torch.no_grad():
            z = self.encoder((self.features(x) - self.feat_mean) / self.feat_std)
        if steps > 0 and len(x):
            loss_of = _refine_loss()
            rot = torch.as_tensor(np.asarray(reference.rotation, np.float32)).expand(len(x), 3, 3)
            exp = torch.as_tensor(np.asarray(reference.expression, np.float32)).expand(len(x), NUM_LANDMARKS, 3)
            truth = delta_landmarks(x, rot, exp, loss_of.template)
            best, best_loss = z.clone(), torch.full((len(x),), float("inf"))
            z = z.clone().requires_grad_(True)
            m, v = torch.zeros_like(z), torch.zeros_like(z)
            with torch.enable_grad():
                for step in range(steps + 1):
                    lm, feat = loss_of(self._decode_latent(self.quantizer.quantize_latent(z)), x, rot, exp, truth)
                    loss = (lm + feat).detach()
                    # The rounding makes the loss jump between steps: each frame keeps its best latent.
                    better = loss < best_loss
                    best_loss = torch.where(better, loss, best_loss)
                    best[better] = z.detach()[better]
                    if step == steps or (deadline is not None and time.perf_counter() > deadline):
                        break
                    # Summed, not averaged: each frame's gradient is its own loss's alone.
                    (grad,) = torch.autograd.grad((lm + feat).sum(), z)
                    # Adam, written out: torch.optim's step alone took a tenth of a step at batch 1.
                    m.lerp_(grad, 0.1)
                    v.lerp_(grad * grad, 0.001)
                    with torch.no_grad():
                        z -= lr * (m / (1 - 0.9 ** (step + 1))) / ((v / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)
            z = best
        with torch.no_grad():
            _, tokens = self.quantizer(z.detach())
        return tokens.numpy()

    def _decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        return self.delta(self.decoder(zq) * self.feat_std + self.feat_mean)

    @torch.no_grad()
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Motion deltas from tokens.

        Args:
            tokens: ``[T, r, G]`` with the first ``r`` (1..R) residual layers.
        Returns:
            ``[T, D]`` float32 delta vectors.
        """
        t = torch.as_tensor(np.asarray(tokens, np.int64))
        if t.numel() and (t.min() < 0 or t.max() >= self.config.grfsq.codebook_size):
            raise ValueError("token values out of range")
        return self._decode_latent(self.quantizer.decode(t)).numpy()

    def state_bytes(self) -> bytes:
        # Network weights in float16; the projection and statistics stay float32.
        keep = ("exp_mean", "exp_basis", "feat_mean", "feat_std")
        buf = io.BytesIO()
        torch.save({"config": self.config.to_dict(),
                    "state": half_state(self.state_dict(), keep)}, buf)
        return buf.getvalue()


def save_tokenizer(model: MotionTokenizer, path: Path = TOKENIZER_PATH) -> None:
    """Saves weights in float16 (the shipped file stays small)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, model.state_bytes())


def weights_hash(path: Path = TOKENIZER_PATH) -> str:
    """First 16 hex digits of the checkpoint's SHA-256, carried in stream headers."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _refine_loss() -> MotionLoss:
    return MotionLoss()


@lru_cache(maxsize=2)
def load_tokenizer(path: Path = TOKENIZER_PATH) -> MotionTokenizer:
    """The shipped tokenizer, in eval mode on the CPU."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train tokenizer`")
    ckpt = load_checkpoint(path)
    model = MotionTokenizer(TokenizerConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state"])
    return model.eval()
