"""talkcodec's codec in one page: frame -> landmarks -> motion -> tokens -> packet, and back.

Sender side, one frame at a time::

    enc = FrameEncoder(EncoderConfig(layers=4))
    packet = enc.encode(frame, timestamp_ms)   # bytes, or None until a face is seen
    header = enc.header                        # StreamHeader, once the reference is set

Receiver side::

    dec = FrameDecoder(header, portrait_landmarks)
    frame = dec.decode(packet)                 # DecodedFrame with target landmarks
    frames = dec.decode_message(message)       # a message of several frames (codec.bitstream.bundle)

Whole files: :func:`encode_video` and :func:`decode_stream` (``talk-codec``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec import regions as R
from codec.bitstream import STREAM_VERSION, ReferenceInfo, StreamHeader, check_compatible
from codec.entropy import ENTROPY_PATH, model_hash
from codec.errors import MediaError, NoFaceError, StreamError
from codec.face import FaceTracker, extract_landmarks
from codec.media import read_audio
from codec.motion import (
    MotionDelta,
    MotionState,
    _axis_angle,
    apply_delta,
    landmarks_from_motion,
    load_template,
    motion_from_landmarks,
    relative,
)
from codec.smoothing import smooth_landmarks
from codec.speech import speech_to_tokens
from codec.stream import DecodedPacket, ReferenceLostError, StreamReader, StreamWriter
from codec.tokenizer import REFINE_STEPS, TOKENIZER_PATH, load_tokenizer, weights_hash


@dataclass(frozen=True)
class EncoderConfig:
    """Sender settings.

    Attributes:
        layers: residual layers sent per frame (1..4; fewer = lower bitrate).
        entropy: entropy-code the tokens (variable size, needs the previous frame).
        fps: frame rate written to the header.
        refine_steps: steps of refining each frame's tokens against what the
            decoder makes of them (:meth:`~codec.tokenizer.MotionTokenizer.refine`;
            0: the encoder network's tokens). The stream is the same format.
        refine_budget_ms: stop refining a batch of frames after this long
            (a live sender's bound on its latency; the tokens then depend on
            the machine's speed), None for none.
    """

    layers: int = 4
    entropy: bool = False
    fps: float = 25.0
    refine_steps: int = REFINE_STEPS
    refine_budget_ms: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.layers <= 4:
            raise ValueError(f"layers must be 1..4, got {self.layers}")
        if not 0 <= self.refine_steps <= 1000:
            raise ValueError(f"refine_steps must be 0..1000, got {self.refine_steps}")
        if self.refine_budget_ms is not None and not self.refine_budget_ms >= 0:
            raise ValueError(f"refine_budget_ms must be >= 0 or None, got {self.refine_budget_ms}")


@dataclass
class DecodedFrame:
    """One decoded packet.

    Attributes:
        seq: packet sequence number (u16, wraps).
        timestamp_ms: sender capture time (u32, wraps).
        face: the sender saw a face.
        layers: residual layers present.
        tokens: ``[r, G]`` or None without a face.
        delta: the decoded motion delta, or None without a face.
        landmarks: ``[478, 3]`` target landmarks in the portrait image, when
            the decoder holds a portrait (the portrait at rest without a face).
        payload_bytes: size of the coded tokens (the packet less its header).
    """

    seq: int
    timestamp_ms: int
    face: bool
    layers: int
    tokens: np.ndarray | None
    delta: MotionDelta | None
    landmarks: np.ndarray | None
    payload_bytes: int = 0


def _entropy_hash() -> str | None:
    return model_hash(ENTROPY_PATH) if ENTROPY_PATH.exists() else None


def reference_info(landmarks: np.ndarray, frame_index: int, image_size: tuple[int, int]) -> ReferenceInfo:
    """What a receiver may want to know of the sender's reference face."""
    st = motion_from_landmarks(landmarks)
    rx, ry, rz = (float(x) for x in _axis_angle(st.rotation))
    gx0, gy0, gx1, gy1 = (float(x) for x in st.gaze)
    b0, b1 = (float(x) for x in st.blink)
    return ReferenceInfo(frame_index=frame_index, rotation=(rx, ry, rz), gaze=(gx0, gy0, gx1, gy1), blink=(b0, b1),
                         mouth_opening=float(R.mouth_opening(landmarks)), image_size=image_size)


def make_header(config: EncoderConfig, reference: ReferenceInfo) -> StreamHeader:
    tok = load_tokenizer()
    entropy_hash = _entropy_hash() if config.entropy else None
    if config.entropy and entropy_hash is None:
        raise StreamError("entropy mode needs codec/data/entropy.npz: run `talk-train entropy`")
    return StreamHeader(version=STREAM_VERSION, fps=config.fps, mode="entropy" if config.entropy else "fixed",
                        layers=config.layers, tokenizer=tok.config.grfsq, tokenizer_hash=weights_hash(TOKENIZER_PATH),
                        entropy_hash=entropy_hash, reference=reference,
                        keyframe_interval=max(1, int(round(config.fps))))


class TokenPacketizer:
    """Motion tokens -> the packets of one stream, with at most a chosen number of residual layers.

    The camera's encoder and the speech-driven sender both end here, so their
    streams share one header layout and one writer.
    """

    def __init__(self, config: EncoderConfig, reference: ReferenceInfo) -> None:
        self.config = config
        self.header = make_header(config, reference)
        self._writer = StreamWriter(self.header)
        self.layers = config.layers

    def set_layers(self, layers: int) -> None:
        """Changes the residual layers sent from the next frame on (adaptive bitrate), within the stream's."""
        self.layers = max(1, min(self.config.layers, int(layers)))

    def encode(self, tokens: np.ndarray | None, timestamp_ms: int) -> bytes:
        """One frame's packet from its ``[R, G]`` tokens (cut to :attr:`layers`); None when it has no face."""
        return self._writer.encode(None if tokens is None else np.asarray(tokens)[: self.layers], timestamp_ms)


class MotionEncoder:
    """Landmarks -> packets, relative to a reference face set once."""

    def __init__(self, config: EncoderConfig, reference_landmarks: np.ndarray, reference: ReferenceInfo) -> None:
        self.config = config
        self._tok = load_tokenizer()
        self._ref = motion_from_landmarks(reference_landmarks)
        self.packetizer = TokenPacketizer(config, reference)
        self.header = self.packetizer.header

    def tokens(self, landmarks: np.ndarray) -> np.ndarray:
        """``[T, 478, 3]`` landmarks -> ``[T, R, G]`` tokens (all layers)."""
        delta = relative(motion_from_landmarks(landmarks), self._ref).to_vector()
        budget = self.config.refine_budget_ms
        return self._tok.refine(delta, self._ref, self.config.refine_steps,
                                budget_s=None if budget is None else budget / 1000)

    def encode(self, landmarks: np.ndarray | None, timestamp_ms: int) -> bytes:
        """One frame's packet; ``landmarks`` None when the frame has no face."""
        return self.packetizer.encode(None if landmarks is None else self.tokens(landmarks[None])[0], timestamp_ms)


class FrameEncoder:
    """Camera frames -> packets. The first frame with a face becomes the reference.

    Attributes:
        reference_landmarks: ``[478, 3]`` the reference frame's landmarks (None until it is set).
        last_landmarks: ``[478, 3]`` the last frame's landmarks (None when it had no face).
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), tracker: FaceTracker | None = None) -> None:
        self.config = config
        self._tracker = tracker or FaceTracker()
        self._motion: MotionEncoder | None = None
        self._frames = 0
        self._layers = config.layers
        self.reference_landmarks: np.ndarray | None = None
        self.last_landmarks: np.ndarray | None = None

    @property
    def header(self) -> StreamHeader | None:
        return None if self._motion is None else self._motion.header

    def set_layers(self, layers: int) -> None:
        """Changes the residual layers sent from the next frame on (adaptive bitrate)."""
        self._layers = max(1, min(self.config.layers, int(layers)))
        if self._motion is not None:
            self._motion.packetizer.set_layers(self._layers)

    def encode(self, frame: np.ndarray, timestamp_ms: int) -> bytes | None:
        """Tracks the face and returns the frame's packet (None until the reference is set)."""
        index = self._frames
        self._frames += 1
        try:
            landmarks = self._tracker.track(frame)
        except NoFaceError:
            landmarks = None
        self.last_landmarks = landmarks
        if self._motion is None:
            if landmarks is None:
                return None
            info = reference_info(landmarks, index, (frame.shape[1], frame.shape[0]))
            self._motion = MotionEncoder(self.config, landmarks, info)
            self.reference_landmarks = landmarks
            self._motion.packetizer.set_layers(self._layers)
        return self._motion.encode(landmarks, timestamp_ms)

    def close(self) -> None:
        self._tracker.close()


class FrameDecoder:
    """Packets -> motion deltas -> target landmarks in the portrait."""

    def __init__(self, header: StreamHeader, portrait_landmarks: np.ndarray | None = None) -> None:
        self._tok = load_tokenizer()
        check_compatible(header, self._tok.config.grfsq, weights_hash(TOKENIZER_PATH))
        if header.mode == "entropy" and header.entropy_hash != _entropy_hash():
            raise StreamError("the stream was entropy-coded with another entropy model than this receiver's")
        self.header = header
        self._reader = StreamReader(header)
        self._portrait: np.ndarray | None = None
        self._portrait_state: MotionState | None = None
        if portrait_landmarks is not None:
            self.set_portrait(portrait_landmarks)

    def set_portrait(self, portrait_landmarks: np.ndarray) -> None:
        """Decodes onto another portrait from the next packet on (``[478, 3]``, at rest)."""
        self._portrait = np.asarray(portrait_landmarks, np.float64)
        # The portrait's own motion is fitted once; every frame only applies a delta to it.
        self._portrait_state = motion_from_landmarks(self._portrait)

    def read(self, packet: bytes) -> DecodedPacket:
        """Parses one packet to its tokens (no motion decoding). Raises StreamError."""
        return self._reader.decode(packet)

    def deltas(self, tokens: np.ndarray) -> MotionDelta:
        """Motion deltas ``[T]`` from tokens ``[T, r, G]``."""
        return MotionDelta.from_vector(self._tok.decode(tokens))

    def landmarks(self, delta: MotionDelta | None) -> np.ndarray:
        """Target landmarks in the portrait (``[..., 478, 3]`` for ``[...]`` deltas; None: the portrait at rest)."""
        if self._portrait_state is None:
            raise ValueError("this decoder holds no portrait")
        if delta is None:
            assert self._portrait is not None  # set together with the state
            return self._portrait.copy()
        return landmarks_from_motion(apply_delta(self._portrait_state, delta))

    def decode(self, packet: bytes) -> DecodedFrame:
        """Decodes one packet. Raises StreamError for a corrupt or undecodable packet."""
        return self._frame(self.read(packet))

    def decode_message(self, message: bytes, media_now_ms: float | None = None) -> list[DecodedFrame | StreamError]:
        """Decodes every frame of a message (one or more frames).

        Args:
            message: the message's bytes.
            media_now_ms: the sender's media clock now, as the receiver estimates it
                (unwraps the 16-bit capture times whatever gap came before); None: the last frame's.
        Returns:
            per frame, the decoded frame or the :class:`~codec.stream.ReferenceLostError` that says
            to conceal it.
        Raises:
            StreamError: the message is corrupt.
        """
        self._reader.time_hint_ms = media_now_ms
        out: list[DecodedFrame | StreamError] = []
        for p in self._reader.decode_message(message):
            out.append(p if isinstance(p, ReferenceLostError) else self._frame(p))
        return out

    def _frame(self, p: DecodedPacket) -> DecodedFrame:
        delta = None
        if p.face and p.tokens is not None:
            delta = MotionDelta.from_vector(self._tok.decode(p.tokens[None])[0])
        lm = None if self._portrait is None else self.landmarks(delta)
        return DecodedFrame(p.seq, p.timestamp_ms, p.face, p.layers, p.tokens, delta, lm, p.payload_bytes)


@dataclass
class EncodedStream:
    """A whole encoded clip.

    Attributes:
        header: the stream header.
        packets: one packet per frame.
        tokens: ``[T, r, G]`` tokens (frames without a face hold -1).
        face: ``[T]`` bool.
    """

    header: StreamHeader
    packets: list[bytes]
    tokens: np.ndarray
    face: np.ndarray


def encode_landmarks(landmarks: np.ndarray, face: np.ndarray, config: EncoderConfig,
                     reference_frame: int | None = None, image_size: tuple[int, int] = (512, 512)) -> EncodedStream:
    """Encodes tracked landmarks ``[T, 478, 3]`` (``face [T]`` marks valid frames)."""
    if not face.any():
        raise NoFaceError("no face in any frame of the input")
    if reference_frame is None:
        reference_frame = int(np.argmax(face))
    if not 0 <= reference_frame < len(face):
        raise ValueError(f"reference frame {reference_frame} is outside the clip's {len(face)} frames")
    if not face[reference_frame]:
        raise NoFaceError(f"no face in reference frame {reference_frame}")
    enc = MotionEncoder(config, landmarks[reference_frame],
                        reference_info(landmarks[reference_frame], reference_frame, image_size))
    tokens = np.full((len(face), config.layers, enc.header.tokenizer.groups), -1, np.int64)
    tokens[face] = enc.tokens(landmarks[face])[:, : config.layers]
    return packetize(enc.header, tokens, face)


def packetize(header: StreamHeader, tokens: np.ndarray, face: np.ndarray) -> EncodedStream:
    """Packets for ``[T, r, G]`` tokens (``face [T]`` False: a no-face packet), one per frame at ``header.fps``."""
    writer = StreamWriter(header)
    packets = [writer.encode(tokens[t] if face[t] else None, int(round(t * 1000 / header.fps)))
               for t in range(len(face))]
    return EncodedStream(header, packets, tokens, face)


def encode_audio(path: str | Path, config: EncoderConfig = EncoderConfig(), seed: int | None = None) -> EncodedStream:
    """Speech-driven mode: motion tokens generated from a recording's speech (a wav or a video's audio).

    The tokens are motion relative to a face at rest, so the stream's reference
    is the canonical template's rest pose.

    Raises:
        MediaError: no readable audio.
    """

    samples = read_audio(path, 16000)
    if len(samples) < 640:
        raise MediaError(f"{path}: shorter than one video frame of audio")
    tokens = speech_to_tokens(samples, seed=seed)[:, : config.layers]
    header = make_header(config, speech_reference())
    return packetize(header, tokens, np.ones(len(tokens), bool))


def speech_reference() -> ReferenceInfo:
    """The reference of a speech-driven stream: the canonical template at rest (mouth closed), in a 512² frame.

    Generated tokens are motion relative to a face at rest, so every stream
    made from speech (a file, or a live call's ``talk-send --audio-only``)
    declares this reference.
    """
    rest = load_template().shape * 100.0 + np.array([256.0, 256.0, 0.0])
    return reference_info(rest, 0, (512, 512))


def track_video(path: str | Path,
                max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
    """Landmarks ``[T, 478, 3]`` (NaN without a face), face mask ``[T]``, fps and frame size of a video."""
    cl = extract_landmarks(path, max_frames)
    return cl.landmarks, cl.valid, cl.fps, cl.size


def encode_video(path: str | Path, config: EncoderConfig = EncoderConfig(),
                 reference_frame: int | None = None, max_frames: int | None = None) -> EncodedStream:
    """Encodes a video file's face motion.

    Raises:
        MediaError: not a readable video. NoFaceError: no face anywhere, or in the chosen reference frame.
    """
    landmarks, face, fps, size = track_video(path, max_frames)
    if abs(fps - config.fps) > 0.5:
        config = dataclasses.replace(config, fps=fps)
    return encode_landmarks(landmarks, face, config, reference_frame, size)


def decode_stream(header: StreamHeader, packets: Sequence[bytes], portrait_landmarks: np.ndarray,
                  layers: int | None = None, smooth: bool = False) -> np.ndarray:
    """Target landmarks ``[T, 478, 3]`` in the portrait for every packet of a stream.

    A packet that does not decode (corrupt, or in entropy mode predicting from
    one that did not) costs its own frame only: it is concealed as a lost packet
    is on a call, by interpolating between the nearest decoded frames, or
    holding the nearer one at the ends. :func:`codec.stream.undecodable_packets`
    says which they were.

    Args:
        layers: decode with only the first ``layers`` residual layers (default: all sent).
        smooth: smooth them as a receiver does before rendering (:mod:`codec.smoothing`);
            otherwise every frame is exactly its packet's decoding.
    """
    dec = FrameDecoder(header, portrait_landmarks)
    out: list[np.ndarray | None] = []
    lost: list[int] = []
    for i, pkt in enumerate(packets):
        try:
            f = dec.read(pkt)
        except StreamError:
            lost.append(i)
            out.append(None)
            continue
        if not f.face or f.tokens is None:
            out.append(None)
            continue
        out.append(f.tokens[: layers or f.layers])
    # Decode runs of equal layer count in one batch: the tokenizer is a batched MLP.
    result = np.repeat(np.asarray(portrait_landmarks, np.float64)[None], len(out), 0)
    by_layers: dict[int, list[int]] = {}
    for i, t in enumerate(out):
        if t is not None:
            by_layers.setdefault(t.shape[0], []).append(i)
    for idx in by_layers.values():
        result[idx] = dec.landmarks(dec.deltas(np.stack([t for i in idx if (t := out[i]) is not None])))
    face = np.array([t is not None for t in out])
    # As a receiver plays them: decoded frames smoothed with their decoded neighbours (a lost frame is
    # none), lost ones concealed from the decoded frames as they were.
    smoothed = None
    if smooth:
        counts = np.array([0 if t is None else t.shape[0] for t in out])
        smoothed = smooth_landmarks(result, counts, face).astype(np.float64)
    _conceal(result, lost, face.tolist())
    if smoothed is not None:
        result[face] = smoothed[face]
    return result


def _conceal(landmarks: np.ndarray, lost: list[int], face: list[bool]) -> None:
    """Fills lost frames of ``landmarks [T, 478, 3]`` in place from their nearest decoded neighbours.

    Between two frames with a face: linear interpolation (the jitter buffer's
    INTERPOLATED); next to one: that frame held (HELD); beside frames without a
    face, or none at all: the portrait at rest, which they already hold.
    """
    if not lost:
        return
    missing = set(lost)
    decoded = [i for i in range(len(landmarks)) if i not in missing]
    for i in lost:
        k = int(np.searchsorted(decoded, i))
        before = decoded[k - 1] if k > 0 else None
        after = decoded[k] if k < len(decoded) else None
        if before is not None and after is not None and face[before] and face[after]:
            w = (i - before) / (after - before)
            landmarks[i] = (1 - w) * landmarks[before] + w * landmarks[after]
        elif before is not None and face[before]:
            landmarks[i] = landmarks[before]
        elif after is not None and face[after]:
            landmarks[i] = landmarks[after]


__all__ = ["DecodedFrame", "EncodedStream", "EncoderConfig", "FrameDecoder", "FrameEncoder", "MediaError",
           "MotionEncoder", "TokenPacketizer", "decode_stream", "encode_audio", "encode_landmarks", "encode_video",
           "packetize",
           "speech_reference", "track_video"]
