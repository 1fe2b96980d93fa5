"""Keeps native libraries' log lines off a command-line tool's terminal.

MediaPipe and TensorFlow Lite write C++ log lines (``W0000 ...``, ``INFO:
Created TensorFlow Lite XNNPACK delegate``) straight to file descriptor 2, some
from their own threads. A user who gets a one-line error must not see them, so
the tools route descriptor 2 through a filter; Python's own ``sys.stderr`` keeps
writing to the terminal directly and loses nothing at exit.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_NATIVE = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d\d|INFO: Created TensorFlow|WARNING: All log messages before absl)")
_installed = False


def quiet_native_logs() -> None:
    """Filters MediaPipe's native log lines out of descriptor 2 (idempotent; no-op if it cannot)."""
    global _installed
    if _installed or os.environ.get("TALKCODEC_NATIVE_LOGS"):
        return
    try:
        saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = open(saved, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    _installed = True

    def pump() -> None:
        buf = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not _NATIVE.match(line):
                    os.write(saved, line + b"\n")

    threading.Thread(target=pump, name="native-log-filter", daemon=True).start()


@contextmanager
def warnings_to_stderr(prefix: str) -> Iterator[None]:
    """Shows talkcodec's logged warnings on ``sys.stderr`` as ``PREFIX: warning: MESSAGE`` while the block runs.

    Library code reports what a user should know but need not stop for (an
    input that ended early, a packet concealed) through :mod:`logging`; a tool
    wraps its work in this so those lines reach its user, one per warning.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{prefix}: warning: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
