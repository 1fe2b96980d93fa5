"""The browser's assets (codec.webexport): one container format, exact arrays, deterministic output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codec.cli import main as codec_main
from codec.errors import StreamError
from codec.webexport import (
    DECODER_FILE,
    WEB_FORMAT_VERSION,
    content_hash,
    decoder_assets,
    pack_container,
    unpack_container,
)

ARRAYS = st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6), elements=st.floats(-1e6, 1e6, width=32)),
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=6), elements=st.floats(-1e9, 1e9)),
    hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=6), elements=st.integers(-2**31, 2**31 - 1)),
    hnp.arrays(np.uint32, hnp.array_shapes(max_dims=1, max_side=6)),
)


@settings(max_examples=60, deadline=None)
@given(arrays=st.dictionaries(st.text("abcxyz.", min_size=1, max_size=6), ARRAYS, max_size=4),
       blob=st.binary(max_size=50))
def test_container_round_trip_is_exact(arrays: dict[str, np.ndarray], blob: bytes) -> None:
    data = pack_container("test", {"k": [1, "a"]}, arrays, {"f": ("image/png", blob)})
    index, got, files = unpack_container(data)
    assert index["kind"] == "test" and index["meta"] == {"k": [1, "a"]} and files == {"f": blob}
    assert set(got) == set(arrays)
    for name, a in arrays.items():
        assert got[name].shape == a.shape
        assert np.array_equal(got[name].astype(a.dtype), a), name
        assert index["arrays"][name]["offset"] % 8 == 0


def test_arrays_take_the_smallest_exact_type() -> None:
    index, _, _ = unpack_container(pack_container("t", {}, {
        "half": np.array([0.5, -2.0, 1024.0], np.float32), "single": np.array([0.1], np.float32),
        "small": np.array([0, 255]), "wide": np.array([0, 256]), "negative": np.array([-1, 3])}, {}))
    assert {k: v["dtype"] for k, v in index["arrays"].items()} == {
        "half": "f16", "single": "f32", "small": "u8", "wide": "u16", "negative": "i32"}


@pytest.mark.parametrize("damage", ["magic", "version", "truncated"])
def test_broken_containers_are_refused(damage: str) -> None:
    data = bytearray(pack_container("t", {}, {"a": np.arange(100)}, {}))
    if damage == "magic":
        data[:4] = b"NOPE"
    elif damage == "version":
        data[4] = WEB_FORMAT_VERSION + 1
    else:
        data = data[:-20]
    with pytest.raises(StreamError):
        unpack_container(bytes(data))


def test_decoder_assets_hold_the_shipped_weights() -> None:
    from codec.bitstream import STREAM_VERSION, fixed_payload_bytes
    from codec.entropy import load_entropy_model
    from codec.tokenizer import load_tokenizer, weights_hash

    data = decoder_assets()
    assert decoder_assets() == data  # deterministic: a page's hash names one set of weights
    index, arrays, _ = unpack_container(data)
    meta = index["meta"]
    assert index["kind"] == "decoder"
    assert meta["stream"]["version"] == STREAM_VERSION
    assert meta["stream"]["fixed_payload_bytes"] == [fixed_payload_bytes(r) for r in range(1, 5)]
    assert meta["tokenizer"]["hash"] == weights_hash()
    assert meta["entropy"]["hash"] == load_entropy_model().hash
    tok = load_tokenizer()
    for name, value in tok.state_dict().items():
        key = f"tokenizer.{name}"
        if key in arrays:
            assert np.array_equal(arrays[key].astype(np.float32), value.numpy()), name
    assert np.array_equal(arrays["entropy.cdf"], load_entropy_model().quantized_cdfs())
    assert "tokenizer.encoder.linear.weight" not in arrays  # the page only decodes


def test_export_web_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert codec_main(["export-web", "-o", str(tmp_path)]) == 0
    data = (tmp_path / DECODER_FILE).read_bytes()
    assert content_hash(data) in capsys.readouterr().out
    assert data == decoder_assets()


def test_export_web_with_a_bad_portrait_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert codec_main(["export-web", "-o", str(tmp_path), "--portrait", str(tmp_path / "none.jpg")]) == 1
    assert "none.jpg" in capsys.readouterr().err


def test_every_keyframe_lends_the_page_its_lips(sample_frames: list[np.ndarray], sample_landmarks: np.ndarray) -> None:
    """A keyframe's mouth travels to the page with its lips, also a shut one that lends no interior; with the
    warp's keyframe lips off, such a mouth is of no use to it and does not travel."""
    from codec.motion import motion_from_landmarks
    from codec.render.keyframes import Keyframe, canonical_mouth
    from codec.render.pipeline import RenderConfig, Renderer
    from codec.render.portrait import Portrait
    from codec.render.warp import MIN_LEND, WarpConfig
    from codec.webexport import bundle_id, keyframe_bundle, portrait_bundle

    lm = sample_landmarks[:len(sample_frames)].astype(np.float32)
    st = motion_from_landmarks(lm.astype(np.float64))
    opening = canonical_mouth(st)[:, 0]
    eyes_open = st.blink.min(1) > 0.8 * st.blink[0].min()
    shut = int(np.flatnonzero(eyes_open)[np.argmin(opening[eyes_open])])
    assert opening[shut] < MIN_LEND
    portrait = Portrait(sample_frames[0], lm[0], motion_from_landmarks(lm[0]), (0.0, 0.0, 512.0, 512.0))
    keyframe = Keyframe(sample_frames[shut], lm[shut], "mouth")
    for lips in (True, False):
        renderer = Renderer(portrait, RenderConfig(device="cpu", warp=WarpConfig(keyframe_lips=lips)))
        bundle = portrait_bundle(renderer)
        meta, arrays, _ = unpack_container(bundle)
        assert meta["meta"]["warp"]["keyframe_lips"] is lips
        assert np.array_equal(arrays["warp.lip_region"], renderer.warp.lip_region)
        data = keyframe_bundle(renderer, keyframe, bundle_id(bundle), 3)
        if not lips:
            assert data is None
            continue
        assert data is not None
        index, arrays, files = unpack_container(data)
        taken = renderer.warp.keyframe_patches(keyframe).mouth
        assert taken is not None and index["meta"]["mouth"]["interior"] is False
        assert set(files) == {"mouth"} and index["meta"]["index"] == 3
        assert np.allclose(arrays["mouth.lips"], taken.lips, rtol=0, atol=1e-3)
        assert arrays["mouth.lips"].shape == (len(renderer.warp.lip_region), 2)
