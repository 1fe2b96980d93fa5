"""talk-bench: talkcodec against H.264 and VP8 at matched bitrates (the run itself: :mod:`bench.benchmark`).

    talk-bench --out results/            # held-out corpus clips
    talk-bench --clips DIR --out OUT --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.benchmark import QUICK, BenchConfig, find_clips, has_cuda, run
from codec.errors import TalkcodecError
from codec.logs import quiet_native_logs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talk-bench", description=__doc__.splitlines()[0])
    p.add_argument("--clips", help="folder of clips (all videos in it) or one clip; default: the corpus's "
                                   "held-out clips")
    p.add_argument("--out", required=True, help="output folder (bench.json, rd.png, strips/, report.md)")
    p.add_argument("--quick", action="store_true", help="2 clips x 100 frames, 1x/2x/4x/8x targets only, a "
                                                        "coarser ladder (512/256/128/64 px), the neural "
                                                        "renderer at 4 layers only and only on a GPU")
    p.add_argument("--device", default="auto", help="render device: auto, cpu, cuda (default auto); without a GPU "
                                                    "the neural renderer runs at 4 layers only")
    p.add_argument("--latency", action="store_true",
                   help="time talkcodec one frame at a time (sender: track + encode; receiver: render) "
                        "instead of amortized over batches, and a 10 s loopback call with the real "
                        "talk-send and talk-recv (capture-to-rendered-frame latency p50/p95)")
    p.add_argument("--frames", type=int, help="frames scored per clip, after the first 5 s that keyframes come from "
                   "(default: all; --quick: 100)")
    args = p.parse_args(argv)
    if argv is None:
        quiet_native_logs()
    cfg = QUICK if args.quick else BenchConfig()
    cfg = BenchConfig(**{**cfg.__dict__, "device": args.device, "latency": args.latency,
                         "max_frames": args.frames or cfg.max_frames})
    if cfg.max_frames is not None and cfg.max_frames < 2:
        p.error("--frames must be at least 2")
    if not has_cuda(args.device):
        # The neural renderer takes about 60 ms a frame on a CPU thread (5x the warp): too slow for --quick,
        # and the full run renders it at 4 layers only.
        cfg = BenchConfig(**{**cfg.__dict__, "neural_layers": () if args.quick else (4,)})
    try:
        paths = find_clips(args.clips)
        doc = run(paths, Path(args.out), cfg)
    except (TalkcodecError, ValueError, OSError) as e:
        print(f"talk-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("talk-bench: interrupted", file=sys.stderr)
        return 130
    s = doc["summary"]["at_talkcodec_bitrate"]
    tc, h = s.get("talkcodec") or {}, s.get("h264") or {}
    print(f"wrote {args.out}/bench.json, rd.png, report.md, strips/ ({len(doc['records'])} records); "
          f"NME talkcodec {tc.get('nme')}, H.264 {h.get('nme')} at {tc.get('kbps')} kbps; "
          f"H.264 equivalent {s.get('h264_equivalent_kbps')} kbps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
