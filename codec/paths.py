"""Where talkcodec's files live: the shipped weights (``codec/data``) and this machine's cache of derived data."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
"""The shipped weight files (a few MB, part of the package)."""


def cache_dir() -> Path:
    """Where derived data is cached: ``$TALKCODEC_CACHE``, else ``~/.cache/talkcodec``."""
    d = Path(os.environ.get("TALKCODEC_CACHE", Path.home() / ".cache" / "talkcodec"))
    d.mkdir(parents=True, exist_ok=True)
    return d
