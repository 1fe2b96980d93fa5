import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.benchmark import BenchConfig, run
from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "clip.mp4"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["--clips", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in _error_line(capsys)


def test_folder_without_clips_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    assert main(["--clips", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no video clips" in _error_line(capsys)


def test_non_video_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "clips"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"this is not a video" * 10)
    assert main(["--clips", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "broken.mp4" in _error_line(capsys)
    assert main(["--clips", str(tmp_path / "clips" / "broken.mp4"), "--out", str(tmp_path / "o")]) == 2
    _error_line(capsys)


def test_console_script_exits_non_zero_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench.cli", "--clips", str(tmp_path / "x"), "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "error" in p.stderr


def test_validate_rejects_broken_documents():
    good = {"clip": "a.mp4", "codec": "h264", "setting": "h264 crf=30 128px 25fps", "kbps": 11.0, "wire_kbps": 14.0,
            "psnr": 30.0, "ssim": 0.9, "nme": 0.02, "mouth_ssim": 0.8, "id_dist": None, "detail": 0.5,
            "cpbd": 0.1, "face_detected": 1.0, "encode_ms": 1.0, "render_ms": 1.0, "device": "cpu"}
    report.validate({"records": [good], "summary": {}})
    for broken in ({k: v for k, v in good.items() if k != "nme"}, good | {"codec": "av1"}, good | {"kbps": "11"}):
        with pytest.raises(ValueError):
            report.validate({"records": [broken], "summary": {}})


@pytest.mark.skipif(not SAMPLE.exists(), reason="the bundled sample clip is missing")
def test_smoke_run_writes_valid_outputs(tmp_path, monkeypatch):
    # A short version of --quick: one clip, 20 frames, baselines at 2x and 8x talkcodec's bitrate
    # (on so short a clip the first keyframe alone needs more than 1x). --latency's loopback call
    # has its own test (test_loopback.py); here it is stood in for.
    import bench.loopback

    calls = []
    monkeypatch.setattr(bench.loopback, "measure_call",
                        lambda clip, config: calls.append(clip) or {"latency_ms": {"p50": 80.0, "p95": 120.0}})
    cfg = BenchConfig(max_frames=20, multiples=(2, 8), stride=5, search_frames=4, sizes=(128, 64),
                      neural_layers=(4,), latency=True)
    run([SAMPLE], tmp_path, cfg)
    doc = json.loads((tmp_path / "bench.json").read_text())
    report.validate(doc)
    codecs = {r["codec"] for r in doc["records"]}
    assert {"h264", "vp8"} <= codecs
    if doc["summary"]["talkcodec"] == "ok":
        tc = [r for r in doc["records"] if r["codec"] == "talkcodec"]
        assert sum(r["renderer"] == "warp" for r in tc) == 8
        assert all(r["layers"] == 4 for r in tc if r["renderer"] != "warp")
        fixed = {r["layers"]: r["kbps"] for r in tc if r["mode"] == "fixed"}
        assert fixed[1] < fixed[2] < fixed[3] < fixed[4]
    for r in doc["records"]:
        assert set(report.RECORD_KEYS) <= set(r)
        if r["codec"] != "talkcodec":
            assert r["kbps"] <= r["target_kbps"] * 1.1
        assert r["wire_kbps"] > r["kbps"]  # transport headers on top
        if r["codec"] == "talkcodec":
            assert r["wire_kbps_3fpp"] < r["wire_kbps"]  # fewer messages, fewer headers
    assert "at_talkcodec_bitrate" in doc["summary"] and doc["summary"]["complete"] is True
    if doc["summary"]["talkcodec"] == "ok":
        # The call, then the one over a narrow link for the time to the caller's face.
        assert calls == [SAMPLE, SAMPLE] and doc["summary"]["call"]["latency_ms"]["p95"] == 120.0
        tc4 = [r for r in doc["records"] if r["codec"] == "talkcodec" and r["layers"] == 4]
        assert all(r["reference_bytes"] > 0 and r["kbps_with_pictures"] > r["kbps"] > r["kbps_with_pictures_5min"]
                   - (r["reference_bytes"] + r["keyframe_bytes"]) * 8 / 300 / 1000 - 1e-6 for r in tc4)
        assert doc["summary"]["per_clip"]["clip.mp4"]["pictures"]["reference_bytes"] == tc4[0]["reference_bytes"]
        assert "## The caller's picture" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "rd.png").stat().st_size > 1000
    assert (tmp_path / "strips" / "clip.png").exists()
    assert "| clip | codec |" in (tmp_path / "report.md").read_text()
