"""Motion tokenizer: motion delta -> 120-d latent -> GRFSQ tokens -> motion delta.

The encoder and decoder are small networks around
:class:`~codec.grfsq.GroupResidualFSQ`, working on a compact standardized
feature of the delta (see :class:`MotionTokenizer`); the training loss (see
:mod:`codec.train.tokenizer`) weighs lips and eyes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.checkpoint import half_state, load_checkpoint
from codec.grfsq import GRFSQConfig, GroupResidualFSQ
from codec.motion import DELTA_DIM
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
        return self.delta(self.decoder(self.quantizer.decode(t)) * self.feat_std + self.feat_mean).numpy()

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


@lru_cache(maxsize=2)
def load_tokenizer(path: Path = TOKENIZER_PATH) -> MotionTokenizer:
    """The shipped tokenizer, in eval mode on the CPU."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train tokenizer`")
    ckpt = load_checkpoint(path)
    model = MotionTokenizer(TokenizerConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state"])
    return model.eval()
