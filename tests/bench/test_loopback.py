"""talk-bench --latency's loopback call: the real talk-send and talk-recv, timed."""

from pathlib import Path

import pytest

from bench import report
from bench.loopback import CallConfig, measure_call
from codec.errors import MediaError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "clip.mp4"


def test_missing_clip_is_an_error(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        measure_call(tmp_path / "nope.mp4")


@pytest.mark.skipif(not SAMPLE.exists(), reason="the bundled sample clip is missing")
def test_call_reports_latency_of_rendered_frames():
    out = measure_call(SAMPLE, CallConfig(seconds=4.0, device="cpu"))
    # 100 frames are captured; a loaded machine tracks far fewer of them (43 with two busy loops beside
    # a test suite, 3 at load 12-14 on 2 cores), and a few are enough for the latency figures this test is
    # about: the test checks that frames flow and are timed, not the tracker's speed.
    print(f"\nloopback call: {out['frames_sent']} of 100 frames sent")
    assert out["frames_sent"] >= 1
    assert out["frames_received"] >= 0.9 * out["frames_sent"]
    assert out["frames_rendered"] > 0
    lat, play = out["latency_ms"], out["playout_latency_ms"]
    assert lat["n"] > 0 and play["n"] > 0
    # A frame is rendered after it is played out, which is after it was captured.
    assert 0 < play["p50"] <= lat["p50"] <= lat["p95"]
    assert 0 < out["motion_kbps"] <= 11.2
    # talk-recv had no portrait: it rendered the caller's own picture once it had come (or the placeholder).
    assert out["picture"]["state"] in ("caller", "waiting") and out["pictures_sent"]["reference_bytes"] > 0


def test_report_shows_the_call(tmp_path):
    call = {"clip": "a.mp4", "seconds": 10.0, "layers": 4, "renderer": "warp", "device": "cpu",
            "latency_ms": {"p50": 81.0, "p95": 117.0}, "playout_latency_ms": {"p50": 55.0, "p95": 77.0},
            "frames_sent": 245, "frames_received": 245, "frames_rendered": 250, "motion_kbps": 11.1,
            "packet_loss": 0.0}
    report.write_markdown([], {"call": call}, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "p50 81 ms, p95 117 ms" in text and "245 frames sent" in text
    narrow = {"kbps": 32.0, "time_to_face_ms": [7400.0], "reference_arrival_ms": [6900.0],
              "motion_delay_ms": {"p50": 15.8, "p95": 19.6}, "pictures_sent": {"reference_bytes": 9337}}
    report.write_markdown([], {"call": call | {"narrow_link": narrow}}, tmp_path / "n.md")
    text = (tmp_path / "n.md").read_text()
    assert "simulated 32 kbps link" in text and "on screen 7400 ms" in text and "p95 19.6 ms" in text
    report.write_markdown([], {"call": {"clip": "a.mp4", "error": "talk-recv failed: boom"}}, tmp_path / "e.md")
    assert "failed: talk-recv failed: boom" in (tmp_path / "e.md").read_text()
