"""Coverage-guided fuzzing of talkcodec's parsers with atheris (libFuzzer for Python).

    nice -n 10 python -m tests.fuzz.run --runs 1000000 all        # every target, a million inputs each
    nice -n 10 python -m tests.fuzz.run --runs 200000 header tok   # some targets
    python -m tests.fuzz.run --list

Each target runs in its own process (libFuzzer ends the process when it is
done), starting from the kept corpus (``tests/fuzz/corpus/TARGET``) and the
target's seeds, with a time limit per input (``--timeout``, a hang is a
crash). New interesting inputs go to a scratch folder (``--work``); with
``--merge`` the kept corpus is replaced by a minimal set covering the same
code (libFuzzer's merge), so it stays small. A crashing input is copied into
the kept corpus as ``crash-<sha1>``, so the CI replay keeps checking it after
the fix. At the end a table says, per target, the inputs run, the seconds and
the crashes. Exit status 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.targets import CORPUS, PARSER_MODULES

ROOT = Path(__file__).resolve().parents[2]
TARGET_NAMES = ("header", "motion_fixed", "motion_entropy", "tok", "control", "signaling", "picture", "image")
JSON_TARGETS = ("header", "tok", "control", "signaling")
DICTS = Path(__file__).resolve().parent / "dicts"


@dataclass
class Result:
    target: str
    runs: int
    seconds: float
    crashes: list[Path]
    rc: int


def _child(target_name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the target's process: instruments the parsers, then hands control to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=list(PARSER_MODULES)):
        for name in PARSER_MODULES:
            __import__(name)
    from tests.fuzz.targets import check, load

    target = load()[target_name]

    def one_input(data: bytes) -> None:
        crash = check(target, data)
        if crash is not None:
            raise crash

    # libFuzzer runs argv[0] again for a merge: it must be a command that starts this target.
    argv0 = os.environ.get("TALKCODEC_FUZZ_ARGV0", sys.argv[0])
    atheris.Setup([argv0, *libfuzzer_args], one_input)
    atheris.Fuzz()


def _seed_dir(target: str, work: Path) -> Path:
    """The scratch corpus folder: the kept corpus plus the target's seeds."""
    from tests.fuzz.targets import corpus_inputs, load

    d = work / target
    d.mkdir(parents=True, exist_ok=True)
    for _, data in corpus_inputs(target):
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    for data in load()[target].seeds():
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return d


def _python() -> list[str]:
    return [sys.executable, "-m", "tests.fuzz.run", "--child"]


def _launcher(target: str, work: Path) -> dict[str, str]:
    """The environment of a target's process, with an executable that starts it again (for libFuzzer's merge)."""
    script = work / f"{target}.sh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m tests.fuzz.run --child {target} \"$@\"\n")
    script.chmod(0o755)
    return {**os.environ, "TALKCODEC_FUZZ_ARGV0": str(script)}


def fuzz(target: str, runs: int, timeout: int, work: Path, keep_crashes: bool, quiet: bool) -> Result:
    corpus = _seed_dir(target, work)
    artifacts = work / f"{target}-artifacts"
    artifacts.mkdir(exist_ok=True)
    args = [f"-runs={runs}", f"-timeout={timeout}", "-rss_limit_mb=3072", "-max_len=70000",
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus)]
    if target in JSON_TARGETS:  # JSON's tokens and the field names, so mutations reach the parsers behind JSON
        args.insert(0, f"-dict={DICTS / 'json.dict'}")
    t0 = time.monotonic()
    proc = subprocess.run([*_python(), target, *args], cwd=ROOT, capture_output=True, text=True,
                          errors="replace", env=_launcher(target, work))
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (work / f"{target}.log").write_text(log)
    done = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    progress = re.findall(r"#(\d+)\s", log)
    executed = int(done[-1]) if done else int(progress[-1]) if progress else 0
    fuzz_s = re.findall(r"Done \d+ runs in (\d+) second", log)
    seconds = float(fuzz_s[-1]) if fuzz_s else seconds  # libFuzzer's own time, without the imports
    crashes = sorted(p for p in artifacts.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    kept = []
    for c in crashes:
        dest = CORPUS / target / f"{c.name.split('-')[0]}-{hashlib.sha1(c.read_bytes()).hexdigest()}"
        if keep_crashes:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(c, dest)
        kept.append(dest if keep_crashes else c)
    if not quiet and (proc.returncode != 0 or crashes):
        print(log[-3000:], file=sys.stderr)
    return Result(target, executed, seconds, kept, proc.returncode)


def merge(target: str, work: Path) -> int:
    """Replaces the kept corpus by libFuzzer's minimal merge of it and the scratch corpus; its new size."""
    kept = CORPUS / target
    fresh = work / f"{target}-merged"
    fresh.mkdir(parents=True, exist_ok=True)
    crashes = [p for p in kept.glob("*") if p.name.startswith(("crash-", "timeout-", "oom-"))]
    r = subprocess.run([*_python(), target, "-merge=1", "-timeout=30", str(fresh), str(work / target)],
                       cwd=ROOT, capture_output=True, text=True, errors="replace", env=_launcher(target, work))
    (work / f"{target}-merge.log").write_text(r.stdout + r.stderr)
    if not any(fresh.iterdir()):
        return len(list(kept.glob("*")))
    keep = {p.name: p.read_bytes() for p in crashes}  # crashing inputs stay, as regression tests
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for p in fresh.iterdir():
        (kept / hashlib.sha1(p.read_bytes()).hexdigest()[:16]).write_bytes(p.read_bytes())
    for name, data in keep.items():
        (kept / name).write_bytes(data)
    return len(list(kept.iterdir()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2:])
        return 0
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", help=f"targets ({', '.join(TARGET_NAMES)}) or all")
    p.add_argument("--runs", type=int, default=100_000, help="inputs per target (default: %(default)s)")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default: %(default)s)")
    p.add_argument("--work", type=Path, help="scratch folder for the growing corpus and crashes (default: a temp)")
    p.add_argument("--merge", action="store_true", help="minimize the grown corpus into tests/fuzz/corpus")
    p.add_argument("--merge-only", action="store_true",
                   help="no fuzzing: minimize the corpus grown in --work by an earlier run into tests/fuzz/corpus")
    p.add_argument("--no-keep-crashes", action="store_true", help="do not copy crashing inputs into the corpus")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--quiet", action="store_true", help="no libFuzzer log on a crash")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(TARGET_NAMES))
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    names = list(TARGET_NAMES) if args.targets in ([], ["all"]) else args.targets
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGET_NAMES)} or all")
    work = args.work or Path(tempfile.mkdtemp(prefix="talkcodec-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'target':16} {'inputs':>10} {'seconds':>9} {'inputs/s':>9}  crashes   (load: {os.getloadavg()[0]:.1f}; "
          f"logs in {work})", flush=True)
    if args.merge_only:
        for name in names:
            print(f"{name:16} corpus kept: {merge(name, work)} inputs", flush=True)
        return 0
    for name in names:
        r = fuzz(name, args.runs, args.timeout, work, not args.no_keep_crashes, args.quiet)
        results.append(r)
        size = merge(name, work) if args.merge and not r.crashes else None
        print(f"{r.target:16} {r.runs:>10} {r.seconds:>9.0f} {r.runs / max(r.seconds, 1.0):>9.0f}  "
              f"{len(r.crashes)} {' '.join(c.name for c in r.crashes)}"
              + (f"  (corpus kept: {size} inputs)" if size is not None else "")
              + (f"  rc {r.rc}" if r.rc and not r.crashes else ""), flush=True)
    return 1 if any(r.crashes or r.rc for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
