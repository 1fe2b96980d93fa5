"""Does the receiver still render 25 fps while browsers watch? (``talk-recv --serve-browser`` under load)

Starts a receiver with ``--serve-browser``, opens N headless Chromium pages
on its viewer page, then a sender playing ``samples/clip.mp4`` over loopback,
and measures for the length of the call:

* the receiver's rendered frames per second (its ``--stats-json``: frames
  rendered over the call's 25 fps ticks; and the ``render_fps`` it reports
  to the viewers each second);
* the frames each browser decoded per second (``getStats``);
* the CPU the receiver, the sender, Chromium and the whole machine used, in
  cores (``/proc``), and the load average beforehand (other work on the
  machine takes cores from all of them).

Usage::

    python -m bench.measure.viewers_load [--viewers 4] [--seconds 20] [--json OUT.json]

Needs Playwright and a Chromium (``TALKCODEC_CHROMIUM``, default
``/usr/bin/chromium``), like ``tests/realtime/test_browser.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loopback import free_port, wait_listening
from codec.errors import TalkcodecError

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "clip.mp4"
TOKEN = "viewers-load-bench"
CHROMIUM = os.environ.get("TALKCODEC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/realtime/test_browser.py
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]
STATE_JS = "() => document.getElementById('state').dataset.state"
# The page's own peer connection and the receiver's last status (globals of app.js).
VIDEO_STATS_JS = """async () => {
  let out = {decoded: 0, dropped: 0, bytes: 0};
  (await peer.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video')
      out = {decoded: s.framesDecoded || 0, dropped: s.framesDropped || 0, bytes: s.bytesReceived || 0};
  });
  return out;
}"""
RENDER_FPS_JS = "() => server.render_fps ?? null"
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    return _cpu_s_of(Path(f"/proc/{pid}/stat"))


def _cpu_s_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process ("main" is the event loop's), so far."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out["main" if task.name == str(pid) else task.name] = _cpu_s_of(task / "stat")
        except (OSError, ValueError, IndexError):
            pass
    return out


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, its children's children too."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, p in parents.items() if p == parent]
        found += kids
        todo += kids
    return found


def _browser_cpu_s(exclude: set[int]) -> float:
    """CPU seconds this script's other descendants (Playwright's driver and Chromium) have used so far."""
    total = 0.0
    for pid in _descendants(os.getpid()):
        if pid not in exclude:
            try:
                total += _cpu_s(pid)
            except (OSError, ValueError, IndexError):
                pass
    return total


def _machine_busy_s() -> tuple[float, float]:
    """All cores' (busy, total) seconds so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, sum(values[:8]) / TICK


def _wait(page: Any, wanted: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while page.evaluate(STATE_JS) != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"a page never reached {wanted!r} (it says {page.evaluate(STATE_JS)!r})")
        page.wait_for_timeout(200)


def _renice(pids: list[int], niceness: int) -> None:
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except OSError:
            pass  # gone meanwhile


def run(viewers: int, seconds: float, device: str, nice: int = 0) -> dict[str, Any]:
    # lazy: optional (dev extra); only this measurement drives a browser
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="talkcodec-viewers-") as tmp:
        stats_path = Path(tmp) / "recv.json"
        recv = subprocess.Popen([sys.executable, "-m", "receiver.cli", "--listen", f"127.0.0.1:{port}",
                                 "--token", TOKEN, "--quiet", "--serve-browser", "--device", device,
                                 "--stats-json", str(stats_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        send = None
        try:
            wait_listening(port, recv, 120.0)
            with sync_playwright() as p:
                browser = p.chromium.launch_persistent_context(str(Path(tmp) / "profile"), executable_path=CHROMIUM,
                                                               headless=True, args=CHROMIUM_ARGS,
                                                               viewport={"width": 560, "height": 640})
                pages = [browser.new_page() for _ in range(viewers)]
                for page in pages:
                    page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
                for page in pages:
                    _wait(page, "waiting", 60)  # watching the portrait at rest
                load = os.getloadavg()
                send = subprocess.Popen([sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}",
                                         "--token", TOKEN, "--quiet", "--video", str(CLIP), "--loop",
                                         "--duration", str(seconds + 10)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=REPO)
                for page in pages:
                    _wait(page, "live", 120)
                if not pages:
                    time.sleep(10)  # the sender is connected and tracking
                page_stats0 = [page.evaluate(VIDEO_STATS_JS) for page in pages]
                ours = {recv.pid, send.pid}
                if nice:  # they stand for other machines: the receiver's CPU comes first
                    _renice([send.pid] + [pid for pid in _descendants(os.getpid()) if pid not in ours], nice)
                cpu0, send_cpu0, browser_cpu0 = _cpu_s(recv.pid), _cpu_s(send.pid), _browser_cpu_s(ours)
                threads0, machine0, t0 = _threads_cpu_s(recv.pid), _machine_busy_s(), time.monotonic()
                render_fps = []
                while time.monotonic() - t0 < seconds:
                    time.sleep(1.0)
                    fps = pages[0].evaluate(RENDER_FPS_JS) if pages else None
                    if fps is not None:
                        render_fps.append(float(fps))
                elapsed = time.monotonic() - t0
                cpu1, send_cpu1, browser_cpu1 = _cpu_s(recv.pid), _cpu_s(send.pid), _browser_cpu_s(ours)
                threads1, machine1 = _threads_cpu_s(recv.pid), _machine_busy_s()
                page_stats1 = [page.evaluate(VIDEO_STATS_JS) for page in pages]
                browser.close()
            send.send_signal(signal.SIGINT)  # ends the call with a bye
            send.wait(timeout=60)
        finally:
            for proc in (send, recv):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            _, recv_err = recv.communicate(timeout=120)
            if send is not None:
                send.communicate(timeout=60)
        if not stats_path.exists():
            raise SystemExit(f"talk-recv wrote no statistics:\n{recv_err}")
        stats = json.loads(stats_path.read_text())
    ticks, rendered = stats["frames_played"], stats["frames_rendered"]
    busy = (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]) * (os.cpu_count() or 1)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "viewers": viewers, "seconds": round(elapsed, 1), "cores": os.cpu_count(), "others_niced": nice,
        "load_average_before": [round(x, 2) for x in load],
        "receiver_ticks": ticks, "receiver_frames_rendered": rendered,
        "receiver_render_fps_of_call": round(25.0 * rendered / max(ticks, 1), 1),
        "receiver_render_fps_reported": [round(x, 1) for x in render_fps],
        # Ticks the live renderer skipped (it fell behind) and ticks still unrendered at the end.
        "receiver_frames_skipped": stats.get("frames_skipped"),
        "receiver_frames_not_rendered": stats.get("frames_not_rendered"),
        "receiver_cpu_cores": round((cpu1 - cpu0) / elapsed, 2),
        # Its busiest threads: the event loop ("main": WebRTC to the viewers and the sender), the
        # render thread and torch's, the viewers' video encoder.
        "receiver_thread_cpu_cores": dict(sorted(((k, round((v - threads0.get(k, 0.0)) / elapsed, 2))
                                                  for k, v in threads1.items()), key=lambda kv: -kv[1])[:6]),
        "sender_cpu_cores": round((send_cpu1 - send_cpu0) / elapsed, 2),
        # A process that exited during the window is missing from both sums: a lower bound.
        "browser_cpu_cores": round((browser_cpu1 - browser_cpu0) / elapsed, 2),
        "machine_busy_cores": round(busy, 2),
        # Whatever else ran meanwhile (other people's jobs): what the receiver could not have.
        "other_cpu_cores": round(busy - ((cpu1 - cpu0) + (send_cpu1 - send_cpu0) + (browser_cpu1 - browser_cpu0))
                                 / elapsed, 2),
        "browser_decoded_fps": [round((b["decoded"] - a["decoded"]) / elapsed, 1)
                                for a, b in zip(page_stats0, page_stats1)],
        "browser_video_kbps": [round((b["bytes"] - a["bytes"]) * 8 / 1000 / elapsed)
                               for a, b in zip(page_stats0, page_stats1)],
        "browser_frames_dropped": [b["dropped"] - a["dropped"] for a, b in zip(page_stats0, page_stats1)],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.viewers_load", description=__doc__.split("\n")[0])
    p.add_argument("--viewers", type=int, default=4, help="browser pages watching (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured part of the call (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="receiver's renderer device (default: %(default)s)")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="run the sender and Chromium at this niceness, as if on other machines (default: 0)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = p.parse_args(argv)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("viewers_load: needs Playwright (pip install playwright)", file=sys.stderr)
        return 2
    if not (os.path.exists(CHROMIUM)):
        print(f"viewers_load: no Chromium at {CHROMIUM} (set TALKCODEC_CHROMIUM)", file=sys.stderr)
        return 2
    try:
        result = run(args.viewers, args.seconds, args.device, args.nice)
    except TalkcodecError as e:
        print(f"viewers_load: {e}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
