"""Checks of what a user types, in one place for every command-line tool.

Each ``argparse`` type below refuses a bad value at parse time with a message
naming the accepted range, so ``talk-codec``, ``talk-send``, ``talk-recv`` and
``talk-train`` agree on what a frame size, a bitrate or a duration may be, and
a typo costs one line instead of a traceback after minutes of work::

    p.add_argument("--size", type=frame_size, default=512)
    p.add_argument("--audio-kbps", type=audio_kbps, default=24.0)

The path checks run right after parsing, before any slow work: an output's
folder must exist and be writable (so a call's statistics are not lost at
exit), and no output may be a file the run still reads (``encode v.mp4 -o
v.mp4``), however it is reached (symlink, hard link, ``./``). They raise
:class:`~codec.errors.UsageError`, which the tools print on one line and exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from codec.audio import SPEECH_KBPS_RANGE
from codec.bitstream import PACKET_HEADER_BYTES, fixed_payload_bytes
from codec.errors import UsageError

# Rendered frames: the video encoder needs even sides and the renderer works in
# 8-pixel blocks; below 64 px a face is a smudge, above 2048 px a frame costs
# more memory and time than a call can give.
MIN_FRAME_SIZE = 64
MAX_FRAME_SIZE = 2048
FRAME_SIZE_STEP = 8
# A motion cap above this is no cap (4 layers are ~13 kbps); it only keeps nonsense out.
MAX_MOTION_KBPS = 1000.0
# Longest duration, wait or delay anyone means (a day); larger values overflow timers.
MAX_SECONDS = 86_400.0
MAX_JITTER_MS = 5_000.0
MOTION_FPS = 25.0
# What torch accepts as a device that a user would name.
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?|mps)$")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (no usage block): ``PROG: error: MESSAGE``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def frame_size(text: str) -> int:
    """``--size``: a frame side in pixels, a multiple of 8 in 64..2048."""
    value = _integer(text)
    if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE or value % FRAME_SIZE_STEP:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of {FRAME_SIZE_STEP} in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE} pixels "
            f"(the video encoder and the renderer work in 8-pixel blocks), got {text}")
    return value


def number_in(lo: float, hi: float, unit: str = "", lo_open: bool = False) -> Callable[[str], float]:
    """An ``argparse`` type: a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    shown = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" + (f" {unit}" if unit else "")

    def parse(text: str) -> float:
        value = _number(text)
        if not (lo < value if lo_open else lo <= value) or value > hi:
            raise argparse.ArgumentTypeError(f"must be in {shown}, got {text}")
        return value

    parse.__name__ = f"number in {shown}"
    return parse


def integer_in(lo: int, hi: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer in ``lo..hi``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {lo}..{hi}, got {text}")
        return value

    parse.__name__ = f"integer in {lo}..{hi}"
    return parse


# Durations: a call of no time, or one that never ends by this flag, is a typo.
seconds = number_in(0.0, MAX_SECONDS, "seconds", lo_open=True)
"""``--duration``: seconds, more than 0 and at most a day."""
wait_seconds = number_in(0.0, MAX_SECONDS, "seconds")
"""``--wait``: seconds, 0 (do not wait) to a day."""
jitter_ms = number_in(0.0, MAX_JITTER_MS, "ms")
"""``--jitter-ms``: the least jitter-buffer delay, 0..5000 ms."""
seed = integer_in(0, 2**32 - 1)
"""``--seed``: what every random generator here accepts."""


def one_layer_kbps(fps: float = MOTION_FPS) -> float:
    """Rate of the smallest motion stream: one residual layer in fixed mode, packet headers included."""
    return (PACKET_HEADER_BYTES + fixed_payload_bytes(1)) * 8 * fps / 1000


def motion_kbps(text: str) -> float:
    """``--max-kbps``: a cap the sender can meet, from one layer's rate up to :data:`MAX_MOTION_KBPS`."""
    value = _number(text)
    lo = one_layer_kbps()
    if not lo <= value <= MAX_MOTION_KBPS:
        raise argparse.ArgumentTypeError(
            f"must be in [{lo:.1f}, {MAX_MOTION_KBPS:g}] kbps: one residual layer, the least the sender "
            f"can send, takes {lo:.1f} kbps; got {text}")
    return value


def audio_kbps(text: str) -> float:
    """``--audio-kbps``: an Opus speech bitrate, :data:`codec.audio.SPEECH_KBPS_RANGE`."""
    value = _number(text)
    lo, hi = SPEECH_KBPS_RANGE
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}] kbps (Opus speech), got {text}")
    return value


def device(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it exists is checked later)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def room_token(text: str) -> str:
    """``--token``: a room token; an empty one would be a secret everybody knows."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# --------------------------------------------------------------------------- paths


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode (symlinks and hard links too), or, for a
    file not created yet, the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | os.PathLike[str], flag: str) -> None:
    """Refuses an output path that cannot be written, before any work is done.

    Raises:
        UsageError: a directory, a folder that does not exist or is not writable, or a read-only file.
    """
    p = Path(path)
    shown = f"{flag} {os.fsdecode(path)}"
    if p.is_dir():
        raise UsageError(f"{shown} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{shown}: folder {os.fsdecode(parent)} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{shown}: folder {os.fsdecode(parent)} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{shown}: the file exists and is read-only")


# Containers that take the H.264 video and AAC audio the tools write.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


def check_video_output(path: str | os.PathLike[str], flag: str) -> None:
    """Refuses a video output whose name does not say MP4, MOV or MKV (PyAV picks the format from it).

    Raises:
        UsageError: another suffix (``-o out.png`` would not be a video).
    """
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"{flag} {os.fsdecode(path)}: a video's name must end in "
                         f"{', '.join(VIDEO_SUFFIXES)}")


def check_paths(outputs: Mapping[str, str | os.PathLike[str] | None],
                inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Checks every output (see :func:`check_output`) and that none is an input or another output.

    Args:
        outputs, inputs: flag -> path (None: not given), e.g. ``{"-o": "v.tok"}``, ``{"INPUT": "v.mp4"}``.
    Raises:
        UsageError: an output cannot be written, is a file the run reads, or is given twice.
    """
    outs = [(flag, p) for flag, p in outputs.items() if p is not None]
    for flag, out in outs:
        for in_flag, src in inputs.items():
            if src is not None and same_file(out, src):
                raise UsageError(f"{flag} {os.fsdecode(out)} is the same file as {in_flag} {os.fsdecode(src)}, "
                                 "which this run reads: choose another output name")
    for i, (flag, out) in enumerate(outs):
        for other_flag, other in outs[i + 1:]:
            if same_file(out, other):
                raise UsageError(f"{flag} and {other_flag} name the same file {os.fsdecode(out)}")
        check_output(out, flag)
