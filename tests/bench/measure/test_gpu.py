"""bench.measure.gpu and bench.measure.refiner_compare rehearsed on the CPU, on a bundle of the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.measure import gpu, gpu_bundle, gpu_prepare, refiner_compare, refiner_ship
from codec.render.refiner import RENDERER_PATH


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "bench.npz"
    assert gpu_prepare.main(["--quick", "--frames", "40", "--eval-stride", "8", "--out", str(out)]) == 0
    return out


def test_bundle_reads_back(bundle: Path) -> None:
    b = gpu_bundle.load_bundle(bundle)
    assert [c.name for c in b.clips] == ["sample"] and not b.extra
    clip = b.clips[0]
    assert clip.targets.shape == (40, 478, 3) and clip.truth.shape == (5, 512, 512, 3)
    assert clip.ref_warp.shape[0] == len(clip.ref_index) == len(clip.ref_targets) == 2


def test_rehearsal_runs_every_stage(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--rehearse", "--max-streams", "2", "--bundle", str(bundle), "--json", str(out)]
    assert gpu.main(args) == 0
    r = json.loads(out.read_text())
    assert r["stages_done"][-1] == "end" and r["rehearsal"]
    assert r["agreement"]["warp_ssim_min"] >= 0.99
    if RENDERER_PATH.exists():
        assert r["agreement"]["neural_ssim_min"] >= 0.99
        assert r["batch1_ms"]["warp_and_refiner"]["count"] > 0
    assert [row["streams"] for row in r["throughput_warp"]][:2] == [1, 2]
    assert r["warp"]["best_fps"] > 0 and r["raster_alone_ms"]["numba_cpu_1_thread"]["median"] > 0
    within = [row["streams"] for row in r["throughput_warp"] if row["within_tick"]]
    assert r["warp"]["streams"] == max(within, default=0)


def test_missing_bundle_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--device", "cpu", "--bundle", str(tmp_path / "none.npz"), "--json", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gpu_prepare" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--device", "cuda", "--bundle", str(bundle), "--json", str(tmp_path / "x")]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err


def test_verdict_needs_all_three_metrics() -> None:
    row = lambda s, m, d: {"ssim": s, "mouth_ssim": m, "detail": d}  # noqa: E731
    result = {"clips": [{"clip": "a", "frames": 3, "current": row(0.7, 0.8, 1.0), "candidate": row(0.8, 0.9, 0.9)}]}
    v = refiner_compare.verdict(result)
    assert v["better"] == {"ssim": True, "mouth_ssim": True, "detail": False} and not v["beats"]
    result["clips"][0]["candidate"] = row(0.8, 0.9, 1.1)
    assert refiner_compare.verdict(result)["beats"]


@pytest.mark.skipif(not RENDERER_PATH.exists(), reason="no refiner weights")
def test_the_shipped_refiner_does_not_beat_itself(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    args = ["--candidate", str(RENDERER_PATH), "--bundle", str(bundle), "--json", str(out)]
    assert refiner_compare.main(args) == 0
    r = json.loads(out.read_text())
    assert r["mean"]["candidate"] == r["mean"]["current"] and not r["beats"]
    assert set(r["mean"]) == {"warp", "current", "candidate"}


def test_bad_candidates_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not weights")
    for tool in (refiner_compare, refiner_ship):
        assert tool.main(["--candidate", str(tmp_path / "none.pt")]) == 1
        assert tool.main(["--candidate", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "no such weights file" in err[0] and "not refiner weights" in err[1]
