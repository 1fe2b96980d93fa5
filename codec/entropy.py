"""Entropy mode: range-coding one frame's tokens given the previous frame's.

Faces move slowly, so a token is usually close to the same token one frame
earlier. A token is one FSQ code, ``token = sum(d_i * L**i)`` with digits
``d_i in 0 .. L-1`` that each quantize one scalar; a slow movement changes a
digit by at most one step. Each digit is therefore coded with a categorical
distribution looked up in a table ``probs[R, G, D, 6, 6, L]`` indexed by

- layer ``k``, group ``g``, digit position ``i``;
- the previous frame's same digit (``0 .. L-1``), or ``L`` ("none") in a
  keyframe, after a frame without a face, or for a layer the previous frame
  did not carry (adaptive bitrate changes the layer count);
- the same frame's coarser digit (layer ``k - 1``, same group and position):
  when the previous frame is known, how far it moved since then (``-2 .. 2``,
  clipped; "unchanged" split in two by whether the coarser token's other
  digits moved); its value otherwise; ``L`` for layer 0. A residual layer
  tends to jump exactly when the layer above it changes.

Tables are fitted by counting digit transitions in corpus token sequences
with add-alpha smoothing (:mod:`codec.train.entropy`), stored as float32 probabilities (``codec/data/
entropy.npz``) and identified by a hash that goes into every entropy-mode
stream header. Coding uses ``constriction``'s range coder; its 32-bit words are
written big-endian with trailing zero bytes dropped (the decoder pads zeros
back), and the sealed number is shortened to about the fewest bytes that still
decode (:meth:`EntropyModel.encode`): about 3 bits of overhead per frame
instead of 16.

The fixed packing (:func:`codec.bitstream.pack_fixed`) stays the reference:
decoding an entropy payload yields exactly the tokens the fixed path would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import constriction
import numpy as np

from codec.errors import StreamError
from codec.grfsq import GRFSQConfig
from codec.paths import DATA_DIR, atomic_output

ENTROPY_PATH = DATA_DIR / "entropy.npz"
DEFAULT_ALPHA = 0.05
# Bits of probability constriction's default categorical models quantize to.
CDF_PRECISION = 24

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def digit_base(config: GRFSQConfig) -> tuple[int, int]:
    """``(L, D)``: the common FSQ level count and the digits per token."""
    levels = set(config.levels)
    if len(levels) != 1 or min(levels) < 5:
        # Contexts hold a digit's move in -2..2 beside the digit values 0..L-1.
        raise ValueError(f"the entropy model needs equal FSQ levels of at least 5, got {config.levels}")
    return levels.pop(), len(config.levels)


def token_digits(tokens: np.ndarray, config: GRFSQConfig) -> np.ndarray:
    """FSQ digits of tokens.

    Args:
        tokens: ``[..., R, G]`` ints.
    Returns:
        ``[..., R, G, D]`` int64 with ``token = sum(d_i * L**i)``.
    """
    base, ndig = digit_base(config)
    return (np.asarray(tokens, np.int64)[..., None] // base ** np.arange(ndig)) % base


@lru_cache(maxsize=8)
def _moved(base: int) -> np.ndarray:
    """How far a digit moved, ``cur - prev + base - 1``, clipped to ``-2 .. 2`` and shifted to ``0 .. 4``."""
    return np.clip(np.arange(-(base - 1), base), -2, 2) + 2


def layer_context(k: int, coarse: np.ndarray | None, prev: np.ndarray | None, base: int) -> np.ndarray:
    """Context of every digit of layer ``k``: ``prev_ctx * (base + 1) + coarse_ctx``.

    The one definition the encoder, the decoder and fitting all use.

    Args:
        k: the layer.
        coarse: ``[..., G, D]`` digits of layer ``k - 1`` of the same frame, ``None`` for layer 0.
        prev: ``[..., rp, G, D]`` digits of the previous frame, or ``None``.
    Returns:
        ``[..., G, D]`` ints in ``0 .. (base + 1)**2 - 1`` (or a scalar when no digit matters).
    """
    p_ctx: np.ndarray | int
    c_ctx: np.ndarray | int
    if prev is not None and k < prev.shape[-3]:
        p_ctx = prev[..., k, :, :]
        if coarse is None:
            c_ctx = base
        else:
            before = prev[..., k - 1, :, :]
            c_ctx = _moved(base)[coarse - before + base - 1]
            # "Unchanged" splits by whether the rest of the coarse token moved;
            # index `base` is free here (it means "none" only without a coarser layer or a previous frame).
            token_moved = (coarse != before).any(-1, keepdims=True)
            c_ctx = np.where((c_ctx == 2) & token_moved, base, c_ctx)
    else:
        p_ctx = base
        c_ctx = base if coarse is None else coarse
    return np.asarray(p_ctx * (base + 1) + c_ctx)


def _words(data: bytes) -> np.ndarray:
    """Payload bytes -> the range coder's 32-bit words, zero-padded (as the encoder dropped them)."""
    return np.frombuffer(bytes(data) + b"\0" * (-len(data) % 4), ">u4").astype(np.uint32)


def _decodes_to(data: bytes, symbols: np.ndarray, rows: np.ndarray) -> bool:
    """Whether ``data`` range-decodes to ``symbols`` under probability ``rows``."""
    try:
        return bool(np.array_equal(constriction.stream.queue.RangeDecoder(_words(data)).decode(_CATEGORICAL, rows),
                                   symbols))
    except AssertionError:  # constriction's verdict on data no symbol sequence encodes to
        return False


@dataclass(frozen=True, eq=False)
class EntropyModel:
    """Digit probabilities for range-coding tokens.

    Attributes:
        config: the tokenizer shape the tables are for.
        probs: ``[R, G, D, L+1, L+1, L]`` float32; see the module docstring.
        hash: 16 hex digits identifying the tables (in stream headers).
    """

    config: GRFSQConfig
    probs: np.ndarray = field(repr=False)
    hash: str = field(init=False)
    _rows: np.ndarray = field(init=False, repr=False)
    _cell: np.ndarray = field(init=False, repr=False)
    _powers: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        base, ndig = digit_base(self.config)
        shape = (self.config.residuals, self.config.groups, ndig, base + 1, base + 1, base)
        p = np.ascontiguousarray(self.probs, dtype=np.float32)
        if p.shape != shape:
            raise ValueError(f"entropy tables must be {shape}, got {p.shape}")
        if not np.isfinite(p).all() or (p <= 0).any():
            raise ValueError("entropy tables must hold positive finite probabilities")
        p.setflags(write=False)
        object.__setattr__(self, "probs", p)
        # Rows addressed as [layer][(group * D + digit) * contexts + context].
        object.__setattr__(self, "_rows", p.reshape(shape[0], -1, base))
        object.__setattr__(self, "_cell", (np.arange(shape[1] * ndig) * (base + 1) ** 2).reshape(shape[1], ndig))
        object.__setattr__(self, "_powers", base ** np.arange(ndig))
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode() + p.tobytes())
        object.__setattr__(self, "hash", digest.hexdigest()[:16])

    def _check(self, tokens: np.ndarray, what: str) -> np.ndarray:
        t = np.asarray(tokens)
        cfg = self.config
        if t.ndim != 2 or not 1 <= t.shape[0] <= cfg.residuals or t.shape[1] != cfg.groups:
            raise ValueError(f"{what} must be [1..{cfg.residuals}, {cfg.groups}], got {t.shape}")
        t = t.astype(np.int64)
        if ((t < 0) | (t >= cfg.codebook_size)).any():
            raise ValueError(f"{what} values must be in 0..{cfg.codebook_size - 1}")
        return t

    def _digits(self, tokens: np.ndarray, what: str) -> np.ndarray:
        """Checked ``[r, G]`` tokens -> ``[r, G, D]`` digits."""
        return (self._check(tokens, what)[..., None] // self._powers) % self.probs.shape[-1]

    def _frame_rows(self, d: np.ndarray, pd: np.ndarray | None) -> np.ndarray:
        """Probability rows ``[r, G, D, L]`` of every digit of a frame with digits ``d`` ``[r, G, D]``."""
        base = self.probs.shape[-1]
        return np.stack([self._rows[k][self._cell + layer_context(k, d[k - 1] if k else None, pd, base)]
                         for k in range(len(d))])

    def encode(self, tokens: np.ndarray, prev: np.ndarray | None) -> bytes:
        """Range-codes one frame.

        Args:
            tokens: ``[r, G]``.
            prev: the previous frame's ``[rp, G]`` tokens, or ``None`` for a keyframe.
        Returns:
            the payload; :meth:`decode` with the same ``prev`` returns ``tokens``.
        """
        base = self.probs.shape[-1]
        d = self._digits(tokens, "tokens")
        pd = None if prev is None else self._digits(prev, "prev")
        symbols = d.reshape(-1).astype(np.int32)
        rows = self._frame_rows(d, pd).reshape(-1, base)
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(symbols, _CATEGORICAL, rows)
        sealed = enc.get_compressed().astype(">u4").tobytes().rstrip(b"\0")
        # Any number inside the final coding interval decodes to the same
        # symbols, and constriction's seal spends ~15 bits more than the
        # shortest one. Rounding the sealed number up at ever earlier byte
        # boundaries stays inside the interval for a while; each candidate is
        # checked by decoding it, so the shortening can never change tokens.
        best, value, size = sealed, int.from_bytes(sealed, "big"), len(sealed)
        for n in range(size - 1, 0, -1):
            shift = 8 * (size - n)
            up = -(-value >> shift)
            if up >> (8 * n):
                break
            candidate = up.to_bytes(n, "big").rstrip(b"\0")
            if not candidate or not _decodes_to(candidate, symbols, rows):
                break
            best = candidate
        return best

    def decode(self, data: bytes, layers: int, prev: np.ndarray | None) -> np.ndarray:
        """Inverse of :meth:`encode`.

        Args:
            data: the payload.
            layers: layers in the frame.
            prev: the previous frame's ``[rp, G]`` tokens, or ``None`` for a keyframe.
        Returns:
            tokens ``[layers, G]`` int64.
        Raises:
            StreamError: the payload is not a valid range-coded frame.
        """
        cfg = self.config
        base, ndig = self.probs.shape[-1], len(self._powers)
        if not 1 <= layers <= cfg.residuals:
            raise StreamError(f"entropy payload with {layers} layers; this tokenizer has 1..{cfg.residuals}")
        pd = None if prev is None else self._digits(prev, "prev")
        dec = constriction.stream.queue.RangeDecoder(_words(data))
        d = np.zeros((layers, cfg.groups, ndig), np.int64)
        # Layer k's context needs layer k-1 of this frame, so layers decode in turn.
        for k in range(layers):
            ctx = layer_context(k, d[k - 1] if k else None, pd, base)
            probs = self._rows[k][(self._cell + ctx).reshape(-1)]
            try:
                d[k] = dec.decode(_CATEGORICAL, probs).reshape(cfg.groups, ndig)
            except (AssertionError, ValueError, RuntimeError) as e:
                raise StreamError(f"corrupt entropy-coded payload: {e}") from None
        return d @ self._powers

    def quantized_cdfs(self) -> np.ndarray:
        """The integer CDFs ``constriction`` codes with, so other decoders need no float arithmetic.

        ``Categorical(perfect=False)`` quantizes each float32 row lazily
        (``LazyContiguousCategoricalEntropyModel::from_floating_point_probabilities_fast``,
        24-bit precision): with float32 running sums ``c_i = p_0 + ... + p_{i-1}``
        and ``scale = (2**24 - L) / c_L``, symbol ``i`` starts at
        ``trunc(c_i * scale) + i`` and the last ends at ``2**24``. Every step
        is repeated here in float32, in constriction's order, so the table is exact.

        Returns:
            ``[R * G * D * (L+1)**2, L + 1]`` uint32 (rows in :attr:`probs` order), ``cdf[:, 0] == 0``,
            ``cdf[:, L] == 2**24``.
        """
        base = self.probs.shape[-1]
        p = self.probs.reshape(-1, base)
        total = np.zeros(len(p), np.float32)
        for i in range(base):
            total = total + p[:, i]
        scale = np.float32(2**CDF_PRECISION - base) / total
        cdf = np.empty((len(p), base + 1), np.uint32)
        running = np.zeros(len(p), np.float32)
        for i in range(base):
            cdf[:, i] = (running * scale).astype(np.uint32) + i
            running = running + p[:, i]
        cdf[:, base] = 2**CDF_PRECISION
        return cdf

    def cross_entropy_bits(self, tokens: np.ndarray, prev: np.ndarray | None) -> float:
        """Ideal code length of one frame in bits (what :meth:`encode` costs before coder overhead)."""
        d = self._digits(tokens, "tokens")
        pd = None if prev is None else self._digits(prev, "prev")
        rows = self._frame_rows(d, pd).astype(np.float64)
        p = np.take_along_axis(rows, d[..., None], -1)[..., 0] / rows.sum(-1)
        return float(-np.log2(p).sum())

    def save(self, path: Path = ENTROPY_PATH) -> None:
        """Writes the tables, whole or not at all (:func:`codec.paths.atomic_output`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, probs=self.probs, config=np.array(json.dumps(self.config.to_dict())))


@lru_cache(maxsize=4)
def load_entropy_model(path: Path = ENTROPY_PATH) -> EntropyModel:
    """The shipped entropy model (``codec/data/entropy.npz``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train entropy`, or stream in fixed mode")
    with np.load(path, allow_pickle=False) as z:
        return EntropyModel(GRFSQConfig.from_dict(json.loads(str(z["config"]))), z["probs"])


def model_hash(path: Path = ENTROPY_PATH) -> str:
    """The hash of the entropy model saved at ``path``, as stream headers carry it."""
    return load_entropy_model(path).hash
