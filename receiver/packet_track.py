"""One viewer's share of a shared encoder's packets, as an aiortc track that hands out ``av.Packet``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

# Speech packets (20 ms each at the defaults) a slow listener may fall behind before it loses the oldest.
MAX_AUDIO_BACKLOG = 5


class PacketSource(Protocol):
    """A shared encoder that viewers' tracks subscribe to."""

    def unsubscribe(self, track: Any) -> None: ...


class PacketTrack(MediaStreamTrack):
    """One viewer's share of a shared encoder's packets: its ``recv`` returns ``av.Packet``.

    aiortc's sender only packetizes such packets (``Encoder.pack``) instead
    of encoding. Subclasses decide in ``push`` what a viewer keeps; the
    first ``recv`` (the viewer's sender has started) calls :meth:`_started`.
    """

    def __init__(self, shared: PacketSource) -> None:
        super().__init__()
        self._shared = shared
        self._queue: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._pulled = False  # the sender has started: packets from now on are this viewer's
        self.packets_sent = 0

    def _started(self) -> None:
        pass

    def _append(self, packet: Any) -> None:
        self._queue.append(packet)
        self._wake.set()

    async def recv(self) -> Any:
        if not self._pulled:
            self._pulled = True
            self._started()
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self.packets_sent += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._wake.set()
        self._shared.unsubscribe(self)


class AudioPacketTrack(PacketTrack):
    """One listener's speech: Opus packets, bounded.

    A listener that falls behind by more than :data:`MAX_AUDIO_BACKLOG`
    packets loses the oldest: it gets the newest speech, not a growing queue.
    """

    kind = "audio"

    def __init__(self, shared: PacketSource) -> None:
        super().__init__(shared)
        self.packets_dropped = 0

    def push(self, packet: Any) -> None:
        if self.readyState != "live":
            return
        if len(self._queue) >= MAX_AUDIO_BACKLOG:
            self._queue.popleft()
            self.packets_dropped += 1
        self._append(packet)
