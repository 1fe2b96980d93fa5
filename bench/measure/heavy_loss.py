"""Does a call survive heavy loss, and what does the loss cost? (20% loss, ±50 ms jitter, 300 ms bursts)

Runs loopback calls (the real ``talk-send`` and ``talk-recv``, :mod:`bench.loopback`)
with the motion channel impaired by the sender's in-process hook
(:mod:`realtime.netem`; this machine's kernel has no ``sch_netem`` for ``tc
netem`` in a network namespace), one call per scenario:

* ``clean``: no impairment (the reference);
* ``random``: 20% of packets lost at random, each delayed 0-100 ms (±50 ms jitter);
* ``bursts``: everything lost for 300 ms at random moments, 3 s apart on average;
* ``both``: the two together.

For each: whether the call survived (one call, ended as planned when the
clip ran out, and the receiver played ticks up to the last frame sent),
packets lost and late, ticks
concealed (interpolated, held), what the rate controller did (layer changes,
time at each layer count, where it settled), capture -> playout latency, and
the quality lost: the landmark error (NME, in inter-ocular distances) of the
motion the receiver showed at each tick (``talk-recv --save-motion``) against
the motion sent for that frame (``talk-send --save-stream``, decoded on the
same portrait), over all ticks, fresh ticks and concealed ticks; and against
the clean call's 4-layer motion for the same frame of the (looped) clip,
which adds what dropped layers cost (and the face tracker's small
differences from run to run, the clean call's own figure). For scale:
the codec's own error against the tracked face is about 0.016 at 4 layers,
0.042 at 1 layer, and a frozen face 0.30 (README, codec core).

Usage::

    python -m bench.measure.heavy_loss [--seconds 40] [--json OUT.json] [--only random]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.loopback import NORMAL_END, CallConfig, call_end, run_call, summarize
from codec.errors import TalkcodecError

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "clip.mp4"
PORTRAIT = REPO / "samples" / "portrait.jpg"
SCENARIOS: dict[str, tuple[str, ...]] = {
    "clean": (),
    "random": ("--netem-loss", "0.2", "--netem-jitter-ms", "50"),
    "bursts": ("--netem-burst", "300:3"),
    "both": ("--netem-loss", "0.2", "--netem-jitter-ms", "50", "--netem-burst", "300:3"),
}
KINDS = ("fresh", "interpolated", "held", "empty")


def sent_landmarks(tok: Path, portrait_landmarks: np.ndarray) -> dict[int, np.ndarray]:
    """Media time -> the landmarks a receiver shows for each packet sent (decoded as talk-recv decodes)."""
    from codec.api import FrameDecoder
    from codec.container import read_tok

    f = read_tok(tok)
    dec = FrameDecoder(f.header, portrait_landmarks)
    out = {}
    for packet in f.packets:
        d = dec.decode(packet)
        out[int(d.timestamp_ms)] = np.asarray(d.landmarks, np.float32)
    return out


def quality(played: Path, sent: dict[int, np.ndarray], period_ms: int | None = None) -> dict[str, Any]:
    """NME of each tick's shown landmarks against the landmarks ``sent`` for that media time.

    Args:
        period_ms: the clip's length when ``sent`` is another call's (looped clip): media times are
            compared modulo it.
    """
    from bench.metrics.landmarks import nme

    def key(t: float) -> int:
        k = int(round(t))
        return k if period_ms is None else k % period_ms

    if period_ms is not None:
        sent = {key(t): v for t, v in sent.items()}
    z = np.load(played)
    keep = [i for i, t in enumerate(z["media_ms"]) if z["call"][i] == 1 and key(t) in sent]
    if not keep:
        return {"ticks_compared": 0}
    shown = z["landmarks"][keep].astype(np.float64)
    truth = np.stack([sent[key(z["media_ms"][i])] for i in keep]).astype(np.float64)
    kinds = z["kind"][keep]
    err = nme(shown, truth)["all"]

    def stats(mask: np.ndarray) -> dict[str, Any]:
        e = err[mask]
        return {"ticks": int(mask.sum()), "nme_mean": None if not len(e) else round(float(e.mean()), 4),
                "nme_p95": None if not len(e) else round(float(np.percentile(e, 95)), 4)}

    return {"ticks_compared": len(keep), "all": stats(np.ones(len(keep), bool)), "fresh": stats(kinds == 0),
            "concealed": stats((kinds == 1) | (kinds == 2)), "interpolated": stats(kinds == 1),
            "held": stats(kinds == 2)}


def scenario(name: str, flags: tuple[str, ...], seconds: float, seed: int,
             portrait_landmarks: np.ndarray, clean: dict[int, np.ndarray] | None) -> tuple[dict[str, Any],
                                                                                        dict[int, np.ndarray]]:
    """One call; returns its figures and the landmarks it sent."""
    print(f"bench.measure.heavy_loss: {name}: {seconds:g} s call {' '.join(flags) or '(no impairment)'}; "
          f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="talk-loss-") as tmp:
        d = Path(tmp)
        sender = (*flags, "--netem-seed", str(seed), "--save-stream", str(d / "sent.tok")) if flags else (
            "--save-stream", str(d / "sent.tok"))
        # No window and no recording: the quality is measured on the landmarks (the receiver still renders
        # every tick it can, as for a window, so the latency figures are the usual ones).
        config = CallConfig(seconds=seconds, device="cpu", live=False, portrait=PORTRAIT, sender_args=sender,
                            receiver_args=("--save-motion", str(d / "played.npz")))
        run = run_call(CLIP, config, d)
        out = summarize(run, config)
        sent = sent_landmarks(d / "sent.tok", portrait_landmarks)
        out["quality"] = quality(d / "played.npz", sent)
        out["call_ended"] = call_end(d / "send.err")
        z = np.load(d / "played.npz")
        ticks = z["media_ms"][z["call"] == 1]
        out["last_tick_ms"] = float(ticks.max()) if len(ticks) else None
        out["last_sent_ms"] = float(max(sent)) if sent else None
        if clean is not None:
            out["quality_vs_clean"] = quality(d / "played.npz", clean, clip_period_ms())
    r, s = run.recv, run.send
    rc = s.get("rate_control") or {}
    changes = rc.get("layer_changes") or []
    out.update({
        "scenario": name, "impairment": " ".join(flags) or "none", "load_after": round(os.getloadavg()[0], 2),
        # Survived: one call, ended as planned (the clip ran out, not a lost peer), and the receiver played
        # ticks up to the last frame sent (not the tick count: a starved sender sends fewer frames).
        "survived": (r.get("calls") == 1 and out["call_ended"] == NORMAL_END and out["last_tick_ms"] is not None
                     and out["last_sent_ms"] is not None and out["last_tick_ms"] >= out["last_sent_ms"] - 200),
        "netem": s.get("netem"), "packets_late": r.get("packets_late"), "frames_played": r.get("frames_played"),
        "frames_fresh": r.get("frames_fresh"),
        "final_layers": s.get("layers"), "frames_skipped": s.get("frames_skipped"),
        "layer_changes_second_half": sum(1 for c in changes if c["at_s"] >= seconds / 2),
    })
    return out, sent


def clip_period_ms() -> int:
    """How long the clip plays before the sender loops it, in media ms (its frames at 40 ms)."""
    from codec.media import probe_video

    info = probe_video(CLIP)
    return int(round(info.frames * 1000.0 / info.fps))


def report(results: list[dict[str, Any]]) -> list[str]:
    def f(v: Any, d: int = 1) -> str:
        return "–" if v is None else f"{v:.{d}f}"

    lines = ["# Heavy loss on the motion channel (bench.measure.heavy_loss)", "",
             "NME: landmark error of the motion shown at each tick, in inter-ocular distances, against the motion "
             "sent for that frame; last column: against the clean call's 4-layer motion (adds dropped layers).", "",
             "Ticks concealed include the frames the sender never sent (its tracker fell behind: skipped, a CPU "
             "matter, shown apart).", "",
             "| scenario | survived | loss | ticks concealed | skipped by the sender | late | layers (s at each) | "
             "changes (2nd half) | held for CPU | capture->playout p50/p95 ms | NME all | NME fresh | "
             "NME concealed (p95) | NME vs clean 4-layer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = r.get("quality") or {}
        rc = r.get("rate_control") or {}
        play = r.get("playout_latency_ms") or {}
        played = r.get("frames_played") or 0
        conc = r.get("frames_concealed") or 0
        lines.append(
            f"| {r['scenario']} | {'yes' if r['survived'] else 'NO'} | {f((r.get('packet_loss') or 0) * 100)}% | "
            f"{conc} of {played} ({f(100 * conc / played if played else None)}%) | {r.get('frames_skipped')} | "
            f"{r.get('packets_late')} | "
            f"{rc.get('layer_seconds')} | {len(rc.get('layer_changes') or [])} ({r['layer_changes_second_half']}) | "
            f"{rc.get('held_for_cpu')} | {f(play.get('p50'), 0)} / {f(play.get('p95'), 0)} | "
            f"{f((q.get('all') or {}).get('nme_mean'), 4)} | {f((q.get('fresh') or {}).get('nme_mean'), 4)} | "
            f"{f((q.get('concealed') or {}).get('nme_mean'), 4)} ({f((q.get('concealed') or {}).get('nme_p95'), 4)}) | "
            f"{f(((r.get('quality_vs_clean') or {}).get('all') or {}).get('nme_mean'), 4)} |")
    lines += ["", "Layer changes (media s, from -> to, why):"]
    for r in results:
        changes = (r.get("rate_control") or {}).get("layer_changes") or []
        text = ", ".join(f"{c['at_s']:.0f} s {c['from']}->{c['to']} ({c['why']})" for c in changes) or "none"
        lines.append(f"- {r['scenario']}: {text}; netem dropped {r.get('netem')}; load after {r['load_after']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.heavy_loss", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=40.0, help="length of each call (default: %(default)s)")
    p.add_argument("--only", choices=tuple(SCENARIOS), action="append", help="run this scenario (repeatable)")
    p.add_argument("--seed", type=int, default=15, help="seed of the impairments (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write every figure as JSON")
    args = p.parse_args(argv)
    if args.seconds <= 5:
        print("bench.measure.heavy_loss: --seconds must be > 5", file=sys.stderr)
        return 2
    from codec.render.portrait import prepare_portrait

    portrait = prepare_portrait(PORTRAIT).landmarks  # what talk-recv animates by default
    results = []
    clean: dict[int, np.ndarray] | None = None
    try:
        for name, flags in SCENARIOS.items():
            if not args.only or name in args.only or (name == "clean" and clean is None):
                out, sent = scenario(name, flags, args.seconds, args.seed, portrait, clean)
                results.append(out)
                clean = sent if name == "clean" else clean
    except TalkcodecError as e:
        print(f"bench.measure.heavy_loss: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(report(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
