"""talk-send: call a talk-recv with a camera or a video file.

Examples::

    talk-send --connect ws://127.0.0.1:8765 --token TOKEN --video samples/clip.mp4
    talk-send --connect ws://192.168.1.20:8765 --token TOKEN --camera 0 --mic

Exit status: 0 when the call ran to its end (or Ctrl-C), 1 when it failed or
was refused, 2 for bad arguments or unusable media.
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

from codec.errors import MediaError, TalkcodecError
from realtime.netem import NetemConfig
from realtime.peer import is_loopback, restrict_ice_to_loopback
from realtime.status import StatusLine, percentiles
from sender.call import Sender, SenderConfig
from sender.sources import CameraSource, FilePcm, FrameSource, MicPcm, PcmSource, VideoFileSource


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="talk-send", description="Send your face as motion tokens and your "
                                "voice as Opus to a talk-recv.")
    p.add_argument("--connect", default="ws://127.0.0.1:8765", metavar="URL",
                   help="the receiver's signaling address (default: %(default)s)")
    p.add_argument("--token", required=True, help="the room token talk-recv printed (or was given)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="capture camera N")
    src.add_argument("--video", type=Path, metavar="FILE", help="play a video file at real-time pace; "
                     "its soundtrack is sent too unless --audio, --mic or --no-audio")
    aud = p.add_mutually_exclusive_group()
    aud.add_argument("--audio", type=Path, metavar="FILE", help="send speech from this audio file")
    aud.add_argument("--mic", action="store_true", help="send speech from the microphone")
    aud.add_argument("--no-audio", action="store_true", help="send no speech")
    p.add_argument("--duration", type=float, metavar="S", help="end the call after S seconds")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="keep trying to reach the receiver for S seconds (it may still be starting)")
    p.add_argument("--loop", action="store_true", help="loop the video/audio file")
    p.add_argument("--layers", type=int, default=4, choices=(1, 2, 3, 4), help="residual layers at most")
    p.add_argument("--max-kbps", type=float, help="cap the motion rate (drops residual layers to fit)")
    p.add_argument("--entropy", action="store_true", help="range-code the tokens (smaller; a lost packet "
                   "spoils frames until the next keyframe)")
    p.add_argument("--audio-kbps", type=float, default=24.0, help="Opus bitrate (default: %(default)s)")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write what was sent at exit")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    test = p.add_argument_group("testing: impair the motion channel")
    test.add_argument("--netem-loss", type=float, default=0.0, metavar="P", help="drop packets with probability P")
    test.add_argument("--netem-jitter-ms", type=float, default=0.0, metavar="MS",
                      help="delay packets by MS ± MS milliseconds (reorders them)")
    test.add_argument("--netem-seed", type=int, help="seed of the impairments")
    return p


def _sources(args: argparse.Namespace) -> tuple[FrameSource, PcmSource | None]:
    video: FrameSource
    pcm: PcmSource | None = None
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


async def _run(args: argparse.Namespace, status: StatusLine) -> int:
    video, pcm = _sources(args)
    config = SenderConfig(url=args.connect, token=args.token, duration_s=args.duration, layers=args.layers,
                          max_kbps=args.max_kbps, entropy=args.entropy, audio_bitrate=int(args.audio_kbps * 1000),
                          netem=NetemConfig(args.netem_loss, args.netem_jitter_ms, args.netem_seed),
                          wait_s=args.wait)
    sender = Sender(config, video, pcm, status)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        reason = await sender.run(stop)
        status.message(f"call ended: {reason}")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if args.stats_json is not None:
            t = sender.totals
            args.stats_json.write_text(json.dumps({
                "frames_captured": t.frames_captured, "frames_encoded": t.frames_encoded,
                "frames_sent": t.frames_sent, "frames_no_face": t.frames_no_face,
                "motion_bytes": t.motion_bytes, "payload_bytes": t.payload_bytes, "layers": t.layers,
                "audio_bytes": sender.audio_bytes, "netem_dropped": sender.netem_dropped,
                "send_delay_ms": percentiles(t.send_delay_ms),
            }, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="talk-send: %(message)s")
    try:
        NetemConfig(args.netem_loss, args.netem_jitter_ms)
    except ValueError as e:
        print(f"talk-send: {e}", file=sys.stderr)
        return 2
    host = urlparse(args.connect).hostname or ""
    if is_loopback(host):
        restrict_ice_to_loopback()
    status = StatusLine(enabled=not args.quiet)
    try:
        return asyncio.run(_run(args, status))
    except MediaError as e:
        status.clear()
        print(f"talk-send: {e}", file=sys.stderr)
        return 2
    except TalkcodecError as e:
        status.clear()
        print(f"talk-send: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
