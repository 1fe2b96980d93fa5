"""The sender's pictures (sender.pictures): the reference at once, keyframes within the budget, paced out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from codec.picture import PictureKind, decode_picture, parse_picture
from realtime.pictures import PacingConfig, PictureInbox
from realtime.protocol import PictureBegin, PictureData, parse_message
from sender.pictures import PictureConfig, SenderPictures


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drain(pictures: SenderPictures, clock: Clock) -> list[bytes]:
    inbox, done = PictureInbox(), []
    for _ in range(100_000):
        raw = pictures.next_message()
        if raw is not None:
            msg = parse_message(raw)
            if isinstance(msg, PictureBegin):
                inbox.begin(msg)
            else:
                assert isinstance(msg, PictureData)
                whole = inbox.data(msg)
                if whole is not None:
                    done.append(whole)
        elif pictures.wait_s() is None:
            break
        clock.t += 0.04
    return done


def test_reference_then_keyframes_arrive_whole(sample_frames: list[np.ndarray], sample_landmarks: np.ndarray) -> None:
    clock = Clock()

    async def go() -> tuple[list[bytes], SenderPictures]:
        pictures = SenderPictures(PictureConfig(pacing=PacingConfig(64.0)), clock)
        pictures.call_started()
        last = len(sample_frames) - 1
        for k in range(last + 30):  # the last frame held at the end: candidates settle and are offered
            i = min(k, last)
            pictures.on_frame(sample_frames[i], 40 * k, sample_landmarks[0], sample_landmarks[i])
            await pictures.idle()  # as a camera's frames come: one at a time
        await pictures.idle()
        out = drain(pictures, clock)
        pictures.close()
        return out, pictures

    got, pictures = asyncio.run(go())
    kinds = [parse_picture(r).kind for r in got]
    assert kinds[0] is PictureKind.REFERENCE and len(kinds) >= 2  # the sample blinks in its first second
    t = pictures.totals
    assert t.reference_bytes == len(got[0]) and t.keyframe_bytes == sum(map(len, got[1:]))
    assert [k["kind"] for k in t.keyframes] == [k.label for k in kinds[1:]]
    assert t.reference_sent_s is not None and t.reference_ready_s is not None
    assert t.reference_box is not None
    ref = decode_picture(got[0])
    assert ref.image.shape == (512, 512, 3) and ref.media_ms == 0


def test_keyframes_stay_within_the_budget_and_private_sends_nothing(sample_frames: list[np.ndarray],
                                                                    sample_landmarks: np.ndarray) -> None:
    def go(config: PictureConfig) -> tuple[list[bytes], SenderPictures]:
        clock = Clock()

        async def inner() -> tuple[list[bytes], SenderPictures]:
            pictures = SenderPictures(config, clock)
            for k in range(60):
                i = min(k, len(sample_frames) - 1)
                pictures.on_frame(sample_frames[i], 40 * k, sample_landmarks[0], sample_landmarks[i])
                await pictures.idle()
            await pictures.idle()
            out = drain(pictures, clock)
            pictures.close()
            return out, pictures

        return asyncio.run(inner())

    got, p = go(PictureConfig(keyframe_budget=1000, pacing=PacingConfig(400.0)))
    assert [parse_picture(r).kind for r in got] == [PictureKind.REFERENCE]
    assert p.totals.keyframes_over_budget >= 1 and p.totals.keyframe_bytes == 0
    got, p = go(PictureConfig(send=False))
    assert got == [] and p.totals.reference_bytes == 0 and not p.sends
    got, p = go(PictureConfig(keyframes=False, pacing=PacingConfig(400.0)))
    assert [parse_picture(r).kind for r in got] == [PictureKind.REFERENCE]


def test_a_photo_is_the_reference_without_keyframes(sample_portrait: Path, sample_frames: list[np.ndarray],
                                                    sample_landmarks: np.ndarray) -> None:
    clock = Clock()

    async def go() -> list[bytes]:
        pictures = SenderPictures(PictureConfig(photo=sample_portrait, pacing=PacingConfig(400.0)), clock)
        await pictures.start_photo()
        for k, frame in enumerate(sample_frames):  # frames are ignored: the photo is the picture
            pictures.on_frame(frame, 40 * k, sample_landmarks[0], sample_landmarks[k])
        await pictures.idle()
        out = drain(pictures, clock)
        pictures.close()
        return out

    got = asyncio.run(go())
    assert [parse_picture(r).kind for r in got] == [PictureKind.REFERENCE]
