"""The few numbers the page's decoder modules write out themselves must be Python's.

Weights, byte-format constants, mesh topology and transport constants reach the
page generated from the Python package (``decoder.bin``, the portrait bundle,
``decoder/protocol.json``; the browser tests check those). What is left in the
JavaScript are ports of the receiver's playout rules: the jitter buffer's
constants and defaults, the playout's frame interval and limits, and the smoothing's bounds. This test
reads them from the source (no browser needed, so it runs everywhere) and fails
when one differs from the Python it mirrors. The keyframe rules (which mouth picture a
frame samples, how a closed eye blends in, how many keyframes are kept) write out no
numbers: the page reads each from the portrait bundle, which takes it from
:mod:`codec.render.warp`; the tests below check both halves.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from codec import smoothing
from codec.picture import MAX_PICTURE_BYTES
from codec.render import keyframes, turns, warp
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.speech import FRAME_MS
from codec.webexport import portrait_bundle, unpack_container
from realtime import jitterbuffer, pictures
from realtime.webpage import decoder_protocol
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


# The warp's keyframe rules, by the name the portrait bundle's meta["warp"] gives each.
KEYFRAME_RULES = {"max_keyframes": "MAX_KEYFRAMES", "eye_blend": "EYE_BLEND", "eye_feather": "EYE_FEATHER",
                  "eye_anchors": "EYE_ANCHORS", "mouth_width_weight": "MOUTH_WIDTH_WEIGHT",
                  "mouth_pose_weight": "MOUTH_POSE_WEIGHT", "shut": "SHUT",
                  "lend_share": "LEND_SHARE", "narrowing_gain": "NARROWING_GAIN", "narrowing_free": "NARROWING_FREE",
                  "min_gain": "MIN_GAIN", "lip_fade": "LIP_FADE"}


# The head-turn rules (codec.render.turns), likewise.
TURN_RULES = {"turn_blend": "BLEND", "tilt_free": "TILT_FREE", "tilt_span": "TILT_SPAN",
              "turn_min_weight": "MIN_WEIGHT"}


def _rules_not_read(sources: dict[str, str]) -> list[str]:
    """Keyframe rules the page's modules do not read from the bundle (``w.NAME`` or ``m.warp.NAME``)."""
    text = "\n".join(sources.values())
    keys = [*KEYFRAME_RULES, *TURN_RULES, "keyframe_lips", "turns"]
    return [k for k in keys if f"w.{k}" not in text and f"warp.{k}" not in text]


def _page_sources() -> dict[str, str]:
    return {n: (DECODER / n).read_text() for n in ("geometry.js", "renderer.js", "keyframes.js", "watch.js")}


def test_the_keyframe_rules_reach_the_page_from_the_warp(sample_portrait: Path) -> None:
    renderer = Renderer(prepare_portrait(sample_portrait), RenderConfig(device="cpu"))
    index, arrays, _ = unpack_container(portrait_bundle(renderer))
    meta = index["meta"]["warp"]
    assert meta["keyframe_lips"] is renderer.warp.config.keyframe_lips
    assert meta["turns"] is renderer.warp.config.turns
    for key, name in TURN_RULES.items():
        want = getattr(turns, name)
        assert meta[key] == (list(want) if isinstance(want, tuple) else want), key
    assert np.array_equal(arrays["warp.turn_vertices"], renderer.warp.turn_vertices)
    # The lip region the keyframes' lips are laid over with (topology and opacity).
    for name in ("lip_region", "lip_triangles", "lip_alpha"):
        assert np.array_equal(arrays[f"warp.{name}"], getattr(renderer.warp, name)), name
    for key, name in KEYFRAME_RULES.items():
        want = getattr(warp, name) if hasattr(warp, name) else getattr(keyframes, name)
        want = [[int(i) for i in a] for a in want] if name == "EYE_ANCHORS" else want
        assert meta[key] == (list(want) if isinstance(want, tuple) else want), key
    assert not _rules_not_read(_page_sources())
    # Nor does the page write a keyframe number of its own.
    assert not _constants("keyframes.js") and not _constants("geometry.js") and not _constants("renderer.js")


def test_a_rule_the_page_stopped_reading_is_noticed() -> None:
    sources = _page_sources()
    sources["geometry.js"] = sources["geometry.js"].replace("w.mouth_width_weight", "0.5")
    assert _rules_not_read(sources) == ["mouth_width_weight"]


def test_the_page_reassembles_pictures_within_the_receivers_bounds() -> None:
    got = json.loads(decoder_protocol())["pictures"]
    assert got == {"max_picture_bytes": MAX_PICTURE_BYTES, "max_pending": pictures.MAX_PENDING}
