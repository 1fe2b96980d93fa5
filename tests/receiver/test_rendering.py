"""The live render stage shows the newest tick, never a queue, and hands every tick to the recording."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from realtime.jitterbuffer import PlayoutKind
from receiver.playout import Tick
from receiver.rendering import RenderStage, RenderTiming


def tick(i: int) -> Tick:
    return Tick(i, i * 40.0, np.full((478, 3), i, np.float32), PlayoutKind.FRESH, True, 0.0)


class GatedRenderer:
    """Renders only when the test lets it: one frame per release."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.seen: list[int] = []

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        self.seen.append(int(landmarks[0, 0, 0]))
        self.started.release()
        self.go.acquire()
        return np.full((len(landmarks), 8, 8, 3), int(landmarks[0, 0, 0]), np.uint8)


class FakeRecording:
    def __init__(self) -> None:
        self.added: list[int] = []
        self.resolved: dict[int, bool] = {}
        self.done = asyncio.Event()

    def add(self, t: Tick) -> None:
        self.added.append(t.index)

    def resolve(self, t: Tick, frame: np.ndarray | None) -> None:
        self.resolved[t.index] = frame is not None
        if len(self.resolved) == len(self.added):
            self.done.set()


async def wait_started(r: GatedRenderer) -> None:
    await asyncio.get_running_loop().run_in_executor(None, r.started.acquire)


def test_a_slow_renderer_skips_to_the_newest_tick_and_the_recording_gets_all() -> None:
    async def run() -> tuple[list[int], list[int], FakeRecording, int]:
        r = GatedRenderer()
        rec = FakeRecording()
        shown: list[int] = []
        got_all = asyncio.Event()

        def on_frame(t: Tick, frame: np.ndarray, timing: RenderTiming) -> None:
            assert timing.start_ms <= timing.end_ms
            shown.append(t.index)
            if t.index == 5:
                got_all.set()

        stage = RenderStage(r, on_frame, live=True, recording=rec)  # type: ignore[arg-type]
        stage.start()
        stage.submit(tick(0))
        await wait_started(r)  # tick 0 is being rendered: 1..5 arrive meanwhile
        for i in range(1, 6):
            stage.submit(tick(i))
        assert stage.backlog == 2  # one rendering, one waiting: never a queue
        r.go.release()
        await wait_started(r)
        r.go.release()
        await got_all.wait()
        await rec.done.wait()
        await stage.close()
        return r.seen, shown, rec, stage.skipped

    seen, shown, rec, skipped = asyncio.run(run())
    assert seen == [0, 5] and shown == [0, 5] and skipped == 4
    assert rec.added == [0, 1, 2, 3, 4, 5]
    assert rec.resolved == {0: True, 1: False, 2: False, 3: False, 4: False, 5: True}


def test_without_a_live_view_nothing_is_rendered_here() -> None:
    class Never:
        def render(self, landmarks: np.ndarray) -> Any:
            raise AssertionError("rendered without a live view")

    async def run() -> FakeRecording:
        rec = FakeRecording()
        stage = RenderStage(Never(), lambda *a: None, live=False, recording=rec)  # type: ignore[arg-type]
        stage.start()
        for i in range(3):
            stage.submit(tick(i))
        await stage.close()
        return rec

    rec = asyncio.run(run())
    assert rec.resolved == {0: False, 1: False, 2: False}


def test_a_failing_render_is_counted_and_left_to_the_recording() -> None:
    class Broken:
        def render(self, landmarks: np.ndarray) -> Any:
            raise ValueError("bad landmarks")

    async def run() -> tuple[RenderStage, FakeRecording]:
        rec = FakeRecording()
        stage = RenderStage(Broken(), lambda *a: None, live=True, recording=rec)  # type: ignore[arg-type]
        stage.start()
        stage.submit(tick(0))
        await rec.done.wait()
        await stage.close()
        return stage, rec

    stage, rec = asyncio.run(run())
    assert stage.failures.total == 1 and rec.resolved == {0: False}


class Labelled:
    """Renders frames filled with its label, and keeps the keyframes it was given."""

    def __init__(self, label: int) -> None:
        self.label = label
        self.keyframes: list[str] = []

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        return np.full((len(landmarks), 4, 4, 3), self.label, np.uint8)

    def add_keyframe(self, kf: str) -> None:
        self.keyframes.append(kf)


def test_a_switch_applies_to_ticks_after_its_media_time_and_keyframes_follow() -> None:
    from receiver.renderers import Renderers

    first, second = Labelled(1), Labelled(2)
    r = Renderers(first)
    r.add_keyframe("before")  # nothing switched to yet: kept for the next renderer, never given to the first
    r.install(400.0, second)
    r.add_keyframe("after")
    assert r.for_tick(400.0) is first and r.for_tick(440.0) is second
    assert first.keyframes == [] and second.keyframes == ["before", "after"]
    r.reset()
    assert r.for_tick(10_000.0) is first


def test_the_live_view_switches_renderers_mid_call() -> None:
    async def run() -> list[tuple[int, int]]:
        shown: list[tuple[int, int]] = []
        done = asyncio.Event()

        def on_frame(t: Tick, frame: np.ndarray, timing: RenderTiming) -> None:
            shown.append((t.index, int(frame[0, 0, 0])))
            done.set()

        stage = RenderStage(Labelled(1), on_frame, live=True)
        stage.start()
        for i in range(4):
            done.clear()
            if i == 2:
                stage.switch(Labelled(2), after_media_ms=40.0)  # ticks after 40 ms: the new portrait
                assert stage.switched
            stage.submit(tick(i))
            await done.wait()
        await stage.close()
        return shown

    assert asyncio.run(run()) == [(0, 1), (1, 1), (2, 2), (3, 2)]
