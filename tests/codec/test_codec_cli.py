import json
import subprocess
import sys

import numpy as np
import pytest

from codec.cli import main
from codec.regions import inter_ocular
from codec.smoothing import LIMITS


@pytest.fixture(scope="module")
def tok(tmp_path_factory, sample_clip):
    out = tmp_path_factory.mktemp("cli") / "clip.tok"
    assert main(["encode", str(sample_clip), "-o", str(out)]) == 0
    return out


def test_info_json(tok, capsys):
    capsys.readouterr()
    assert main(["info", str(tok), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"frames", "fps", "layers", "mode", "bytes", "kbps", "config"} <= set(info)
    assert info["frames"] == 125 and info["fps"] == 25 and info["layers"] == 4 and info["mode"] == "fixed"
    assert info["bytes"] == 125 * 56
    assert info["kbps"] <= 11.2
    assert info["audio_bytes"] > 0  # the clip's speech travels in the .tok


def test_entropy_and_layers(tmp_path, sample_clip, capsys):
    out = tmp_path / "e.tok"
    assert main(["encode", str(sample_clip), "-o", str(out), "--entropy", "--layers", "2", "--no-audio"]) == 0
    capsys.readouterr()
    main(["info", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["mode"] == "entropy" and info["layers"] == 2 and info["kbps"] < 5.6


def test_decode_landmarks(tok, tmp_path, sample_portrait):
    out = tmp_path / "lm.npy"
    assert main(["decode", str(tok), "--portrait", str(sample_portrait), "--landmarks", str(out)]) == 0
    lm = np.load(out)
    assert lm.shape == (125, 478, 3)
    assert (lm[..., 0] > 0).all() and (lm[..., 0] < 512).all()


def test_decode_video(tok, tmp_path, sample_portrait):
    from codec.media import probe_video

    out = tmp_path / "out.mp4"
    assert main(["decode", str(tok), "--portrait", str(sample_portrait), "-o", str(out), "--device", "cpu"]) == 0
    info = probe_video(out)
    assert (info.width, info.height) == (512, 512) and info.has_audio


def _run(*args):
    return subprocess.run([sys.executable, "-m", "codec.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["not_video", "missing", "corrupt_tok", "no_face_portrait"])
def test_bad_input_gives_one_line_and_nonzero_exit(case, tmp_path, tok, sample_portrait):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    if case == "not_video":
        r = _run("encode", str(junk), "-o", str(tmp_path / "x.tok"))
    elif case == "missing":
        r = _run("encode", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x.tok"))
    elif case == "corrupt_tok":
        bad = tmp_path / "bad.tok"
        bad.write_bytes(tok.read_bytes()[:40])
        r = _run("info", str(bad))
    else:
        import cv2

        blank = tmp_path / "blank.png"
        cv2.imwrite(str(blank), np.full((300, 300, 3), 200, np.uint8))
        r = _run("decode", str(tok), "--portrait", str(blank), "--landmarks", str(tmp_path / "l.npy"))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines and "error" in lines[-1] and "Traceback" not in r.stderr


def test_encode_from_audio(tmp_path, sample_clip, sample_portrait, capsys):
    from codec.speech import SpeechModelMissing
    from codec.speech.units import load_unitizer

    try:
        load_unitizer()
    except SpeechModelMissing as e:  # the Whisper data packages are not installed
        pytest.skip(f"speech encoder missing: {e}")
    out = tmp_path / "speech.tok"
    assert main(["encode", "--from-audio", str(sample_clip), "-o", str(out), "--seed", "3"]) == 0
    capsys.readouterr()
    main(["info", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 125 and info["faces"] == 125 and info["audio_bytes"] > 0
    assert info["pictures"] == []  # no camera and no --portrait: no picture of the caller
    lm = tmp_path / "speech.npy"
    assert main(["decode", str(out), "--portrait", str(sample_portrait), "--landmarks", str(lm)]) == 0
    assert np.load(lm).shape == (125, 478, 3)
    # With a photo given, it travels as the caller's picture and decoding needs no --portrait.
    withphoto = tmp_path / "photo.tok"
    assert main(["encode", "--from-audio", str(sample_clip), "-o", str(withphoto), "--seed", "3",
                 "--portrait", str(sample_portrait)]) == 0
    capsys.readouterr()
    main(["info", str(withphoto), "--json"])
    assert [p["kind"] for p in json.loads(capsys.readouterr().out)["pictures"]] == ["reference"]
    assert main(["decode", str(withphoto), "--landmarks", str(lm)]) == 0


# -- the caller's picture in the .tok ------------------------------------------------------------------


def test_encode_stores_the_callers_picture(tok, capsys):
    capsys.readouterr()
    assert main(["info", str(tok), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    kinds = [p["kind"] for p in info["pictures"]]
    assert kinds[0] == "reference" and len(kinds) >= 2  # the sample blinks and opens its mouth early
    assert all(p["bytes"] <= 40_000 for p in info["pictures"])
    # Full pictures are 512 px; a mouth picture is the mouth alone, at the same scale.
    assert all(p["size"] == 512 for p in info["pictures"] if p["kind"] != "mouth")
    assert all(64 <= p["size"] < 256 for p in info["pictures"] if p["kind"] == "mouth")
    assert info["picture_bytes"] == sum(p["bytes"] for p in info["pictures"])
    assert info["wire_kbps_with_pictures"] > info["wire_kbps"]


def test_decode_without_portrait_animates_the_callers_picture(tok, tmp_path):
    from codec.container import read_tok
    from codec.media import probe_video
    from codec.picture import parse_picture

    lm_path = tmp_path / "own.npy"
    assert main(["decode", str(tok), "--landmarks", str(lm_path)]) == 0
    lm = np.load(lm_path)
    ref = read_tok(tok).reference
    assert ref is not None
    # Frame 0 is the reference itself: decoded onto its own picture it lands where the picture's face is.
    assert np.abs(lm[0] - parse_picture(ref).landmarks).mean() < 2.0
    out = tmp_path / "own.mp4"
    assert main(["decode", str(tok), "-o", str(out), "--device", "cpu", "--size", "256"]) == 0
    info = probe_video(out)
    assert (info.width, info.height) == (256, 256) and info.has_audio


def test_no_portrait_keeps_the_face_out_and_decode_says_what_it_needs(tmp_path, sample_clip):
    private = tmp_path / "private.tok"
    assert main(["encode", str(sample_clip), "-o", str(private), "--no-portrait", "--no-audio"]) == 0
    from codec.container import read_tok

    assert read_tok(private).pictures == ()
    r = _run("decode", str(private), "-o", str(tmp_path / "x.mp4"))
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "--portrait" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_no_keyframes_stores_the_reference_alone(tmp_path, sample_clip, tok):
    from codec.container import read_tok
    from codec.picture import PictureKind, parse_picture

    only = tmp_path / "only.tok"
    assert main(["encode", str(sample_clip), "-o", str(only), "--no-keyframes", "--no-audio"]) == 0
    kinds = [parse_picture(p).kind for p in read_tok(only).pictures]
    assert kinds == [PictureKind.REFERENCE]
    full = read_tok(tok).pictures  # the default: the same reference, then keyframes
    assert read_tok(only).pictures[0] == full[0] and len(full) > 1


@pytest.mark.parametrize("flags, words", [
    (["--portrait", "x.jpg"], "goes with --from-audio"),
    (["--from-audio", "--portrait", "x.jpg", "--no-portrait"], "contradict"),
    (["--no-keyframes", "--no-portrait"], "contradict"),
])
def test_picture_flags_that_do_not_go_together(tmp_path, sample_clip, flags, words):
    r = _run("encode", str(sample_clip), "-o", str(tmp_path / "x.tok"), *flags)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- bad input (issue 14)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dot"])
def test_encode_refuses_to_write_over_its_input(how, tmp_path, sample_clip, capsys, monkeypatch):
    import os
    import shutil

    clip = tmp_path / "v.mp4"
    shutil.copy(sample_clip, clip)
    out = {"same": clip, "symlink": tmp_path / "link.mp4", "hardlink": tmp_path / "hard.mp4", "dot": "./v.mp4"}[how]
    if how == "symlink":
        out.symlink_to(clip)
    elif how == "hardlink":
        os.link(clip, out)
    monkeypatch.chdir(tmp_path)
    assert main(["encode", str(clip), "-o", str(out)]) == 2
    assert "is the same file as INPUT" in _one_line_error(capsys)
    assert clip.read_bytes() == sample_clip.read_bytes()


def test_encode_checks_output_and_reference_frame_before_tracking(tmp_path, sample_clip, capsys, monkeypatch):
    import codec.cli

    def no_tracking(*a: object, **k: object) -> None:
        raise AssertionError("the clip was tracked before the arguments were checked")

    monkeypatch.setattr(codec.cli, "track_video", no_tracking)
    assert main(["encode", str(sample_clip), "-o", str(tmp_path / "nodir" / "x.tok")]) == 2
    assert "folder" in _one_line_error(capsys)
    assert main(["encode", str(sample_clip), "-o", str(tmp_path / "x.tok"), "--reference-frame", "9999"]) == 2
    assert "--reference-frame 9999 is outside" in _one_line_error(capsys)
    assert main(["encode", str(sample_clip), "-o", str(tmp_path / "x.tok"), "--seed", "3"]) == 2
    assert "--seed applies to --from-audio" in _one_line_error(capsys)


@pytest.mark.parametrize("size", ["0", "-5", "7", "513", "20000"])
def test_decode_size_is_checked_when_parsing(size, tok, tmp_path, sample_portrait, capsys):
    code = main(["decode", str(tok), "--portrait", str(sample_portrait), "-o", str(tmp_path / "o.mp4"), "--size", size])
    assert code == 2
    err = _one_line_error(capsys)
    assert "--size" in err and "64..2048" in err and not (tmp_path / "o.mp4").exists()


def test_decode_names_the_landmarks_file_it_writes(tok, tmp_path, sample_portrait, capsys):
    name = tmp_path / "lm"
    assert main(["decode", str(tok), "--portrait", str(sample_portrait), "--landmarks", str(name)]) == 0
    assert capsys.readouterr().out.startswith(f"{name}.npy: 125 frames")
    assert (tmp_path / "lm.npy").exists() and not name.exists()


def test_decode_refuses_outputs_over_its_inputs(tok, tmp_path, sample_portrait, capsys):
    import shutil

    portrait = tmp_path / "me.jpg"
    shutil.copy(sample_portrait, portrait)
    assert main(["decode", str(tok), "--portrait", str(portrait), "-o", str(portrait)]) == 2
    assert "must end in .mp4" in _one_line_error(capsys)
    assert main(["decode", str(tok), "--portrait", str(portrait), "--landmarks", str(tok)]) == 0  # writes clip.tok.npy
    capsys.readouterr()
    npy = tmp_path / "in.npy"
    npy.write_bytes(b"keep")
    assert main(["decode", str(tok), "--portrait", str(npy), "--landmarks", str(npy)]) == 2
    assert "same file as --portrait" in _one_line_error(capsys) and npy.read_bytes() == b"keep"
    assert portrait.read_bytes() == sample_portrait.read_bytes()


def test_decode_of_a_tok_without_packets_fails(tok, tmp_path, sample_portrait, capsys):
    from codec.container import read_tok

    empty = tmp_path / "empty.tok"
    empty.write_bytes(read_tok(tok).header.to_bytes())
    out = tmp_path / "e.mp4"
    assert main(["decode", str(empty), "--portrait", str(sample_portrait), "-o", str(out)]) == 1
    assert "no motion packets" in _one_line_error(capsys) and not out.exists()


def test_a_failed_decode_leaves_no_file(tok, tmp_path, capsys):
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 200, np.uint8))
    out = tmp_path / "o.mp4"
    out.write_bytes(b"an earlier render")
    assert main(["decode", str(tok), "--portrait", str(blank), "-o", str(out)]) == 1
    _one_line_error(capsys)
    assert out.read_bytes() == b"an earlier render" and sorted(p.name for p in tmp_path.iterdir()) == [
        "blank.png", "o.mp4"]


def _with_packet(tok_path, out, index, payload_byte):
    """A copy of a .tok whose packet ``index`` has its first payload byte set (0xFF: out of range in fixed mode)."""
    import struct

    from codec.bitstream import PACKET_HEADER_BYTES
    from codec.container import read_tok

    t = read_tok(tok_path)
    pk = list(t.packets)
    p = bytearray(pk[index])
    p[PACKET_HEADER_BYTES] = payload_byte
    pk[index] = bytes(p)
    parts = [t.header.to_bytes()] + [struct.pack(">cI", b"i", len(x)) + x for x in t.pictures]
    parts += [struct.pack(">cI", b"P", len(x)) + x for x in pk]
    if t.audio:
        parts.append(struct.pack(">cI", b"A", len(t.audio)) + t.audio)
    out.write_bytes(b"".join(parts))
    return out


def test_a_corrupt_packet_costs_its_own_frame(tok, tmp_path, sample_portrait, capsys):
    bad = _with_packet(tok, tmp_path / "bad.tok", 10, 0xFF)
    capsys.readouterr()
    assert main(["info", str(bad), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [b["index"] for b in info["undecodable_packets"]] == [10] and info["frames"] == 125
    assert main(["info", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "damaged: packet 10 of 125 does not decode" in out
    lm = tmp_path / "lm.npy"
    assert main(["decode", str(bad), "--portrait", str(sample_portrait), "--landmarks", str(lm)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "packet 10 of 125 does not decode" in err[0] and "concealed" in err[0]
    good = tmp_path / "good.npy"
    assert main(["decode", str(tok), "--portrait", str(sample_portrait), "--landmarks", str(good)]) == 0
    a, b = np.load(lm), np.load(good)
    # Every other frame as decoded and smoothed; the lost frame's neighbours are not smoothed (no neighbour
    # on one side), so they differ by at most the smoothing's bound (set by the frame as decoded: a's).
    assert np.allclose(np.delete(a, [9, 10, 11], 0), np.delete(b, [9, 10, 11], 0))
    for i in (9, 11):
        assert np.abs(a[i] - b[i]).max() <= LIMITS[-1] * float(inter_ocular(a[i])) + 1e-3
    # The lost one interpolated from its neighbours as decoded (they stay unsmoothed beside the gap).
    assert np.allclose(a[10], (a[9] + a[11]) / 2, atol=1e-3)


def test_a_corrupt_audio_track_renders_without_sound(tok, tmp_path, capsys):
    import struct

    from codec.container import read_tok
    from codec.media import probe_video

    t = read_tok(tok)
    audio = bytearray(t.audio or b"")
    for i in range(200, len(audio), 50):
        audio[i] ^= 0x5A
    parts = [t.header.to_bytes()] + [struct.pack(">cI", b"i", len(x)) + x for x in t.pictures]
    parts += [struct.pack(">cI", b"P", len(x)) + x for x in t.packets]
    parts.append(struct.pack(">cI", b"A", len(audio)) + bytes(audio))
    bad = tmp_path / "badaudio.tok"
    bad.write_bytes(b"".join(parts))
    capsys.readouterr()
    assert main(["info", str(bad)]) == 0
    assert "the audio track does not decode" in capsys.readouterr().out
    out = tmp_path / "o.mp4"
    assert main(["decode", str(bad), "-o", str(out), "--device", "cpu", "--size", "128"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "audio track is corrupt" in err[0] and "without sound" in err[0]
    info = probe_video(out)
    assert info.frames == 125 and not info.has_audio


def test_entropy_mode_conceals_until_the_next_keyframe(sample_landmarks):
    from codec.api import EncoderConfig, decode_stream, encode_landmarks
    from codec.stream import undecodable_packets

    s = encode_landmarks(sample_landmarks, np.ones(len(sample_landmarks), bool), EncoderConfig(entropy=True))
    pk = list(s.packets)
    from codec.bitstream import PACKET_HEADER_BYTES

    p = bytearray(pk[3])
    p[PACKET_HEADER_BYTES:] = b"\xff" * (len(p) - PACKET_HEADER_BYTES)
    pk[3] = bytes(p)
    bad = undecodable_packets(s.header, pk)
    assert 3 in bad or 4 in bad  # garbage range-coded bytes may decode; what predicts from them may not
    assert all(i < 25 for i in bad)  # a keyframe every second ends the damage
    out = decode_stream(s.header, pk, sample_landmarks[0])
    assert np.isfinite(out).all() and out.shape == sample_landmarks.shape


def test_a_truncated_clip_says_it_ended_early(tmp_path, sample_clip, capsys):
    cut = tmp_path / "cut.mp4"
    data = sample_clip.read_bytes()
    cut.write_bytes(data[: len(data) // 4])  # the sample's index is up front: the frames are cut
    out = tmp_path / "cut.tok"
    assert main(["encode", str(cut), "-o", str(out), "--no-portrait"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.mp4 ended after" in err[0] and "of the 125 frames its container announces" in err[0]
    from codec.container import read_tok

    assert 0 < len(read_tok(out).packets) < 125
