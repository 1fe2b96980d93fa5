"""talk-send: call a talk-recv with a camera or a video file.

Examples::

    talk-send --connect ws://127.0.0.1:8765 --token TOKEN --video samples/clip.mp4
    talk-send --connect ws://192.168.1.20:8765 --token TOKEN --camera 0 --mic
    talk-send --connect ws://192.168.1.20:8765 --token TOKEN --from-browser   # then open the printed page
    talk-send --connect ws://192.168.1.20:8765 --token TOKEN --audio-only --mic   # no camera: motion from speech
    talk-send --connect ws://192.168.1.20:8765 --token TOKEN --camera 0 --no-portrait   # keep your picture private

The receiver renders the caller's own picture: the crop of the reference frame,
sent at the start of the call, then a few keyframes (open mouth, closed eyes,
head turns), all paced behind the motion packets (--picture-kbps).

Exit status: 0 when the call ran to its end (or Ctrl-C), 1 when it failed, was
refused, or no face was found in any frame (nothing but "no face" was sent),
2 for bad arguments or unusable media.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from urllib.parse import urlparse

from codec.audio import OPUS_FRAME_MS, SPEECH_KBPS_RANGE, check_speech_settings
from codec.errors import MediaError, PortraitError, TalkcodecError, UsageError
from codec.logs import quiet_native_logs
from codec.paths import write_bytes_atomic
from codec.tokenizer import LIVE_REFINE_STEPS
from codec.validate import (
    MAX_JITTER_MS,
    ArgumentParser,
    audio_kbps,
    check_paths,
    integer_in,
    motion_kbps,
    number_in,
    one_layer_kbps,
    room_token,
    seconds,
    seed,
    wait_seconds,
)
from realtime.netem import NetemConfig
from realtime.peer import add_ice_arguments, ice_config, is_loopback, restrict_ice_to_loopback
from realtime.pictures import PacingConfig
from realtime.signaling import parse_listen
from realtime.status import StatusLine, percentiles
from sender.browser import BrowserCamera
from sender.call import Sender, SenderConfig
from sender.pictures import PictureConfig
from sender.sources import CameraSource, FilePcm, FrameSource, MicPcm, PcmSource, VideoFileSource

# How often the browser camera page hears what the call does.
STATUS_INTERVAL_S = 1.0


def _outage(text: str) -> tuple[float, float]:
    try:
        start, end = (wait_seconds(x) for x in text.split(":"))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected START:END in seconds, got {text!r}") from None
    if not start < end:
        raise argparse.ArgumentTypeError(f"START must come before END, got {text!r}")
    return start, end


def _frames_per_packet(text: str) -> int | None:
    if text == "auto":
        return None
    if text in ("1", "2", "3"):
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 1, 2, 3 or auto, got {text!r}")


def _burst(text: str) -> tuple[float, float]:
    try:
        length, every = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LENGTH_MS:EVERY_S, got {text!r}") from None
    if not (0 < length <= 60_000 and 0 < every <= 86_400):
        raise argparse.ArgumentTypeError(f"expected LENGTH_MS in (0, 60000] and EVERY_S in (0, 86400], got {text!r}")
    return length, every


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="talk-send", description="Send your face as motion tokens and your "
                                "voice as Opus to a talk-recv.")
    p.add_argument("--connect", default="ws://127.0.0.1:8765", metavar="URL",
                   help="the receiver's signaling address (default: %(default)s)")
    p.add_argument("--token", type=room_token, required=True,
                   help="the room token talk-recv printed (or was given)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=integer_in(0, 255), metavar="N", help="capture camera N")
    src.add_argument("--video", type=Path, metavar="FILE", help="play a video file at real-time pace; "
                     "its soundtrack is sent too unless --audio, --mic or --no-audio")
    src.add_argument("--from-browser", action="store_true",
                     help="serve a page (see --listen) whose camera and microphone this sender encodes; "
                     "the browser's leg is a normal video stream: keep it on this machine or the LAN")
    src.add_argument("--audio-only", action="store_true",
                     help="no camera: send motion generated from the speech (--mic or --audio FILE) "
                     "with the speech itself (experimental speech-driven mode)")
    aud = p.add_mutually_exclusive_group()
    aud.add_argument("--audio", type=Path, metavar="FILE", help="send speech from this audio file")
    aud.add_argument("--mic", action="store_true", help="send speech from the microphone")
    aud.add_argument("--no-audio", action="store_true", help="send no speech")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8766), metavar="HOST:PORT",
                   help="where --from-browser serves its camera page (default: 127.0.0.1:8766)")
    p.add_argument("--duration", type=seconds, metavar="S", help="end the call after S seconds")
    p.add_argument("--wait", type=wait_seconds, default=0.0, metavar="S",
                   help="keep trying to reach the receiver for S seconds (it may still be starting)")
    p.add_argument("--loop", action="store_true", help="loop the video/audio file")
    p.add_argument("--seed", type=seed, help="with --audio-only: repeatable generated motion")
    p.add_argument("--layers", type=int, default=4, choices=(1, 2, 3, 4), help="residual layers at most")
    p.add_argument("--max-kbps", type=motion_kbps, metavar="K",
                   help=f"cap the motion rate (drops residual layers to fit; at least {one_layer_kbps():.1f}, "
                   "one layer's rate)")
    p.add_argument("--max-wire-kbps", type=float, metavar="K",
                   help="cap the motion's rate on the wire, transport headers included: met by putting more "
                   "frames in each message (with --frames-per-packet auto), then by dropping layers")
    p.add_argument("--frames-per-packet", type=_frames_per_packet, default=1, metavar="1|2|3|auto",
                   help="motion frames per data-channel message: each message costs ~97 bytes of SCTP, DTLS "
                   "and UDP/IP headers, each frame more waits 40 ms longer; auto: the fewest that fit "
                   "--max-wire-kbps (default: 1)")
    p.add_argument("--entropy", action="store_true", help="range-code the tokens (smaller; a lost packet "
                   "spoils frames until the next keyframe)")
    p.add_argument("--refine-steps", type=integer_in(0, 1000), default=LIVE_REFINE_STEPS, metavar="N",
                   help="steps refining each frame's tokens against what the decoder makes of them, about 1 ms "
                   "of CPU each and at most 10 ms a frame (default: %(default)s; 0: the encoder network's tokens "
                   "alone)")
    p.add_argument("--audio-kbps", type=audio_kbps, default=24.0, metavar="K",
                   help=f"Opus bitrate of the speech, {SPEECH_KBPS_RANGE[0]:g}..{SPEECH_KBPS_RANGE[1]:g} "
                   "(default: %(default)s; from 9 Opus codes speech as wideband SILK)")
    p.add_argument("--audio-ms", type=int, default=20, choices=OPUS_FRAME_MS,
                   help="speech per Opus packet: longer packets cost fewer header bytes, and as much more "
                   "latency (default: %(default)s)")
    pic = p.add_argument_group("the caller's picture (the receiver animates it unless it was given --portrait)")
    pic.add_argument("--no-portrait", action="store_true",
                     help="keep your picture private: send no picture of your face (the receiver then "
                     "needs a --portrait of its own)")
    pic.add_argument("--portrait", type=Path, metavar="IMG",
                     help="with --audio-only: the photo to send as your picture (without it, none)")
    pic.add_argument("--no-keyframes", action="store_true",
                     help="send the reference picture only, no keyframes (open mouth, closed eyes, turns)")
    pic.add_argument("--picture-kbps", type=float, default=16.0, metavar="K",
                     help="pictures' share of the link, paced behind the motion packets (default: %(default)s)")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write what was sent at exit")
    add_ice_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no live status line")
    test = p.add_argument_group("testing: impair the motion channel")
    test.add_argument("--netem-loss", type=number_in(0.0, 0.99), default=0.0, metavar="P",
                      help="drop packets with probability P")
    test.add_argument("--netem-jitter-ms", type=number_in(0.0, MAX_JITTER_MS), default=0.0, metavar="MS",
                      help="delay packets by MS ± MS milliseconds (reorders them)")
    test.add_argument("--netem-seed", type=seed, help="seed of the impairments")
    test.add_argument("--netem-outage", type=_outage, metavar="START:END",
                      help="drop every motion packet sent between START and END seconds of the call "
                      "(speech goes on; see talk-recv --animate-from-audio)")
    test.add_argument("--link-kbps", type=float, metavar="K",
                      help="send every data-channel message (motion, pictures, control) through a simulated "
                      "link of K kbps, queueing as a narrow uplink does")
    test.add_argument("--link-overhead", type=int, default=0, metavar="B",
                      help="bytes the simulated link adds per message (headers below the data channel; "
                      "about 93 over IPv4); default 0: data-channel bytes only")
    test.add_argument("--netem-burst", type=_burst, metavar="LENGTH_MS:EVERY_S",
                      help="also drop every motion packet for LENGTH_MS at random moments, EVERY_S seconds "
                      "apart on average (e.g. 300:5)")
    test.add_argument("--save-stream", type=Path, metavar="OUT.tok",
                      help="also write the motion as sent (before any impairment) to a .tok file, to compare "
                      "with what the receiver showed (talk-recv --save-motion)")
    return p


def _sources(args: argparse.Namespace) -> tuple[FrameSource, PcmSource | None]:
    video: FrameSource
    pcm: PcmSource | None = None
    if args.audio_only:
        # lazy: pulls in torch and CTranslate2; only --audio-only needs them
        from sender.speech import SpeechMotionSource

        speech: PcmSource = FilePcm(args.audio, loop=args.loop) if args.audio is not None else MicPcm()
        source = SpeechMotionSource(speech, seed=args.seed)
        return source, source.pcm  # the generator hears exactly the speech that is sent
    if args.video is not None:
        vf = VideoFileSource(args.video, loop=args.loop)
        video = vf
        if not (args.audio or args.mic or args.no_audio) and vf.has_audio:
            pcm = FilePcm(args.video, loop=args.loop)
    else:
        video = CameraSource(args.camera)
    if args.audio is not None:
        pcm = FilePcm(args.audio, loop=args.loop)
    elif args.mic:
        pcm = MicPcm()
    return video, pcm


async def _browser_camera(args: argparse.Namespace, stop: asyncio.Event) -> BrowserCamera | None:
    """Serves the camera page and waits for a browser; None if stopped first."""
    host, port = args.listen
    camera = BrowserCamera(host, port, args.token)
    await camera.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    print(f"talk-send: open http://{shown}:{camera.server.bound_port}/?token={args.token} in a browser "
          "on this machine (browsers give the camera to localhost or https pages only)", flush=True)
    waits = [asyncio.create_task(camera.connected.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    if not camera.connected.is_set():
        await camera.close()
        return None
    return camera


async def _show_on_page(camera: BrowserCamera, sender: Sender) -> None:
    """Tells the browser page, once a second, what the call does with its camera."""
    last_bytes, last_frames, last_encoded, last_no_face = 0, 0, 0, 0
    while True:
        await asyncio.sleep(STATUS_INTERVAL_S)
        t = sender.totals
        sent, no_face = t.frames_sent - last_frames, t.frames_no_face - last_no_face
        encoded = t.frames_encoded - last_encoded
        kbps = (t.motion_bytes - last_bytes) * 8 / 1000 / STATUS_INTERVAL_S
        last_bytes, last_frames, last_no_face = t.motion_bytes, t.frames_sent, t.frames_no_face
        last_encoded = t.frames_encoded
        if not sender.accepted:
            state = "waiting for a face" if t.frames_encoded and sender.link is not None else "calling the receiver"
        elif encoded and no_face == encoded:
            state = "no face in view: the receiver shows the portrait at rest"
        else:
            state = f"{sent / STATUS_INTERVAL_S:.0f} fps of motion to {sender.config.url}"
        camera.publish({"sending": sender.accepted and sent > no_face, "state": state,
                        "motion_kbps": kbps, "layers": t.layers})


async def _run(args: argparse.Namespace, status: StatusLine) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    camera: BrowserCamera | None = None
    sender: Sender | None = None
    page: asyncio.Task[None] | None = None
    try:
        if args.from_browser:
            camera = await _browser_camera(args, stop)
            if camera is None:
                return 0
            status.message("a browser connected its camera")
            video: FrameSource = camera.video
            pcm: PcmSource | None = None if args.no_audio else (
                FilePcm(args.audio, loop=args.loop) if args.audio is not None else camera.pcm)
        else:
            video, pcm = _sources(args)
        config = SenderConfig(url=args.connect, token=args.token, duration_s=args.duration, layers=args.layers,
                              max_kbps=args.max_kbps, max_wire_kbps=args.max_wire_kbps,
                              frames_per_packet=args.frames_per_packet, entropy=args.entropy,
                              refine_steps=args.refine_steps,
                              audio_bitrate=int(args.audio_kbps * 1000), audio_frame_ms=args.audio_ms,
                              netem=_netem(args), save_stream=args.save_stream,
                              wait_s=args.wait, ice=ice_config(args),
                              pictures=PictureConfig(send=not args.no_portrait, photo=args.portrait,
                                                     keyframes=not args.no_keyframes,
                                                     pacing=PacingConfig(args.picture_kbps)),
                              link_kbps=args.link_kbps, link_overhead=args.link_overhead)
        sender = Sender(config, video, pcm, status)
        if camera is not None:
            page = asyncio.create_task(_show_on_page(camera, sender), name="camera-page")
        reason = await sender.run(stop)
        status.message(f"call ended: {reason}")
        t = sender.totals
        if t.frames_encoded and t.frames_no_face == t.frames_encoded:
            status.clear()
            print(f"talk-send: no face found in any of the {t.frames_encoded} frames: nothing but the "
                  "portrait at rest reached the receiver (face the camera, or use a video showing a face)",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if page is not None:
            page.cancel()
            await asyncio.gather(page, return_exceptions=True)
        if camera is not None:
            await camera.close()
        if args.stats_json is not None and sender is not None:
            stats = sender.stats()
            stats["pictures"] = _picture_stats(sender)
            stats["link"] = None if sender.shaped is None else {
                "kbps": args.link_kbps, "overhead_bytes": args.link_overhead,
                "delay_ms": {k: percentiles(v) for k, v in sender.shaped.delays_ms.items()},
                "trace": [[round(t * 1000, 2), kind, n] for t, kind, n in sender.shaped.trace]}
            stats.update(sender.wire_stats())
            write_bytes_atomic(args.stats_json, json.dumps(stats, indent=2).encode() + b"\n")


def _netem(args: argparse.Namespace) -> NetemConfig:
    """The impairments asked for. Raises ValueError for impossible ones."""
    burst_ms, burst_every_s = args.netem_burst or (0.0, 0.0)
    return NetemConfig(args.netem_loss, args.netem_jitter_ms, args.netem_seed, args.netem_outage,
                       burst_ms, burst_every_s)


def _picture_stats(sender: Sender) -> dict[str, object]:
    """What the caller's pictures cost (``--stats-json``)."""
    p = sender.pictures.totals
    return {"sent": sender.pictures.sends, "reference_bytes": p.reference_bytes, "keyframe_bytes": p.keyframe_bytes,
            "keyframes": p.keyframes, "keyframes_over_budget": p.keyframes_over_budget,
            "keyframe_budget": sender.config.pictures.keyframe_budget, "message_bytes": p.sent_bytes,
            "messages": p.messages, "unsent_bytes": sender.pictures.outbox.pending,
            "picture_kbps": sender.config.pictures.pacing.kbps, "reference_media_ms": p.reference_media_ms,
            "reference_box": p.reference_box, "reference_ready_s": p.reference_ready_s,
            "reference_sent_s": p.reference_sent_s}


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
    logging.basicConfig(level=logging.WARNING, format="talk-send: %(message)s")
    try:
        _netem(args)
        ice_config(args)
        check_speech_settings(args.audio_kbps, args.audio_ms)
        if args.max_wire_kbps is not None and not args.max_wire_kbps > 0:
            raise ValueError(f"--max-wire-kbps must be positive, got {args.max_wire_kbps:g}")
    except ValueError as e:
        print(f"talk-send: {e}", file=sys.stderr)
        return 2
    if args.audio_only and args.audio is None and not args.mic:
        print("talk-send: --audio-only needs speech to animate: --mic or --audio FILE", file=sys.stderr)
        return 2
    if args.portrait is not None and not args.audio_only:
        print("talk-send: --portrait goes with --audio-only (a camera sends its own reference frame)",
              file=sys.stderr)
        return 2
    if args.portrait is not None and args.no_portrait:
        print("talk-send: --portrait and --no-portrait contradict each other", file=sys.stderr)
        return 2
    if not args.picture_kbps > 0 or (args.link_kbps is not None and not args.link_kbps > 0) or args.link_overhead < 0:
        print("talk-send: --picture-kbps and --link-kbps must be > 0, --link-overhead >= 0", file=sys.stderr)
        return 2
    if args.seed is not None and not args.audio_only:
        print("talk-send: --seed applies to --audio-only (the generated motion) only", file=sys.stderr)
        return 2
    try:
        check_paths({"--stats-json": args.stats_json, "--save-stream": args.save_stream},
                    {"--video": args.video, "--audio": args.audio, "--portrait": args.portrait})
    except UsageError as e:
        print(f"talk-send: {e}", file=sys.stderr)
        return 2
    host = urlparse(args.connect).hostname or ""
    # Only when every peer of this process is here: the receiver, and the browser if there is one.
    if is_loopback(host) and (not args.from_browser or is_loopback(args.listen[0])):
        restrict_ice_to_loopback()
    # lazy: torch takes seconds to import; loaded only when this runs
    import torch

    # The tokenizer runs one frame at a time: a second torch thread only adds overhead, and the
    # other core is better left to face tracking and the call (measured with bench.measure.viewers_load).
    torch.set_num_threads(1)
    status = StatusLine(enabled=not args.quiet)
    try:
        return asyncio.run(_run(args, status))
    except (MediaError, PortraitError) as e:
        status.clear()
        print(f"talk-send: {e}", file=sys.stderr)
        return 2
    except TalkcodecError as e:
        status.clear()
        print(f"talk-send: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except OSError as e:  # writing --stats-json at exit
        status.clear()
        print(f"talk-send: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
