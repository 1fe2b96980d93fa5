"""Counting what a receiver throws away, logging each kind once.

A hostile or broken peer can send thousands of bad packets a second; each
kind of fault is worth one log line and a count, not a flood.
"""

from __future__ import annotations

import logging
from collections import Counter


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
            self._log.warning("dropped %s (%s)%s; further ones are counted, not logged",
                              self._what, kind, f": {detail}" if detail else "")
        self.counts[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())
