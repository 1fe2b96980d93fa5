"""``talk-train``: reproduces every shipped weight file from the corpus.

    talk-train template     canonical face template      codec/data/template.npz
    talk-train tokenizer    GRFSQ motion tokenizer       codec/data/tokenizer.pt
    talk-train entropy      entropy-coding context model codec/data/entropy.npz
    talk-train renderer     neural rendering stage       codec/data/renderer.pt
    talk-train renderer-pack its data for a GPU machine  .gpu/train.npz (see codec/train/refiner_pack.py)
    talk-train renderer-gpu the refiner on one GPU       its --out (see codec/train/refiner_gpu.py)
    talk-train speech       speech units and generator   codec/data/speech_*.{npz,pt}

Run them in this order: each later model reads the earlier ones.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from codec.errors import TalkcodecError, UsageError
from codec.logs import quiet_native_logs
from codec.train import entropy, refiner, refiner_gpu, refiner_pack, speech, template, tokenizer
from codec.validate import ArgumentParser

# Each subcommand's trainer: main(argv) -> exit code.
TRAINERS: dict[str, Callable[[list[str]], int]] = {
    "template": template.main,
    "tokenizer": tokenizer.main,
    "entropy": entropy.main,
    "renderer": refiner.main,
    "renderer-pack": refiner_pack.main,
    "renderer-gpu": refiner_gpu.main,
    "speech": speech.main,
}


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(prog="talk-train", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(TRAINERS))
    try:
        args, rest = parser.parse_known_args(argv)
    except SystemExit as e:  # --help, or a bad argument already reported on one line
        return int(e.code or 0)
    if from_shell:  # not when called in-process (tests): it rebinds descriptor 2
        quiet_native_logs()
    try:
        return int(TRAINERS[args.model](rest) or 0)
    except SystemExit as e:  # the trainer's own arguments: --help, or one line on a bad one
        return int(e.code or 0)
    except UsageError as e:
        print(f"talk-train {args.model}: error: {e}", file=sys.stderr)
        return 2
    except (TalkcodecError, ValueError, OSError) as e:
        print(f"talk-train {args.model}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # nothing was written: outputs appear only once training succeeded
        return 130


if __name__ == "__main__":
    sys.exit(main())
