"""``talk-train``: reproduces every shipped weight file from the corpus.

    talk-train template     canonical face template      codec/data/template.npz
    talk-train tokenizer    GRFSQ motion tokenizer       codec/data/tokenizer.pt
    talk-train entropy      entropy-coding context model codec/data/entropy.npz
    talk-train renderer     neural rendering stage       codec/data/renderer.pt
    talk-train speech       speech units and generator   codec/data/speech_*.{npz,pt}

Run them in this order: each later model reads the earlier ones.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subcommand's trainer, imported only when chosen: "module:function(argv) -> int".
TRAINERS = {
    "template": "codec.template:main",
    "tokenizer": "codec.tokenizer_train:main",
    "entropy": "codec.entropy:main",
    "renderer": "codec.neural_train:main",
    "speech": "codec.speech.train:main",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="talk-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(TRAINERS))
    args, rest = parser.parse_known_args(argv)
    from codec.logs import quiet_native_logs

    quiet_native_logs()
    module, func = TRAINERS[args.model].split(":")
    from codec.errors import TalkcodecError

    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except TalkcodecError as e:
        print(f"talk-train {args.model}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
