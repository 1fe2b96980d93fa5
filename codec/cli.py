"""``talk-codec``: encode a video's face motion to a ``.tok`` file, inspect it, decode it.

    talk-codec encode INPUT.mp4 -o OUT.tok [--layers 1..4] [--entropy] [--reference-frame K]
                     [--no-portrait | --no-keyframes]
    talk-codec encode --from-audio SPEECH.wav -o OUT.tok [--seed N] [--portrait P.png]
    talk-codec info OUT.tok [--json]
    talk-codec decode IN.tok (--landmarks OUT.npy | -o OUT.mp4) [--portrait P.png] [--device auto]
                     [--renderer warp|neural] [--size 512] [--layers R]
    talk-codec export-web -o DIR [--portrait P.png]

A ``.tok`` file holds the stream header, one packet per frame, the caller's
picture (the reference frame's crop and keyframes within their budget: up to
16 pictures of the mouth alone, closed eyes, head turns; the crop alone with
``--no-keyframes``, nothing with ``--no-portrait``) and, when the input had sound, its audio as Ogg Opus (see
:mod:`codec.container`). ``decode`` animates that picture unless ``--portrait``
names another face.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from codec.api import EncoderConfig, decode_stream, encode_audio, encode_landmarks, track_video
from codec.audio import decode_opus, encode_opus
from codec.bitstream import Packet
from codec.container import TokFile, read_tok, write_tok
from codec.errors import MediaError, NoFaceError, PortraitError, StreamError, TalkcodecError, UsageError
from codec.face import detect_landmarks
from codec.keyframe_select import clip_pictures, photo_picture
from codec.logs import quiet_native_logs, warnings_to_stderr
from codec.media import probe_video, read_audio, read_image
from codec.paths import atomic_output
from codec.picture import encode_picture, parse_picture
from codec.render.portrait import check_portrait_image
from codec.stream import describe_undecodable, undecodable_packets
from codec.tokenizer import REFINE_STEPS
from codec.validate import (
    MAX_FRAME_SIZE,
    MIN_FRAME_SIZE,
    ArgumentParser,
    check_paths,
    check_video_output,
    device,
    frame_size,
    integer_in,
    seed,
)

log = logging.getLogger(__name__)


def _encode(args: argparse.Namespace) -> int:
    # Everything a user can get wrong is checked before the clip is tracked.
    config = EncoderConfig(layers=args.layers, entropy=args.entropy, refine_steps=args.refine_steps)
    if args.portrait is not None and not args.from_audio:
        raise UsageError("--portrait goes with --from-audio (a video sends its own reference frame)")
    if args.portrait is not None and args.no_portrait:
        raise UsageError("--portrait and --no-portrait contradict each other")
    if args.no_keyframes and args.no_portrait:
        raise UsageError("--no-keyframes and --no-portrait contradict each other (--no-portrait stores no picture)")
    if args.no_keyframes and args.from_audio:
        raise UsageError("--no-keyframes applies to a video (--from-audio stores at most the --portrait photo)")
    if args.seed is not None and not args.from_audio:
        raise UsageError("--seed applies to --from-audio (the generated motion) only")
    if args.reference_frame is not None and args.from_audio:
        raise UsageError("--reference-frame picks a video frame's face; --from-audio has none")
    check_paths({"-o": args.output}, {"INPUT": args.input, "--portrait": args.portrait})
    pictures: list[bytes] = []
    if args.from_audio:
        if args.portrait is not None:  # before the speech model runs: a bad photo fails fast
            pictures = [encode_picture(photo_picture(args.portrait))]
        stream = encode_audio(args.input, config, seed=args.seed)
        has_audio = True
    else:
        info = probe_video(args.input)
        if args.reference_frame is not None and info.frames and args.reference_frame >= info.frames:
            raise UsageError(f"--reference-frame {args.reference_frame} is outside {args.input}'s "
                             f"{info.frames} frames (0..{info.frames - 1})")
        landmarks, face, fps, size = track_video(args.input)
        if abs(fps - config.fps) > 0.5:
            config = dataclasses.replace(config, fps=fps)
        stream = encode_landmarks(landmarks, face, config, args.reference_frame, size)
        if not args.no_portrait:
            pictures = clip_pictures(args.input, landmarks, face, stream.header.reference.frame_index,
                                     keyframes=not args.no_keyframes)
        has_audio = info.has_audio
    audio = None
    if has_audio and not args.no_audio:
        audio = encode_opus(read_audio(args.input, 48000), 48000)
    write_tok(args.output, stream.header, stream.packets, audio, pictures)
    payload = sum(len(p) for p in stream.packets)
    n = len(stream.packets)
    shown = (f", picture {len(pictures[0]) / 1000:.1f} kB + {len(pictures) - 1} keyframes "
             f"{sum(map(len, pictures[1:])) / 1000:.1f} kB" if pictures else ", no picture of the caller")
    print(f"{args.output}: {n} frames, {int(stream.face.sum())} with a face, "
          f"{payload * 8 * stream.header.fps / n / 1000:.2f} kbps motion (incl. packet headers)" + shown
          + (f", audio {len(audio) / 1000:.0f} kB" if audio else ""))
    return 0


def tok_info(path: str | Path) -> dict:
    """The figures ``talk-codec info`` prints, and what in the file is damaged."""

    tok = read_tok(path)
    h = tok.header
    cfg = h.tokenizer
    packets = []
    for raw in tok.packets:
        try:
            packets.append(Packet.from_bytes(raw, cfg.groups, cfg.codebook_size, h.version))
        except StreamError:
            pass  # counted below with the packets that do not decode
    try:
        bad: dict[int, str] | None = undecodable_packets(h, tok.packets)
    except StreamError:  # an entropy model this installation lacks: the packets cannot be checked
        bad = None
    audio_error = None
    if tok.audio:
        try:
            decode_opus(tok.audio)
        except MediaError as e:
            audio_error = str(e)
    payload = sum(len(p.payload) for p in packets)
    wire = sum(len(p) for p in tok.packets)
    secs = max(len(tok.packets), 1) / h.fps
    records = tok.records()
    return {
        "frames": len(tok.packets), "fps": h.fps, "layers": h.layers, "mode": h.mode,
        "bytes": payload, "kbps": round(payload * 8 / secs / 1000, 3),
        "packet_bytes": wire, "wire_kbps": round(wire * 8 / secs / 1000, 3),
        # The pictures spread over the clip: what the stream costs a receiver that starts with no portrait.
        "picture_bytes": tok.picture_bytes,
        "wire_kbps_with_pictures": round((wire + tok.picture_bytes) * 8 / secs / 1000, 3),
        "pictures": [{"kind": r.kind.label, "format": r.format.name, "size": r.size, "bytes": len(b),
                      "media_ms": r.media_ms} for r, b in zip(records, tok.pictures)],
        "audio_bytes": len(tok.audio or b""), "file_bytes": Path(path).stat().st_size,
        "faces": sum(p.face for p in packets),
        # Damage: packets that do not decode (None: not checked), an audio track that does not, skipped chunks.
        "undecodable_packets": None if bad is None else [{"index": i, "reason": r} for i, r in sorted(bad.items())],
        "audio_error": audio_error, "damaged": list(tok.damaged),
        "config": {"tokenizer": h.tokenizer.to_dict(), "tokenizer_hash": h.tokenizer_hash,
                   "entropy_hash": h.entropy_hash, "version": h.version,
                   "keyframe_interval": h.keyframe_interval},
    }


def _damage(info: dict) -> list[str]:
    """The lines telling a user what in a .tok is damaged (empty when nothing is)."""
    lines = []
    bad = info["undecodable_packets"]
    if bad:
        lines.append(describe_undecodable({b["index"]: b["reason"] for b in bad}, info["frames"]))
    if info["audio_error"]:
        lines.append(f"the audio track does not decode ({info['audio_error']}): decode renders without sound")
    lines.extend(info["damaged"])
    return lines


def _info(args: argparse.Namespace) -> int:
    info = tok_info(args.input)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{args.input}: {info['frames']} frames at {info['fps']:g} fps, {info['layers']} layers, "
              f"{info['mode']} mode, {info['kbps']:.2f} kbps motion payload "
              f"({info['wire_kbps']:.2f} kbps with packet headers), audio {info['audio_bytes']} bytes, "
              + (f"{len(info['pictures'])} pictures of the caller {info['picture_bytes']} bytes "
                 f"({info['wire_kbps_with_pictures']:.2f} kbps with them spread over the clip)"
                 if info["pictures"] else "no picture of the caller"))
        for line in _damage(info):
            print(f"{args.input}: damaged: {line}")
    return 0


def _portrait_landmarks(args: argparse.Namespace, tok: TokFile) -> np.ndarray:
    """The landmarks of the face to animate: --portrait's, else the .tok's reference picture's."""
    if args.portrait is None:
        return parse_picture(_reference(args, tok)).landmarks
    image = read_image(args.portrait)
    check_portrait_image(image, args.portrait)
    try:
        return detect_landmarks(image)
    except NoFaceError:
        raise PortraitError(f"{args.portrait}: no face found in the portrait") from None
    except ValueError as e:
        raise PortraitError(f"{args.portrait}: {e}") from None


def _reference(args: argparse.Namespace, tok: TokFile) -> bytes:
    ref = tok.reference
    if ref is None:
        raise TalkcodecError(f"{args.input} carries no picture of the caller (encoded with --no-portrait, from "
                             "speech without --portrait, or by an older talkcodec): pass --portrait IMG")
    return ref


def _npy_name(path: str) -> str:
    """The file ``np.save`` writes for ``path``: it adds ``.npy`` when the name lacks it."""
    return path if path.endswith(".npy") else path + ".npy"


def _decode(args: argparse.Namespace) -> int:
    if not args.landmarks and not args.output:
        raise UsageError("say what to write: --landmarks OUT.npy and/or -o OUT.mp4")
    landmarks_out = _npy_name(args.landmarks) if args.landmarks else None
    if args.output:
        check_video_output(args.output, "-o")
    check_paths({"--landmarks": landmarks_out, "-o": args.output},
                {"INPUT": args.input, "--portrait": args.portrait})
    tok = read_tok(args.input)
    if not tok.packets:
        raise StreamError(f"{args.input} holds a stream header and no motion packets: nothing to decode")
    for line in tok.damaged:
        log.warning("%s: %s", args.input, line)
    try:
        bad = undecodable_packets(tok.header, tok.packets)
    except StreamError:
        bad = {}  # the stream as a whole does not decode here: decoding says why
    if bad:
        log.warning("%s: %s", args.input, describe_undecodable(bad, len(tok.packets)))
    if args.portrait is None:
        _reference(args, tok)  # says what is missing before any work
    if landmarks_out:
        lm = decode_stream(tok.header, list(tok.packets), _portrait_landmarks(args, tok), args.layers,
                           smooth=True)
        with atomic_output(landmarks_out) as tmp:
            np.save(tmp, lm.astype(np.float32))
        print(f"{landmarks_out}: {lm.shape[0]} frames of target landmarks")
    if args.output:
        # lazy: pulls in torch; the arguments are checked first
        from codec.render.video import render_tok

        with atomic_output(args.output) as tmp:
            n = render_tok(tok, args.portrait, tmp, device=args.device, renderer=args.renderer,
                           size=args.size, layers=args.layers)
        print(f"{args.output}: {n} frames rendered")
    return 0


def _export_web(args: argparse.Namespace) -> int:
    # lazy: pulls in torch; the arguments are checked first
    from codec.render.pipeline import RenderConfig, Renderer
    from codec.render.portrait import prepare_portrait
    from codec.webexport import export_web

    renderer = None
    if args.portrait:
        renderer = Renderer(prepare_portrait(args.portrait, size=args.size),
                            RenderConfig(device="cpu", size=args.size))
    for f in export_web(args.output, renderer).values():
        print(f"{f['path']}: {f['bytes']} bytes, hash {f['hash']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="talk-codec", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="a video's face motion -> .tok")
    e.add_argument("input")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--layers", type=int, default=4, choices=range(1, 5), metavar="1..4")
    e.add_argument("--entropy", action="store_true", help="entropy-code the tokens (smaller, not per-packet)")
    e.add_argument("--refine-steps", type=integer_in(0, 1000), default=REFINE_STEPS, metavar="N",
                   help="steps refining each frame's tokens against what the decoder makes of them "
                        "(default: %(default)s; 0: the encoder network's tokens alone, faster)")
    e.add_argument("--reference-frame", type=integer_in(0, 2**31 - 1), default=None, metavar="K",
                   help="frame whose face is the reference (default: the first with a face)")
    e.add_argument("--no-audio", action="store_true", help="leave the input's audio out")
    e.add_argument("--from-audio", action="store_true",
                   help="generate the motion from the input's speech (a wav or a video's audio) instead of its "
                        "face (experimental: see docs/speech_mode.md)")
    e.add_argument("--seed", type=seed, default=None, help="with --from-audio: repeatable non-verbal motion")
    e.add_argument("--no-portrait", action="store_true",
                   help="keep the face private: store no picture of it (a decoder then needs --portrait)")
    e.add_argument("--no-keyframes", action="store_true",
                   help="store the reference picture only, no keyframes (they can take most of a short clip's bytes)")
    e.add_argument("--portrait", metavar="IMG",
                   help="with --from-audio: the photo to store as the caller's picture (without it, none)")
    e.set_defaults(func=_encode)
    i = sub.add_parser("info", help="what a .tok holds")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)
    d = sub.add_parser("decode", help=".tok -> landmarks and/or video of the caller (or of --portrait)")
    d.add_argument("input")
    d.add_argument("--portrait", metavar="IMG",
                   help="animate this face instead of the caller's picture in the .tok (any face: relative transfer)")
    d.add_argument("--landmarks", help="write target landmarks [T, 478, 3] (.npy)")
    d.add_argument("-o", "--output", help="write the rendered video (.mp4)")
    d.add_argument("--device", default="auto", type=device, help="auto, cpu, cuda or cuda:N (default: auto)")
    d.add_argument("--renderer", default="warp", choices=("warp", "neural"))
    d.add_argument("--size", type=frame_size, default=512,
                   help=f"frame side in pixels, a multiple of 8 in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}")
    d.add_argument("--layers", type=int, default=None, choices=range(1, 5), metavar="1..4",
                   help="decode only the first R residual layers")
    d.set_defaults(func=_decode)
    w = sub.add_parser("export-web", help="the browser decoder's weights and constants (and a portrait bundle)")
    w.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write decoder.bin into")
    w.add_argument("--portrait", help="also write portrait.bin, this portrait prepared for the page's renderer")
    w.add_argument("--size", type=int, default=512, help="rendered frame side (default: %(default)s)")
    w.set_defaults(func=_export_web)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad argument already reported on one line
        return int(e.code or 0)
    if argv is None:
        quiet_native_logs()
    try:
        with warnings_to_stderr(f"talk-codec {args.command}"):
            return int(args.func(args))
    except UsageError as e:
        print(f"talk-codec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TalkcodecError as e:
        print(f"talk-codec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"talk-codec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
