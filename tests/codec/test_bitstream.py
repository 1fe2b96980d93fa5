"""The byte format: header, packets, fixed payloads, writer and reader.

Fixtures under ``fixtures/`` were written once by this module's format and are
checked byte for byte, so an accidental format change fails here:

- ``header_fixed.bin``, ``header_entropy.bin``: valid headers (fields below);
- ``header_wrong_version.bin`` (version 3), ``header_wrong_magic.bin`` (a
  WebM file's first bytes), ``header_truncated.bin``, ``header_oversized.bin``
  (length field 1 MiB), ``header_bad_layers.bin`` (``"layers":5``);
- ``packet_fixed_r4.bin`` (seq 65534, 4 layers), ``packet_fixed_r1.bin``
  (1 layer, all tokens 624), ``packet_noface.bin``: valid packets of version 1
  (the headers above are version 1 too), which this release still reads;
- ``packet_truncated.bin``, ``packet_reserved_bits.bin`` (bit 7 set),
  ``packet_out_of_range.bin`` (payload 2**112 - 1 >= 625**12),
  ``packet_noface_with_payload.bin``: broken version-1 packets;
- ``v2_packet_fixed_r4.bin`` (the same frame as ``packet_fixed_r4.bin`` in
  version 2), ``v2_message_3_frames.bin`` (seq 65535, 0, 1 at 65500, 65540,
  65580 ms: 4 layers fixed, no face, 1 layer fixed), ``v2_message_entropy.bin``
  (two entropy-coded frames of ``random_walk(seed 11)`` under ``walk_model()``,
  the first with its length byte): valid version-2 messages;
- ``v2_message_truncated.bin`` (the 3-frame message less its last byte),
  ``v2_message_reserved_bits.bin`` (bit 6 of the first flags set): broken ones.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.bitstream import (
    MAX_PACKET_BYTES,
    PACKET_HEADER_BYTES,
    STREAM_VERSION,
    V1_PACKET_HEADER_BYTES,
    Packet,
    ReferenceInfo,
    StreamHeader,
    bundle,
    check_compatible,
    fixed_payload_bytes,
    pack_fixed,
    parse_message,
    unpack_fixed,
    unwrap_ms,
)
from codec.entropy import EntropyModel
from codec.errors import StreamError
from codec.grfsq import GRFSQConfig
from codec.stream import ReferenceLostError, StreamReader, StreamWriter
from codec.train.entropy import fit_entropy_model
from tests.codec.token_walks import random_walk, walk_model

FIXTURES = Path(__file__).parent / "fixtures"
REF = ReferenceInfo(frame_index=12, rotation=(0.1, -0.25, 0.03125), gaze=(0.0, 0.5, -0.5, 0.25),
                    blink=(0.0, 1.0), mouth_opening=0.125, image_size=(640, 480))
FIXTURE_TOKENS_R4 = (np.arange(48) * 13 % 625).reshape(4, 12)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def model() -> EntropyModel:
    return walk_model()


def header(mode: str = "fixed", model: EntropyModel | None = None, **kw: object) -> StreamHeader:
    return StreamHeader(tokenizer_hash="0123456789abcdef", reference=REF, mode=mode,
                        entropy_hash=None if model is None else model.hash, **kw)


# --------------------------------------------------------------------------- fixed payload


@pytest.mark.parametrize("layers,size", [(1, 14), (2, 28), (3, 42), (4, 56)])
def test_fixed_payload_size_is_the_information_rounded_up_to_bytes(layers, size):
    assert fixed_payload_bytes(layers) == size == int(np.ceil(12 * layers * np.log2(625) / 8))
    assert len(pack_fixed(np.zeros((layers, 12), np.int64))) == size


@given(st.integers(1, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_fixed_round_trip(layers, seed):
    tokens = np.random.default_rng(seed).integers(0, 625, (layers, 12))
    out = unpack_fixed(pack_fixed(tokens), layers)
    assert out.dtype == np.int64 and np.array_equal(out, tokens)


@given(codebook=st.integers(2, 2**16), layers=st.integers(1, 4), groups=st.integers(1, 64),
       seed=st.integers(0, 2**32 - 1), garbage=st.binary(min_size=1, max_size=600))
@settings(max_examples=150, deadline=None)
def test_fixed_round_trip_for_any_tokenizer_shape(codebook, layers, groups, seed, garbage):
    tokens = np.random.default_rng(seed).integers(0, codebook, (layers, groups))
    data = pack_fixed(tokens, codebook)
    assert len(data) == fixed_payload_bytes(layers, groups, codebook)
    assert np.array_equal(unpack_fixed(data, layers, groups, codebook), tokens)
    try:
        out = unpack_fixed(garbage, layers, groups, codebook)
    except StreamError:
        return
    assert out.shape == (layers, groups) and out.min() >= 0 and out.max() < codebook


@pytest.mark.parametrize("value", [0, 624])
@pytest.mark.parametrize("layers", [1, 4])
def test_fixed_extremes(layers, value):
    tokens = np.full((layers, 12), value)
    assert np.array_equal(unpack_fixed(pack_fixed(tokens), layers), tokens)


def test_fixed_first_token_is_most_significant():
    tokens = np.zeros((1, 12), np.int64)
    tokens[0, 0] = 1
    assert int.from_bytes(pack_fixed(tokens), "big") == 625**11


def test_fixed_rejects_out_of_range_value_and_wrong_length():
    with pytest.raises(StreamError, match="out of range"):
        unpack_fixed(b"\xff" * 14, 1)
    top = (625**12).to_bytes(14, "big")  # the first value no tokens pack to
    with pytest.raises(StreamError, match="out of range"):
        unpack_fixed(top, 1)
    assert np.array_equal(unpack_fixed((625**12 - 1).to_bytes(14, "big"), 1), np.full((1, 12), 624))
    with pytest.raises(StreamError, match="14 bytes"):
        unpack_fixed(b"\x00" * 13, 1)
    with pytest.raises(ValueError):
        pack_fixed(np.full((1, 12), 625))


# --------------------------------------------------------------------------- header


def test_header_fixtures_parse_to_expected_fields():
    h = StreamHeader.from_bytes(fixture("header_fixed.bin"))
    assert (h.version, h.fps, h.mode, h.layers, h.keyframe_interval) == (1, 25.0, "fixed", 4, 25)
    assert h.tokenizer == GRFSQConfig() and h.tokenizer_hash == "0123456789abcdef" and h.entropy_hash is None
    assert h.reference == REF
    assert h.to_bytes() == fixture("header_fixed.bin")
    e = StreamHeader.from_bytes(fixture("header_entropy.bin"))
    assert (e.fps, e.mode, e.layers, e.keyframe_interval, e.entropy_hash) == (30.0, "entropy", 3, 15,
                                                                             "fedcba9876543210")
    assert e.to_bytes() == fixture("header_entropy.bin")


@pytest.mark.parametrize("name,message", [
    ("header_wrong_version.bin", "version 3 .*versions 1, 2"),
    ("header_wrong_magic.bin", "not a talkcodec stream"),
    ("header_truncated.bin", "truncated"),
    ("header_oversized.bin", "limit"),
    ("header_bad_layers.bin", "layers"),
])
def test_broken_header_fixtures_raise_stream_error(name, message):
    with pytest.raises(StreamError, match=message):
        StreamHeader.from_bytes(fixture(name))


def test_header_rejects_trailing_bytes_and_bad_json():
    raw = fixture("header_fixed.bin")
    with pytest.raises(StreamError, match="bytes but"):
        StreamHeader.from_bytes(raw + b"\0")
    body = b"{not json"
    with pytest.raises(StreamError, match="JSON"):
        StreamHeader.from_bytes(b"TKCD\x01" + struct.pack(">I", len(body)) + body)
    body = b'{"fps":25}'
    with pytest.raises(StreamError, match="lacks"):
        StreamHeader.from_bytes(b"TKCD\x01" + struct.pack(">I", len(body)) + body)
    with pytest.raises(StreamError, match="truncated"):
        StreamHeader.from_bytes(b"")


@pytest.mark.parametrize("field,value", [
    ("fps", "25"), ("fps", -1), ("fps", True), ("mode", "lossy"), ("layers", 0), ("layers", 2.0),
    ("tokenizer_hash", "XYZ"), ("tokenizer_hash", 5), ("keyframe_interval", 26), ("keyframe_interval", 0),
    ("reference", None), ("tokenizer", {"dim": 120}), ("tokenizer", {"dim": 120, "groups": 7, "residuals": 4,
                                                                    "levels": [5, 5, 5, 5]}),
])
def test_header_rejects_ill_typed_fields(field, value):
    raw = fixture("header_fixed.bin")
    d = json.loads(raw[9:])
    d[field] = value
    body = json.dumps(d).encode()
    with pytest.raises(StreamError, match="invalid stream header"):
        StreamHeader.from_bytes(raw[:5] + struct.pack(">I", len(body)) + body)


def test_entropy_header_needs_a_model_hash_and_a_keyframe_a_second():
    with pytest.raises(ValueError, match="entropy_hash"):
        header("entropy")
    with pytest.raises(ValueError, match="keyframe_interval"):
        header("fixed", fps=25.0, keyframe_interval=26)
    assert header(fps=29.97).keyframe_interval == 30


@given(fps=st.floats(1, 240), layers=st.integers(1, 4), entropy=st.booleans(),
       rot=st.tuples(*[st.floats(-4, 4)] * 3), index=st.integers(0, 2**32 - 1),
       size=st.tuples(st.integers(1, 65535), st.integers(1, 65535)))
@settings(max_examples=100, deadline=None)
def test_header_round_trip(fps, layers, entropy, rot, index, size):
    ref = ReferenceInfo(index, rot, (0.1, 0.2, 0.3, 0.4), (0.5, 0.6), 0.7, size)
    h = StreamHeader(tokenizer_hash="ab", reference=ref, fps=fps, layers=layers,
                     mode="entropy" if entropy else "fixed", entropy_hash="cd" if entropy else None)
    assert StreamHeader.from_bytes(h.to_bytes()) == h


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_header_garbage_raises_only_stream_error(data):
    with pytest.raises(StreamError):
        StreamHeader.from_bytes(b"TKCD\x01" + data)
    with pytest.raises(StreamError):
        StreamHeader.from_bytes(data)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=4), max_leaves=8)
TOKENIZER_VALUES = st.fixed_dictionaries({
    "dim": st.integers(-1, 10**6), "groups": st.integers(-1, 10**4), "residuals": st.integers(-1, 9),
    "levels": st.lists(st.integers(-1, 300), max_size=20)})


@given(field=st.sampled_from(["fps", "mode", "layers", "tokenizer", "tokenizer_hash", "entropy_hash", "reference",
                              "keyframe_interval"]),
       value=JSON_VALUES | TOKENIZER_VALUES, packet=st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_mutated_header_fields_raise_only_stream_error(field, value, packet):
    raw = fixture("header_fixed.bin")
    d = json.loads(raw[9:])
    d[field] = value
    body = json.dumps(d).encode()
    try:
        h = StreamHeader.from_bytes(raw[:5] + struct.pack(">I", len(body)) + body)
    except StreamError:
        return
    # Whatever tokenizer a header declares, its packets parse or fail cleanly.
    try:
        StreamReader(h).decode(packet)
    except StreamError:
        pass


@given(st.integers(0, 346 * 8 - 1))
@settings(max_examples=300, deadline=None)
def test_header_bit_flip_is_a_stream_error_or_a_valid_header(bit):
    raw = bytearray(fixture("header_fixed.bin"))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        StreamHeader.from_bytes(bytes(raw))
    except StreamError:
        pass


def test_check_compatible():
    h = header()
    check_compatible(h, GRFSQConfig(), "0123456789abcdef")
    with pytest.raises(StreamError, match="tokenizer weights"):
        check_compatible(h, GRFSQConfig(), "ffff")
    with pytest.raises(StreamError, match="tokenizer"):
        check_compatible(h, GRFSQConfig(residuals=3), "0123456789abcdef")
    with pytest.raises(StreamError, match="stream version 7"):
        check_compatible(header(version=7), GRFSQConfig(), "0123456789abcdef")
    e = StreamHeader(tokenizer_hash="0123456789abcdef", reference=REF, mode="entropy", entropy_hash="aa")
    check_compatible(e, GRFSQConfig(), "0123456789abcdef", "aa")
    with pytest.raises(StreamError, match="entropy model"):
        check_compatible(e, GRFSQConfig(), "0123456789abcdef", "bb")


# --------------------------------------------------------------------------- packets


def test_packet_fixtures_parse_to_expected_fields():
    p = Packet.from_bytes(fixture("packet_fixed_r4.bin"), version=1)
    assert (p.seq, p.timestamp_ms, p.layers, p.face, p.keyframe, p.entropy) == (65534, 123456789, 4, True, True,
                                                                                False)
    assert np.array_equal(unpack_fixed(p.payload, 4), FIXTURE_TOKENS_R4)
    assert p.to_bytes(1) == fixture("packet_fixed_r4.bin")
    p1 = Packet.from_bytes(fixture("packet_fixed_r1.bin"), version=1)
    assert (p1.seq, p1.timestamp_ms, p1.layers) == (7, 40, 1)
    assert np.array_equal(unpack_fixed(p1.payload, 1), np.full((1, 12), 624))
    n = Packet.from_bytes(fixture("packet_noface.bin"), version=1)
    assert (n.seq, n.timestamp_ms, n.face, n.layers, n.payload) == (9, 360, False, 0, b"")
    assert len(fixture("packet_noface.bin")) == V1_PACKET_HEADER_BYTES


@pytest.mark.parametrize("name,message", [
    ("packet_truncated.bin", "56-byte payload"),
    ("packet_reserved_bits.bin", "reserved"),
    ("packet_noface_with_payload.bin", "without a face"),
])
def test_broken_packet_fixtures_raise_stream_error(name, message):
    with pytest.raises(StreamError, match=message):
        Packet.from_bytes(fixture(name), version=1)


def test_out_of_range_fixture_fails_in_the_reader():
    reader = StreamReader(header(version=1))
    with pytest.raises(StreamError, match="out of range"):
        reader.decode(fixture("packet_out_of_range.bin"))


@pytest.mark.parametrize("version", [1, 2])
def test_packet_limits(version):
    head = V1_PACKET_HEADER_BYTES if version == 1 else PACKET_HEADER_BYTES
    with pytest.raises(StreamError, match="truncated"):
        Packet.from_bytes(b"\x00" * (head - 1), version=version)
    big = Packet.from_bytes(fixture("packet_fixed_r4.bin"), version=1).to_bytes(version)
    assert len(big) == head + 56
    oversized = big[:head - 1] + bytes([0b11000]) + b"\x01" * MAX_PACKET_BYTES
    with pytest.raises(StreamError, match="limit"):
        Packet.from_bytes(oversized, version=version)
    with pytest.raises(StreamError, match="empty payload"):
        Packet.from_bytes(big[:head - 1] + bytes([0b10100]), version=version)
    not_key = bytearray(big)
    not_key[head - 1] &= ~0b1000
    with pytest.raises(StreamError, match="keyframe"):
        Packet.from_bytes(bytes(not_key), version=version)


@given(st.binary(max_size=1100))
@settings(max_examples=400, deadline=None)
def test_garbage_packets_raise_only_stream_error(data):
    for reader in (StreamReader(header()),):
        try:
            out = reader.decode(data)
        except StreamError:
            continue
        assert out.tokens is None or (out.tokens.min() >= 0 and out.tokens.max() < 625)


@given(st.binary(max_size=120), st.integers(0, 3), st.booleans())
@settings(max_examples=300, deadline=None)
def test_garbage_entropy_packets_raise_only_stream_error(model, payload, layer_bits, keyframe):
    reader = StreamReader(header("entropy", model), model)
    data = struct.pack(">HIB", 0, 0, layer_bits | 0b10100 | (0b1000 if keyframe else 0)) + payload
    try:
        out = reader.decode(data)
    except StreamError:
        return
    assert out.tokens is not None and out.tokens.shape == (layer_bits + 1, 12)
    assert out.tokens.min() >= 0 and out.tokens.max() < 625


@given(seed=st.integers(0, 2**32 - 1), flips=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 8 * 63 - 1)),
                                                      max_size=12))
@settings(max_examples=60, deadline=None)
def test_bit_flipped_entropy_streams_raise_only_stream_error(model, seed, flips):
    h = header("entropy", model)
    writer, reader = StreamWriter(h, model), StreamReader(h, model)
    packets = [bytearray(writer.encode(t, n)) for n, t in enumerate(random_walk(np.random.default_rng(seed), 40))]
    for n, bit in flips:
        bit %= 8 * len(packets[n])
        packets[n][bit // 8] ^= 1 << (bit % 8)
    for p in packets:
        try:
            out = reader.decode(bytes(p))
        except StreamError:
            continue
        assert out.tokens is None or (out.tokens.min() >= 0 and out.tokens.max() < 625)


# --------------------------------------------------------------------------- writer and reader


def frames_with_gaps(seed: int, frames: int = 80) -> list[np.ndarray | None]:
    """A random walk with layer-count changes and frames without a face."""
    rng = np.random.default_rng(seed)
    walk = random_walk(rng, frames)
    layers = np.repeat(rng.integers(1, 5, frames // 10 + 1), 10)[:frames]
    out: list[np.ndarray | None] = [walk[t, :layers[t]] for t in range(frames)]
    for t in rng.choice(frames, 5, replace=False):
        out[t] = None
    return out


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None)
def test_stream_round_trip_with_layer_changes_and_missing_faces(model, mode, seed):
    h = header(mode, model if mode == "entropy" else None)
    writer, reader = StreamWriter(h, model), StreamReader(h, model)
    for t, tokens in enumerate(frames_with_gaps(seed)):
        packet = writer.encode(tokens, 40 * t)
        out = reader.decode(packet)
        assert (out.seq, out.timestamp_ms) == (t, 40 * t)
        if tokens is None:
            assert not out.face and out.tokens is None and out.layers == 0
        else:
            assert out.face and out.layers == len(tokens)
            assert np.array_equal(out.tokens, tokens)
            # Never longer than the fixed packing.
            assert len(packet) <= PACKET_HEADER_BYTES + fixed_payload_bytes(len(tokens))


def test_entropy_mode_is_smaller_and_decodes_to_the_fixed_tokens(model):
    walk = random_walk(np.random.default_rng(5), 100)
    hf, he = header(), header("entropy", model)
    fw, ew, er = StreamWriter(hf), StreamWriter(he, model), StreamReader(he, model)
    fixed_bytes = entropy_bytes = 0
    for t, tokens in enumerate(walk):
        fp, ep = fw.encode(tokens, t), ew.encode(tokens, t)
        fixed_bytes, entropy_bytes = fixed_bytes + len(fp), entropy_bytes + len(ep)
        assert np.array_equal(er.decode(ep).tokens, unpack_fixed(Packet.from_bytes(fp).payload, 4))
    assert entropy_bytes < 0.6 * fixed_bytes


@pytest.mark.parametrize("fps,interval", [(25.0, 25), (30.0, 10), (12.0, None)])
def test_keyframe_at_least_once_per_interval(model, fps, interval):
    h = header("entropy", model, fps=fps, keyframe_interval=interval)
    writer = StreamWriter(h, model)
    frames = frames_with_gaps(3, 120)
    keys = [t for t, tokens in enumerate(frames)
            if Packet.from_bytes(writer.encode(tokens, 0)).keyframe or tokens is None]
    assert keys[0] == 0
    assert max(np.diff(keys)) <= h.keyframe_interval <= round(fps)


def test_keyframe_after_a_frame_without_a_face(model):
    writer = StreamWriter(header("entropy", model), model)
    walk = random_walk(np.random.default_rng(1), 5)
    flags = [Packet.from_bytes(writer.encode(t, 0)) for t in (walk[0], walk[1], None, walk[2], walk[3])]
    assert [p.keyframe for p in flags] == [True, False, False, True, False]


def test_lost_packet_is_concealed_until_the_next_keyframe(model):
    h = header("entropy", model, keyframe_interval=10)
    writer, reader = StreamWriter(h, model), StreamReader(h, model)
    walk = random_walk(np.random.default_rng(2), 30)
    packets = [writer.encode(t, 40 * n) for n, t in enumerate(walk)]
    keyframes = [n for n, p in enumerate(packets) if Packet.from_bytes(p).keyframe]
    assert keyframes == [0, 10, 20]
    for n, p in enumerate(packets):
        if n == 4:
            continue  # lost
        if 4 < n < 10:
            with pytest.raises(ReferenceLostError, match="conceal"):
                reader.decode(p)
        else:
            assert np.array_equal(reader.decode(p).tokens, walk[n])


def test_late_and_duplicate_packets_leave_the_reference_alone(model):
    h = header("entropy", model)
    writer, reader = StreamWriter(h, model), StreamReader(h, model)
    walk = random_walk(np.random.default_rng(4), 6)
    packets = [writer.encode(t, n) for n, t in enumerate(walk)]
    for n in range(3):
        reader.decode(packets[n])
    with pytest.raises(ReferenceLostError):
        reader.decode(packets[2])  # duplicate
    assert np.array_equal(reader.decode(packets[0]).tokens, walk[0])  # late keyframe still decodes
    for n in range(3, 6):
        assert np.array_equal(reader.decode(packets[n]).tokens, walk[n])


def test_fixed_mode_decodes_every_packet_after_losses():
    writer, reader = StreamWriter(header()), StreamReader(header())
    walk = random_walk(np.random.default_rng(6), 10)
    packets = [writer.encode(t, n) for n, t in enumerate(walk)]
    for n in (0, 3, 2, 9):
        assert np.array_equal(reader.decode(packets[n]).tokens, walk[n])


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
def test_sequence_numbers_and_timestamps_wrap(model, mode):
    h = header(mode, model if mode == "entropy" else None)
    writer, reader = StreamWriter(h, model, first_seq=65533), StreamReader(h, model)
    reader.time_hint_ms = 2**32 - 100  # version 2 carries 16 bits of time: a call knows roughly when it is
    walk = random_walk(np.random.default_rng(7), 6)
    out = [reader.decode(writer.encode(t, 2**32 - 80 + 40 * n)) for n, t in enumerate(walk)]
    assert [o.seq for o in out] == [65533, 65534, 65535, 0, 1, 2]
    assert [o.timestamp_ms for o in out] == [2**32 - 80, 2**32 - 40, 0, 40, 80, 120]
    assert [o.keyframe for o in out] == [True] + [mode == "fixed"] * 5  # no false loss at the wrap
    for o, t in zip(out, walk):
        assert np.array_equal(o.tokens, t)


def test_reader_rejects_packets_the_header_does_not_allow(model):
    writer = StreamWriter(header("entropy", model), model)
    walk = random_walk(np.random.default_rng(0), 2)
    writer.encode(walk[0], 0)
    entropy_packet = writer.encode(walk[1], 40)
    assert Packet.from_bytes(entropy_packet).entropy
    with pytest.raises(StreamError, match="fixed-mode"):
        StreamReader(header()).decode(entropy_packet)
    four = StreamWriter(header()).encode(FIXTURE_TOKENS_R4, 0)
    with pytest.raises(StreamError, match="encoded with 2"):
        StreamReader(header(layers=2)).decode(four)


def test_writer_and_reader_check_the_entropy_model(model):
    other = fit_entropy_model([random_walk(np.random.default_rng(9), 50)])
    with pytest.raises(StreamError, match="entropy model"):
        StreamReader(header("entropy", model), other)
    with pytest.raises(ValueError, match="tokens must be"):
        StreamWriter(header(layers=2)).encode(FIXTURE_TOKENS_R4, 0)


def test_reader_refuses_another_stream_version():
    with pytest.raises(StreamError, match="version 3"):
        StreamReader(header(version=3))
    assert STREAM_VERSION == 2


# --------------------------------------------------------------------------- version 2 messages


def test_v2_fixtures_parse_to_expected_fields(model):
    p = Packet.from_bytes(fixture("v2_packet_fixed_r4.bin"), reference_ms=123456789)
    assert p == Packet.from_bytes(fixture("packet_fixed_r4.bin"), version=1)  # time unwrapped near the reference
    assert len(fixture("v2_packet_fixed_r4.bin")) == PACKET_HEADER_BYTES + 56 == V1_PACKET_HEADER_BYTES + 54
    frames = parse_message(fixture("v2_message_3_frames.bin"), reference_ms=65000)
    assert [(f.seq, f.timestamp_ms, f.layers, f.face) for f in frames] == [
        (65535, 65500, 4, True), (0, 65540, 0, False), (1, 65580, 1, True)]
    assert np.array_equal(unpack_fixed(frames[0].payload, 4), FIXTURE_TOKENS_R4)
    assert bundle([f.to_bytes() for f in frames]) == fixture("v2_message_3_frames.bin")
    reader = StreamReader(header("entropy", model), model)
    out = reader.decode_message(fixture("v2_message_entropy.bin"))
    walk = random_walk(np.random.default_rng(11), 2)
    assert [o.keyframe for o in out] == [True, False]  # type: ignore[union-attr]
    for o, t in zip(out, walk):
        assert np.array_equal(o.tokens, t)  # type: ignore[union-attr]


@pytest.mark.parametrize("name,message", [
    ("v2_message_truncated.bin", "needs a 14-byte payload"),
    ("v2_message_reserved_bits.bin", "reserved"),
])
def test_broken_v2_fixtures_raise_stream_error(name, message):
    with pytest.raises(StreamError, match=message):
        parse_message(fixture(name))


@given(low=st.integers(0, 0xFFFF), reference=st.integers(0, 2**32 - 1))
def test_unwrapped_time_is_the_nearest_with_those_low_bits(low, reference):
    t = unwrap_ms(low, reference)
    assert t & 0xFFFF == low
    if reference < 0x8000 and t == low:
        return  # near the start of a stream, never a time before it
    assert min(abs(t - reference), abs(t + 2**32 - reference), abs(t - 2**32 - reference)) <= 0x8000


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
@given(seed=st.integers(0, 2**32 - 1), per=st.integers(1, 3), start=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_bundled_messages_decode_to_the_frames_of_single_ones(model, mode, seed, per, start):
    h = header(mode, model if mode == "entropy" else None)
    writer = StreamWriter(h, model, first_seq=seed % 65536)
    frames = frames_with_gaps(seed, 30)
    stamps = [(start + 40 * t) & 0xFFFFFFFF for t in range(len(frames))]
    singles = [writer.encode(tokens, ts) for tokens, ts in zip(frames, stamps)]
    one, many = StreamReader(h, model), StreamReader(h, model)
    one.time_hint_ms = many.time_hint_ms = start
    expected = [one.decode(p) for p in singles]
    got = []
    for i in range(0, len(singles), per):
        message = bundle(singles[i:i + per])
        # A message costs one 4-byte header, a byte of flags per frame, a time step per later frame,
        # and a length byte per entropy-coded frame that is not its last.
        assert len(message) <= sum(len(p) for p in singles[i:i + per]) - 2 * (len(singles[i:i + per]) - 1)
        got += many.decode_message(message)
        many.time_hint_ms = stamps[min(i + per, len(stamps) - 1)]
        one.time_hint_ms = many.time_hint_ms
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert not isinstance(g, Exception)
        assert (g.seq, g.timestamp_ms, g.face, g.keyframe, g.layers) == (e.seq, e.timestamp_ms, e.face, e.keyframe,
                                                                         e.layers)
        assert (g.tokens is None and e.tokens is None) or np.array_equal(g.tokens, e.tokens)


def test_bundle_needs_consecutive_frames_close_in_time():
    w = StreamWriter(header())
    a, b = w.encode(FIXTURE_TOKENS_R4, 0), w.encode(FIXTURE_TOKENS_R4, 40)
    far = w.encode(FIXTURE_TOKENS_R4, 1000)
    with pytest.raises(ValueError, match="not consecutive"):
        bundle([b, a])
    with pytest.raises(ValueError, match="255"):
        bundle([b, far])
    assert bundle([a]) == a


def test_a_lost_message_of_entropy_frames_is_concealed_frame_by_frame(model):
    h = header("entropy", model, keyframe_interval=5)
    writer, reader = StreamWriter(h, model), StreamReader(h, model)
    walk = random_walk(np.random.default_rng(3), 12)
    singles = [writer.encode(t, 40 * n) for n, t in enumerate(walk)]
    assert [n for n, p in enumerate(singles) if Packet.from_bytes(p).keyframe] == [0, 5, 10]
    messages = [bundle(singles[i:i + 3]) for i in range(0, 12, 3)]
    assert all(not isinstance(o, Exception) for o in reader.decode_message(messages[0]))
    # messages[1] (frames 3-5, the keyframe 5 with them) is lost: frames 6-9 predict from lost frames,
    # the keyframe 10 decodes on its own and frame 11 from it.
    out = reader.decode_message(messages[2]) + reader.decode_message(messages[3])
    assert [type(o).__name__ for o in out] == ["ReferenceLostError"] * 4 + ["DecodedPacket"] * 2
    for o, t in zip(out[4:], walk[10:]):
        assert np.array_equal(o.tokens, t)  # type: ignore[union-attr]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_messages_raise_only_stream_error(data):
    for reader in (StreamReader(header()),):
        try:
            out = reader.decode_message(data)
        except StreamError:
            continue
        for o in out:
            assert isinstance(o, StreamError) or o.tokens is None or (o.tokens.min() >= 0 and o.tokens.max() < 625)


def test_a_version_1_stream_still_writes_and_reads():
    h = header(version=1)
    writer, reader = StreamWriter(h), StreamReader(h)
    packet = writer.encode(FIXTURE_TOKENS_R4, 123456789)
    assert len(packet) == V1_PACKET_HEADER_BYTES + 56
    out = reader.decode(packet)
    assert out.timestamp_ms == 123456789 and np.array_equal(out.tokens, FIXTURE_TOKENS_R4)
    with pytest.raises(ValueError):
        bundle([packet, writer.encode(FIXTURE_TOKENS_R4, 123456829)])  # version 1 has no messages of frames
