"""The caller's picture over a call: its bytes, the time to the caller's face on a narrow link, the delay it
adds to motion packets, and whether the recording shows the caller.

Loopback calls with the real ``talk-send`` and ``talk-recv`` (:mod:`bench.loopback`), ``talk-send``
sending every data-channel message through a simulated link (``--link-kbps``: a FIFO at that rate,
:class:`realtime.netem.LinkShaper`, counting data-channel bytes; speech is not sent, see below):

1. ``pictures``: ``talk-recv`` gets no portrait; it records the call, which starts on the placeholder and
   shows the caller's own picture once it has arrived;
2. ``no pictures``: ``talk-send --no-portrait`` (``talk-recv --portrait`` the clip's first frame): the same
   motion without picture bytes, for the motion packets' delay without them;
3. ``unpaced``: pictures at 3x the link's spare rate (``--picture-kbps``), to show what the pacing prevents.

The motion packets' delay on the link differs between live calls with the machine's load (the encoder's
timing), so the calls' messages are also replayed offline through the same link (:func:`replay`): the
pictures call with and without its picture messages, and the no-pictures call with the pictures added as
the sender adds them.

Identity: dlib's descriptor distance (:mod:`bench.metrics.identity`) between the recording's frames that
show the caller's picture and the true frames, cut with the sender's reference crop box (the recording is
framed as the picture is), every 5th frame.

Bitrate: motion packets plus pictures, spread over the call and over a 5-minute call (the pictures are
sent once per call: the reference and keyframes within their budget).

    python -m bench.measure.caller_picture [--clip CLIP] [--seconds 20] [--link-kbps 32] [--json OUT.json]

Speech is left out of the simulated link (``--no-audio``): at the default Opus rate it alone would fill a
32 kbps link. Timings depend on the machine's load: the load average is in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench.loopback import CallConfig, measure_call
from bench.metrics.identity import descriptor, face_box
from codec.api import track_video
from codec.errors import MediaError, TalkcodecError
from codec.media import probe_video, read_video
from codec.render.portrait import crop_to_box
from codec.train.corpus import corpus_dir
from realtime.netem import LinkShaper
from realtime.pictures import PacingConfig, PictureOutbox
from realtime.status import percentiles

FIVE_MINUTES_S = 300.0


def recorded_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """``(media ms, [H, W, 3] uint8)`` for every frame of a talk-recv recording (one call: media time = pts)."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append((float(f.time) * 1000.0, f.to_ndarray(format="rgb24")))
    return out


def identity_to_truth(recording: Path, clip: Path, box: tuple[float, float, float, float], after_ms: float,
                      stride: int = 5) -> dict[str, Any]:
    """dlib identity distance between a recording's frames of the caller's picture and the true frames.

    Args:
        recording: talk-recv's ``--record`` of a call that played ``clip`` from its start (looping).
        clip: the sender's video.
        box: the sender's reference crop box in the clip's pixels (its stats' ``reference_box``).
        after_ms: recorded frames later than this media time show the caller's picture (talk-recv's stats).
        stride: every ``stride``-th such frame is scored.
    Returns:
        ``{"mean", "median", "n", "frames_placeholder"}``.
    """
    fps = probe_video(clip).fps
    truth = list(read_video(clip))
    landmarks, valid, _, _ = track_video(clip)
    frames = recorded_frames(recording)
    shown = [(t, f) for t, f in frames if t > after_ms][::stride]
    dists = []
    for t, frame in shown:
        i = int(round(t * fps / 1000.0)) % len(truth)
        if not valid[i]:
            continue
        crop = crop_to_box(truth[i], landmarks[i], box, frame.shape[0])
        b = face_box(crop.landmarks)
        dists.append(float(np.linalg.norm(descriptor(frame, b) - descriptor(crop.image, b))))
    return {"mean": float(np.mean(dists)) if dists else None, "median": float(np.median(dists)) if dists else None,
            "n": len(dists), "frames_placeholder": sum(1 for t, _ in frames if t <= after_ms),
            "frames": len(frames)}


def replay(trace: list[list[Any]], link_kbps: float, drop: str | None = None,
           pictures: list[int] | None = None, start_s: float = 0.0, kbps: float = 16.0) -> dict[str, Any]:
    """Motion packets' delay on the simulated link, replaying a call's messages at the times they were sent.

    The same motion timing with and without pictures tells their effect apart from the machine's load.

    Args:
        trace: ``[ms, kind, bytes]`` of every message (talk-send's stats, ``link.trace``).
        link_kbps: the link.
        drop: leave out messages of this kind (``"picture"``: the call without its pictures).
        pictures: picture sizes to add as the sender does (a chunk behind each motion packet, from
            ``start_s`` on), or None.
        kbps: their pacing.
    """
    shaper = LinkShaper(link_kbps)
    outbox = PictureOutbox(PacingConfig(kbps), start_s)
    for n in pictures or []:
        outbox.add(b"\0" * n)
    delays = []
    for ms, kind, n in trace:
        t = ms / 1000.0
        if kind == drop:
            continue
        d = shaper.delay_s(int(n), t)
        if kind == "motion":
            delays.append(d * 1000)
            if pictures is not None and t >= start_s:
                raw = outbox.next_message(t)
                if raw is not None:
                    shaper.delay_s(len(raw), t)
    return percentiles(delays)


def spread_kbps(motion_kbps: float, picture_bytes: int, seconds: float) -> float:
    """Motion plus pictures sent once, over a call of ``seconds``."""
    return motion_kbps + picture_bytes * 8 / seconds / 1000


def _call(clip: Path, seconds: float, args: tuple[str, ...], portrait: Path | None,
          record: Path | None) -> dict[str, Any]:
    cfg = CallConfig(seconds=seconds, device="cpu", portrait=portrait, record=record,
                     sender_args=("--no-audio", *args))
    return measure_call(clip, cfg)


def _motion_delay(call: dict[str, Any]) -> Any:
    link = call.get("link") or {}
    return (link.get("delay_ms") or {}).get("motion")


def run(clip: Path, seconds: float, link_kbps: float) -> dict[str, Any]:
    """The three calls and the figures (see the module's docstring)."""
    link = ("--link-kbps", f"{link_kbps:g}")
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="caller-picture-") as tmp:
        rec = Path(tmp) / "call.mp4"
        first = Path(tmp) / "first.png"
        cv2.imwrite(str(first), cv2.cvtColor(next(iter(read_video(clip, 1))), cv2.COLOR_RGB2BGR))
        with_pictures = _call(clip, seconds, link, None, rec)
        loads.append(os.getloadavg())
        sent = with_pictures["pictures_sent"] or {}
        picture = with_pictures["picture"] or {}
        after = (picture.get("face_after_media_ms") or [None])[0]
        identity = None
        if sent.get("reference_box") is not None and after is not None:
            identity = identity_to_truth(rec, clip, tuple(sent["reference_box"]), float(after))
        loads.append(os.getloadavg())
        without = _call(clip, seconds, (*link, "--no-portrait"), first, None)
        loads.append(os.getloadavg())
        spare = max(link_kbps - float(with_pictures["motion_packet_kbps"] or 0), 1.0)
        unpaced = _call(clip, seconds, (*link, "--picture-kbps", f"{3 * spare:g}"), None, None)
        loads.append(os.getloadavg())
    motion_packet_kbps = float(with_pictures["motion_packet_kbps"] or 0)
    trace_with = (with_pictures.get("link") or {}).get("trace") or []
    trace_without = (without.get("link") or {}).get("trace") or []
    sizes = [int(sent.get("reference_bytes") or 0)] + [int(k["bytes"]) for k in sent.get("keyframes") or []]
    first_motion = next((ms / 1000 for ms, kind, _ in trace_without if kind == "motion"), 0.0)
    replayed = {
        "pictures_call_as_sent": replay(trace_with, link_kbps),
        "pictures_call_without_its_pictures": replay(trace_with, link_kbps, drop="picture"),
        "no_pictures_call_as_sent": replay(trace_without, link_kbps),
        # A chunk behind every motion packet (the sender skips those behind late packets: this is the worst case).
        "no_pictures_call_with_a_chunk_behind_every_packet": replay(trace_without, link_kbps, pictures=sizes,
                                                                    start_s=first_motion),
    }
    sent_total = int(sent.get("reference_bytes") or 0) + int(sent.get("keyframe_bytes") or 0)
    return {
        "clip": clip.name, "seconds": seconds, "link_kbps": link_kbps,
        "link_counts": "data-channel message bytes (no SCTP/DTLS/UDP/IP headers); speech not sent",
        "reference_bytes": sent.get("reference_bytes"), "keyframe_bytes": sent.get("keyframe_bytes"),
        "keyframes": sent.get("keyframes"), "picture_message_bytes_sent": sent.get("message_bytes"),
        "picture_bytes_unsent_at_end": sent.get("unsent_bytes"),
        "reference_ready_s": sent.get("reference_ready_s"), "reference_sent_s": sent.get("reference_sent_s"),
        "reference_arrival_ms": picture.get("reference_arrival_ms"),
        "time_to_face_ms": picture.get("time_to_face_ms"),
        "identity": identity,
        "motion_delay_ms": {"pictures": _motion_delay(with_pictures), "no_pictures": _motion_delay(without),
                            "unpaced": _motion_delay(unpaced)},
        # The same calls' messages replayed through the same link: with and without pictures on identical
        # motion timing (the live calls above differ in the machine's load as well).
        "motion_delay_replayed_ms": replayed,
        "unpaced_picture_kbps": round(3 * spare, 1),
        "unpaced_time_to_face_ms": (unpaced["picture"] or {}).get("time_to_face_ms"),
        "playout_latency_ms": {"pictures": with_pictures["playout_latency_ms"],
                               "no_pictures": without["playout_latency_ms"],
                               "unpaced": unpaced["playout_latency_ms"]},
        "bitrate_kbps": {
            "motion_packets": round(motion_packet_kbps, 2),
            "with_pictures_over_call": round(spread_kbps(motion_packet_kbps, sent_total, seconds), 2),
            "with_pictures_over_5_min": round(spread_kbps(motion_packet_kbps, sent_total, FIVE_MINUTES_S), 2),
        },
        "calls": {"pictures": with_pictures, "no_pictures": without, "unpaced": unpaced},
        "load_average": [round(x[0], 2) for x in loads],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.caller_picture", description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, help="the sender's video (default: the corpus's latentsync_demo2, held out)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--link-kbps", type=float, default=32.0)
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    clip = args.clip or corpus_dir() / "clips" / "latentsync_demo2.mp4"
    try:
        out = run(clip, args.seconds, args.link_kbps)
    except (TalkcodecError, MediaError) as e:
        print(f"caller_picture: error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(out, indent=1)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "calls"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
