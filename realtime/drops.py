"""Counting what a receiver throws away, logging each kind once.

A hostile or broken peer can send thousands of bad packets a second; each
kind of fault is worth one log line and a count, not a flood.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

_VALUES = re.compile(r"b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"|0x[0-9a-fA-F]+|\d+")


def error_kind(error: Exception) -> str:
    """An error's message with its numbers and byte strings blanked out.

    Errors of one kind (``packet 17 truncated: 5 bytes``) then share a key,
    so a flood of them is one log line, while different faults each get theirs.
    """
    first = str(error).split(":")[0]
    return _VALUES.sub("#", first)[:80]


class Drops:
    """Counts dropped inputs by kind; logs the first of each kind.

    Args:
        log: where the first occurrence of each kind is reported.
        what: what is being dropped, for the log line ("motion packet").
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self.counts: Counter[str] = Counter()

    def note(self, kind: str, detail: str = "") -> None:
        if not self.counts[kind]:
            self._log.warning("dropped %s: %s (more of this kind are counted, not logged)",
                              self._what, detail or kind)
        self.counts[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())
