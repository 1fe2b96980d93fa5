"""The command-line tools' entry points (``[project.scripts]``), not part of the codec itself.

Each imports its tool inside a guard: importing torch, aiortc and MediaPipe
takes seconds, and a Ctrl-C in that time would otherwise end in a traceback
from the middle of some library's import. With the guard it exits 130, as
Ctrl-C does once the tool runs (the tools handle it themselves from then on).
The tools are named by module path so that this module imports none of them
until asked.
"""

from __future__ import annotations

import importlib
import sys


def interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a Ctrl-C or was caused by one.

    A Ctrl-C that lands inside a native module's initialisation (MediaPipe's,
    imported lazily when the first portrait is prepared) surfaces as an
    ``ImportError("initialization failed")`` raised from the KeyboardInterrupt.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _run(module: str) -> int:
    try:
        return int(importlib.import_module(module).main() or 0)
    except BaseException as exc:
        if isinstance(exc, SystemExit) or not interrupted(exc):
            raise
        print("", file=sys.stderr)  # the ^C the terminal echoed ends its line
        return 130


def talk_codec() -> int:
    return _run("codec.cli")


def talk_train() -> int:
    return _run("codec.train.cli")


def talk_send() -> int:
    return _run("sender.cli")


def talk_recv() -> int:
    return _run("receiver.cli")


def talk_bench() -> int:
    return _run("bench.cli")
