import json
import subprocess
import sys

import numpy as np
import pytest

from codec.cli import main


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
    lm = tmp_path / "speech.npy"
    assert main(["decode", str(out), "--portrait", str(sample_portrait), "--landmarks", str(lm)]) == 0
    assert np.load(lm).shape == (125, 478, 3)
