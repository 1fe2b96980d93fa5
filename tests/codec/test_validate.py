"""The shared checks of what users type (codec.validate) and the atomic writes every tool uses (codec.paths)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from codec.errors import UsageError
from codec.paths import atomic_output, write_bytes_atomic
from codec.validate import (
    ArgumentParser,
    audio_kbps,
    check_paths,
    check_video_output,
    device,
    frame_size,
    jitter_ms,
    motion_kbps,
    one_layer_kbps,
    room_token,
    same_file,
    seconds,
    seed,
)


@pytest.mark.parametrize("text", ["64", "512", "1024", "2048"])
def test_frame_sizes_accepted(text: str) -> None:
    assert frame_size(text) == int(text)


@pytest.mark.parametrize("text", ["0", "-5", "7", "513", "510", "20000", "56", "2056", "abc", "5e2", ""])
def test_frame_sizes_refused_with_the_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"64\.\.2048|integer"):
        frame_size(text)


@pytest.mark.parametrize("parse,text", [
    (seconds, "0"), (seconds, "-1"), (seconds, "nan"), (seconds, "inf"), (seconds, "1e308"),
    (jitter_ms, "-5"), (jitter_ms, "NaN"), (jitter_ms, "1e12"),
    (audio_kbps, "0"), (audio_kbps, "5.9"), (audio_kbps, "100000"), (audio_kbps, "-inf"),
    (motion_kbps, "0"), (motion_kbps, "-3"), (motion_kbps, "inf"), (motion_kbps, "3"), (motion_kbps, "1e9"),
    (seed, "-1"), (seed, str(2**32)), (seed, "1.5"),
    (device, "foo"), (device, "cuda:"), (device, "gpu"), (device, ""),
    (room_token, ""), (room_token, "   "),
])
def test_bad_values_are_refused(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_good_values_pass() -> None:
    assert seconds("0.5") == 0.5 and jitter_ms("0") == 0.0 and audio_kbps("6") == 6 and audio_kbps("32") == 32
    assert motion_kbps(f"{one_layer_kbps():.3f}") >= 3 and seed("0") == 0 and seed(str(2**32 - 1)) == 2**32 - 1
    assert device("cuda:1") == "cuda:1" and device("auto") == "auto" and room_token("q3J9") == "q3J9"


def test_one_layer_rate_comes_from_the_byte_format() -> None:
    from codec.bitstream import PACKET_HEADER_BYTES, fixed_payload_bytes

    assert one_layer_kbps() == pytest.approx((PACKET_HEADER_BYTES + fixed_payload_bytes(1)) * 8 * 25 / 1000)


def test_parser_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    p = ArgumentParser(prog="talk-x")
    p.add_argument("--size", type=frame_size)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--size", "7"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("talk-x: error: argument --size:") and "64..2048" in err


def test_same_file_sees_links_and_spellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "v.mp4"
    a.write_bytes(b"x")
    (tmp_path / "sym.mp4").symlink_to(a)
    os.link(a, tmp_path / "hard.mp4")
    monkeypatch.chdir(tmp_path)
    assert same_file("v.mp4", "./v.mp4") and same_file("v.mp4", "sym.mp4") and same_file("hard.mp4", a)
    assert same_file("new.tok", tmp_path / "new.tok")  # neither exists yet: the same path
    assert not same_file("v.mp4", "new.tok")


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "v.mp4"
    clip.write_bytes(b"video")
    (tmp_path / "link.mp4").symlink_to(clip)
    for out in (clip, tmp_path / "link.mp4", tmp_path / "." / "v.mp4"):
        with pytest.raises(UsageError, match="same file as INPUT"):
            check_paths({"-o": out}, {"INPUT": clip})
    assert clip.read_bytes() == b"video"


def test_outputs_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="folder .*nodir does not exist"):
        check_paths({"--stats-json": tmp_path / "nodir" / "s.json"}, {})
    with pytest.raises(UsageError, match="is a folder"):
        check_paths({"-o": tmp_path}, {})
    with pytest.raises(UsageError, match="name the same file"):
        check_paths({"--record": tmp_path / "a.mp4", "--stats-json": tmp_path / "a.mp4"}, {})
    check_paths({"-o": tmp_path / "ok.tok", "--landmarks": None}, {"INPUT": None})
    with pytest.raises(UsageError, match="must end in"):
        check_video_output(tmp_path / "portrait.jpg", "-o")
    check_video_output(tmp_path / "out.MP4", "-o")


def test_atomic_output_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "model.npz"
    dest.write_bytes(b"shipped")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(dest) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".npz"
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert dest.read_bytes() == b"shipped" and sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_atomic_output_replaces_keeping_mode_and_links(tmp_path: Path) -> None:
    target = tmp_path / "real.tok"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link.tok"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o640
    fresh = tmp_path / "fresh.json"
    write_bytes_atomic(fresh, b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (fresh.stat().st_mode & 0o777) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json", "link.tok", "real.tok"]


def test_opus_refuses_bitrates_libopus_does_not_take() -> None:
    from codec.audio import opus_encoder

    with pytest.raises(ValueError, match="6..510 kbps"):
        opus_encoder(100_000_000)
    with pytest.raises(ValueError):
        opus_encoder(0)
    opus_encoder(24_000)


def test_unknown_devices_are_value_errors() -> None:
    from codec.render.pipeline import resolve_device

    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("foo")
