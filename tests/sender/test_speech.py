"""talk-send --audio-only's pieces: 48 -> 16 kHz without a shift, packets of generated motion, frame times."""

from __future__ import annotations

import asyncio

import numpy as np

from codec.api import EncoderConfig, FrameDecoder, speech_reference
from codec.speech import Downsampler
from sender.speech import SpeechEncoder, SpeechMotionSource, TokenFrame


def test_downsampler_keeps_the_timeline() -> None:
    t = np.arange(48_000) / 48_000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    d = Downsampler()
    y = np.concatenate([d.push(x[i:i + 960]) for i in range(0, len(x), 960)])
    assert 15_980 <= len(y) <= 16_000  # all but the last millisecond, held for the filter
    ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / 16_000)
    assert np.abs(y[50:-50] - ref[50:-50]).max() < 0.01  # no phase shift: sample m is input sample 3 m
    high = np.sin(2 * np.pi * 12_000 * t).astype(np.float32)  # above 8 kHz: filtered, not aliased
    assert np.abs(Downsampler().push(high)[50:-50]).max() < 0.05


def test_speech_packets_decode_with_the_rest_reference() -> None:
    enc = SpeechEncoder(EncoderConfig(layers=4))
    assert enc.header.reference == speech_reference()
    assert np.allclose(enc.header.reference.rotation, 0.0, atol=1e-6)  # the canonical face, frontal, at rest
    tokens = np.random.default_rng(0).integers(0, 625, (4, 12))
    dec = FrameDecoder(enc.header)
    f = dec.decode(enc.encode_frame(TokenFrame(tokens, 80)))
    assert f.face and f.timestamp_ms == 80 and np.array_equal(f.tokens, tokens)
    enc.set_layers(2)  # the rate controller drops residual layers
    f = dec.decode(enc.encode_frame(TokenFrame(tokens, 120)))
    assert f.layers == 2 and np.array_equal(f.tokens, tokens[:2])


class BlockPcm:
    """A file-like speech source of ``n`` blocks of 20 ms, then done."""

    paced = False

    def __init__(self, samples: np.ndarray) -> None:
        self.samples, self.pos = samples, 0

    async def start(self) -> None:
        pass

    async def block(self) -> np.ndarray:
        out = np.zeros(960, np.float32)
        chunk = self.samples[self.pos:self.pos + 960]
        out[:len(chunk)] = chunk
        self.pos += 960
        return out

    @property
    def done(self) -> bool:
        return self.pos >= len(self.samples)

    def close(self) -> None:
        pass


def _generate(samples: np.ndarray, seed: int) -> list[TokenFrame]:
    async def run() -> list[TokenFrame]:
        src = SpeechMotionSource(BlockPcm(samples), seed=seed)
        frames: list[TokenFrame] = []

        async def pull() -> None:  # what the Opus track does
            while not src.pcm.done:
                await src.pcm.block()

        puller = asyncio.create_task(pull())
        async for f in src.frames(None):  # type: ignore[arg-type]
            frames.append(f)
        await puller
        src.close()
        return frames

    return asyncio.run(run())


def test_frames_are_stamped_with_their_speech_and_repeat_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2 * 48_000) / 48_000
    speech = (0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
              + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    a = _generate(speech, seed=5)
    assert [f.media_ms for f in a] == [40 * k for k in range(50)]  # frame k: speech [40 k, 40 k + 40) ms
    assert all(f.tokens.shape == (4, 12) for f in a)
    b = _generate(speech, seed=5)
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b))
