"""Fits the entropy model's digit tables (``talk-train entropy``) and measures the bitrates it gives.

Every frame of the training split's token sequences is counted as a keyframe
and, after its predecessor, as a predicted frame; the held-out split's real
packets give the bitrates the README quotes.
"""

from __future__ import annotations

import numpy as np

from codec.bitstream import PACKET_HEADER_BYTES, Packet, ReferenceInfo, StreamHeader, fixed_payload_bytes
from codec.entropy import DEFAULT_ALPHA, ENTROPY_PATH, EntropyModel, digit_base, layer_context, token_digits
from codec.grfsq import GRFSQConfig
from codec.motion import TEMPLATE_PATH
from codec.stream import StreamWriter
from codec.tokenizer import TOKENIZER_PATH
from codec.train.output import add_output_arguments, check_model_output, training_split
from codec.train.tokenizer import corpus_tokens
from codec.validate import ArgumentParser, number_in


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
    base, ndig = digit_base(config)
    r, groups = config.residuals, config.groups
    shape = (r, groups, ndig, base + 1, base + 1, base)
    counts = np.zeros(shape, np.int64)
    cell = np.arange(groups * ndig).reshape(groups, ndig) * (base + 1) ** 2
    for seq in seqs:
        s = np.asarray(seq)
        if s.ndim != 3 or s.shape[1:] != (r, groups):
            raise ValueError(f"token sequences must be [T, {r}, {groups}], got {s.shape}")
        d = token_digits(s, config)
        for cur, prev in ((d, None), (d[1:], d[:-1])):
            for k in range(r):
                ctx = layer_context(k, cur[:, k - 1] if k else None, prev, base)
                row = (k * groups * ndig * (base + 1) ** 2 + cell + ctx) * base + cur[:, k]
                counts += np.bincount(row.ravel(), minlength=counts.size).reshape(shape)
    probs = (counts + alpha) / (counts.sum(-1, keepdims=True) + alpha * base)
    return EntropyModel(config, probs.astype(np.float32))


def measure_kbps(model: EntropyModel, seqs: list[np.ndarray], layers: int, fps: float = 25.0) -> dict[str, float]:
    """Bitrates of real packets over token sequences, through :class:`~codec.stream.StreamWriter`.

    Returns:
        ``payload_kbps`` (payloads only), ``packet_kbps`` (with 5-byte packet
        headers), ``ideal_kbps`` (model cross-entropy, no coder overhead) and
        ``fixed_kbps`` (fixed packing payloads).
    """
    ref = ReferenceInfo(0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (0.0, 0.0), 0.0, (512, 512))
    header = StreamHeader(tokenizer_hash="0", reference=ref, fps=fps, mode="entropy", layers=layers,
                          tokenizer=model.config, entropy_hash=model.hash)
    frames = payload = ideal = 0.0
    for seq in seqs:
        writer = StreamWriter(header, model)
        prev = None
        for n, t in enumerate(np.asarray(seq)[:, :layers]):
            packet = writer.encode(t, int(n * 1000 / fps))
            payload += len(packet) - PACKET_HEADER_BYTES
            ideal += model.cross_entropy_bits(t, None if Packet.from_bytes(packet).keyframe else prev) / 8
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
    parser = ArgumentParser(prog="talk-train entropy", description=main.__doc__)
    parser.add_argument("--alpha", type=number_in(1e-6, 1e6), default=DEFAULT_ALPHA, help="add-alpha smoothing")
    parser.add_argument("--fps", type=number_in(1.0, 1000.0), default=25.0, help="frame rate for the kbps figures")
    add_output_arguments(parser, ENTROPY_PATH)
    args = parser.parse_args(argv)
    check_model_output(args.out, args.overwrite, reads=(TOKENIZER_PATH, TEMPLATE_PATH))
    training_split(need_held_out=True)
    train = corpus_tokens("train")
    held_out = corpus_tokens("held_out")
    model = fit_entropy_model(train, alpha=args.alpha)
    # Measured before saving: the file is written only once everything has worked.
    rates = [measure_kbps(model, held_out, layers, args.fps) for layers in range(1, model.config.residuals + 1)]
    model.save(args.out)
    print(f"wrote {args.out.name} ({args.out.stat().st_size} bytes, hash {model.hash}) from "
          f"{sum(len(s) for s in train)} training frames")
    print(f"held-out: {sum(len(s) for s in held_out)} frames at {args.fps:g} fps")
    for layers, m in enumerate(rates, 1):
        print(f"  {layers} layer(s): entropy {m['payload_kbps']:.2f} kbps payload "
              f"({m['packet_kbps']:.2f} with packet headers, ideal {m['ideal_kbps']:.2f}), "
              f"fixed {m['fixed_kbps']:.2f} kbps")
    return 0
