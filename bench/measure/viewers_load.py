"""What do browsers watching a call cost the receiver, and what do they get? (``talk-recv --serve-browser``)

Starts a receiver with ``--serve-browser``, opens N headless Chromium pages
on its viewer page, then a sender playing ``samples/clip.mp4`` over loopback,
and measures for the length of the call.

``--mode token`` (the page's default where WebGL2 exists; software WebGL2
here): each page gets the call's own stream relayed and draws the avatar
itself. Per page: frames drawn per second, what it receives (payload bytes
from ``getStats``: the speech's RTP payloads and the data channels'
messages; and everything on the wire), and that against the call's motion
and speech as the sender counts them (its SENDER_STATS, relayed to the
page); and the receiver's CPU, which renders and encodes nothing for them.

``--mode video``: the receiver renders the avatar and sends it as VP8:

* the receiver's rendered frames per second (its ``--stats-json``: frames
  rendered over the call's 25 fps ticks; and the ``render_fps`` it reports
  to the viewers each second);
* the frames each browser decoded per second (``getStats``);
* the CPU the receiver, the sender, Chromium and the whole machine used, in
  cores (``/proc``), and the load average beforehand (other work on the
  machine takes cores from all of them).

Usage::

    python -m bench.measure.viewers_load [--mode token|video] [--viewers 4] [--seconds 20] [--entropy]
                                         [--nice N] [--json OUT.json]

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
# Token mode: software WebGL2 (as tests/realtime/decoder_page.py), speech that plays without a click.
TOKEN_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
              "--autoplay-policy=no-user-gesture-required"]
# A token-mode page's figures so far: frames drawn, bytes received (payload and wire), the sender's
# totals (relayed SENDER_STATS: motion packets with their headers, Opus payloads), the latency.
TOKEN_STATS_JS = """async () => {
  let payload = 0, wire = 0, audio = 0;
  (await peer.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') { payload += s.bytesReceived || 0; audio = s.packetsReceived; }
    if (s.type === 'data-channel') payload += s.bytesReceived || 0;
    if (s.type === 'transport') wire += s.bytesReceived || 0;
  });
  const t = window.talkcodec, st = t && t.player ? t.player.stats : {};
  const ss = t && t.senderStats ? t.senderStats : {};
  return {t: performance.now(), drawn: st.drawn || 0, fresh: st.fresh || 0, concealed: st.concealed || 0,
          errors: st.errors || 0, lost: st.lost || 0, payload, wire, audio, latency: t ? t.latencyMs : null,
          bufferMs: t && t.player ? t.player.buffer.delayMs : null,
          speechWaitMs: t && t.player ? t.player.extraDelayMs : null,
          sentAt: ss.at || 0, sentBytes: (ss.motionBytes || 0) + (ss.audioBytes || 0),
          mode: document.body.dataset.mode};
}"""
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


def _wait_for(page: Any, js: str, at_least: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while page.evaluate(js) < at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"a page never reached {js} >= {at_least}")
        page.wait_for_timeout(200)


def _renice(pids: list[int], niceness: int) -> None:
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except OSError:
            pass  # gone meanwhile


def run(viewers: int, seconds: float, device: str, nice: int = 0, mode: str = "token",
        entropy: bool = False, portrait: Path | None = None, nice_browsers: int = 0) -> dict[str, Any]:
    # lazy: optional (dev extra); only this measurement drives a browser
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="talkcodec-viewers-") as tmp:
        stats_path = Path(tmp) / "recv.json"
        recv = subprocess.Popen([sys.executable, "-m", "receiver.cli", "--listen", f"127.0.0.1:{port}",
                                 "--token", TOKEN, "--quiet", "--serve-browser", "--device", device,
                                 "--stats-json", str(stats_path)] + ([] if portrait is None else
                                                                     ["--portrait", str(portrait)]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        send = None
        try:
            wait_listening(port, recv, 120.0)
            with sync_playwright() as p:
                args = TOKEN_ARGS if mode == "token" else CHROMIUM_ARGS
                browser = p.chromium.launch_persistent_context(str(Path(tmp) / "profile"), executable_path=CHROMIUM,
                                                               headless=True, args=args,
                                                               viewport={"width": 560, "height": 640})
                pages = [browser.new_page() for _ in range(viewers)]
                for page in pages:
                    page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}&mode={mode}")
                for page in pages:
                    _wait(page, "waiting", 60)  # watching the portrait at rest
                if nice_browsers:  # the pages stand for other machines; the sender's face tracking keeps up
                    _renice([pid for pid in _descendants(os.getpid()) if pid != recv.pid], nice_browsers)
                load = os.getloadavg()
                send = subprocess.Popen([sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}",
                                         "--token", TOKEN, "--quiet", "--video", str(CLIP), "--loop",
                                         "--duration", str(seconds + 300)] + (["--entropy"] if entropy else []),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=REPO)
                for page in pages:
                    _wait(page, "live", 120)
                if not pages:
                    time.sleep(10)  # the sender is connected and tracking
                stats_js = TOKEN_STATS_JS if mode == "token" else VIDEO_STATS_JS
                if mode == "token":
                    # Past the caller's picture (a second portrait bundle, once) and the first sender totals:
                    # what follows is the call's steady stream.
                    if portrait is None:
                        for page in pages:
                            _wait_for(page, "() => (window.talkcodec && talkcodec.portraits) || 0", 2, 180)
                    time.sleep(2.0)
                page_stats0 = [page.evaluate(stats_js) for page in pages]
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
                page_stats1 = [page.evaluate(stats_js) for page in pages]
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
    if mode == "token":
        pages_out = _token_pages(page_stats0, page_stats1)
    else:
        pages_out = {
            "browser_decoded_fps": [round((b["decoded"] - a["decoded"]) / elapsed, 1)
                                    for a, b in zip(page_stats0, page_stats1)],
            "browser_video_kbps": [round((b["bytes"] - a["bytes"]) * 8 / 1000 / elapsed)
                                   for a, b in zip(page_stats0, page_stats1)],
            "browser_frames_dropped": [b["dropped"] - a["dropped"] for a, b in zip(page_stats0, page_stats1)],
        }
    return {
        "mode": mode, "entropy": entropy, "portrait": None if portrait is None else portrait.name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "viewers": viewers, "seconds": round(elapsed, 1), "cores": os.cpu_count(), "others_niced": nice,
        "browsers_niced": nice_browsers,
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
        **pages_out,
    }


def _token_pages(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Per token-mode page: fps drawn, kbps received (payload, wire) against the call's motion and speech."""
    out: dict[str, list[Any]] = {"page_mode": [], "page_fps": [], "page_payload_kbps": [], "page_wire_kbps": [],
                                 "call_motion_and_speech_kbps": [], "page_over_call": [], "page_latency_ms": [],
                                 "page_jitter_buffer_ms": [], "page_speech_wait_ms": [],
                                 "page_frames_concealed": [], "page_decode_errors": [], "page_audio_packets": []}
    for a, b in zip(before, after):
        dt = (b["t"] - a["t"]) / 1000
        # The sender's totals arrive once a second: the span is between their arrivals.
        call_s = (b["sentAt"] - a["sentAt"]) / 1000
        call = (b["sentBytes"] - a["sentBytes"]) * 8 / 1000 / call_s if call_s > 0 else None
        payload = (b["payload"] - a["payload"]) * 8 / 1000 / dt
        out["page_mode"].append(b["mode"])
        out["page_fps"].append(round((b["drawn"] - a["drawn"]) / dt, 1))
        out["page_payload_kbps"].append(round(payload, 1))
        out["page_wire_kbps"].append(round((b["wire"] - a["wire"]) * 8 / 1000 / dt, 1))
        out["call_motion_and_speech_kbps"].append(None if call is None else round(call, 1))
        out["page_over_call"].append(None if not call else round(payload / call, 3))
        out["page_latency_ms"].append(None if b["latency"] is None else round(b["latency"]))
        # Of which: the motion jitter buffer's delay, and the wait for the browser's speech buffer.
        out["page_jitter_buffer_ms"].append(None if b["bufferMs"] is None else round(b["bufferMs"]))
        out["page_speech_wait_ms"].append(None if b["speechWaitMs"] is None else round(b["speechWaitMs"]))
        out["page_frames_concealed"].append(b["concealed"] - a["concealed"])
        out["page_decode_errors"].append(b["errors"] - a["errors"] + b["lost"] - a["lost"])
        out["page_audio_packets"].append(b["audio"] - a["audio"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.viewers_load", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("token", "video"), default="token",
                   help="pages decode the call themselves (token) or get the rendered video (default: %(default)s)")
    p.add_argument("--entropy", action="store_true", help="the sender entropy-codes its motion")
    p.add_argument("--portrait", type=Path, metavar="IMAGE",
                   help="the receiver animates this face (default: the caller's own picture, once it has arrived)")
    p.add_argument("--viewers", type=int, default=4, help="browser pages watching (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured part of the call (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="receiver's renderer device (default: %(default)s)")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="run the sender and Chromium at this niceness, as if on other machines (default: 0)")
    p.add_argument("--nice-browsers", type=int, default=0, metavar="N",
                   help="run Chromium alone at this niceness, from before the call (default: 0)")
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
        result = run(args.viewers, args.seconds, args.device, args.nice, args.mode, args.entropy, args.portrait,
                     args.nice_browsers)
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
