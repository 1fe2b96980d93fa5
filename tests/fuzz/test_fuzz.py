"""CI's short fuzz run: the kept corpus replayed, a few thousand mutations of it, and (with atheris) a short
coverage-guided run. The long runs are ``python -m tests.fuzz.run`` (tests/fuzz/README.md)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fuzz.run import TARGET_NAMES
from tests.fuzz.targets import Target, check, corpus_inputs, describe, load

ROOT = Path(__file__).resolve().parents[2]
MUTATIONS = 400  # per target: 3,200 in all, a few seconds
SECONDS_PER_INPUT = 10  # a hang is a failure, not a stuck CI


@contextmanager
def time_limit(seconds: int, what: str) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _inputs(target: Target) -> list[bytes]:
    return [data for _, data in corpus_inputs(target.name)] + target.seeds()


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One of the mutations libFuzzer makes most: flip, set, insert, erase, splice, truncate, repeat."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[pos % len(b)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[pos % len(b)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and b:
            del b[pos:pos + rng.randint(1, 16)]
        elif op == 4 and others:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            b = b[:pos] + bytearray(other[cut:cut + rng.randint(1, 64)]) + b[pos:]
        elif op == 5:
            del b[pos:]
        elif b:
            chunk = b[pos:pos + rng.randint(1, 8)]
            b[pos:pos] = chunk * rng.randint(1, 4)
    return bytes(b)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_the_kept_corpus_replays_without_a_crash(name: str) -> None:
    target = load()[name]
    inputs = list(corpus_inputs(name))
    assert inputs, f"tests/fuzz/corpus/{name} is empty"
    for path, data in inputs:
        with time_limit(SECONDS_PER_INPUT, path.name):
            crash = check(target, data)
        assert crash is None, f"{name}/{path.name}: {describe(crash)}"


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_mutations_raise_only_the_projects_errors(name: str) -> None:
    target = load()[name]
    pool = _inputs(target)
    rng = random.Random(f"talkcodec-{name}")
    for i in range(MUTATIONS):
        data = mutate(rng.choice(pool), rng, pool)
        with time_limit(SECONDS_PER_INPUT, f"{name} mutation {i}"):
            crash = check(target, data)
        assert crash is None, f"{name} mutation {i} ({data[:64]!r}...): {describe(crash)}"


def test_a_short_coverage_guided_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (pip install -e '.[fuzz]')")
    r = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--runs", "1000", "--no-keep-crashes",
                        "--work", str(tmp_path), "header", "control"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "header" in r.stdout and "control" in r.stdout
