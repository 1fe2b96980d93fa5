"""Side-by-side clip of speech mode: the true video | the same speech driving a still portrait.

    python -m bench.measure.speech_side_by_side [--clip clips/styletalk_feifeili_clip1.mp4]
        [-o docs/speech_side_by_side.mp4]

The clip is a held-out one (an identity the generator never trained on). Its
soundtrack alone goes through the speech mode (units -> generator -> motion
tokens, the live stream's blocks); the tokens are decoded like a receiver
decodes them and rendered by the warp renderer on the clip's rest frame
(mouth closed, head near its median pose), the face the generated motion is
relative to (as in ``bench/speech_quality.py``). Left: the clip as filmed.
Right: the speech-driven portrait. The clip's audio is muxed in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from codec.media import VideoWriter, probe_video, read_audio, read_video
from codec.motion import MotionDelta, apply_delta, landmarks_from_motion, motion_from_landmarks
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.speech import speech_to_tokens
from codec.tokenizer import load_tokenizer
from codec.train.corpus import clip_landmarks, corpus_dir
from codec.train.speech import rest_frame

DEFAULT_CLIP = "clips/styletalk_feifeili_clip1.mp4"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "speech_side_by_side.mp4"


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    out = frame.copy()
    cv2.putText(out, text, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.measure.speech_side_by_side", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=DEFAULT_CLIP, help="corpus clip (relative to the corpus root)")
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=384, help="side of each panel in pixels")
    parser.add_argument("--crf", type=int, default=30, help="H.264 quality (higher: smaller file)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    # lazy: torch takes seconds to import; loaded only when this runs
    import torch


    torch.set_num_threads(1)
    path = corpus_dir() / args.clip
    info = probe_video(path)
    cl = clip_landmarks(path)
    frames = [f for f in read_video(path)]
    t = min(len(frames), int(args.seconds * info.fps))
    audio = read_audio(path)
    # The generator sees the whole soundtrack up to the end of the excerpt, as live.
    samples = audio[:t * 640]
    tokens = speech_to_tokens(samples, seed=args.seed, frames=t)

    lm = cl.landmarks
    idx = np.flatnonzero(cl.valid)
    lm = lm[idx[np.clip(np.searchsorted(idx, np.arange(len(lm))), 0, len(idx) - 1)]]
    rest = frames[rest_frame(lm)]
    h, w = rest.shape[:2]
    portrait = prepare_portrait(rest, size=h, crop=False) if h == w else prepare_portrait(rest)
    state = motion_from_landmarks(portrait.landmarks)
    delta = MotionDelta.from_vector(load_tokenizer().decode(tokens))
    target = landmarks_from_motion(apply_delta(state, delta))
    renderer = Renderer(portrait, RenderConfig(device=args.device, size=args.size, renderer="warp"))

    def panel(img: np.ndarray) -> np.ndarray:
        # A centred square of the filmed frame (corpus frames are square already).
        s = min(img.shape[:2])
        y, x = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
        return cv2.resize(img[y:y + s, x:x + s], (args.size, args.size), interpolation=cv2.INTER_AREA)

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(args.output, fps=info.fps, crf=args.crf, audio_rate=16000) as out:
        for i in range(0, t, 16):
            gen = renderer.render(target[i:i + 16])
            for k, g in enumerate(gen):
                out.write(np.concatenate([_label(panel(frames[i + k]), "truth"),
                                          _label(g, "speech-driven (audio only)")], 1))
        out.write_audio(samples)
    mb = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {t} frames ({t / info.fps:.1f} s) of {args.clip}, {mb:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
