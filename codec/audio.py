"""Speech audio as an Ogg Opus blob, the optional audio track of a ``.tok`` file.

Opus runs at 48 kHz internally, so input at any rate is resampled to 48 kHz
mono and decoding always returns 48 kHz. About 24 kbps is transparent enough
for speech and small next to a video codec.
"""

from __future__ import annotations

import fractions
import io
from typing import cast

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

from codec.errors import MediaError

OPUS_RATE = 48_000
DEFAULT_BITRATE = 24_000
# What a call's speech may be set to (talk-send --audio-kbps, --audio-ms). Below 6 kbps Opus
# falls to narrowband SILK; speech gains nothing above 32. Longer frames carry the same speech
# in fewer packets (each packet costs about 60 bytes of RTP, SRTP and UDP/IP headers), at the
# price of as much more latency.
SPEECH_KBPS_RANGE = (6.0, 32.0)
OPUS_FRAME_MS = (20, 40, 60)
# What libopus itself accepts, bits/s.
OPUS_BITRATE_RANGE = (6_000, 510_000)
# Ogg Opus of a long call is a few MB; a larger blob is not ours.
MAX_BLOB_BYTES = 256 * 1024 * 1024


def check_speech_settings(kbps: float, frame_ms: int) -> None:
    """Raises ValueError unless a call's speech bitrate and Opus frame length are ones it may use."""
    lo, hi = SPEECH_KBPS_RANGE
    if not lo <= kbps <= hi:
        raise ValueError(f"--audio-kbps must be in {lo:g}..{hi:g}, got {kbps:g}")
    if frame_ms not in OPUS_FRAME_MS:
        raise ValueError(f"--audio-ms must be one of {', '.join(map(str, OPUS_FRAME_MS))}, got {frame_ms}")


def opus_encoder(bitrate: int = DEFAULT_BITRATE, frame_ms: int = 20) -> AudioCodecContext:
    """A streaming Opus encoder for speech: 48 kHz mono s16 frames in, one ``frame_ms`` packet out.

    What calls send (``talk-send``'s speech, ``talk-recv``'s viewers); pts count samples at 48 kHz.
    Input frames may be shorter than a packet (PyAV regroups them).

    Raises:
        ValueError: a bitrate libopus does not take (it would fail later, on the first frame).
    """
    _check_bitrate(bitrate)
    ctx = cast(AudioCodecContext, av.CodecContext.create("libopus", "w"))
    ctx.sample_rate = OPUS_RATE
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = bitrate
    ctx.time_base = fractions.Fraction(1, OPUS_RATE)
    ctx.options = {"application": "voip", "frame_duration": str(frame_ms)}
    return ctx


def _check_bitrate(bitrate: int) -> None:
    lo, hi = OPUS_BITRATE_RANGE
    if not lo <= bitrate <= hi:
        raise ValueError(f"Opus bitrate must be {lo // 1000}..{hi // 1000} kbps, got {bitrate / 1000:g}")


def encode_opus(samples: np.ndarray, rate: int, bitrate: int = DEFAULT_BITRATE) -> bytes:
    """Encodes mono speech as Ogg Opus.

    Args:
        samples: ``[N]`` float32 in ``[-1, 1]``.
        rate: sample rate of ``samples``, Hz.
        bitrate: target bits per second.
    Returns:
        the Ogg Opus file's bytes.
    Raises:
        MediaError: not a non-empty 1-d float array, a bad rate, or the encoder failed.
    """
    x = np.asarray(samples)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise MediaError(f"audio must be a 1-d float array of samples, got {x.dtype} {x.shape}")
    if not len(x):
        raise MediaError("no audio samples to encode")
    if not np.isfinite(x).all():
        raise MediaError("audio samples contain NaN or infinity")
    if not isinstance(rate, (int, np.integer)) or not 1000 <= rate <= 384_000:
        raise MediaError(f"audio sample rate must be an integer in 1000..384000 Hz, got {rate!r}")
    buf = io.BytesIO()
    try:
        _check_bitrate(bitrate)
        with av.open(buf, "w", format="ogg") as out:
            stream = out.add_stream("libopus", rate=OPUS_RATE, layout="mono")
            stream.bit_rate = int(bitrate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=OPUS_RATE)
            frame = av.AudioFrame.from_ndarray(np.clip(x, -1, 1).astype(np.float32)[None], format="flt",
                                               layout="mono")
            frame.sample_rate = int(rate)
            frame.pts = 0
            # Flushing the resampler (None) returns what its filter still holds.
            for chunk in (frame, None):
                for resampled in resampler.resample(chunk):
                    for packet in stream.encode(resampled):
                        out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except (av.FFmpegError, ValueError) as e:
        raise MediaError(f"Opus encoding failed: {e}") from None
    return buf.getvalue()


def decode_opus(blob: bytes) -> tuple[np.ndarray, int]:
    """Decodes an Ogg Opus blob.

    Returns:
        samples ``[N]`` float32 and their rate (always 48000).
    Raises:
        MediaError: the blob is not Ogg Opus audio or is corrupt.
    """
    if len(blob) > MAX_BLOB_BYTES:
        raise MediaError(f"audio blob of {len(blob)} bytes exceeds the {MAX_BLOB_BYTES}-byte limit")
    chunks = []
    try:
        with av.open(io.BytesIO(bytes(blob)), "r", format="ogg") as src:
            if not src.streams.audio:
                raise MediaError("the audio blob holds no audio stream")
            stream = src.streams.audio[0]
            if stream.codec_context.name != "opus":
                raise MediaError(f"the audio blob holds {stream.codec_context.name}, expected opus")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=OPUS_RATE)
            for frame in src.decode(stream):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError, EOFError) as e:
        raise MediaError(f"cannot decode the Opus audio: {e}") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return samples, OPUS_RATE
