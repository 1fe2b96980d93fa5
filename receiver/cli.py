"""talk-recv: wait for a talk-send, and re-render its face at 25 fps: on the caller's own picture, or a portrait.

The sender sends the picture its motion is relative to (its reference frame)
at the start of the call; until it has arrived, or when the caller keeps it
private (``talk-send --no-portrait``), a neutral placeholder is shown.
``--portrait IMG`` animates that face instead, for every caller (avatar mode).

Examples::

    talk-recv --record call.mp4
    talk-recv --portrait samples/portrait.jpg --record call.mp4
    talk-recv --listen 0.0.0.0:8765 --token TOKEN --portrait me.jpg --show
    talk-recv --listen 0.0.0.0:8765 --serve-browser   # browsers watch at http://HOST:8765/?token=TOKEN

Exit status: 0 after Ctrl-C, ``--once`` or ``--duration``; 1 when it cannot
listen; 2 for bad arguments or an unusable portrait.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from codec.errors import MediaError, PortraitError, TalkcodecError, UsageError
from codec.logs import quiet_native_logs
from codec.validate import (
    MAX_FRAME_SIZE,
    MAX_JITTER_MS,
    MIN_FRAME_SIZE,
    ArgumentParser,
    check_paths,
    check_video_output,
    device,
    frame_size,
    jitter_ms,
    number_in,
    room_token,
    seconds,
    seed,
)
from realtime.peer import add_ice_arguments, ice_config, is_loopback, restrict_ice_to_loopback
from realtime.pictures import PacingConfig
from realtime.signaling import new_token, parse_listen
from realtime.status import StatusLine
from realtime.webpage import BINARY
from receiver.call import DEFAULT_JITTER_MS, MAX_HEADROOM_MS
from receiver.fallback import FallbackConfig
from receiver.listener import Receiver, ReceiverConfig
from receiver.placeholder import PlaceholderRenderer
from receiver.playout import MotionLog
from receiver.recording import RecordingConfig, RecordingProcess, check_writable
from receiver.relay import TokenRelay
from receiver.sinks import Window
from receiver.viewers import Viewers

# codec.render.pipeline.RENDERERS, named here so that parsing the arguments needs no torch (a test keeps them equal).
RENDERER_NAMES = ("warp", "neural")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="talk-recv", description="Receive a talk-send call and re-render the "
                       "sender's face on a portrait.")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8765), metavar="HOST:PORT",
                   help="signaling address (default: 127.0.0.1:8765; 0.0.0.0:8765 for other machines)")
    p.add_argument("--token", type=room_token,
                   help="room token senders must know (default: a new one, printed)")
    p.add_argument("--portrait", type=Path, metavar="IMAGE",
                   help="animate this face for every caller (any face: the caller's motion is transferred); "
                   "default: the caller's own picture, sent at the start of the call")
    p.add_argument("--show", action="store_true", help="show the call in a window (needs a display)")
    p.add_argument("--serve-browser", action="store_true",
                   help="serve a viewer page on the signaling port: browsers that open "
                   "http://HOST:PORT/?token=TOKEN watch the call")
    p.add_argument("--page-keyframe-kbps", type=number_in(1.0, 10_000.0, "kbps"), default=PacingConfig().kbps,
                   metavar="K", help="with --serve-browser: the pace of the caller's keyframes to each token-mode "
                   "page, behind its motion packets, as talk-send's --picture-kbps (default: %(default)s)")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="record rendered video and received speech")
    p.add_argument("--duration", type=seconds, metavar="S", help="exit S seconds after the first call starts")
    p.add_argument("--once", action="store_true", help="exit when the first call ends")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write call statistics at exit")
    p.add_argument("--jitter-ms", type=jitter_ms, default=DEFAULT_JITTER_MS, metavar="MS",
                   help=f"least jitter-buffer delay, 0..{MAX_JITTER_MS:g}; it grows with the jitter seen, "
                   f"up to {MAX_HEADROOM_MS:g} ms if less was asked (default: %(default)s)")
    p.add_argument("--device", type=device, default="auto",
                   help="renderer device: auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--size", type=frame_size, default=512,
                   help=f"rendered frame side, a multiple of 8 in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE} "
                   "(default: %(default)s)")
    p.add_argument("--renderer", default="warp", choices=RENDERER_NAMES,
                   help="renderer of codec.render: warp (default) or neural")
    p.add_argument("--no-smoothing", dest="smoothing", action="store_false",
                   help="show decoded motion as it is, one frame sooner (40 ms), with more shimmer")
    p.add_argument("--animate-from-audio", action="store_true",
                   help="when motion packets stop (no packet for 200 ms) while speech still arrives, animate "
                   "the portrait from the received speech, and blend back when motion returns "
                   "(experimental speech-driven mode; costs about half a CPU core during the call)")
    p.add_argument("--seed", type=seed, help="with --animate-from-audio: repeatable generated motion")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    add_ice_arguments(p)
    p.add_argument("--save-motion", type=Path, metavar="OUT.npz",
                   help="also write every tick's target landmarks (media time, fresh or concealed) at exit, to "
                   "compare with what was sent (talk-send --save-stream); memory grows with the call")
    return p


async def _serve(receiver: Receiver) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await receiver.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _caller_renderer(portrait: Any, config: Any) -> Any:
    """The renderer of a caller's own picture."""
    # lazy: pulls in torch; only reached once torch is loaded
    from codec.render.pipeline import Renderer

    return Renderer(portrait, config)


def _placeholder_portrait(placeholder: PlaceholderRenderer) -> Any:
    """The placeholder at rest as a portrait (its lines then move with the warp)."""
    # lazy: pulls in torch; only reached once torch is loaded
    from codec.motion import motion_from_landmarks
    from codec.render.portrait import Portrait

    lm = placeholder.rest
    size = float(placeholder.size)
    return Portrait(placeholder.render(lm)[0], lm, motion_from_landmarks(lm), (0.0, 0.0, size, size))


def _warm_up(config: Any, placeholder: PlaceholderRenderer) -> None:
    """Builds and runs a renderer once, so that the caller's picture is on screen without a compile's delay."""
    # lazy: pulls in torch; only reached once torch is loaded
    from codec.render.pipeline import Renderer

    Renderer(_placeholder_portrait(placeholder), config).render(placeholder.rest)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting (importing torch, loading models)
        return 130


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad argument already reported on one line
        return int(e.code or 0)
    if argv is None:
        quiet_native_logs()  # before logging binds sys.stderr
    logging.basicConfig(level=logging.WARNING, format="talk-recv: %(message)s")
    if args.seed is not None and not args.animate_from_audio:
        print("talk-recv: --seed applies to --animate-from-audio (the generated motion) only", file=sys.stderr)
        return 2
    try:
        if args.record is not None:
            check_video_output(args.record, "--record")
        check_paths({"--record": args.record, "--stats-json": args.stats_json, "--save-motion": args.save_motion},
                    {"--portrait": args.portrait})
    except UsageError as e:
        print(f"talk-recv: {e}", file=sys.stderr)
        return 2
    try:
        ice = ice_config(args)
    except ValueError as e:
        print(f"talk-recv: {e}", file=sys.stderr)
        return 2
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    # Frames are rendered one at a time: a second torch thread shortens a 512 px frame by 5% on
    # the CPU and costs 70% more CPU, which the call, the viewers' encoder and the speech
    # generator need more (measured on 2 cores; bench.measure.viewers_load).
    torch.set_num_threads(1)
    host, port = args.listen
    token = args.token or new_token()
    shown = "HOST" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    if not args.token:
        print(f"talk-recv: room token {token}\n"
              f"talk-recv: senders connect with: talk-send --connect ws://{shown}:{port} --token {token} "
              "--camera 0 --mic", flush=True)
    if args.serve_browser:
        print(f"talk-recv: browsers watch at http://{shown}:{port}/?token={token}", flush=True)
    if is_loopback(host):
        restrict_ice_to_loopback()
    status = StatusLine(enabled=not args.quiet)
    recorder: RecordingProcess | None = None
    try:
        # lazy: pulls in torch; the arguments are checked first
        from codec.render.pipeline import RenderConfig, Renderer
        from codec.render.portrait import prepare_portrait
        from codec.webexport import decoder_assets, keyframe_bundle, portrait_bundle

        config = RenderConfig(device=args.device, size=args.size, renderer=args.renderer)
        make_renderer = None
        placeholder = None
        renderer: Any
        if args.portrait is not None:
            portrait = prepare_portrait(args.portrait)
            renderer = Renderer(portrait, config)
            rest_landmarks = portrait.landmarks
        else:
            renderer = placeholder = PlaceholderRenderer(args.size)
            make_renderer = functools.partial(_caller_renderer, config=config)
            rest_landmarks = placeholder.rest
            _warm_up(config, placeholder)
        if args.record is not None:
            # The recording renders what the live view skips in its own process, with its own renderer.
            first = (functools.partial(PlaceholderRenderer, args.size) if placeholder is not None
                     else functools.partial(Renderer, portrait, config))
            recorder = RecordingProcess(RecordingConfig(check_writable(args.record), args.size, first))
        fallback = None
        if args.animate_from_audio:
            # lazy: pulls in torch and CTranslate2; only the speech-driven mode needs them
            from codec.speech import new_stream

            fallback = FallbackConfig(seed=args.seed)
            new_stream(args.seed)  # loads the speech models now, not when the first call needs them
        viewers, files = None, None
        if args.serve_browser:
            rest = renderer.render(rest_landmarks[None].astype(np.float32))[0]
            # Browsers with WebGL2 decode the call themselves from these (token mode): the decoder's
            # weights, and the portrait they draw on (the placeholder's, captionless: the page says why).
            files = {"/decoder.bin": (BINARY, decoder_assets())}
            shown = Renderer(_placeholder_portrait(PlaceholderRenderer(args.size, "")), config) \
                if placeholder is not None else renderer
            viewers = Viewers(rest, TokenRelay(portrait_bundle(shown), portrait_bundle if make_renderer else None,
                                               keyframe_bundle if make_renderer else None, args.page_keyframe_kbps))
    except (PortraitError, MediaError, ValueError) as e:
        print(f"talk-recv: {e}", file=sys.stderr)
        return 2
    except TalkcodecError as e:  # the speech models are not installed
        print(f"talk-recv: {e}", file=sys.stderr)
        return 1
    save_motion = MotionLog() if args.save_motion is not None else None
    receiver = Receiver(ReceiverConfig(host, port, token, args.jitter_ms, args.once, args.duration, fallback, ice,
                                       args.smoothing),
                        rest_landmarks, renderer, recorder, Window() if args.show else None, status, viewers,
                        make_renderer=make_renderer, placeholder=placeholder, files=files,
                        save_motion=save_motion)
    code = 0
    try:
        asyncio.run(_serve(receiver))
    except TalkcodecError as e:
        status.clear()
        print(f"talk-recv: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        if receiver.window is not None:
            receiver.window.close()
        if args.stats_json is not None:
            try:
                receiver.stats.write_json(args.stats_json)
            except OSError as e:
                print(f"talk-recv: cannot write --stats-json: {e}", file=sys.stderr)
                code = 1
        if save_motion is not None:
            try:
                save_motion.save(args.save_motion)
            except OSError as e:
                print(f"talk-recv: cannot write --save-motion: {e}", file=sys.stderr)
                code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
