"""The sender's pictures of the caller: the reference at call start, keyframes while the call runs.

The call's encoder thread tracks the face; this module's own thread, at a
lower OS priority, does the rest off the motion path: it crops the reference
frame as the renderer prepares portraits and compresses it
(:mod:`codec.picture`: AVIF, about 0.25 s of one core), watches the tracked
frames for keyframes (:class:`codec.keyframe_select.KeyframeSelector`) and
compresses those within the keyframe byte budget. Finished records wait in a
:class:`realtime.pictures.PictureOutbox`, which the call drains at a paced
rate behind its motion packets: the reference first, keyframes after it.

``talk-send --no-portrait`` sends none; ``--audio-only`` has no camera
frame, so it sends the photo given with ``--portrait``, or none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codec.keyframe_select import (
    KEYFRAME_BUDGET_BYTES,
    KeyframeBudget,
    KeyframeSelector,
    frame_picture,
    photo_picture,
)
from codec.picture import DEFAULT_QUALITY, Picture, PictureKind, encode_picture
from codec.render.portrait import crop_box
from realtime.pictures import PacingConfig, PictureOutbox

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10
MAX_QUEUED_FRAMES = 25
"""Frames waiting for the selector at most; past that (a starved thread) frames skip the selector."""


@dataclass(frozen=True)
class PictureConfig:
    """What the sender shows of the caller.

    Attributes:
        send: send pictures at all (``--no-portrait``: False).
        photo: a photo to send as the reference instead of the reference frame's crop (``--audio-only
            --portrait``); keyframes are then off (they would show another face).
        keyframes: send keyframes.
        keyframe_budget: keyframe bytes per call at most (mouth pictures at most
            :data:`codec.keyframe_select.MOUTH_SHARE` of it).
        pacing: the pictures' rate on the link.
        quality: image quality.
    """

    send: bool = True
    photo: Path | None = None
    keyframes: bool = True
    keyframe_budget: int = KEYFRAME_BUDGET_BYTES
    pacing: PacingConfig = field(default_factory=PacingConfig)
    quality: int = DEFAULT_QUALITY


@dataclass
class PictureTotals:
    """What the pictures cost.

    Attributes:
        reference_bytes: the reference picture's record.
        keyframe_bytes: keyframes' records queued (each within the budget).
        keyframes: per keyframe ``{"kind", "media_ms", "bytes"}``.
        keyframes_over_budget: keyframes chosen but left out for the budget.
        sent_bytes: control-message bytes of pictures handed to the channel (chunk headers included).
        messages: those messages.
        reference_media_ms: media time of the reference frame.
        reference_box: its crop box in the camera frame's pixels (keyframes share it).
        reference_ready_s: seconds from the call's start (START, media time 0) to the reference being
            compressed and queued.
        reference_sent_s: ... to its last chunk handed to the channel.
    """

    reference_bytes: int = 0
    keyframe_bytes: int = 0
    keyframes: list[dict[str, Any]] = field(default_factory=list)
    keyframes_over_budget: int = 0
    sent_bytes: int = 0
    messages: int = 0
    reference_media_ms: int | None = None
    reference_box: tuple[float, float, float, float] | None = None
    reference_ready_s: float | None = None
    reference_sent_s: float | None = None


def _lower_priority() -> None:
    """Nices the calling thread on Linux; elsewhere nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):
        pass


class SenderPictures:
    """One call's pictures. All methods run on the event loop; the work runs on the pictures' thread.

    Args:
        config: what to send.
        clock_s: the pacing clock (seconds, monotonic).
    """

    def __init__(self, config: PictureConfig, clock_s: Any) -> None:
        self.config = config
        self._clock_s = clock_s
        self._t0 = clock_s()
        self.outbox = PictureOutbox(config.pacing, self._t0)
        self._reference_id: int | None = None
        self.totals = PictureTotals()
        self._budget = KeyframeBudget(config.keyframe_budget)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pictures", initializer=_lower_priority)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._selector: KeyframeSelector | None = None
        self._box: tuple[float, float, float, float] | None = None
        self._reference_started = False
        self._queued = 0
        self._idle = asyncio.Event()
        self.ready = asyncio.Event()  # set whenever the outbox holds something to send

    @property
    def sends(self) -> bool:
        """Whether this call sends a picture of the caller at all."""
        return self.config.send

    def call_started(self) -> None:
        """Media time 0: the reference's timings count from here."""
        self._t0 = self._clock_s()

    async def start_photo(self) -> None:
        """Prepares ``config.photo`` as the reference (before the call: a bad photo fails here).

        Raises:
            PortraitError: unreadable photo, no face or several.
        """
        assert self.config.photo is not None
        self._reference_started = True
        record, pic = await asyncio.get_running_loop().run_in_executor(self._pool, self._make_photo)
        self._queue_record(record, pic)

    def _make_photo(self) -> tuple[bytes, Picture]:
        assert self.config.photo is not None
        pic = photo_picture(self.config.photo)
        return encode_picture(pic, quality=self.config.quality), pic

    def on_frame(self, rgb: np.ndarray, media_ms: int, reference_landmarks: np.ndarray | None,
                 landmarks: np.ndarray | None) -> None:
        """A frame went through face tracking.

        Args:
            rgb: ``[H, W, 3]`` the frame (kept while it is a keyframe candidate; never modified).
            media_ms: its media time.
            reference_landmarks: the stream's reference landmarks (None until set).
            landmarks: this frame's (None without a face).
        """
        if not self.config.send or self.config.photo is not None or reference_landmarks is None:
            return
        self._loop = asyncio.get_running_loop()
        if not self._reference_started:
            self._reference_started = True
            self._box = crop_box(reference_landmarks)
            self._selector = KeyframeSelector(reference_landmarks)
            self._submit(self._make_reference, rgb, reference_landmarks, media_ms)
            return
        if self.config.keyframes and self._queued < MAX_QUEUED_FRAMES:
            self._submit(self._observe, rgb, landmarks, media_ms)

    def _submit(self, job: Any, *args: Any) -> None:
        self._queued += 1
        fut = self._pool.submit(job, *args)
        fut.add_done_callback(self._job_done)

    def _job_done(self, fut: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._finished, fut)

    def _finished(self, fut: Any) -> None:
        self._queued -= 1
        if self._queued == 0:
            self._idle.set()
        if fut.cancelled():
            return
        err = fut.exception()
        if err is not None:  # a picture that cannot be made is left out, the call goes on
            log.warning("a picture of the caller could not be made: %s: %s", type(err).__name__, err)
            return
        for record, pic in fut.result():
            self._queue_record(record, pic)

    async def idle(self) -> None:
        """Waits until every frame handed over has been looked at and its pictures queued."""
        while self._queued:
            self._idle.clear()
            await self._idle.wait()

    # -- the pictures' thread -----------------------------------------------

    def _make_reference(self, rgb: np.ndarray, landmarks: np.ndarray, media_ms: int) -> list[tuple[bytes, Picture]]:
        pic = frame_picture(rgb, landmarks, PictureKind.REFERENCE, media_ms, self._box)
        return [(encode_picture(pic, quality=self.config.quality), pic)]

    def _observe(self, rgb: np.ndarray, landmarks: np.ndarray | None,
                 media_ms: int) -> list[tuple[bytes, Picture]]:
        assert self._selector is not None
        out = []
        for c in self._selector.observe(landmarks, media_ms, rgb):
            assert c.frame is not None
            pic = frame_picture(c.frame, c.landmarks, c.kind, c.media_ms, self._box)
            out.append((encode_picture(pic, quality=self.config.quality), pic))
        return out

    # -- the loop -----------------------------------------------------------

    def _queue_record(self, record: bytes, pic: Picture) -> None:
        t = self.totals
        if pic.kind is PictureKind.REFERENCE:
            t.reference_bytes = len(record)
            t.reference_media_ms = pic.media_ms
            t.reference_box = self._box
            t.reference_ready_s = self._clock_s() - self._t0
            self._reference_id = self.outbox.add(record, priority=0)
            log.info("the caller's picture: %d bytes", len(record))
        elif not self._budget.take(pic.kind, len(record)):
            t.keyframes_over_budget += 1
            return
        else:
            t.keyframe_bytes += len(record)
            t.keyframes.append({"kind": pic.kind.label, "media_ms": pic.media_ms, "bytes": len(record)})
            self.outbox.add(record, priority=1)
        self.ready.set()

    def next_message(self) -> bytes | None:
        """The next picture message if the pacing allows one now."""
        raw = self.outbox.next_message(self._clock_s())
        if raw is not None:
            self.totals.sent_bytes += len(raw)
            self.totals.messages += 1
            if self.totals.reference_sent_s is None and self._reference_id is not None \
                    and not self.outbox.has(self._reference_id):
                self.totals.reference_sent_s = self._clock_s() - self._t0
        if self.outbox.pending == 0:
            self.ready.clear()
        return raw

    def wait_s(self) -> float | None:
        """Until the next message may go (None: nothing queued)."""
        return self.outbox.wait_s(self._clock_s())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
