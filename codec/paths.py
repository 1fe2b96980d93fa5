"""Where talkcodec's files live (the shipped weights, this machine's cache), and how they are written.

Every file a tool writes goes through :func:`atomic_output`: it is written
beside its destination under a temporary name and renamed over it only once
complete, so a failure, a full disk or Ctrl-C never leaves half a file where a
good one was.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
"""The shipped weight files (a few MB, part of the package)."""


def cache_dir() -> Path:
    """Where derived data is cached: ``$TALKCODEC_CACHE``, else ``~/.cache/talkcodec``."""
    d = Path(os.environ.get("TALKCODEC_CACHE", Path.home() / ".cache" / "talkcodec"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without an exception.

    The temporary name keeps ``path``'s suffix, so writers that pick a format
    from it (PyAV, ``np.save``) write the right one. On an exception (Ctrl-C
    included) the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_output("model.npz") as tmp:
        ...     np.savez(tmp, w=w)
    """
    dest = Path(path)
    if dest.is_symlink():  # write the file the link names, and keep the link
        dest = dest.resolve()
    while True:
        tmp = dest.parent / f".{dest.stem}.{secrets.token_hex(4)}.tmp{dest.suffix}"
        try:  # created as open() would (umask applies), unlike mkstemp's 0600
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        if dest.exists():
            shutil.copymode(dest, tmp)
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
