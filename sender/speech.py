"""``talk-send --audio-only``: no camera; motion generated from the speech the call sends.

The speech source (a microphone, an audio file, a video's soundtrack) feeds
the Opus track as usual; :class:`TeePcm` hands every block the track takes
to the speech generator too, so motion is made from exactly the speech that
is sent. :class:`SpeechMotionSource` is the call's frame source: it yields
:class:`TokenFrame`\\ s, and :class:`SpeechEncoder` packs them into ordinary
motion packets (same header layout, protocol and rate control as a camera's).

Alignment: audio block ``k`` (20 ms) is media time ``20 k`` ms, and motion
frame ``k`` covers the speech of media time ``[40 k, 40 k + 40)``. Each
motion packet is stamped with that capture time, not with the time it was
generated (240 ms of look-ahead and the compute later). The receiver places
audio and motion by media time, so they line up there; its latency figures
(capture to playout) then include the generator's delay, as they should, and
its jitter buffer plays motion out after the fastest transit it sees, which
here is the generator's delay.

The stream's reference is the canonical face at rest, mouth closed
(:func:`codec.api.speech_reference`): generated tokens are motion relative
to that, as ``talk-codec encode --from-audio`` writes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from codec.api import EncoderConfig, TokenPacketizer, speech_reference
from codec.speech import SpeechMotion, frame_media_ms, new_stream
from realtime.clock import MediaClock
from sender.sources import PcmSource


@dataclass(frozen=True)
class TokenFrame:
    """One frame of generated motion.

    Attributes:
        tokens: ``[R, G]`` motion tokens (all residual layers).
        media_ms: media time of the speech it was made from.
    """

    tokens: np.ndarray
    media_ms: int


class TeePcm:
    """A speech source that also hands every block it gives out to ``on_block``.

    Args:
        inner: the real source.
        on_block: receives each 20 ms block (48 kHz mono float32), on the event loop.
    """

    def __init__(self, inner: PcmSource, on_block: Callable[[np.ndarray], None]) -> None:
        self.inner = inner
        self.paced = inner.paced
        self._on_block = on_block

    async def start(self) -> None:
        await self.inner.start()

    async def block(self) -> np.ndarray:
        b = await self.inner.block()
        self._on_block(b)
        return b

    @property
    def done(self) -> bool:
        """The source has no more speech (a file played to its end)."""
        return bool(getattr(self.inner, "done", False))

    def close(self) -> None:
        self.inner.close()


class SpeechEncoder:
    """Generated motion tokens -> motion packets of a speech-driven stream.

    Args:
        config: layers and coding mode, as for a camera.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self._packets = TokenPacketizer(config, speech_reference())
        self.header = self._packets.header

    def set_layers(self, layers: int) -> None:
        """Changes the residual layers sent from the next frame on (adaptive bitrate)."""
        self._packets.set_layers(layers)

    def encode_frame(self, frame: TokenFrame) -> bytes:
        return self._packets.encode(frame.tokens, frame.media_ms)

    def close(self) -> None:
        pass


class SpeechMotionSource:
    """The call's motion, generated from its speech.

    Args:
        pcm: where speech comes from; pass :attr:`pcm` (not this) to the Opus track.
        seed: the generator's seed; the same seed and speech give the same motion.
    Raises:
        SpeechModelMissing: the speech models are not installed (checked at once).
    """

    keep_all = True  # every generated frame is sent: none is stale, unlike a camera's

    def __init__(self, pcm: PcmSource, seed: int | None = None) -> None:
        self.pcm = TeePcm(pcm, self._on_block)
        self.seed = seed
        self._stream = new_stream(seed)  # loads the models now: a missing one fails before the call
        self._motion: SpeechMotion | None = None
        self._queue: asyncio.Queue[TokenFrame | None] | None = None
        self._ending = False

    @property
    def backlog_ms(self) -> float:
        """Speech waiting for the generator."""
        return 0.0 if self._motion is None else self._motion.backlog_ms

    def make_encoder(self, config: EncoderConfig) -> SpeechEncoder:
        return SpeechEncoder(config)

    def _ensure(self) -> tuple[SpeechMotion, asyncio.Queue[TokenFrame | None]]:
        if self._motion is None or self._queue is None:
            self._queue = asyncio.Queue()
            self._motion = SpeechMotion(self._on_frame, stream=self._stream)
        return self._motion, self._queue

    def _on_block(self, block: np.ndarray) -> None:
        motion, queue = self._ensure()
        if self._ending:
            return
        motion.push(block)
        if self.pcm.done:  # the file is over: its last frames, then the end
            self._ending = True
            motion.flush().add_done_callback(lambda _: queue.put_nowait(None))

    def _on_frame(self, k: int, tokens: np.ndarray) -> None:
        _, queue = self._ensure()
        queue.put_nowait(TokenFrame(tokens, int(round(frame_media_ms(0.0, k)))))

    async def frames(self, clock: MediaClock) -> AsyncIterator[TokenFrame]:
        """Generated frames as they come (in blocks of three, every 120 ms); ends with a file's speech."""
        _, queue = self._ensure()
        while True:
            frame = await queue.get()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        if self._motion is not None:
            self._motion.close()
