"""talk-train renderer-pack and renderer-gpu: the bundled sample packed, then a few training steps on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codec.render.refiner import RENDERER_PATH, load_refiner
from codec.train import refiner_gpu as T
from codec.train import refiner_pack


@pytest.fixture(scope="module")
def pack(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "train.npz"
    assert refiner_pack.main(["--clip", str(sample_clip), "--frames-per-clip", "5", "--sources", "1",
                   "--out", str(out)]) == 0
    return out


def test_pairs_load_with_truth_around_every_mask(pack: Path) -> None:
    data = T.load_pairs(pack, torch.device("cpu"))
    assert data.inputs.shape[:2] == (5, 16) and data.inputs.dtype == torch.bfloat16
    assert len(data.identity) == 1  # the portrait's own frame
    mask = data.inputs[:, 15:].float()
    known = data.known[data.target].float()
    # The true frames were kept wherever the repair mask reaches.
    assert ((mask > 1e-3).float() * (1 - known)).sum() == 0
    assert data.weight.max() == 4  # the mouth


def test_a_few_steps_write_loadable_weights(pack: Path, tmp_path: Path) -> None:
    out, stats = tmp_path / "r.pt", tmp_path / "stats.json"
    args = ["--data", str(pack), "--out", str(out), "--device", "cpu", "--minutes", "2", "--steps", "3",
            "--batch", "2", "--patch", "64", "--stats", str(stats), "--log-every", "1"]
    assert T.main(args) == 0
    assert json.loads(stats.read_text())["steps"] == 3
    model = load_refiner(out)
    assert out.stat().st_size < 16 * 2**20 and sum(p.numel() for p in model.parameters()) > 0


def test_the_shipped_weights_are_not_overwritten(pack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = RENDERER_PATH.stat().st_mtime_ns if RENDERER_PATH.exists() else None
    assert T.main(["--data", str(pack), "--out", str(RENDERER_PATH), "--steps", "1"]) == 1
    assert "shipped" in capsys.readouterr().err
    assert (RENDERER_PATH.stat().st_mtime_ns if RENDERER_PATH.exists() else None) == before


def test_a_missing_pack_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert T.main(["--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "r.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pack" in err
