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
  how far it moved since the previous frame (``-2 .. 2``, clipped) when the
  previous frame is known, its value otherwise, and ``L`` for layer 0. A
  residual layer tends to jump exactly when the layer above it changes.

Tables are fitted by counting digit transitions in corpus token sequences
with add-alpha smoothing, stored as float32 probabilities (``codec/data/
entropy.npz``) and identified by a hash that goes into every entropy-mode
stream header. Coding uses ``constriction``'s range coder; its 32-bit words are
written big-endian with trailing zero bytes dropped (the decoder reads zeros
past the end), which leaves about 2 bytes of overhead per frame.

The fixed packing (:func:`codec.bitstream.pack_fixed`) stays the reference:
decoding an entropy payload yields exactly the tokens the fixed path would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import constriction
import numpy as np

from codec.errors import StreamError
from codec.grfsq import GRFSQConfig

ENTROPY_PATH = Path(__file__).resolve().parent / "data" / "entropy.npz"
DEFAULT_ALPHA = 0.05

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _digit_base(config: GRFSQConfig) -> tuple[int, int]:
    """``(L, D)``: digits per token and their common level count."""
    levels = set(config.levels)
    if len(levels) != 1:
        raise ValueError(f"the entropy model needs equal FSQ levels, got {config.levels}")
    return levels.pop(), len(config.levels)


def token_digits(tokens: np.ndarray, config: GRFSQConfig) -> np.ndarray:
    """FSQ digits of tokens.

    Args:
        tokens: ``[..., R, G]`` ints.
    Returns:
        ``[..., R, G, D]`` int64 with ``token = sum(d_i * L**i)``.
    """
    base, ndig = _digit_base(config)
    return (np.asarray(tokens, np.int64)[..., None] // base ** np.arange(ndig)) % base


def _contexts(digits: np.ndarray, prev: np.ndarray | None, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Context indices of every digit of a frame.

    Args:
        digits: ``[..., r, G, D]`` digits of the frame (only layers ``< k`` are
            read for layer ``k``'s coarser context).
        prev: ``[..., rp, G, D]`` digits of the previous frame, or ``None``.
    Returns:
        previous-digit and coarser-digit contexts, each ``[..., r, G, D]`` in ``0 .. base``.
    """
    r = digits.shape[-3]
    none = np.full(digits.shape, base, np.int64)
    p_ctx = none.copy()
    rp = 0 if prev is None else min(prev.shape[-3], r)
    if rp:
        p_ctx[..., :rp, :, :] = prev[..., :rp, :, :]
    c_ctx = none
    if r > 1:
        coarse = digits[..., :-1, :, :]
        c_ctx = none.copy()
        c_ctx[..., 1:, :, :] = coarse
        if rp > 1:
            moved = np.clip(coarse[..., :rp - 1, :, :] - prev[..., :rp - 1, :, :], -2, 2) + 2
            c_ctx[..., 1:rp, :, :] = moved
    return p_ctx, c_ctx


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

    def __post_init__(self) -> None:
        base, ndig = _digit_base(self.config)
        shape = (self.config.residuals, self.config.groups, ndig, base + 1, base + 1, base)
        p = np.ascontiguousarray(self.probs, dtype=np.float32)
        if p.shape != shape:
            raise ValueError(f"entropy tables must be {shape}, got {p.shape}")
        if not np.isfinite(p).all() or (p <= 0).any():
            raise ValueError("entropy tables must hold positive finite probabilities")
        p.setflags(write=False)
        object.__setattr__(self, "probs", p)
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode() + p.tobytes())
        object.__setattr__(self, "hash", digest.hexdigest()[:16])

    def _check(self, tokens: np.ndarray, what: str) -> np.ndarray:
        t = np.asarray(tokens)
        cfg = self.config
        if t.ndim != 2 or not 1 <= t.shape[0] <= cfg.residuals or t.shape[1] != cfg.groups:
            raise ValueError(f"{what} must be [1..{cfg.residuals}, {cfg.groups}], got {t.shape}")
        if t.min() < 0 or t.max() >= cfg.codebook_size:
            raise ValueError(f"{what} values must be in 0..{cfg.codebook_size - 1}")
        return t.astype(np.int64)

    def encode(self, tokens: np.ndarray, prev: np.ndarray | None) -> bytes:
        """Range-codes one frame.

        Args:
            tokens: ``[r, G]``.
            prev: the previous frame's ``[rp, G]`` tokens, or ``None`` for a keyframe.
        Returns:
            the payload; :meth:`decode` with the same ``prev`` returns ``tokens``.
        """
        base, _ = _digit_base(self.config)
        t = self._check(tokens, "tokens")
        d = token_digits(t, self.config)
        pd = None if prev is None else token_digits(self._check(prev, "prev"), self.config)
        p_ctx, c_ctx = _contexts(d, pd, base)
        k, g, i = np.indices(d.shape, sparse=True)
        probs = self.probs[k, g, i, p_ctx, c_ctx].reshape(-1, base)
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(d.reshape(-1).astype(np.int32), _CATEGORICAL, probs)
        return enc.get_compressed().astype(">u4").tobytes().rstrip(b"\0")

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
        base, ndig = _digit_base(cfg)
        if not 1 <= layers <= cfg.residuals:
            raise StreamError(f"entropy payload with {layers} layers; this tokenizer has 1..{cfg.residuals}")
        pd = None if prev is None else token_digits(self._check(prev, "prev"), cfg)
        words = np.frombuffer(bytes(data) + b"\0" * (-len(data) % 4), ">u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        d = np.zeros((layers, cfg.groups, ndig), np.int64)
        g, i = np.indices((cfg.groups, ndig), sparse=True)
        # Layer k's context needs layer k-1 of this frame, so layers decode in turn.
        for k in range(layers):
            p_ctx, c_ctx = _contexts(d[:k + 1], pd, base)
            probs = self.probs[k, g, i, p_ctx[k], c_ctx[k]].reshape(-1, base)
            try:
                d[k] = dec.decode(_CATEGORICAL, probs).reshape(cfg.groups, ndig)
            except (AssertionError, ValueError, RuntimeError) as e:
                raise StreamError(f"corrupt entropy-coded payload: {e}") from None
        return d @ base ** np.arange(ndig)

    def cross_entropy_bits(self, tokens: np.ndarray, prev: np.ndarray | None) -> float:
        """Ideal code length of one frame in bits (what :meth:`encode` costs before coder overhead)."""
        base, _ = _digit_base(self.config)
        d = token_digits(self._check(tokens, "tokens"), self.config)
        pd = None if prev is None else token_digits(self._check(prev, "prev"), self.config)
        p_ctx, c_ctx = _contexts(d, pd, base)
        k, g, i = np.indices(d.shape, sparse=True)
        rows = self.probs[k, g, i, p_ctx, c_ctx].astype(np.float64)
        p = np.take_along_axis(rows, d[..., None], -1)[..., 0] / rows.sum(-1)
        return float(-np.log2(p).sum())

    def save(self, path: Path = ENTROPY_PATH) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
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


def fit_entropy_model(seqs: list[np.ndarray], config: GRFSQConfig = GRFSQConfig(),
                      alpha: float = DEFAULT_ALPHA) -> EntropyModel:
    """Fits the digit tables by counting.

    Every frame is counted twice: as a keyframe (no previous frame) and, after
    its predecessor, as a predicted frame. Tables of layers a previous frame
    lacked are the keyframe tables, so layer-count changes need no extra data.

    Args:
        seqs: token sequences, each ``[T, R, G]`` with all ``R`` layers.
        alpha: add-alpha smoothing of every count.
    """
    base, ndig = _digit_base(config)
    r, groups = config.residuals, config.groups
    counts = np.zeros((r, groups, ndig, base + 1, base + 1, base), np.int64)
    k, g, i = np.indices((r, groups, ndig), sparse=True)
    for seq in seqs:
        s = np.asarray(seq)
        if s.ndim != 3 or s.shape[1:] != (r, groups):
            raise ValueError(f"token sequences must be [T, {r}, {groups}], got {s.shape}")
        d = token_digits(s, config)
        for cur, prev in ((d, None), (d[1:], d[:-1])):
            p_ctx, c_ctx = _contexts(cur, prev, base)
            idx = np.ravel_multi_index(np.broadcast_arrays(k, g, i, p_ctx, c_ctx, cur), counts.shape)
            counts += np.bincount(idx.ravel(), minlength=counts.size).reshape(counts.shape)
    probs = (counts + alpha) / (counts.sum(-1, keepdims=True) + alpha * base)
    return EntropyModel(config, probs.astype(np.float32))


def measure_kbps(model: EntropyModel, seqs: list[np.ndarray], layers: int, fps: float = 25.0) -> dict[str, float]:
    """Bitrates of real packets over token sequences, through :class:`~codec.bitstream.StreamWriter`.

    Returns:
        ``payload_kbps`` (payloads only), ``packet_kbps`` (with 7-byte packet
        headers), ``ideal_kbps`` (model cross-entropy, no coder overhead) and
        ``fixed_kbps`` (fixed packing payloads).
    """
    from codec.bitstream import PACKET_HEADER_BYTES, ReferenceInfo, StreamHeader, StreamWriter, fixed_payload_bytes

    ref = ReferenceInfo(0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (0.0, 0.0), 0.0, (512, 512))
    header = StreamHeader(tokenizer_hash="0", reference=ref, fps=fps, mode="entropy", layers=layers,
                          tokenizer=model.config, entropy_hash=model.hash)
    frames = payload = ideal = 0.0
    for seq in seqs:
        writer = StreamWriter(header, model)
        prev = None
        for n, t in enumerate(np.asarray(seq)[:, :layers]):
            payload += len(writer.encode(t, int(n * 1000 / fps))) - PACKET_HEADER_BYTES
            ideal += model.cross_entropy_bits(t, None if n % header.keyframe_interval == 0 else prev) / 8
            prev = t
        frames += len(seq)
    if not frames:
        raise ValueError("no frames to measure")
    per_s = fps / frames * 8 / 1000
    fixed = fixed_payload_bytes(layers, model.config.groups, model.config.codebook_size)
    return {"payload_kbps": payload * per_s, "packet_kbps": (payload + PACKET_HEADER_BYTES * frames) * per_s,
            "ideal_kbps": ideal * per_s, "fixed_kbps": fixed * fps * 8 / 1000}


def main(argv: list[str] | None = None) -> int:
    """``talk-train entropy``: fits the tables on the training split, prints held-out kbps."""
    parser = argparse.ArgumentParser(prog="talk-train entropy", description=main.__doc__)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="add-alpha smoothing")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate for the kbps figures")
    parser.add_argument("--out", type=Path, default=ENTROPY_PATH)
    args = parser.parse_args(argv)
    from codec.tokenizer import corpus_tokens

    train = corpus_tokens("train")
    held_out = corpus_tokens("held_out")
    model = fit_entropy_model(train, alpha=args.alpha)
    model.save(args.out)
    print(f"wrote {args.out.name} ({args.out.stat().st_size} bytes, hash {model.hash}) from "
          f"{sum(len(s) for s in train)} training frames")
    print(f"held-out: {sum(len(s) for s in held_out)} frames at {args.fps:g} fps")
    for layers in range(1, model.config.residuals + 1):
        m = measure_kbps(model, held_out, layers, args.fps)
        print(f"  {layers} layer(s): entropy {m['payload_kbps']:.2f} kbps payload "
              f"({m['packet_kbps']:.2f} with packet headers, ideal {m['ideal_kbps']:.2f}), "
              f"fixed {m['fixed_kbps']:.2f} kbps")
    return 0
