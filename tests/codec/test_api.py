import numpy as np
import pytest

from codec.api import EncoderConfig, FrameDecoder, FrameEncoder, decode_stream, encode_landmarks
from codec.bitstream import Packet, StreamHeader
from codec.errors import NoFaceError, StreamError
from codec.regions import inter_ocular


@pytest.fixture(scope="module")
def face(sample_landmarks):
    return np.ones(len(sample_landmarks), bool)


def _nme(a, b):
    return float((np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) / inter_ocular(b)[..., None]).mean())


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_fixed_packets_have_the_fixed_size(sample_landmarks, face, layers):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig(layers=layers))
    sizes = {len(Packet.from_bytes(p).payload) for p in s.packets}
    assert sizes == {14 * layers}
    kbps = sum(sizes) * 8 * 25 / 1000
    assert kbps <= 11.2 * layers / 4 + 1e-9


def test_entropy_mode_decodes_to_the_same_landmarks_and_is_smaller(sample_landmarks, face):
    fixed = encode_landmarks(sample_landmarks, face, EncoderConfig())
    ent = encode_landmarks(sample_landmarks, face, EncoderConfig(entropy=True))
    assert np.array_equal(fixed.tokens, ent.tokens)
    a = decode_stream(fixed.header, fixed.packets, sample_landmarks[0])
    b = decode_stream(ent.header, ent.packets, sample_landmarks[0])
    assert np.allclose(a, b)
    payload = lambda s: sum(len(Packet.from_bytes(p).payload) for p in s.packets)  # noqa: E731
    assert payload(ent) < 0.75 * payload(fixed)


def test_self_reenactment_follows_the_face(sample_landmarks, face):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    out = decode_stream(s.header, s.packets, sample_landmarks[0])
    still = np.broadcast_to(sample_landmarks[0], sample_landmarks.shape)
    assert _nme(out, sample_landmarks) < 0.25 * _nme(still, sample_landmarks)


def test_fewer_layers_still_decode(sample_landmarks, face):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    errs = [_nme(decode_stream(s.header, s.packets, sample_landmarks[0], layers=r), sample_landmarks)
            for r in (1, 4)]
    still = _nme(np.broadcast_to(sample_landmarks[0], sample_landmarks.shape), sample_landmarks)
    assert errs[0] < 0.5 * still and errs[1] <= errs[0] * 1.02


def test_each_fixed_packet_decodes_on_its_own(sample_landmarks, face):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    full = decode_stream(s.header, s.packets, sample_landmarks[0])
    dec = FrameDecoder(s.header, sample_landmarks[0])
    # Every other packet lost: the survivors decode exactly as before.
    for t in range(0, len(s.packets), 2):
        f = dec.decode(s.packets[t])
        assert f.seq == t and np.allclose(f.landmarks, full[t], atol=1e-3)


def test_frames_without_a_face_decode_to_the_portrait_at_rest(sample_landmarks, face):
    face = face.copy()
    face[10:20] = False
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    out = decode_stream(s.header, s.packets, sample_landmarks[0])
    assert np.allclose(out[12], sample_landmarks[0])
    with pytest.raises(NoFaceError):
        encode_landmarks(sample_landmarks, np.zeros_like(face), EncoderConfig())
    with pytest.raises(NoFaceError):
        encode_landmarks(sample_landmarks, face, EncoderConfig(), reference_frame=12)


def test_reference_frame_is_chosen(sample_landmarks, face):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig(), reference_frame=30)
    assert s.header.reference.frame_index == 30
    out = decode_stream(s.header, s.packets, sample_landmarks[30])
    assert _nme(out[30:31], sample_landmarks[30:31]) < 0.02


def test_decoder_refuses_another_tokenizer(sample_landmarks, face):
    s = encode_landmarks(sample_landmarks, face, EncoderConfig())
    d = s.header.to_dict() if hasattr(s.header, "to_dict") else None
    import dataclasses

    other = dataclasses.replace(s.header, tokenizer_hash="0" * 16)
    with pytest.raises(StreamError):
        FrameDecoder(StreamHeader.from_bytes(other.to_bytes()), sample_landmarks[0])
    del d


def test_frame_encoder_streams_from_frames(sample_frames):
    enc = FrameEncoder(EncoderConfig())
    blank = np.zeros_like(sample_frames[0])
    assert enc.encode(blank, 0) is None  # nothing to send before a face is seen
    packets = [enc.encode(f, 40 * (i + 1)) for i, f in enumerate(sample_frames[:5])]
    assert enc.header is not None and all(isinstance(p, bytes) for p in packets)
    enc.set_layers(2)
    p = Packet.from_bytes(enc.encode(sample_frames[5], 240))
    assert p.layers == 2 and p.face
    p = Packet.from_bytes(enc.encode(blank, 280))
    assert not p.face
    enc.close()
