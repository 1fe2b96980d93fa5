"""The caller's pictures on the receiving end: reassembled, checked, decoded and handed on.

Picture messages (:mod:`realtime.pictures`) arrive on the call's control
channel. :class:`CallPictures` reassembles them (bounded, hash-checked),
parses and decodes each record on a worker thread (:mod:`codec.picture`), and
hands the result to the call: the reference becomes the portrait the caller
is rendered on, keyframes go to that portrait's renderer. A receiver started
with ``--portrait`` animates that face instead (avatar mode): the caller's
pictures are still received and counted, not used, since keyframes of one
face would not fit another.

A picture that fails any check is dropped with a note (one log line per kind
of failure, counted in the statistics); the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from codec.errors import StreamError
from codec.picture import Picture, PictureKind, decode_picture
from realtime.drops import Drops, error_kind
from realtime.pictures import PictureInbox
from realtime.protocol import NoPicture, NoPictureReason, PictureBegin, PictureData, ProtocolError, encode_message

log = logging.getLogger(__name__)

NO_PICTURE_HINT = {
    NoPictureReason.PRIVATE: "the caller keeps their picture private (talk-send --no-portrait)",
    NoPictureReason.NO_CAMERA: "the caller sends no picture (speech only, without --portrait)",
}


@dataclass
class PictureStats:
    """What one call's pictures were and cost.

    Attributes:
        state: ``waiting`` (none yet), ``caller`` (rendering the caller's picture), ``portrait`` (rendering
            ``--portrait``), ``private`` or ``none`` (the sender said it sends none).
        reference_bytes: the reference picture's record.
        keyframe_bytes: keyframes' records.
        keyframes: their kinds, in arrival order.
        message_bytes: control-message bytes the pictures took (chunk headers included).
        reference_ms: media time (from the sender's call start) when the reference had arrived.
        dropped: pictures or chunks dropped, by reason.
    """

    state: str = "waiting"
    reference_bytes: int = 0
    keyframe_bytes: int = 0
    keyframes: list[str] = field(default_factory=list)
    message_bytes: int = 0
    reference_ms: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)


class CallPictures:
    """One call's pictures.

    Args:
        use: render the caller with its pictures (False: a ``--portrait`` overrides them).
        on_reference: awaited with the decoded reference picture (once per call).
        on_keyframe: called with each decoded keyframe, after the reference.
        media_now_ms: the call's current media time (None before the sender's START).
    """

    def __init__(self, use: bool, on_reference: Callable[[Picture], Awaitable[None]],
                 on_keyframe: Callable[[Picture], None], media_now_ms: Callable[[], float | None]) -> None:
        self.use = use
        self.stats = PictureStats(state="waiting" if use else "portrait")
        self._on_reference = on_reference
        self._on_keyframe = on_keyframe
        self._media_now_ms = media_now_ms
        self.inbox = PictureInbox()
        self.drops = Drops(log, "picture of the caller")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._have_reference = False
        self._early_keyframes: list[Picture] = []
        self.no_picture: NoPictureReason | None = None
        self.records: list[bytes] = []  # the caller's pictures as received and checked, the reference first

    def on_message(self, msg: PictureBegin | PictureData | NoPicture) -> None:
        """A picture message from the control channel (on the event loop)."""
        if isinstance(msg, NoPicture):
            self.no_picture = msg.reason
            if self.use and not self._have_reference:
                self.stats.state = "private" if msg.reason is NoPictureReason.PRIVATE else "none"
                log.warning("%s: showing a placeholder; start talk-recv with --portrait IMG to animate a face",
                            NO_PICTURE_HINT[msg.reason])
            return
        self.stats.message_bytes += len(encode_message(msg))
        try:
            if isinstance(msg, PictureBegin):
                self.inbox.begin(msg)
                return
            record = self.inbox.data(msg)
        except ProtocolError as e:
            self._drop(e)
            return
        if record is not None:
            task = asyncio.create_task(self._decode(record), name="picture")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _drop(self, e: Exception) -> None:
        kind = error_kind(e)
        self.drops.note(kind, str(e))
        self.stats.dropped[kind] = self.stats.dropped.get(kind, 0) + 1

    async def _decode(self, record: bytes) -> None:
        try:
            picture = await asyncio.to_thread(decode_picture, record)
        except StreamError as e:
            self._drop(e)
            return
        if picture.kind is PictureKind.REFERENCE:
            if self._have_reference:
                self._drop(StreamError("a second reference picture in one call"))
                return
            self._have_reference = True
            self.records.insert(0, record)
            self.stats.reference_bytes = len(record)
            self.stats.reference_ms = self._media_now_ms()
            if not self.use:
                log.info("the caller's picture arrived (%d bytes); showing --portrait instead", len(record))
                return
            try:
                await self._on_reference(picture)
            except Exception as e:  # landmarks the renderer cannot use, say: stay on the placeholder
                self._drop(StreamError(f"the caller's picture cannot be rendered ({type(e).__name__}: {e})"))
                return
            self.stats.state = "caller"
            log.info("rendering the caller's own picture (%d bytes)", len(record))
            for kf in self._early_keyframes:
                self._on_keyframe(kf)
            self._early_keyframes.clear()
            return
        self.records.append(record)
        self.stats.keyframe_bytes += len(record)
        self.stats.keyframes.append(picture.kind.label)
        if not self.use:
            return
        if self.stats.state == "caller":
            self._on_keyframe(picture)
        elif len(self._early_keyframes) < 8:  # before the reference: they wait for its renderer
            self._early_keyframes.append(picture)

    async def close(self) -> None:
        """Cancels decoding still under way."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
