"""``talk-recv --animate-from-audio``: when motion packets stop, animate the portrait from the received speech.

The received (decoded Opus) speech goes, all call long, to a
:class:`codec.speech.live.SpeechMotion` (48 -> 16 kHz, the generator on
its own thread), whose token frames are decoded to landmarks in the
portrait, as the sender's would be, and kept by media time. At each playout
tick :meth:`MotionFallback.mix` decides what to show:

* motion packets flowing: the received motion, untouched;
* no fresh motion frame for ``stall_ms`` (200 ms) while generated frames
  exist: the generated motion, reached by a crossfade over ``blend_ms``;
* motion packets back: a crossfade over ``blend_ms`` back to the received
  motion, ending exactly on it.

The crossfade is in motion space: target landmarks are interpolated
(:func:`blend`), never pixels, so the renderer draws one face throughout.

Generated frames are made from speech up to 240 ms after them (the
generator's look-ahead) plus compute time. When the sender's motion plays
out sooner than that (a camera: ~80 ms after capture), the generated frame
for the tick's media time is not there yet: generated frames are then played
in turn at a steady lag (the most they were behind over the last 2 s), so
the mouth lags the speech by about 300 ms while motion is missing (the
figures report that lag). Behind a ``talk-send --audio-only`` sender, whose
motion is itself 240 ms late, they line up.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from codec.api import EncoderConfig, FrameDecoder, make_header, speech_reference
from codec.speech import FRAME_MS, PCM_RATE, SpeechMotion, frame_media_ms, new_stream
from realtime.jitterbuffer import PlayoutKind

log = logging.getLogger(__name__)

# Generated frames further behind the tick than this are too stale to show.
MAX_LAG_MS = 1500.0
# Speech waiting for the generator beyond this (a starved CPU): start it afresh at the newest speech.
MAX_BACKLOG_MS = 1500.0
KEEP_MS = 3000.0
# Ticks over which the generator's lag is taken (its largest), so generated frames play at a steady lag.
LAG_WINDOW = 50


@dataclass(frozen=True)
class FallbackConfig:
    """How the receiver animates from speech when motion stops.

    Attributes:
        stall_ms: no fresh motion frame for this long (media time) counts as motion stopped.
        blend_ms: length of each crossfade (received -> generated and back).
        seed: the generator's seed (repeatable non-verbal motion); None draws one.
        max_lag_ms: generated frames further behind the tick than this are too stale to show.
        max_backlog_ms: speech waiting for the generator beyond this (a starved CPU) restarts it
            at the newest speech. Tests that check the switching, not the timing, raise both so a
            busy machine cannot starve the generator past them.
    """

    stall_ms: float = 200.0
    blend_ms: float = 250.0
    seed: int | None = None
    max_lag_ms: float = MAX_LAG_MS
    max_backlog_ms: float = MAX_BACKLOG_MS

    def __post_init__(self) -> None:
        if self.stall_ms < FRAME_MS:
            raise ValueError(f"stall must be at least one frame ({FRAME_MS:g} ms), got {self.stall_ms}")
        if self.blend_ms < 0:
            raise ValueError(f"blend must be >= 0 ms, got {self.blend_ms}")


class Crossfade:
    """The weight of generated motion, one tick at a time: a linear ramp toward a target of 0 or 1.

    Args:
        blend_ms: how long a full ramp takes (0: switch at once).
        tick_ms: time between ticks.
    """

    def __init__(self, blend_ms: float, tick_ms: float = FRAME_MS) -> None:
        self.step_size = 1.0 if blend_ms <= 0 else min(1.0, tick_ms / blend_ms)
        self.weight = 0.0

    def step(self, target: float) -> float:
        """Moves one tick toward ``target`` (0: received motion, 1: generated); the new weight."""
        if target > self.weight:
            self.weight = min(target, self.weight + self.step_size)
        elif target < self.weight:
            self.weight = max(target, self.weight - self.step_size)
        if abs(self.weight - target) < 1e-6:  # land exactly, whatever the rounding of the steps
            self.weight = target
        return self.weight


def blend(real: np.ndarray, generated: np.ndarray, weight: float) -> np.ndarray:
    """Landmarks ``(1 - weight) * real + weight * generated``; exactly ``real`` at 0 and ``generated`` at 1."""
    if weight <= 0.0:
        return real
    if weight >= 1.0:
        return generated
    w = np.float32(weight)
    return ((1 - w) * real + w * generated).astype(np.float32)


@dataclass
class FallbackStats:
    """What the fallback did in one call.

    Attributes:
        frames_generated: ticks that showed generated motion (any weight).
        switch_ms: per switch to generated motion, media time from the last fresh motion frame
            to the first tick with generated motion in it (stall detection and the generator's delay).
        lag_ms: per generated tick, how far the generated frame shown is behind the tick.
        restarts: times the generator fell too far behind and was started afresh.
        generated_frames: frames the generator made.
    """

    frames_generated: int = 0
    switch_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    restarts: int = 0
    generated_frames: int = 0


class MotionFallback:
    """One call's speech-driven fallback.

    Args:
        config: see :class:`FallbackConfig`.
        portrait_landmarks: ``[478, 3]`` the portrait at rest.
    Raises:
        SpeechModelMissing: the speech models are not installed.
    """

    def __init__(self, config: FallbackConfig, portrait_landmarks: np.ndarray) -> None:
        self.config = config
        # Generated tokens are motion relative to a face at rest: decode them onto the portrait at rest.
        self._decoder = FrameDecoder(make_header(EncoderConfig(), speech_reference()), portrait_landmarks)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=PCM_RATE)
        self.fade = Crossfade(config.blend_ms)
        self.stats = FallbackStats()
        self._frames: deque[tuple[float, np.ndarray]] = deque()  # (media ms, landmarks), in order
        self._behind: deque[float] = deque(maxlen=LAG_WINDOW)  # how far the newest frame was behind, per tick
        self._motion: SpeechMotion | None = None
        self._t0_ms = 0.0  # media time of the generator's first sample
        self._next_pts: int | None = None  # 48 kHz media sample the next audio frame should start at
        self._last_fresh_ms: float | None = None
        self._shown: np.ndarray | None = None  # the generated landmarks shown last
        self._was_generated = False

    def set_portrait(self, portrait_landmarks: np.ndarray) -> None:
        """Generates onto another portrait from now on (the caller's picture arrived)."""
        self._decoder.set_portrait(portrait_landmarks)

    # -- speech in ----------------------------------------------------------

    def _landmarks(self, tokens: np.ndarray) -> np.ndarray:
        """Runs on the generator's thread."""
        d = self._decoder
        return d.landmarks(d.deltas(np.asarray(tokens)[None]))[0].astype(np.float32)

    def _start(self, t0_ms: float) -> None:
        if self._motion is not None:
            self._motion.close()
        self._t0_ms = t0_ms
        self._motion = SpeechMotion(self._on_frame, stream=new_stream(self.config.seed), convert=self._landmarks)

    def on_audio(self, frame: Any) -> None:
        """One received ``av.AudioFrame`` (pts in 1/48000 s of media time); call before anything alters it."""
        if frame.pts is None or frame.sample_rate != PCM_RATE:
            return
        pts, n = int(frame.pts), int(frame.samples)
        if self._motion is None:
            self._start(pts * 1000.0 / PCM_RATE)
        elif self._next_pts is not None:
            gap = pts - self._next_pts
            if gap < -n // 2:
                return  # audio already heard
            assert self._motion is not None
            if self._motion.backlog_ms > self.config.max_backlog_ms:
                self.stats.restarts += 1
                log.warning("speech-driven motion fell %.0f ms behind the speech: starting it afresh",
                            self._motion.backlog_ms)
                self._start(pts * 1000.0 / PCM_RATE)
            elif gap > n // 2:  # lost speech: keep the generator's timeline with silence
                self._motion.push_silence(gap)
        self._next_pts = pts + n
        assert self._motion is not None
        for out in self._resampler.resample(frame):
            self._motion.push(out.to_ndarray().reshape(-1))

    def _on_frame(self, k: int, landmarks: np.ndarray) -> None:
        self.add_generated(frame_media_ms(self._t0_ms, k), landmarks)

    def add_generated(self, media_ms: float, landmarks: np.ndarray) -> None:
        """One generated frame (the generator's, or a test's), in media-time order."""
        self.stats.generated_frames += 1
        self._frames.append((media_ms, landmarks))

    def _generated_at(self, media_ms: float) -> tuple[float, np.ndarray] | None:
        """The generated frame to show at ``media_ms``: that time's, or, while the generator is behind,
        the frame as far back as it has lately been behind, so its frames play in turn at a steady lag
        rather than jumping to each newest block of three and holding it."""
        while self._frames and self._frames[0][0] < media_ms - max(KEEP_MS, self.config.max_lag_ms):
            self._frames.popleft()
        if not self._frames:
            return None
        self._behind.append(max(0.0, media_ms - self._frames[-1][0]))
        at = media_ms - max(self._behind)
        for ts, lm in reversed(self._frames):
            if ts <= at + FRAME_MS / 2:
                return (ts, lm) if media_ms - ts <= self.config.max_lag_ms else None
        return None

    # -- ticks out ----------------------------------------------------------

    def mix(self, media_ms: float, kind: PlayoutKind, received: np.ndarray) -> tuple[np.ndarray, float]:
        """What one tick shows.

        Args:
            media_ms: the tick's media time.
            kind: the jitter buffer's decision for it.
            received: ``[478, 3]`` the landmarks from the received motion (held or interpolated when missing).
        Returns:
            the landmarks to render and the weight of generated motion in them (0: the received motion as is).
        """
        if kind is PlayoutKind.FRESH:
            self._last_fresh_ms = media_ms
        stalled = self._last_fresh_ms is None or media_ms - self._last_fresh_ms >= self.config.stall_ms
        gen = self._generated_at(media_ms)
        if gen is not None:
            self._shown = gen[1]
        w = self.fade.step(1.0 if stalled and gen is not None else 0.0)
        if w <= 0.0 or self._shown is None:
            self._was_generated = False
            return received, 0.0
        if not self._was_generated and self._last_fresh_ms is not None:
            self.stats.switch_ms.append(media_ms - self._last_fresh_ms)
        self._was_generated = True
        self.stats.frames_generated += 1
        if gen is not None:
            self.stats.lag_ms.append(max(0.0, media_ms - gen[0]))
        return blend(received, self._shown, w), w

    def close(self) -> None:
        if self._motion is not None:
            self._motion.close()
            self._motion = None
