"""A whole motion stream: tokens -> packet bytes -> tokens.

The writer and reader combine the byte format (:mod:`codec.bitstream`) with
the entropy coder (:mod:`codec.entropy`), the way EnCodec's ``compress.py``
sits on its ``binary.py`` and arithmetic coder::

    tokens [r, G] -> StreamWriter.encode -> packet bytes -> StreamReader.decode -> tokens [r, G]

A writer writes the byte-format version of its header (2 unless told
otherwise); a reader reads versions 1 and 2, and messages of several frames
(:func:`codec.bitstream.bundle`) with :meth:`StreamReader.decode_message`.

Every parse error raises :class:`~codec.errors.StreamError`; nothing here
returns garbage tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from codec.bitstream import READABLE_VERSIONS, Packet, StreamHeader, pack_fixed, parse_message, unpack_fixed
from codec.entropy import EntropyModel, load_entropy_model
from codec.errors import StreamError


class ReferenceLostError(StreamError):
    """An entropy-coded frame predicts from a frame this reader does not have.

    Raised by :meth:`StreamReader.decode` after a lost or reordered packet
    until the next keyframe arrives. The stream itself is fine: callers treat
    the frame as lost and conceal it (e.g. hold or extrapolate the last motion).
    """


# --------------------------------------------------------------------------- header


@dataclass(frozen=True, eq=False)
class DecodedPacket:
    """A packet's contents after decoding.

    Attributes:
        seq, timestamp_ms, face, keyframe: as in :class:`Packet`.
        layers: residual layers decoded (0 without a face).
        tokens: ``[layers, G]`` int64, or ``None`` without a face.
        payload_bytes: size of the coded tokens.
    """

    seq: int
    timestamp_ms: int
    face: bool
    keyframe: bool
    layers: int
    tokens: np.ndarray | None
    payload_bytes: int = 0


class StreamWriter:
    """Turns one frame's tokens after another into packet bytes.

    In entropy mode a predicted frame is coded given the previous frame's
    tokens. A keyframe (coded without the previous frame) is sent at least
    every ``header.keyframe_interval`` packets and after every frame without a
    face. When the layer count changes, layers the previous frame lacks are
    coded without it. Should range coding ever be longer than the fixed
    packing, the fixed payload is sent instead, so no packet exceeds its fixed size.
    """

    def __init__(self, header: StreamHeader, entropy_model: EntropyModel | None = None,
                 first_seq: int = 0) -> None:
        """
        Args:
            header: the stream's header.
            entropy_model: entropy mode's model; default the shipped one.
            first_seq: sequence number of the first packet (RTP-style random
                starts make a replayed stream easy to tell apart).
        """
        if not 0 <= first_seq <= 0xFFFF:
            raise ValueError(f"first_seq must be an integer in 0..65535, got {first_seq!r}")
        self.header = header
        self._model = _entropy_model_for(header, entropy_model)
        self._seq = first_seq
        self._prev: np.ndarray | None = None
        self._since_keyframe = 0
        # StreamHeader fills in the interval when it is left out.
        self._keyframe_interval = int(header.keyframe_interval or 1)

    def encode(self, tokens: np.ndarray | None, timestamp_ms: int) -> bytes:
        """Packet bytes of one frame.

        Args:
            tokens: ``[r, G]`` with ``1 <= r <= header.layers``, or ``None``
                when the frame has no face.
            timestamp_ms: capture time; wrapped to 32 bits.
        """
        cfg = self.header.tokenizer
        seq, ts = self._seq, int(timestamp_ms) & 0xFFFFFFFF
        self._seq = (seq + 1) & 0xFFFF
        self._since_keyframe += 1
        if tokens is None:
            self._prev = None
            return Packet(seq, ts, 0, False, False, False, b"").to_bytes(self.header.version)
        t = np.asarray(tokens)
        if t.ndim != 2 or not 1 <= t.shape[0] <= self.header.layers or t.shape[1] != cfg.groups:
            raise ValueError(f"tokens must be [1..{self.header.layers}, {cfg.groups}], got {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"tokens must be integers, got {t.dtype}")
        t = t.astype(np.int64)
        fixed = pack_fixed(t, cfg.codebook_size)
        payload, keyframe, entropy = fixed, True, False
        if self._model is not None:
            keyframe = self._prev is None or self._since_keyframe > self._keyframe_interval
            coded = self._model.encode(t, None if keyframe else self._prev)
            if len(coded) < len(fixed):
                payload, entropy = coded, True
            else:
                keyframe = True
        if keyframe:
            self._since_keyframe = 1
        self._prev = t
        return Packet(seq, ts, t.shape[0], True, keyframe, entropy, payload).to_bytes(self.header.version)


class StreamReader:
    """Turns packet bytes back into tokens; the mirror of :class:`StreamWriter`.

    Fixed payloads always decode. An entropy-coded predicted frame decodes only
    when the packet right before it (by sequence number) was decoded; otherwise
    :meth:`decode` raises :class:`ReferenceLostError` until the next keyframe.

    Version 2 carries 16 bits of each capture time; the reader unwraps them
    nearest :attr:`time_hint_ms` when set (a call sets it to the sender's clock
    now, which survives any outage), else nearest the last frame it decoded.
    """

    def __init__(self, header: StreamHeader, entropy_model: EntropyModel | None = None) -> None:
        if header.version not in READABLE_VERSIONS:
            raise StreamError(f"stream version {header.version} is not supported: this talkcodec reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
        self.header = header
        self.time_hint_ms: float | None = None
        self._model = _entropy_model_for(header, entropy_model)
        self._last_seq: int | None = None
        self._last_ts = 0
        self._prev: np.ndarray | None = None

    def decode(self, packet: bytes) -> DecodedPacket:
        """Decodes a one-frame packet.

        Raises:
            ReferenceLostError: a predicted frame after a lost packet (conceal it).
            StreamError: anything corrupt, or a message of several frames.
        """
        cfg = self.header.tokenizer
        pkt = Packet.from_bytes(packet, cfg.groups, cfg.codebook_size, self.header.version, self._reference_ms())
        return self._decode_packet(pkt)

    def decode_message(self, message: bytes) -> list[DecodedPacket | ReferenceLostError]:
        """Decodes every frame of a message, in order.

        Returns:
            per frame, its tokens, or the :class:`ReferenceLostError` that says
            it predicts from a lost frame (conceal it); the frames after it in
            the message still decode when they stand alone.
        Raises:
            StreamError: the message is corrupt (none of its frames is used).
        """
        cfg = self.header.tokenizer
        frames = parse_message(message, cfg.groups, cfg.codebook_size, self.header.version, self._reference_ms())
        out: list[DecodedPacket | ReferenceLostError] = []
        for pkt in frames:
            try:
                out.append(self._decode_packet(pkt))
            except ReferenceLostError as e:
                out.append(e)
        return out

    def _reference_ms(self) -> float:
        return self._last_ts if self.time_hint_ms is None else self.time_hint_ms

    def _decode_packet(self, pkt: Packet) -> DecodedPacket:
        if pkt.face and pkt.layers > self.header.layers:
            raise StreamError(f"packet {pkt.seq} has {pkt.layers} layers but the stream was "
                              f"encoded with {self.header.layers}")
        if pkt.entropy and self._model is None:
            raise StreamError(f"packet {pkt.seq} is entropy-coded in a fixed-mode stream")
        delta = None if self._last_seq is None else (pkt.seq - self._last_seq) & 0xFFFF
        if delta is not None and not 0 < delta < 0x8000:
            # A late or duplicate packet: decode it if it stands alone, but leave
            # the reference of the frames that follow untouched.
            if pkt.face and pkt.entropy and not pkt.keyframe:
                raise ReferenceLostError(f"packet {pkt.seq} arrived late and predicts from a frame "
                                         "this reader has passed; conceal it")
            return self._decode(pkt, None)
        self._last_seq = pkt.seq
        self._last_ts = pkt.timestamp_ms
        prev, self._prev = self._prev, None  # a failure below leaves no reference
        if pkt.face and pkt.entropy and not pkt.keyframe and (delta != 1 or prev is None):
            raise ReferenceLostError(f"packet {pkt.seq} predicts from a frame that was lost; "
                                     "conceal until the next keyframe")
        decoded = self._decode(pkt, prev)
        self._prev = decoded.tokens
        return decoded

    def _decode(self, pkt: Packet, prev: np.ndarray | None) -> DecodedPacket:
        cfg = self.header.tokenizer
        if not pkt.face:
            return DecodedPacket(pkt.seq, pkt.timestamp_ms, False, False, 0, None, 0)
        if not pkt.entropy:
            tokens = unpack_fixed(pkt.payload, pkt.layers, cfg.groups, cfg.codebook_size)
        else:
            assert self._model is not None
            tokens = self._model.decode(pkt.payload, pkt.layers, None if pkt.keyframe else prev)
        return DecodedPacket(pkt.seq, pkt.timestamp_ms, True, pkt.keyframe, pkt.layers, tokens, len(pkt.payload))


def _entropy_model_for(header: StreamHeader, model: EntropyModel | None) -> EntropyModel | None:
    """The entropy model an entropy-mode stream needs, checked against the header."""
    if header.mode != "entropy":
        return None
    model = load_entropy_model() if model is None else model
    if model.hash != header.entropy_hash:
        raise StreamError(f"stream needs entropy model {header.entropy_hash} but {model.hash} is loaded: "
                          "install the same codec/data/entropy.npz on both ends")
    if model.config != header.tokenizer:
        raise StreamError("the entropy model was fitted for another tokenizer shape")
    return model


def undecodable_packets(header: StreamHeader, packets: Sequence[bytes],
                        entropy_model: EntropyModel | None = None) -> dict[int, str]:
    """Which packets of a recorded stream do not decode, and why: ``{index: reason}``.

    A corrupt packet, and in entropy mode every packet that predicts from one,
    up to the next keyframe (``ReferenceLostError``). A decoder conceals these
    frames (:func:`codec.api.decode_stream`); this says which they were.

    Raises:
        StreamError: the stream cannot be read at all (another version, or an
            entropy model this installation lacks).
    """
    reader = StreamReader(header, entropy_model)
    bad: dict[int, str] = {}
    for i, packet in enumerate(packets):
        try:
            reader.decode(packet)
        except StreamError as e:
            bad[i] = str(e)
    return bad


def describe_undecodable(bad: dict[int, str], total: int) -> str:
    """One line for a user: which packets were concealed and why (the first one's reason)."""
    indices = sorted(bad)
    shown = ", ".join(str(i) for i in indices[:10]) + (f" and {len(indices) - 10} more" if len(indices) > 10 else "")
    first = bad[indices[0]]
    if len(indices) == 1:
        return f"packet {shown} of {total} does not decode ({first}); its frame is concealed like a lost one"
    return f"{len(indices)} of {total} packets ({shown}) do not decode (the first: {first}); concealed like lost ones"
