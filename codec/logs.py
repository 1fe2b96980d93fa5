"""Keeps native libraries' log lines off a command-line tool's terminal.

MediaPipe and TensorFlow Lite write C++ log lines (``W0000 ...``, ``INFO:
Created TensorFlow Lite XNNPACK delegate``) straight to file descriptor 2, some
from their own threads. A user who gets a one-line error must not see them, so
the tools route descriptor 2 through a filter; Python's own ``sys.stderr`` keeps
writing to the terminal directly and loses nothing at exit.
"""

from __future__ import annotations

import os
import re
import sys
import threading

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
