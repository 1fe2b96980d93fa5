"""Live speech -> motion tokens in blocks of a few frames, with bounded look-ahead.

Audio arrives in chunks of any size. Every ``hop`` frames (120 ms) the
:class:`UnitStream` encodes the last 2 s of audio and emits the units of the
``hop`` frames that end ``lookahead`` frames (120 ms) before the newest
sample. The :class:`SpeechMotionStream` then fills in those frames' motion
tokens with the generator, over a window that holds the recent frames it has
already emitted as context, so consecutive blocks join up.

Algorithmic latency: a sample is turned into motion at most one block plus
the look-ahead after it arrives, ``(hop + lookahead) · 40 ms = 240 ms``
(compute time comes on top; see ``bench/measure/speech_quality.py``).

The lower face sent is the speech's linear readout plus the generator's own
lip movement, shrunk toward rest by a guard (:class:`LowerFace`). A
voice-activity gate (:mod:`codec.speech.vad`) then puts it back at rest where
nobody speaks (:func:`gate_lower_face`). The readout reads frames already
heard, and the gate looks at most ``lookahead`` frames ahead, audio the
stream already holds, so the latency stays the same.

:func:`speech_to_tokens` runs the very same blocks over a whole recording.
"""

from __future__ import annotations

import numpy as np
import torch

from codec.motion import DELTA_DIM, MotionDelta, lower_face
from codec.regions import LIPS
from codec.speech.generator import CONTROL_DIM, MotionGenerator, load_generator
from codec.speech.units import SAMPLES_PER_FRAME, SpeechUnitizer, load_unitizer
from codec.speech.vad import GateConfig, VoiceGate, voice_gate
from codec.tokenizer import load_tokenizer

DEFAULT_TEMPERATURE = 0.2


class UnitStream:
    """Samples in, speech units out, exactly as :meth:`SpeechUnitizer.units` computes them offline.

    With ``quantize=False`` it gives the Whisper states ``[n, 512]`` instead (:meth:`SpeechUnitizer.features`).
    """

    def __init__(self, unitizer: SpeechUnitizer | None = None, quantize: bool = True) -> None:
        self.unitizer = unitizer or load_unitizer()
        self.quantize = quantize
        self._cfg = self.unitizer.config
        w = self.unitizer.window_samples
        self._buf = np.zeros(w, np.float32)  # the stream is preceded by silence
        self._start = -w  # absolute sample index of _buf[0]
        self._received = 0
        self._emitted = 0

    @property
    def received(self) -> int:
        """Samples pushed so far."""
        return self._received

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Adds samples; returns the units ``[n]`` int64 of the frames now complete (``n`` a multiple of hop)."""
        x = np.asarray(samples, np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, x])
        self._received += len(x)
        return self._drain(self._received)

    def flush(self) -> np.ndarray:
        """Ends the stream: the remaining frames up to ``round(received / 640)``, the future taken as silence."""
        total = int(round(self._received / SAMPLES_PER_FRAME))
        out = []
        while self._emitted < total:
            need = (self._emitted + self._cfg.hop + self._cfg.lookahead) * SAMPLES_PER_FRAME
            pad = need - (self._start + len(self._buf))
            if pad > 0:
                self._buf = np.concatenate([self._buf, np.zeros(pad, np.float32)])
            out.append(self._drain(need))
        units = np.concatenate(out) if out else self._none()
        return units[:max(0, len(units) - (self._emitted - total))]

    def _none(self) -> np.ndarray:
        return np.zeros(0, np.int64) if self.quantize else np.zeros((0, self.unitizer.dim), np.float32)

    def _drain(self, available: int) -> np.ndarray:
        cfg, w = self._cfg, self.unitizer.window_samples
        ends = []
        while (end := (self._emitted + cfg.hop + cfg.lookahead) * SAMPLES_PER_FRAME) <= available:
            ends.append(end)
            self._emitted += cfg.hop
        if not ends:
            return self._none()
        wins = np.stack([self._buf[e - w - self._start:e - self._start] for e in ends])
        lo, hi = cfg.window - cfg.hop - cfg.lookahead, cfg.window - cfg.lookahead
        feats = self.unitizer.window_features(wins)[:, lo:hi]
        keep = ends[-1] - w - self._start
        self._buf, self._start = self._buf[keep:], self._start + keep
        feats = feats.reshape(-1, feats.shape[-1])
        return self.unitizer.quantize(feats) if self.quantize else feats


class MotionRoller:
    """Generates motion tokens block by block from a growing sequence of speech units (or states)."""

    def __init__(self, generator: MotionGenerator | None = None, seed: int | None = None,
                 temperature: float = DEFAULT_TEMPERATURE) -> None:
        self.model = generator or load_generator()
        self.temperature = temperature
        self._rng = torch.Generator()
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        self._rng.manual_seed(int(seed) if seed is not None else entropy % (2 ** 63))
        cfg = self.model.config
        self._units = (np.zeros(0, np.int64) if cfg.speech == "units"
                       else np.zeros((0, cfg.state_dim), np.float32))
        self._tokens = np.zeros((0, cfg.residuals, cfg.groups), np.int64)

    def step(self, units: np.ndarray, controls: np.ndarray | None = None) -> np.ndarray:
        """Tokens ``[n, R, G]`` for ``n`` new frames with units ``[n]`` (or states ``[n, 512]``, as the generator
        hears: :func:`speech_inputs`); controls ``[n, 9]`` (NaN = free)."""
        n = len(units)
        if n == 0:
            return self._tokens[:0]
        w = self.model.config.window
        self._units = np.concatenate([self._units, units])[-w:]
        ctx = self._tokens[-(len(self._units) - n):] if len(self._units) > n else self._tokens[:0]
        ctrl = None
        if controls is not None:
            full = np.full((len(self._units), CONTROL_DIM), np.nan, np.float32)
            full[-n:] = controls
            ctrl = torch.as_tensor(full)
        with torch.inference_mode():
            new = self.model.generate(torch.as_tensor(self._units), torch.as_tensor(ctx), len(ctx),
                                      ctrl, self.temperature, self._rng).numpy()
        self._tokens = np.concatenate([self._tokens, new])[-w:]
        return new

    @property
    def heard(self) -> np.ndarray:
        """The speech of the frames in the generator's window ``[W]`` or ``[W, 512]``, the newest last."""
        return self._units


def gate_lower_face(tokens: np.ndarray, gate: np.ndarray, lower: np.ndarray | None = None,
                    decoded: np.ndarray | None = None) -> np.ndarray:
    """Scales the lower face's expression by a gate, leaving head pose, gaze and blink as they are.

    Without ``lower``, frames with gate 1 are returned unchanged, token for
    token; the others are decoded, get their lower-face expression scaled (0:
    at rest, as in the training targets' quiet spans) and are encoded again at
    all layers. With ``lower`` (what :class:`LowerFace` makes of the generated
    lower face), every frame's lower face is replaced by it, then scaled.
    Re-encoding moves head pose, gaze and blink a little too (about 0.3° of
    rotation on average): the tokenizer's encoder is not an exact inverse of
    its decoder.

    Args:
        tokens: ``[T, R, G]`` int64 motion tokens.
        gate: ``[T]`` in [0, 1].
        lower: ``[T, L, 3]`` the lower face's ``L`` landmarks (:func:`codec.motion.lower_face`) to send, or None.
        decoded: ``[T, 1447]`` the tokens already decoded, if at hand.
    Returns:
        ``[T, R, G]`` int64.
    """
    g = np.asarray(gate, np.float32)
    change = g < 1.0 if lower is None else np.ones(len(g), bool)
    if not change.any():
        return tokens
    tok = load_tokenizer()
    delta = MotionDelta.from_vector(tok.decode(tokens[change]) if decoded is None else decoded[change])
    low = lower_face()
    expression = delta.expression.copy()
    shape = expression[:, low] if lower is None else np.asarray(lower, np.float32)[change]
    expression[:, low] = shape * g[change, None, None]
    delta.expression = expression
    out = tokens.copy()
    out[change] = encode_lips(delta.to_vector())
    return out


# Re-encodings tried per frame by encode_lips: damped error feedback, this much of the error fed back each time.
LIP_ENCODINGS = 8
LIP_FEEDBACK = 0.5


def encode_lips(delta: np.ndarray) -> np.ndarray:
    """Tokens ``[T, R, G]`` whose decoded lips come closest to those of ``delta`` ``[T, 1447]``.

    The tokenizer's encoder is not an exact inverse of its decoder: a lower
    face put back into a generated frame decodes with lips off by about half
    of a speaker's typical lip movement, mostly noise from the head and upper
    face around them. Each frame therefore tries :data:`LIP_ENCODINGS`
    encodings, the target corrected each time by part of the last one's
    error (:data:`LIP_FEEDBACK`), and keeps the one whose decoded lips are
    nearest the target's (on the held-out clips the lips' error against
    the intended ones falls by about a quarter).
    """
    tok = load_tokenizer()
    target = np.asarray(delta, np.float32)
    # Where the lips' expression lies in a delta vector.
    lips = MotionDelta.from_vector(np.arange(DELTA_DIM, dtype=np.float32)).expression[LIPS].reshape(-1).astype(int)
    best = tok.encode(target)
    decoded = tok.decode(best)
    best_err = _lip_error(decoded, target, lips)
    current = target
    for _ in range(LIP_ENCODINGS - 1):
        current = current + LIP_FEEDBACK * (target - decoded)
        tokens = tok.encode(current)
        decoded = tok.decode(tokens)
        err = _lip_error(decoded, target, lips)
        better = err < best_err
        best[better], best_err[better] = tokens[better], err[better]
    return best


def _lip_error(a: np.ndarray, b: np.ndarray, lips: np.ndarray) -> np.ndarray:
    return np.linalg.norm((a[:, lips] - b[:, lips]).reshape(len(a), -1, 3), axis=-1).mean(-1)


class LowerFace:
    """The lower face a stream sends, frame by frame (:class:`codec.speech.generator.LowerFaceConfig`).

    ``scale * (readout + motion * (generated - running mean of generated))``:
    the speech's linear readout (the conditional mean of the lips: it moves
    them only as far as the speech tells) plus the generator's own lip
    movement around its running mean (the readout alone moves the mouth
    little), all shrunk toward rest by the guard ``scale``. The running mean
    starts at the first frame's generated lower face. A generator without a
    readout sends its own lower face, times ``scale``.
    """

    def __init__(self, model: MotionGenerator) -> None:
        self.model = model
        self._mean: np.ndarray | None = None

    def shape(self, generated: np.ndarray, readout: np.ndarray | None) -> np.ndarray:
        """``[n, L, 3]`` lower face to send (before the gate) for the next ``n`` frames' generated lower face."""
        return self.model.lower_face.scale * self.unscaled(generated, readout)

    def unscaled(self, generated: np.ndarray, readout: np.ndarray | None) -> np.ndarray:
        """:meth:`shape` before the guard's scale."""
        cfg = self.model.lower_face
        if readout is None:
            return generated
        moving = np.empty_like(generated)
        for i, g in enumerate(generated):
            self._mean = g.copy() if self._mean is None else self._mean + (g - self._mean) / cfg.tau
            moving[i] = g - self._mean
        return readout + cfg.motion * moving

    def apply(self, tokens: np.ndarray, heard: np.ndarray, gate: np.ndarray) -> np.ndarray:
        """Tokens ``[n, R, G]`` of the newest frames with their lower face shaped and gated.

        Args:
            tokens: the generator's tokens of the newest ``n`` frames.
            heard: ``[W]`` or ``[W, 512]`` the speech the generator heard, the newest ``n`` frames last.
            gate: ``[n]`` voice-activity gate.
        """
        if self.model.readout is None and self.model.lower_face.scale == 1.0:
            return gate_lower_face(tokens, gate)
        n = len(tokens)
        decoded = load_tokenizer().decode(tokens)
        generated = MotionDelta.from_vector(decoded).expression[:, lower_face()]
        past = 0 if self.model.readout is None else self.model.readout.past
        readout = self.model.readout_lower_face(heard[-(n + past):])
        return gate_lower_face(tokens, gate, self.shape(generated, None if readout is None else readout[-n:]), decoded)


class SpeechMotionStream:
    """Live speech (16 kHz mono float) -> motion token frames ``[4, 12]``.

    Args:
        seed: makes the sampled non-verbal motion repeatable; None draws one.
        temperature: sampling temperature (0: most likely tokens).
        gate: the voice-activity gate on the lower face (its anticipation within the look-ahead).
    """

    def __init__(self, seed: int | None = None, temperature: float = DEFAULT_TEMPERATURE,
                 unitizer: SpeechUnitizer | None = None, generator: MotionGenerator | None = None,
                 gate: GateConfig = GateConfig()) -> None:
        self.roller = MotionRoller(generator, seed, temperature)
        self.lower_face = LowerFace(self.roller.model)
        self.units = UnitStream(unitizer, quantize=self.roller.model.config.speech == "units")
        if gate.anticipate > self.units.unitizer.config.lookahead:
            raise ValueError(f"the gate may look {self.units.unitizer.config.lookahead} frames ahead, "
                             f"not {gate.anticipate}: more would add latency")
        self.vad = VoiceGate(gate)
        self._gates = np.zeros(0, np.float32)  # decided ahead of the tokens

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: one block plus the look-ahead."""
        return self.units.unitizer.config.latency_ms

    def push(self, samples: np.ndarray, controls: np.ndarray | None = None) -> list[np.ndarray]:
        """Adds audio; returns the token frames ``[R, G]`` (int64) completed by it, oldest first.

        Args:
            samples: ``[N]`` float32 in [-1, 1] at 16 kHz, any ``N``.
            controls: ``[9]`` rotation (3), gaze (4), blink (2) deltas for the new frames, NaN where free.
        """
        self._gates = np.concatenate([self._gates, self.vad.push(samples)])
        return self._motion(self.units.push(samples), controls)

    def flush(self, controls: np.ndarray | None = None) -> list[np.ndarray]:
        """Ends the stream and returns its last frames."""
        total = int(round(self.units.received / SAMPLES_PER_FRAME))
        self._gates = np.concatenate([self._gates, self.vad.flush(total)])
        return self._motion(self.units.flush(), controls)

    def _motion(self, units: np.ndarray, controls: np.ndarray | None) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        hop = self.units.unitizer.config.hop
        for i in range(0, len(units), hop):
            u = units[i:i + hop]
            c = None if controls is None else np.broadcast_to(np.asarray(controls, np.float32), (len(u), CONTROL_DIM))
            tokens = self.roller.step(u, c)
            # The gate is decided before the tokens: it looks no further ahead than the units do.
            out.extend(self.lower_face.apply(tokens, self.roller.heard, self._gates[:len(tokens)]))
            self._gates = self._gates[len(tokens):]
        return out


def speech_to_tokens(samples_16k: np.ndarray, seed: int | None = None, temperature: float = DEFAULT_TEMPERATURE,
                     controls: np.ndarray | None = None, frames: int | None = None,
                     gate: GateConfig = GateConfig()) -> np.ndarray:
    """Motion tokens for a whole recording (the live stream's blocks and gate, run offline).

    Args:
        samples_16k: ``[N]`` float32 mono speech at 16 kHz.
        seed: makes the sampled non-verbal motion repeatable; None draws one.
        temperature: sampling temperature (0: most likely tokens).
        controls: ``[T, 9]`` rotation, gaze, blink deltas per frame (NaN where free), or None.
        frames: ``T``; default ``round(N / 640)`` (one per 25 fps video frame).
        gate: the voice-activity gate on the lower face.
    Returns:
        ``[T, 4, 12]`` int64 tokens in ``0 .. 624``, relative to a face at rest.
    """
    units = speech_inputs(samples_16k, frames)
    return units_to_tokens(units, seed, temperature, controls, voice_gate(samples_16k, len(units), gate))


def speech_inputs(samples_16k: np.ndarray, frames: int | None = None,
                  generator: MotionGenerator | None = None) -> np.ndarray:
    """What the generator hears in a recording: speech units ``[T]`` int64, or Whisper states ``[T, 512]``
    float32 for a generator trained on states (``GeneratorConfig.speech``), computed as the live stream does."""
    unitizer = load_unitizer()
    feats = unitizer.features(samples_16k, frames)
    return unitizer.quantize(feats) if (generator or load_generator()).config.speech == "units" else feats


def units_to_tokens(units: np.ndarray, seed: int | None = None, temperature: float = DEFAULT_TEMPERATURE,
                    controls: np.ndarray | None = None, gate: np.ndarray | None = None) -> np.ndarray:
    """Motion tokens ``[T, 4, 12]`` from speech units ``[T]`` (or states, :func:`speech_inputs`), in the live
    stream's blocks (see :func:`speech_to_tokens`).

    Args:
        gate: ``[T]`` lower-face gate (:func:`codec.speech.vad.voice_gate` of the same audio), or None for none.
    """
    roller = MotionRoller(seed=seed, temperature=temperature)
    lower = LowerFace(roller.model)
    hop = load_unitizer().config.hop
    out = []
    for i in range(0, len(units), hop):
        tokens = roller.step(units[i:i + hop], None if controls is None else controls[i:i + hop])
        g = np.ones(len(tokens), np.float32) if gate is None else gate[i:i + hop]
        # Block by block like the stream: the tokenizer's float results depend on the batch.
        out.append(lower.apply(tokens, roller.heard, g))
    cfg = roller.model.config
    return np.concatenate(out) if out else np.zeros((0, cfg.residuals, cfg.groups), np.int64)
