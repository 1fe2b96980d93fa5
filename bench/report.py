"""What talk-bench writes: ``bench.json``, ``rd.png``, ``strips/CLIP.png`` and ``report.md``.

Every function here takes records (one dict per clip, codec and setting, see
:data:`RECORD_KEYS`) and writes or summarizes them; nothing here measures.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.loopback import breakdown_lines

RECORD_KEYS = {
    "clip": str, "codec": str, "setting": str, "kbps": float, "wire_kbps": float, "psnr": float, "ssim": float,
    "nme": float,
    "mouth_ssim": float, "id_dist": float, "detail": float, "cpbd": float, "face_detected": float,
    "encode_ms": float, "render_ms": float, "device": str,
}
"""Keys every record of ``bench.json`` holds, with their types (numbers may be null when not measured).

``kbps`` is the codec's own rate (talkcodec: its packets; the baselines: their frames);
``wire_kbps`` the same frames on the wire of a WebRTC call, transport headers included
(:mod:`bench.wire`). talkcodec's records also hold ``wire_kbps_3fpp``: three frames a message."""

CODECS = ("talkcodec", "h264", "vp8")

PICTURE_KEYS = ("reference_bytes", "keyframe_bytes", "keyframes", "kbps_with_pictures", "kbps_with_pictures_5min")
"""What talkcodec's records say of the caller's picture (see :mod:`bench.pictures`)."""

HEADLINE = {"layers": 4, "mode": "fixed"}
"""The talkcodec setting the summary compares against (its full-quality fixed-rate stream)."""


def _num(x: Any) -> float | None:
    """A JSON-safe number: NaN (not measured) becomes null, +-inf becomes +-100.

    Only PSNR can be infinite (identical frames); 100 dB is the usual cap.
    """
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return math.copysign(100.0, x)
    return x


def clean(record: dict[str, Any]) -> dict[str, Any]:
    """A record with every float made JSON-safe."""
    return {k: (_num(v) if isinstance(v, (float, np.floating)) else v) for k, v in record.items()}


def validate(doc: dict[str, Any]) -> None:
    """Checks a ``bench.json`` document's shape.

    Raises:
        ValueError: a missing key, a wrong type or an unknown codec.
    """
    if set(doc) != {"records", "summary"}:
        raise ValueError(f"bench.json must hold records and summary, got {sorted(doc)}")
    if not isinstance(doc["records"], list) or not isinstance(doc["summary"], dict):
        raise ValueError("records must be a list and summary an object")
    for i, r in enumerate(doc["records"]):
        for key, typ in RECORD_KEYS.items():
            if key not in r:
                raise ValueError(f"record {i} has no {key!r}")
            v = r[key]
            if typ is float:
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ValueError(f"record {i}: {key} = {v!r} is not a number")
            elif not isinstance(v, typ):
                raise ValueError(f"record {i}: {key} = {v!r} is not {typ.__name__}")
        if r["codec"] not in CODECS:
            raise ValueError(f"record {i}: unknown codec {r['codec']!r}")


# --- summary --------------------------------------------------------------------------------


def _headline(records: list[dict], clip: str) -> dict | None:
    tc = [r for r in records if r["clip"] == clip and r["codec"] == "talkcodec"
          and r.get("layers") == HEADLINE["layers"] and r.get("mode") == HEADLINE["mode"]]
    # With several renderers, the one with the lowest NME is talkcodec's best shot.
    tc.sort(key=lambda r: (r["nme"] is None, r["nme"]))
    return tc[0] if tc else None


MATCH_KEYS = (("nme", "lower"), ("id_dist", "lower"), ("detail", "closer to 1"))
"""What "matches talkcodec" compares, and which way is better. Detail above 1 is
not better than 1 (it is noise or ringing the truth does not have), so detail
is compared by its distance from 1 on a log scale."""


def _matches(r: dict, ref: dict, keys: tuple[tuple[str, str], ...] = MATCH_KEYS) -> bool:
    """A baseline at least as good as talkcodec on every one of ``keys``."""
    for key, better in keys:
        a, b = r.get(key), ref.get(key)
        if a is None or b is None:
            continue
        if better == "closer to 1":
            if a <= 0 or b <= 0:
                continue
            a, b = abs(math.log(a)), abs(math.log(b))
        if a > b:
            return False
    return True


def summarize(records: list[dict], meta: dict[str, Any]) -> dict[str, Any]:
    """The headline comparison.

    For each clip: talkcodec's full-quality fixed-rate stream, H.264 and VP8 at
    its bitrate (the 1x target), and each baseline's equivalent bitrate: the
    lowest target on the ladder at which it matches talkcodec on NME,
    identity distance and detail together (see :data:`MATCH_KEYS`; null if
    none on the ladder does), and the same for each of the three alone.

    Args:
        records: every record of the run.
        meta: run facts copied into the summary (clips, frames, device, ...).
    """
    keys = ("kbps", "wire_kbps", "psnr", "ssim", "nme", "mouth_ssim", "id_dist", "detail", "cpbd", "face_detected")
    per_clip: dict[str, Any] = {}
    for clip in sorted({r["clip"] for r in records}):
        ref = _headline(records, clip)
        if ref is None:
            continue
        entry: dict[str, Any] = {"talkcodec": {k: ref[k] for k in keys} | {"setting": ref["setting"]}}
        for codec in ("h264", "vp8"):
            rs = sorted((r for r in records if r["clip"] == clip and r["codec"] == codec),
                        key=lambda r: r["target_kbps"])
            at = [r for r in rs if r.get("multiple") == 1]
            entry[codec] = {k: at[0][k] for k in keys} | {"setting": at[0]["setting"]} if at else None
            eq = next((r for r in rs if _matches(r, ref)), None)
            entry[f"{codec}_equivalent_kbps"] = None if eq is None else eq["kbps"]
            entry[f"{codec}_equivalent_setting"] = None if eq is None else eq["setting"]
            # Each criterion alone, to see which one holds the baseline back.
            entry[f"{codec}_equivalent_kbps_by_metric"] = {
                key: next((r["kbps"] for r in rs if _matches(r, ref, ((key, way),))), None)
                for key, way in MATCH_KEYS}
        entry["truth_cpbd"] = meta.get("truth_cpbd", {}).get(clip)
        entry["pictures"] = {k: ref.get(k) for k in PICTURE_KEYS}
        per_clip[clip] = entry

    def mean(path: tuple[str, str]) -> float | None:
        vals = [e[path[0]][path[1]] for e in per_clip.values() if e.get(path[0]) and e[path[0]][path[1]] is not None]
        return float(np.mean(vals)) if vals else None

    overall: dict[str, Any] = {c: {k: mean((c, k)) for k in keys} for c in CODECS}
    overall["pictures"] = {k: mean(("pictures", k)) for k in PICTURE_KEYS if k != "keyframes"}
    for codec in ("h264", "vp8"):
        eqs = [e[f"{codec}_equivalent_kbps"] for e in per_clip.values()]
        overall[f"{codec}_equivalent_kbps"] = (float(np.mean(eqs)) if eqs and all(v is not None for v in eqs)
                                               else None)
    return dict(meta) | {"at_talkcodec_bitrate": overall, "per_clip": per_clip}


# --- files ----------------------------------------------------------------------------------


def write_json(records: list[dict], summary: dict[str, Any], path: Path) -> None:
    """Writes ``{"records": [...], "summary": {...}}`` (validated first)."""
    doc = {"records": [clean(r) for r in records], "summary": json.loads(json.dumps(summary, default=_num))}
    validate(doc)
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))


def _curve_key(r: dict) -> tuple:
    if r["codec"] == "talkcodec":
        return (r["codec"], r.get("renderer", ""), r.get("layers", 0), r.get("mode", ""))
    return (r["codec"], "", r.get("multiple", 0), "")


def rd_points(records: list[dict], rate: str = "kbps") -> dict[str, list[tuple[float, float, float]]]:
    """Rate-distortion points averaged over clips.

    Args:
        rate: ``"kbps"`` (the codec's own rate) or ``"wire_kbps"`` (on the wire of a call).
    Returns:
        ``{curve name: [(kbps, ssim, nme), ...]}`` sorted by bitrate; talkcodec's
        fixed and entropy modes are separate curves (the same frames at two rates).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["nme"] is not None and r["ssim"] is not None and r.get(rate) is not None:
            groups[_curve_key(r)].append(r)
    curves: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for key, rs in groups.items():
        name = key[0] if key[0] != "talkcodec" else f"talkcodec {key[1]} {key[3]}"
        kbps, ssim, nme = (float(np.mean([r[k] for r in rs])) for k in (rate, "ssim", "nme"))
        curves[name].append((kbps, ssim, nme))
    return {k: sorted(v) for k, v in sorted(curves.items())}


def frontier(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The best-quality frontier of ``(rate, quality)`` points: each point better than every cheaper one."""
    out: list[tuple[float, float]] = []
    for rate, q in sorted(points):
        if not out or (q > out[-1][1] if higher_is_better else q < out[-1][1]):
            out.append((rate, q))
    return out


def plot_rd(records: list[dict], path: Path) -> None:
    """Quality against bitrate (log axis): SSIM and NME, against the codec's rate and the rate on the wire.

    Each codec is drawn as its best-quality frontier (a line through the points that beat every cheaper
    one), with all its points as small markers.
    """
    # lazy: slow to import; only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, StrMethodFormatter

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.4))
    for row, (rate, what) in enumerate((("kbps", "codec's own kbps (payload)"),
                                        ("wire_kbps", "kbps on the wire (SCTP/DTLS or RTP/SRTP, UDP/IP)"))):
        curves = list(rd_points(records, rate).items())
        if rate == "wire_kbps":  # talkcodec can also put 3 frames in a message (talk-send --frames-per-packet 3)
            curves += [(f"{name}, 3 frames a message", pts) for name, pts in
                       rd_points(records, "wire_kbps_3fpp").items() if name.startswith("talkcodec")]
        for name, pts in curves:
            style = "o-" if name in ("h264", "vp8") else "s:" if "3 frames" in name else "s--"
            for col, higher in ((1, True), (2, False)):
                ax = axes[row][col - 1]
                xy = [(p[0], p[col]) for p in pts]
                line = ax.plot(*zip(*frontier(xy, higher)), style, label=name)[0]
                ax.plot(*zip(*xy), ".", color=line.get_color(), alpha=0.4)
        for ax, label in ((axes[row][0], "SSIM (higher is better)"), (axes[row][1], "landmark NME (lower is better)")):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]))
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(what)
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=7)
    fig.suptitle("talk-bench: rate-distortion, mean over clips (lines: best-quality frontiers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_strip(rows: dict[str, np.ndarray], path: Path, tile: int = 192) -> None:
    """A strip: one row per frame, one column per source (truth | talkcodec | H.264 | VP8).

    Args:
        rows: ``{label: [N, H, W, 3] uint8}``, the same N frames of each source.
        path: PNG to write.
        tile: side of each tile in pixels.
    """
    cols = []
    for label, frames in rows.items():
        tiles = [cv2.resize(f, (tile, tile), interpolation=cv2.INTER_AREA) for f in frames]
        col = np.concatenate(tiles, axis=0)
        head = np.full((22, tile, 3), 255, np.uint8)
        cv2.putText(head, label[:28], (3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        cols.append(np.concatenate([head, col], axis=0))
    img = np.concatenate(cols, axis=1)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, list) and v else None


def _picture_lines(summary: dict[str, Any]) -> list[str]:
    """The caller's picture: its bytes and talkcodec's bitrate with them, per clip."""
    rows = [(clip, e.get("pictures") or {}) for clip, e in summary.get("per_clip", {}).items()]
    if not any(p.get("reference_bytes") for _, p in rows):
        return []
    lines = ["## The caller's picture (4 layers, fixed)", "",
             "The receiver renders the sender's own picture: the reference frame (compressed as sent; talkcodec's "
             "scores above are rendered on the decoded picture) and keyframes picked from the clip's first 5 s. "
             "Their bytes, and talkcodec's bitrate with them spread over the clip and over a 5-minute call:", "",
             "| clip | reference bytes | keyframes | keyframe bytes | kbps | + pictures over the clip | "
             "+ pictures over 5 min |", "|---|---|---|---|---|---|---|"]
    per_clip = summary.get("per_clip", {})
    for clip, p in rows:
        kbps = (per_clip[clip].get("talkcodec") or {}).get("kbps")
        lines.append(f"| {clip} | {p.get('reference_bytes')} | {', '.join(p.get('keyframes') or []) or '–'} | "
                     f"{p.get('keyframe_bytes')} | {_fmt(kbps, 1)} | {_fmt(p.get('kbps_with_pictures'), 1)} | "
                     f"{_fmt(p.get('kbps_with_pictures_5min'), 1)} |")
    return lines + [""]


def write_markdown(records: list[dict], summary: dict[str, Any], path: Path) -> None:
    """``report.md``: the headline comparison, then every record side by side."""
    lines = ["# talk-bench report", ""]
    if summary.get("complete") is False:
        lines += ["**Partial results: the run is still going or was cut short.**", ""]
    lines += [f"Clips: {', '.join(summary.get('clips', []))}; talkcodec: {summary.get('talkcodec')}; "
              f"run took {_fmt(summary.get('elapsed_s'), 0)} s.", ""]
    cfg = summary.get("config") or {}
    if cfg:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), ""]
    lines += ["Metrics: NME = landmark error over inter-ocular distance (lower is better; a frame where no face",
              "is found counts 0.5); id_dist = dlib descriptor distance to the truth (same person ≈ 0.2–0.4,",
              "another ≈ 0.8); detail = face-oval Laplacian variance over the truth's (1 = as detailed; a match",
              "on detail means as close to 1 on a log scale); CPBD = no-reference sharpness (0..1, compare with",
              "the truth's).",
              "Baselines: best of a CRF / bitrate search over sizes 512..64 px at 25 and 12.5 fps, within +10%",
              "of the target; best = lowest NME, SSIM on ties. encode_ms and render_ms are per frame.", ""]
    overall = summary.get("at_talkcodec_bitrate", {})
    if overall:
        lines += ["## At talkcodec's bitrate (mean over clips)", "",
                  "| codec | kbps | wire kbps | PSNR | SSIM | NME | mouth SSIM | id_dist | detail | CPBD |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in CODECS:
            m = overall.get(c) or {}
            lines.append(f"| {c} | " + " | ".join(_fmt(m.get(k), 4 if k == "nme" else 3) for k in
                                                   ("kbps", "wire_kbps", "psnr", "ssim", "nme", "mouth_ssim",
                                                    "id_dist", "detail", "cpbd")) + " |")
        lines += ["", "wire kbps: the same frames on the wire of a WebRTC call, transport headers included "
                      "(talkcodec: a data-channel message a frame; H.264/VP8: RTP/SRTP, without header "
                      "extensions or RTCP), UDP/IP included (bench/wire.py)."]
        lines += ["", f"H.264 equivalent bitrate (matches talkcodec on NME, id_dist and detail together): "
                      f"{_fmt(overall.get('h264_equivalent_kbps'), 1)} kbps; VP8: "
                      f"{_fmt(overall.get('vp8_equivalent_kbps'), 1)} kbps (– = not reached on the ladder).", ""]
        for clip, e in summary.get("per_clip", {}).items():
            parts = []
            for codec in ("h264", "vp8"):
                by = e.get(f"{codec}_equivalent_kbps_by_metric") or {}
                parts.append(f"{codec} equivalent {_fmt(e.get(f'{codec}_equivalent_kbps'), 1)} kbps "
                             f"({e.get(f'{codec}_equivalent_setting') or 'not on the ladder'}; by NME alone "
                             f"{_fmt(by.get('nme'), 1)}, id_dist {_fmt(by.get('id_dist'), 1)}, "
                             f"detail {_fmt(by.get('detail'), 1)})")
            lines.append(f"- {clip} (truth's CPBD {_fmt(e.get('truth_cpbd'))}): " + "; ".join(parts))
        lines.append("")
        lines += _picture_lines(summary)
    call = summary.get("call")
    if call:
        lines += ["## A call over loopback (--latency)", ""]
        if call.get("error"):
            lines += [f"The call on {call.get('clip')} failed: {call['error']}", ""]
        else:
            lat, play = call.get("latency_ms") or {}, call.get("playout_latency_ms") or {}
            lines += [f"talk-send --video {call.get('clip')} to talk-recv for {_fmt(call.get('seconds'), 0)} s, "
                      f"{call.get('layers')} layers, {call.get('renderer')} renderer on {call.get('device')}: "
                      f"capture to rendered frame p50 {_fmt(lat.get('p50'), 0)} ms, p95 {_fmt(lat.get('p95'), 0)} ms; "
                      f"capture to playout p50 {_fmt(play.get('p50'), 0)} ms, p95 {_fmt(play.get('p95'), 0)} ms; "
                      f"{call.get('frames_sent')} frames sent, {call.get('frames_received')} received, "
                      f"{call.get('frames_rendered')} rendered; motion {_fmt(call.get('motion_kbps'), 1)} kbps, "
                      f"packet loss {_fmt(call.get('packet_loss'))}.", ""]
            narrow = call.get("narrow_link") or {}
            if narrow.get("error"):
                lines += [f"The call over a simulated {_fmt(narrow.get('kbps'), 0)} kbps link failed: "
                          f"{narrow['error']}", ""]
            elif narrow:
                delay = narrow.get("motion_delay_ms") or {}
                sent = narrow.get("pictures_sent") or {}
                lines += [f"Over a simulated {_fmt(narrow.get('kbps'), 0)} kbps link (data-channel bytes, no "
                          f"speech): the caller's face on screen {_fmt(_first(narrow.get('time_to_face_ms')), 0)} ms "
                          f"after the call began (reference {sent.get('reference_bytes')} bytes, arrived after "
                          f"{_fmt(_first(narrow.get('reference_arrival_ms')), 0)} ms); motion packets' delay on "
                          f"the link p50 {_fmt(delay.get('p50'), 1)} ms, p95 {_fmt(delay.get('p95'), 1)} ms.", ""]
            wire = call.get("wire") or {}
            if wire:
                lines += [f"On the wire (UDP datagrams counted by both programs): forward "
                          f"{_fmt(wire.get('total_kbps'), 1)} kbps (motion and control "
                          f"{_fmt(wire.get('motion_kbps'), 1)}, speech {_fmt(wire.get('audio_kbps'), 1)}), "
                          f"reverse {_fmt(wire.get('reverse_kbps'), 1)} kbps.", ""]
            if call.get("breakdown_ms"):
                lines += ["Where the milliseconds go, capture to screen (sender stages per frame; network = "
                          "capture to arrival less the sender's stages, means only; receiver stages per fresh "
                          "frame):", "", *breakdown_lines(call["breakdown_ms"]), ""]
    cols = ("clip", "codec", "setting", "kbps", "wire_kbps", "psnr", "ssim", "nme", "mouth_ssim", "id_dist",
            "detail", "cpbd", "face_detected", "encode_ms", "render_ms")
    lines += ["## All records", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(records, key=lambda r: (r["clip"], CODECS.index(r["codec"]), r["kbps"])):
        cells = []
        for c in cols:
            v = r.get(c)
            digits = 4 if c == "nme" else 1 if c in ("kbps", "wire_kbps", "psnr", "encode_ms", "render_ms") else 3
            cells.append(_fmt(_num(v) if isinstance(v, float) else v, digits))
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
