"""Renders a decoded ``.tok`` stream onto a portrait and writes a video (``talk-codec decode -o``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from codec.api import decode_stream
from codec.audio import decode_opus
from codec.container import TokFile
from codec.errors import MediaError, StreamError
from codec.media import VideoWriter
from codec.picture import Picture, decode_picture
from codec.render.keyframes import Keyframe
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import Portrait, portrait_from_picture, prepare_portrait

log = logging.getLogger(__name__)


def render_tok(tok: TokFile, portrait_path: str | Path | None, output: str | Path, device: str = "auto",
               renderer: str = "warp", size: int = 512, layers: int | None = None, batch: int = 16) -> int:
    """Decodes every packet, renders it on the portrait and writes ``output`` with the stream's audio.

    Args:
        portrait_path: the face to animate; None: the caller's own picture carried in ``tok`` (with its keyframes).
    Returns:
        the number of frames written.
    Raises:
        StreamError: ``portrait_path`` is None and ``tok`` carries no reference picture.
    """

    keyframes: list[Picture] = []
    if portrait_path is None:
        if tok.reference is None:
            raise StreamError("the stream carries no picture of the caller: give a portrait")
        try:
            reference = decode_picture(tok.reference)
        except StreamError as e:
            raise StreamError(f"the stream's picture of the caller is corrupt ({e}): give a portrait") from None
        for record in tok.pictures:
            if record is tok.reference:
                continue
            try:
                keyframes.append(decode_picture(record))
            except StreamError as e:  # a keyframe only refines the mouth or eyes: render without it
                log.warning("a keyframe picture of the caller is corrupt (%s): rendered without it", e)
        portrait: Portrait = portrait_from_picture(reference)
    else:
        portrait = prepare_portrait(portrait_path, size=size)
    landmarks = decode_stream(tok.header, list(tok.packets), portrait.landmarks, layers, smooth=True)
    r = Renderer(portrait, RenderConfig(device=device, size=size, renderer=renderer))
    for kf in keyframes:  # only the caller's own keyframes: they must show the portrait's face
        hand_keyframe(r, kf)
    audio = None
    if tok.audio:
        try:
            audio = decode_opus(tok.audio)
        except MediaError as e:  # the speech is lost, not the video
            log.warning("the audio track is corrupt (%s): the video is rendered without sound", e)
    with VideoWriter(output, fps=tok.header.fps, audio_rate=audio[1] if audio else None) as w:
        for i in range(0, len(landmarks), batch):
            w.write(r.render(landmarks[i:i + batch]))
        if audio:
            w.write_audio(audio[0])
    return len(landmarks)


def hand_keyframe(renderer: Any, picture: Picture) -> bool:
    """Gives a keyframe of the portrait's own face to a renderer that uses keyframes; whether it took it."""
    add = getattr(renderer, "add_keyframe", None)  # renderers without keyframe support ignore them
    if add is None:
        return False
    add(Keyframe(picture.image, picture.landmarks, picture.kind.label))
    return True
