"""The few numbers the page's decoder modules write out themselves must be Python's.

Weights, byte-format constants, mesh topology and transport constants reach the
page generated from the Python package (``decoder.bin``, the portrait bundle,
``decoder/protocol.json``; the browser tests check those). What is left in the
JavaScript are ports of the receiver's playout rules: the jitter buffer's
constants and defaults, the playout's frame interval and limits, and the smoothing's bounds. This test
reads them from the source (no browser needed, so it runs everywhere) and fails
when one differs from the Python it mirrors.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codec import smoothing
from codec.speech import FRAME_MS
from realtime import jitterbuffer
from receiver import call, listener

DECODER = Path(__file__).resolve().parents[2] / "realtime" / "static" / "decoder"
CONST = re.compile(r"^export const ([A-Z_]+) = ([0-9_.]+);", re.M)


def _constants(name: str) -> dict[str, float]:
    return {k: float(v) for k, v in CONST.findall((DECODER / name).read_text())}


def _defaults(name: str, owner: str) -> dict[str, float]:
    """The `{ a = 1, b = 2 } = {}` defaults of `owner`'s constructor, with snake_case names."""
    source = (DECODER / name).read_text()
    body = source[source.index(f"class {owner}"):]
    found = re.search(r"constructor\(([^)]*)\)", body)
    assert found, f"no constructor in {owner}"
    pairs = re.findall(r"(\w+) = ([0-9.]+)", found.group(1))
    return {re.sub(r"([A-Z])", r"_\1", k).lower(): float(v) for k, v in pairs}


def _python_defaults(fn: Callable[..., object]) -> dict[str, float]:
    return {k: float(p.default) for k, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)}


def _jitter_constants_differ() -> bool:
    names = ("MAX_TIMESTAMP_JUMP_MS", "TRANSIT_WINDOW_MS", "SPREAD_WINDOW")
    return _constants("jitterbuffer.js") != {name: float(getattr(jitterbuffer, name)) for name in names}


def test_the_jitter_buffer_port_has_the_receivers_constants() -> None:
    assert len(_constants("jitterbuffer.js")) == 3 and not _jitter_constants_differ()


def test_the_jitter_buffer_port_has_the_receivers_defaults() -> None:
    js = _defaults("jitterbuffer.js", "JitterBuffer")
    assert js and js == _python_defaults(jitterbuffer.JitterBuffer.__init__)


def test_the_playout_has_the_receivers_timing() -> None:
    js = _constants("player.js")
    assert js["FRAME_INTERVAL_MS"] == call.FRAME_INTERVAL_MS == FRAME_MS
    assert js["MAX_BEHIND_MS"] == call.MAX_BEHIND_MS
    assert js["MAX_SPEECH_WAIT_MS"] == listener.MAX_LIPSYNC_MS
    assert _defaults("player.js", "CallPlayer")["jitter_ms"] == _python_defaults(call.Call.__init__)["jitter_ms"]


def test_the_smoothing_port_has_the_receivers_bounds() -> None:
    js = _constants("smoothing.js")
    assert js == {"LOOKAHEAD_FRAMES": float(smoothing.LOOKAHEAD_FRAMES)}
    found = re.search(r"^export const LIMITS = \[([0-9., ]+)\];", (DECODER / "smoothing.js").read_text(), re.M)
    assert found and [float(x) for x in found.group(1).split(",")] == list(smoothing.LIMITS)


def test_a_changed_constant_is_noticed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: the same source with one constant changed no longer matches."""
    source = (DECODER / "jitterbuffer.js").read_text()
    assert not _jitter_constants_differ()
    (tmp_path / "jitterbuffer.js").write_text(source.replace("SPREAD_WINDOW = 50;", "SPREAD_WINDOW = 60;"))
    monkeypatch.setattr(sys.modules[__name__], "DECODER", tmp_path)
    assert _jitter_constants_differ()
