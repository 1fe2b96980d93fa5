"""Where a trainer may write, checked before it trains; and the corpus it needs, checked likewise.

A trainer runs for minutes to hours and its output replaces a weight file
that every stream already written depends on (an entropy-coded ``.tok`` names
the entropy model's hash). So, before any work:

* the output's folder must exist and be writable, and the output may not be a
  file the trainer reads (:func:`codec.validate.check_paths`);
* an existing output, the shipped ``codec/data`` file by default, is replaced
  only when asked (``--overwrite``); ``--out`` writes elsewhere;
* the corpus must hold training clips.

The output itself is written once training has succeeded, whole or not at
all (the save functions go through :func:`codec.paths.atomic_output`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codec.errors import MediaError, UsageError
from codec.paths import DATA_DIR
from codec.train.corpus import Split, corpus_dir, corpus_split
from codec.validate import check_paths


def check_model_output(path: Path, overwrite: bool, reads: Sequence[Path] = ()) -> None:
    """Refuses, before training, an output the trainer may not write.

    Args:
        path: the file the trainer will write (``--out``).
        overwrite: ``--overwrite`` was given.
        reads: weight files the trainer reads (the output may not be one of them).
    Raises:
        UsageError: a folder that does not exist, an output that is an input, or an existing file
            without ``--overwrite``.
    """
    check_paths({"--out": path}, {f"{p.name} (read by this trainer)": p for p in reads})
    if path.exists() and not overwrite:
        shipped = " (a shipped file: every stream written with it depends on it)" \
            if path.resolve().parent == DATA_DIR.resolve() else ""
        raise UsageError(f"{path} exists{shipped}: pass --overwrite to replace it, or --out to write elsewhere")


def training_split(root: Path | None = None, need_held_out: bool = False) -> Split:
    """The corpus's clips split by identity, refusing a corpus without training (or held-out) clips.

    Raises:
        MediaError: no clips where the corpus should be.
    """
    root = root or corpus_dir()
    split = corpus_split(root)
    where = f"{root} (clips/*.mp4, clips_noaudio/*.mp4)"
    if not split.train:
        raise MediaError(f"no training clips under {where}: set TALKCODEC_CORPUS to the corpus folder")
    if need_held_out and not split.held_out:
        raise MediaError(f"no held-out clips under {where}: set TALKCODEC_CORPUS to the corpus folder")
    return split


def add_output_arguments(parser: object, default: Path) -> None:
    """``--out FILE`` (default: the shipped file) and ``--overwrite`` on a trainer's parser."""
    add = getattr(parser, "add_argument")
    add("--out", type=Path, default=default, help=f"write the weights here (default: the shipped codec/data/"
        f"{default.name}, which needs --overwrite)")
    add("--overwrite", action="store_true", help="replace the output if it exists (the shipped file by default)")
