"""talk-train with bad input: nothing shipped is replaced unless asked, and never from a failed run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from codec.paths import DATA_DIR
from codec.train.cli import TRAINERS, main

assert set(TRAINERS) >= {"template", "tokenizer", "entropy", "renderer", "speech"}

SHIPPED = {"template": "template.npz", "tokenizer": "tokenizer.pt", "entropy": "entropy.npz",
           "renderer": "renderer.pt", "speech": "speech_generator.pt"}


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DATA_DIR.iterdir()) if p.is_file()}


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_no_corpus_is_one_line_and_leaves_the_shipped_files(model: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TALKCODEC_CORPUS", str(tmp_path / "nonexistent"))
    before = _digests()
    assert main([model, "--overwrite"]) == 1  # asked to replace: still nothing written
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"talk-train {model}: error: no training clips under") and "\n" not in err, err
    assert "TALKCODEC_CORPUS" in err
    assert _digests() == before


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_a_shipped_file_is_replaced_only_with_overwrite(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _digests()
    assert main([model]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{SHIPPED[model]} exists (a shipped file" in err and "--overwrite" in err and "\n" not in err, err
    assert _digests() == before


def test_an_output_that_the_trainer_reads_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    before = _digests()
    assert main(["entropy", "--out", str(DATA_DIR / "tokenizer.pt"), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is the same file as tokenizer.pt (read by this trainer)" in err, err
    assert _digests() == before


def test_speech_writes_its_units_beside_out_and_checks_both(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = _digests()
    (tmp_path / "speech_units.npz").write_bytes(b"old")
    # Units fitted again go beside --out: an existing one there needs --overwrite too.
    assert main(["speech", "--out", str(tmp_path / "g.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "speech_units.npz exists" in err and "\n" not in err, err
    # The units the trainer keeps (--keep-units) may not be replaced by the generator.
    assert main(["speech", "--keep-units", "--out", str(DATA_DIR / "speech_units.npz"), "--overwrite"]) == 2
    assert "is the same file as speech_units.npz (read by this trainer)" in capsys.readouterr().err
    assert main(["speech", "--validate", "8", "--out", str(tmp_path / "g.pt")]) == 2
    assert "--validate: must be an integer in 0..7" in capsys.readouterr().err
    assert main(["speech", "--lower-face-scale", "1.5", "--out", str(tmp_path / "g.pt")]) == 2
    assert "--lower-face-scale: must be in [0, 1]" in capsys.readouterr().err
    assert main(["speech", "--keep-units", "--init", str(tmp_path / "none.pt"), "--out", str(tmp_path / "g.pt")]) == 2
    assert "--init" in capsys.readouterr().err
    assert _digests() == before


def test_bad_trainer_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["template", "--stride", "0", "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--stride: must be an integer in 1..1000" in err and "\n" not in err
    assert main(["entropy", "--out", str(tmp_path / "nodir" / "e.npz")]) == 2
    assert "folder" in capsys.readouterr().err
    assert main(["nosuchmodel"]) == 2


def test_template_trains_to_another_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codec.motion import load_template
    from codec.train.corpus import corpus_dir, corpus_split

    if not corpus_split(corpus_dir()).train:
        pytest.skip("the corpus is not beside the repository (set TALKCODEC_CORPUS)")
    out = tmp_path / "template.npz"
    before = _digests()
    assert main(["template", "--stride", "50", "--out", str(out)]) == 0
    assert load_template(out).shape.shape == (478, 3) and _digests() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["template.npz"]  # no temporary file left
