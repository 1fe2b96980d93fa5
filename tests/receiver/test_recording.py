"""The recording process: every tick in the file, in order, whether the live view rendered it or not."""

from __future__ import annotations

import asyncio
import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from codec.errors import MediaError
from realtime.jitterbuffer import PlayoutKind
from receiver.playout import Tick
from receiver.recording import RecordingConfig, RecordingProcess, check_writable
from tests.realtime.harness import FakeRenderer

SIZE = 64  # FakeRenderer's frames


def tick(i: int) -> Tick:
    return Tick(i, i * 40.0, np.zeros((478, 3), np.float32), PlayoutKind.FRESH, True, 0.0)


def speech(k: int) -> av.AudioFrame:
    data = np.full((1, 960 * 2), 3000, np.int16)
    f = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    f.sample_rate = 48_000
    f.pts = k * 960
    f.time_base = fractions.Fraction(1, 48_000)
    return f


def test_every_tick_is_written_whoever_rendered_it(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp4"

    async def run() -> RecordingProcess:
        rec = RecordingProcess(RecordingConfig(check_writable(path), SIZE, FakeRenderer, nice=0))
        rec.start()
        await rec.wait_ready()
        rec.begin_call()
        ticks = [tick(i) for i in range(50)]
        for t in ticks:
            rec.add(t)
        # The live view resolves out of order: odd ticks rendered live, even ones skipped.
        for t in reversed(ticks):
            rec.resolve(t, np.full((SIZE, SIZE, 3), 200, np.uint8) if t.index % 2 else None)
        for k in range(100):
            rec.add_audio(speech(k))
        rec.call_ended()
        await rec.close(120)
        return rec

    rec = asyncio.run(run())
    s = rec.stats
    assert s.error is None
    assert (s.ticks, s.written, s.from_live, s.rendered_apart) == (50, 50, 25, 25)
    assert s.to_dict()["complete"] == 1.0 and s.finished_after_s is not None
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = sum(f.samples for f in c.decode(audio=0))
    assert len(frames) == 50
    # In order: FakeRenderer's black frames at even ticks, the live view's grey ones at odd ticks.
    assert [int(f.mean() > 100) for f in frames] == [i % 2 for i in range(50)]
    assert abs(audio / 48_000 - 2.0) < 0.1


def test_unresolved_ticks_are_rendered_at_the_end(tmp_path: Path) -> None:
    async def run() -> RecordingProcess:
        rec = RecordingProcess(RecordingConfig(check_writable(tmp_path / "r.mp4"), SIZE, FakeRenderer, nice=0))
        rec.start()
        rec.begin_call()
        for i in range(10):
            rec.add(tick(i))  # the live view never answered (the call ended under it)
        rec.call_ended()
        await rec.close(120)
        return rec

    s = asyncio.run(run()).stats
    assert (s.written, s.rendered_apart, s.from_live) == (10, 10, 0)


def test_a_bad_path_is_a_media_error() -> None:
    with pytest.raises(MediaError):
        check_writable("/nonexistent-dir/x.mp4")


class Grey:
    """Renders flat grey frames of one level (picklable: made again in the recording process)."""

    def __init__(self, level: int = 30) -> None:
        self.level = level

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        return np.full((len(landmarks), SIZE, SIZE, 3), self.level, np.uint8)


def test_the_recording_switches_renderers_at_the_same_tick(tmp_path: Path) -> None:
    import functools

    path = tmp_path / "s.mp4"

    async def run() -> None:
        rec = RecordingProcess(RecordingConfig(check_writable(path), SIZE, Grey, nice=0))
        rec.start()
        rec.begin_call()
        rec.reset()
        ticks = [tick(i) for i in range(10)]
        for t in ticks[:3]:
            rec.add(t)
        rec.switch(functools.partial(Grey, 200), after_media_ms=200.0)  # ticks 6.. (240 ms on) change
        for t in ticks[3:]:
            rec.add(t)
        rec.call_ended()
        await rec.close(120)

    asyncio.run(run())
    with av.open(str(path)) as c:
        levels = [int(f.to_ndarray(format="rgb24").mean() > 100) for f in c.decode(video=0)]
    assert levels == [0] * 6 + [1] * 4


def test_the_recording_process_keeps_frames_off_a_ratcheting_heap() -> None:

    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    # In a fresh interpreter (mallopt changes the process it runs in): once bounded, a freed frame-sized
    # block is given back to the system at once, so the process's mapped memory falls by its size.
    code = (
        "import numpy as np\n"
        "from receiver.recording import bound_heap, trim_heap\n"
        "assert bound_heap()\n"
        "def rss():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])\n"
        "# glibc's default threshold rises to each freed mapped block's size (to 32 MB); a set one stays\n"
        "for _ in range(3):\n"
        "    a = np.ones(8 << 20, np.uint8); del a\n"
        "b = np.ones(786432, np.uint8); before = rss(); del b; after = rss()\n"
        "print(before - after)\n"
        "# a drained backlog: many tick-sized blocks freed among a few kept; trimming gives their pages back\n"
        "ticks = [np.ones((478, 3), np.float32) for _ in range(20000)]\n"
        "kept = ticks[::100]; del ticks\n"
        "before = rss(); assert trim_heap(); print(before - rss())\n")
    root = Path(__file__).resolve().parents[2]  # python -c imports from its working directory
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    frame, backlog = (int(x) for x in out.stdout.split())
    assert frame >= 700, out.stdout  # KiB given back: the frame's 768 KiB
    assert backlog >= 50_000, out.stdout  # of the ~110 MB the freed ticks took

