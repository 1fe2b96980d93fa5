"""Renders a decoded ``.tok`` stream onto a portrait and writes a video (``talk-codec decode -o``)."""

from __future__ import annotations

from pathlib import Path

from codec.api import decode_stream
from codec.audio import decode_opus
from codec.container import TokFile
from codec.media import VideoWriter
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait


def render_tok(tok: TokFile, portrait_path: str | Path, output: str | Path, device: str = "auto",
               renderer: str = "warp", size: int = 512, layers: int | None = None, batch: int = 16) -> int:
    """Decodes every packet, renders it on the portrait and writes ``output`` with the stream's audio.

    Returns:
        the number of frames written.
    """

    portrait = prepare_portrait(portrait_path, size=size)
    landmarks = decode_stream(tok.header, tok.packets, portrait.landmarks, layers)
    r = Renderer(portrait, RenderConfig(device=device, size=size, renderer=renderer))
    audio = None
    if tok.audio:
        audio = decode_opus(tok.audio)
    with VideoWriter(output, fps=tok.header.fps, audio_rate=audio[1] if audio else None) as w:
        for i in range(0, len(landmarks), batch):
            w.write(r.render(landmarks[i:i + batch]))
        if audio:
            w.write_audio(audio[0])
    return len(landmarks)
