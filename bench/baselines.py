"""Conventional codecs at a matched bitrate: H.264 (libx264) and VP8 (libvpx).

The baselines must be strong, not straw men. At each target bitrate we search
each codec's quality knob on every rung of a WebRTC-like ladder of frame sizes
and frame rates, and keep the setting that scores best while staying within
+10% of the target:

- H.264: constant rate factor (CRF, integer 0..51), ``preset=slow``, no
  ``tune=zerolatency`` (we compare compression, not latency), B-frames on, a
  single keyframe for the whole clip (a call has no scene cuts). CRF is what
  x264 itself recommends for the best quality at a given size; a 2-pass ABR
  encode lands at about the same quality for the same size.
- VP8: 1-pass VBR at a target bitrate, ``deadline=good``, ``cpu-used=0``,
  quantizer range 0..63, also a single keyframe. libvpx overshoots small
  targets, so the bitrate we ask for is searched, not the one we want.

The ladder is every size of :data:`SIZES` at 25 fps and at 12.5 fps. A
smaller or slower rung is decoded, upscaled to the clip's size (bicubic) and,
at 12.5 fps, each frame is shown twice. The bitrate is the sum of the encoded
packets' sizes (no container) times 8 over the clip's duration.

"Best-scoring" means the lowest landmark NME on a subsample of frames (the
bench's headline is how well motion survives), and among settings within
:data:`NME_TIE` of the lowest, the highest SSIM. NME alone cannot tell a
sharp face from a blurred one that moves right; SSIM breaks that tie.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import cast

import av
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext

from bench.metrics.pixels import ssim
from bench.metrics.reference import Reference
from bench.metrics.scores import score_landmarks

SIZES = (512, 256, 192, 128, 96, 64)
"""Frame sizes of the ladder, largest first (square frames, as in the corpus)."""

FPS_DIVS = (1, 2)
"""Frame-rate divisors of the ladder: 25 fps, then 12.5 fps."""

TOLERANCE = 0.10
"""A setting may exceed the target bitrate by at most this share."""

NME_TIE = 0.003
"""NME differences below this (in inter-ocular distances) are ties, settled by SSIM."""

CODECS = ("h264", "vp8")


@dataclass(frozen=True)
class Setting:
    """One encoder configuration.

    Attributes:
        codec: ``"h264"`` or ``"vp8"``.
        size: encoded frame side in pixels.
        fps_div: 1 for every frame, 2 for every other frame.
        knob: CRF for H.264, requested bitrate in bits/s for VP8.
    """

    codec: str
    size: int
    fps_div: int
    knob: int

    def describe(self, fps: float = 25.0) -> str:
        """E.g. ``"h264 crf=51 96px 12.5fps"`` or ``"vp8 b=9000 128px 25fps"``."""
        knob = f"crf={self.knob}" if self.codec == "h264" else f"b={self.knob}"
        return f"{self.codec} {knob} {self.size}px {fps / self.fps_div:g}fps"


@dataclass
class Encoded:
    """What one encode produced.

    Attributes:
        setting: the configuration.
        packets: the encoded packets' payloads, in decoding order.
        kbps: measured bitrate (packet bytes x 8 over the clip's duration).
        encode_ms: encoding time per input frame of the clip (scaling and
            colour conversion excluded).
    """

    setting: Setting
    packets: list[bytes]
    kbps: float
    encode_ms: float


def prepare(frames: np.ndarray, size: int, fps_div: int) -> list[np.ndarray]:
    """The frames a rung encodes, as yuv420p planes.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        size: encoded side (area-downscaled when smaller).
        fps_div: keep every ``fps_div``-th frame.
    Returns:
        ``ceil(T / fps_div)`` arrays ``[size * 3 // 2, size]`` uint8 (PyAV's yuv420p layout).
    """
    out = []
    for f in frames[::fps_div]:
        if f.shape[0] != size or f.shape[1] != size:
            f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420))
    return out


def _encoder(setting: Setting, fps: float, frames: int) -> VideoCodecContext:

    name = {"h264": "libx264", "vp8": "libvpx"}[setting.codec]
    cc = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
    cc.width = cc.height = setting.size
    cc.pix_fmt = "yuv420p"
    rate = Fraction(fps).limit_denominator(1000) / setting.fps_div
    cc.framerate = rate
    cc.time_base = 1 / rate
    cc.gop_size = frames + 1
    cc.thread_count = 1
    if setting.codec == "h264":
        cc.options = {"crf": str(setting.knob), "preset": "slow", "scenecut": "0"}
    else:
        cc.bit_rate = setting.knob
        cc.options = {"deadline": "good", "cpu-used": "0", "qmin": "0", "qmax": "63", "lag-in-frames": "16",
                      "auto-alt-ref": "1"}
    return cc


def encode_prepared(src: list[np.ndarray], setting: Setting, clip_frames: int, fps: float = 25.0) -> Encoded:
    """Encodes frames made by :func:`prepare`.

    Args:
        src: yuv420p frames of the rung.
        setting: the configuration (its size and rate must match ``src``).
        clip_frames: frames of the original clip (its duration sets the bitrate).
        fps: the original clip's frame rate.
    """
    enc = _encoder(setting, fps, len(src))
    packets: list[bytes] = []
    t0 = time.perf_counter()
    for i, f in enumerate(src):
        vf = av.VideoFrame.from_ndarray(f, format="yuv420p")
        vf.pts = i
        packets.extend(bytes(p) for p in enc.encode(vf))
    packets.extend(bytes(p) for p in enc.encode(None))
    ms = (time.perf_counter() - t0) * 1000 / clip_frames
    kbps = sum(len(p) for p in packets) * 8 / (clip_frames / fps) / 1000
    return Encoded(setting, packets, kbps, ms)


def decode(encoded: Encoded, shape: tuple[int, ...], index: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Decodes, upscales (bicubic) and repeats frames back to the clip's size and rate.

    Args:
        encoded: the encode.
        shape: ``(T, H, W)`` of the original clip.
        index: return only these frames of the clip (all are decoded, only these upscaled).
    Returns:
        ``[len(index) or T, H, W, 3]`` uint8 RGB, and the time per decoded frame in ms.
    """
    t_len, h, w = shape
    div = encoded.setting.fps_div
    t0 = time.perf_counter()
    dec = cast(VideoCodecContext, av.CodecContext.create({"h264": "h264", "vp8": "vp8"}[encoded.setting.codec], "r"))
    out: list[np.ndarray] = []
    for p in encoded.packets:
        out.extend(f.to_ndarray(format="rgb24") for f in dec.decode(av.Packet(p)))
    out.extend(f.to_ndarray(format="rgb24") for f in dec.decode(None))
    expected = -(-t_len // div)
    if len(out) != expected:
        raise RuntimeError(f"{encoded.setting.describe()}: decoded {len(out)} frames of {expected}")
    idx = np.arange(t_len) if index is None else np.asarray(index)
    frames = np.empty((len(idx), h, w, 3), np.uint8)
    for j, i in enumerate(idx):
        f = out[i // div]
        frames[j] = f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)
    return frames, (time.perf_counter() - t0) * 1000 / len(out)


def encode(frames: np.ndarray, setting: Setting, fps: float = 25.0) -> tuple[Encoded, np.ndarray]:
    """Encodes and decodes a clip with one setting.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB, square.
        setting: the configuration.
        fps: the clip's frame rate.
    Returns:
        the encode (bitrate, packets, time) and the decoded clip ``[T, H, W, 3]``.
    """
    e = encode_prepared(prepare(frames, setting.size, setting.fps_div), setting, len(frames), fps)
    return e, decode(e, frames.shape[:3])[0]


def sample_frames(t: int, n: int) -> np.ndarray:
    """About ``n`` frame indices spread over ``t`` frames, with an odd step.

    An even step would only ever see the frames a 12.5 fps rung encodes and
    never the repeated ones, favouring the low frame rate.
    """
    step = max(1, t // max(n, 1))
    if step > 1 and step % 2 == 0:
        step += 1
    return np.arange(0, t, step)


def lowest_fitting_crf(kbps_of: Callable[[int], float], target: float) -> int | None:
    """The lowest integer CRF (0..51) whose bitrate is within +10% of ``target``.

    Bitrate falls as CRF rises, roughly halving every 6 steps: the first
    guess uses that rule from CRF 51's bitrate, later ones a secant on
    log-bitrate through the bracket; 3-5 encodes in all.

    Args:
        kbps_of: CRF -> measured kbps (one encode each; the caller caches).
        target: kbps.
    Returns:
        the CRF, or None when even CRF 51 overshoots.
    """
    goal = math.log(target * (1 + TOLERANCE))
    pts = {51: math.log(max(kbps_of(51), 1e-6))}
    if pts[51] > goal:
        return None
    hi, lo = 51, -1
    guess = int(min(50, max(0, math.ceil(51 - 6 * (goal - pts[51]) / math.log(2)))))
    while hi - lo > 1:
        pts[guess] = math.log(max(kbps_of(guess), 1e-6))
        if pts[guess] <= goal:
            hi = guess
        else:
            lo = guess
        if hi - lo <= 1:
            break
        # Secant on log-bitrate over CRF through the bracket (or the two nearest points).
        near = sorted(pts, key=lambda c: abs(c - guess))[:2] if lo < 0 else [lo, hi]
        a, b = near
        slope = (pts[b] - pts[a]) / (b - a) if a != b else 0.0
        if not slope < 0:
            slope = -math.log(2) / 6
        x = a + (goal - pts[a]) / slope
        guess = int(min(hi - 1, max(lo + 1, math.ceil(x - 1e-9))))
    return hi


@dataclass
class Candidate:
    """A setting that was encoded, with its subsample scores (NaN until scored)."""

    encoded: Encoded
    nme: float = float("nan")
    ssim: float = float("nan")

    @property
    def setting(self) -> Setting:
        return self.encoded.setting

    @property
    def kbps(self) -> float:
        return self.encoded.kbps


def _better(a: Candidate, b: Candidate | None) -> bool:
    """Whether ``a`` scores better than ``b`` (lower NME, SSIM on ties)."""
    if b is None:
        return True
    # No landmarks (no face in the truth's sampled frames): SSIM alone decides.
    if math.isnan(a.nme) or math.isnan(b.nme) or abs(a.nme - b.nme) < NME_TIE:
        return a.ssim > b.ssim
    return a.nme < b.nme


@dataclass
class BaselineSearch:
    """Finds each codec's best setting for one clip at several target bitrates.

    Encodes are cached by setting (packets only, they are small), so the
    search for one target reuses the encodes of the others. Only candidates
    that could win are decoded and scored, on a subsample of frames
    (``sample``); the caller scores the winner in full.

    Attributes:
        ref: the true clip.
        fps: its frame rate.
        sample: frame indices used to score candidates.
        sizes: ladder sizes to try (largest first).
    """

    ref: Reference
    fps: float = 25.0
    sample: np.ndarray | None = None
    sizes: tuple[int, ...] = SIZES
    _cache: dict[Setting, Candidate] = field(default_factory=dict, repr=False)
    _sources: dict[tuple[int, int], list[np.ndarray]] = field(default_factory=dict, repr=False)
    _sample_ref: Reference | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        t = len(self.ref.frames)
        if self.sample is None:
            self.sample = sample_frames(t, 25)
        self._sample_ref = self.ref.subset(self.sample)
        native = self.ref.frames.shape[1]
        self.sizes = tuple(s for s in self.sizes if s <= native)

    @property
    def encodes(self) -> int:
        """How many distinct settings were encoded so far."""
        return len(self._cache)

    def _try(self, setting: Setting, score: bool = False) -> Candidate:
        c = self._cache.get(setting)
        if c is None:
            key = (setting.size, setting.fps_div)
            if key not in self._sources:
                self._sources[key] = prepare(self.ref.frames, *key)
            c = Candidate(encode_prepared(self._sources[key], setting, len(self.ref.frames), self.fps))
            self._cache[setting] = c
        if score and np.isnan(c.nme):
            assert self._sample_ref is not None
            dec, _ = decode(c.encoded, self.ref.frames.shape[:3], self.sample)
            errs, _ = score_landmarks(dec, self._sample_ref)
            c.nme = errs["all"]
            c.ssim = float(ssim(dec, self._sample_ref.frames).mean())
        return c

    def _fits(self, c: Candidate, target: float) -> bool:
        return c.kbps <= target * (1 + TOLERANCE)

    def _best_knob_h264(self, size: int, div: int, target: float) -> Candidate | None:
        """Lowest CRF whose bitrate fits (see :func:`lowest_fitting_crf`)."""
        crf = lowest_fitting_crf(lambda c: self._try(Setting("h264", size, div, c)).kbps, target)
        return None if crf is None else self._try(Setting("h264", size, div, crf), score=True)

    def _best_knob_vp8(self, size: int, div: int, target: float) -> Candidate | None:
        """Highest requested bitrate whose measured bitrate fits (libvpx overshoots small targets)."""
        floor = self._try(Setting("vp8", size, div, 1000))
        if not self._fits(floor, target):
            return None
        best: Candidate = floor
        ask = int(target * 1000)
        for _ in range(6):
            c = self._try(Setting("vp8", size, div, ask))
            if self._fits(c, target):
                if c.kbps > best.kbps:
                    best = c
                if c.kbps >= target * 0.95:
                    break
            # Aim the next request at the target plus half the tolerance.
            ratio = target * (1 + TOLERANCE / 2) / max(c.kbps, 1e-3)
            nxt = int(round(ask * min(max(ratio, 0.25), 4.0) / 100) * 100)
            if nxt == ask or nxt < 1000:
                break
            ask = nxt
        return self._try(best.setting, score=True)

    def _floor(self, codec: str, size: int, div: int) -> Candidate:
        """The rung's lowest-bitrate setting (CRF 51; VP8 asked for 1 kbps)."""
        return self._try(Setting(codec, size, div, 51 if codec == "h264" else 1000))

    def best(self, codec: str, target: float) -> Candidate | None:
        """The best setting of ``codec`` within +10% of ``target`` kbps.

        For each frame rate, the largest size that can reach the target is
        found bottom-up (a rung's lowest bitrate grows with its size, and
        small encodes are cheap); the ladder is then walked down from there
        and stops once a size scores worse than the one above it (quality
        against size is single-peaked at a fixed bitrate).

        Returns:
            the winning candidate (scored on the subsample), or None when even
            the smallest, slowest rung overshoots.
        """
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
        knob = self._best_knob_h264 if codec == "h264" else self._best_knob_vp8
        winner: Candidate | None = None
        for div in FPS_DIVS:
            feasible = []
            for size in sorted(self.sizes):
                if not self._fits(self._floor(codec, size, div), target):
                    break
                feasible.append(size)
            prev: Candidate | None = None
            for size in reversed(feasible):
                c = knob(size, div, target)
                if c is None:
                    continue
                if prev is not None and not _better(c, prev):
                    break
                prev = c
                if _better(c, winner):
                    winner = c
        return winner

    def decoded(self, candidate: Candidate) -> tuple[np.ndarray, float]:
        """A candidate's full decoded clip ``[T, H, W, 3]`` and decode time per frame (ms)."""
        return decode(candidate.encoded, self.ref.frames.shape[:3])
