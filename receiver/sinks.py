"""Where the receiver's output goes: a window, an MP4 recording, and call statistics.

Each sink has one job:

* :class:`Window`: shows rendered frames (OpenCV highgui), only where a display exists;
* :class:`Recorder`: writes rendered video and received speech to an MP4,
  both placed by sender media time, so they stay in sync whatever the
  network did; it blocks while it encodes, and runs in the recording
  process (:mod:`receiver.recording`), never on the call's event loop;
* :class:`CallStats`: counts and latencies, written as JSON at exit.
"""

from __future__ import annotations

import fractions
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from codec.errors import MediaError
from codec.paths import write_bytes_atomic
from realtime.drops import Drops
from realtime.status import percentiles
from realtime.timing import RECEIVER_STAGES, Histogram, Samples, StageSums, StageTimes
from realtime.wire import RECEIVED, WireTotals
from receiver.pictures import PictureStats

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
VIDEO_FPS = 25


def has_display() -> bool:
    """Whether a window can be opened (always on macOS/Windows; X11 or Wayland on Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """Shows frames in an OpenCV window; a no-op, after one warning, without a display."""

    def __init__(self, title: str = "talk-recv") -> None:
        self.title = title
        self.enabled = has_display()
        if not self.enabled:
            log.warning("no display found: --show is ignored")

    def show(self, frame: np.ndarray) -> None:
        """Shows ``[H, W, 3]`` uint8 RGB."""
        if not self.enabled:
            return

        try:
            cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
        except cv2.error as e:
            log.warning("cannot show a window (%s): --show is ignored", str(e).strip().splitlines()[-1])
            self.enabled = False

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(self.title)


class Recorder:
    """Writes an MP4: H.264 video of rendered frames and AAC audio of received speech.

    Both are placed by sender media time. Successive calls follow each other
    in one file (:meth:`begin_call`). Every method encodes and writes before
    it returns.

    Args:
        path: the ``.mp4`` to write.
        size: frame side in pixels.
    Raises:
        MediaError: the file cannot be created.
    """

    def __init__(self, path: str | Path, size: int = 512) -> None:
        self.path = Path(path)
        try:
            self.path.open("wb").close()  # PyAV opens lazily: find a bad path now, not at the first frame
            self._container = av.open(str(self.path), "w")
        except Exception as e:
            raise MediaError(f"{self.path}: cannot be written ({e})") from None
        v = self._container.add_stream("libx264", rate=VIDEO_FPS)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "20"}
        self._video = v
        a = self._container.add_stream("aac", rate=AUDIO_RATE)
        a.layout = "mono"
        self._audio = a
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE, frame_size=1024)
        self._offset_ms = 0.0
        self._last_video_pts = -1
        self._next_audio_sample: int | None = None  # media-timeline sample the next audio frame should start at
        self._audio_out = 0  # samples handed to the encoder
        self._end_ms = 0.0
        self.video_frames = 0
        self.audio_samples = 0
        self.failures = Drops(log, "recording frame")

    def begin_call(self) -> None:
        """Places the next call's media time 0 after everything recorded so far."""
        self._offset_ms = self._end_ms
        self._next_audio_sample = None

    def add_video(self, frame: np.ndarray, media_ms: float) -> None:
        """Writes one rendered ``[H, W, 3]`` uint8 frame shown at ``media_ms``."""
        self._guarded(self._add_video, frame, media_ms)

    def add_audio(self, frame: Any) -> None:
        """Writes one received ``av.AudioFrame`` (pts in 1/48000 s of media time)."""
        self._guarded(self._add_audio, frame)

    def _add_video(self, frame: np.ndarray, media_ms: float) -> None:
        t = self._offset_ms + media_ms
        pts = int(round(t * VIDEO_FPS / 1000))
        if pts <= self._last_video_pts:
            return
        self._last_video_pts = pts
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = pts
        vf.time_base = fractions.Fraction(1, VIDEO_FPS)
        for packet in self._video.encode(vf):
            self._container.mux(packet)
        self.video_frames += 1
        self._end_ms = max(self._end_ms, t + 1000 / VIDEO_FPS)

    def _add_audio(self, frame: Any) -> None:
        if frame.pts is None:
            return
        start = int(round(self._offset_ms * AUDIO_RATE / 1000)) + int(frame.pts)
        if self._next_audio_sample is None:
            self._next_audio_sample = start
            if self._audio_out == 0:
                self._audio_out = start  # the track begins where the call's speech does
        gap = start - self._next_audio_sample
        if gap < -frame.samples // 2:
            return  # a repeat of audio already written
        if gap > frame.samples // 2:  # lost speech: keep the timeline with silence
            self._encode_audio(_silence_like(frame, gap))
        frame.pts = None  # the resampler's frame_size regrouping keeps its own time
        self._encode_audio(frame)
        self._next_audio_sample = start + frame.samples
        self._end_ms = max(self._end_ms, self._next_audio_sample * 1000 / AUDIO_RATE)

    def _guarded(self, job: Any, *args: Any) -> None:
        try:
            job(*args)
        except Exception as e:  # one bad frame must not end the recording
            self.failures.note(type(e).__name__, f"{type(e).__name__}: {e}")

    def _encode_audio(self, frame: Any) -> None:
        for out in self._resampler.resample(frame):
            self._emit_audio(out)

    def _emit_audio(self, out: Any) -> None:
        out.pts = self._audio_out
        out.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._audio_out += out.samples
        self.audio_samples += out.samples
        for packet in self._audio.encode(out):
            self._container.mux(packet)

    def close(self) -> None:
        """Flushes the encoders and finishes the file."""
        for out in self._resampler.resample(None):
            self._emit_audio(out)
        for packet in self._audio.encode(None):
            self._container.mux(packet)
        for packet in self._video.encode(None):
            self._container.mux(packet)
        self._container.close()


def _silence_like(frame: Any, samples: int) -> Any:
    """``samples`` of silence in ``frame``'s format, layout and rate."""
    fmt = frame.format
    dtype = np.dtype(fmt.name.rstrip("p").replace("flt", "float32").replace("dbl", "float64")
                     .replace("s16", "int16").replace("s32", "int32").replace("u8", "uint8"))
    channels = len(frame.layout.channels)
    shape = (channels, samples) if fmt.is_planar else (1, samples * channels)
    out = av.AudioFrame.from_ndarray(np.zeros(shape, dtype), format=fmt.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


@dataclass
class CallStats:
    """What the receiver saw, over all calls of its run.

    Latencies run from the sender's capture time to (a) the playout tick,
    when the frame's motion is ready for rendering, and (b) the rendered
    frame; both on the receiver's clock, corrected by the estimated clock
    offset between the machines.
    """

    calls: int = 0
    calls_refused: int = 0
    frames_received: int = 0
    frames_no_face: int = 0
    frames_played: int = 0
    frames_fresh: int = 0
    frames_concealed: int = 0
    frames_rendered: int = 0
    frames_skipped: int = 0
    frames_not_rendered: int = 0
    render_failures: int = 0
    packets_expected: int = 0
    packets_late: int = 0
    packets_duplicate: int = 0
    packets_dropped: dict[str, int] = field(default_factory=dict)
    motion_payload_bytes: int = 0
    motion_packet_bytes: int = 0
    motion_messages: int = 0
    motion_media_ms: float = 0.0
    audio_bytes: int = 0
    audio_frames: int = 0
    audio_media_ms: float = 0.0
    rtt_ms: float | None = None
    clock_offset_ms: float = 0.0
    playout_latency_ms: Samples = field(default_factory=Samples)
    render_latency_ms: Samples = field(default_factory=Samples)
    # capture of a speech packet's first sample -> its decoded frame here
    audio_latency_ms: Samples = field(default_factory=Samples)
    shown_latency_ms: Histogram = field(default_factory=Histogram)
    # The latency breakdown: the receiver's stages per fresh frame, capture -> arrival per frame,
    # and the sender's stages as its Timing messages told them.
    stages: StageTimes = field(default_factory=lambda: StageTimes(RECEIVER_STAGES[1:]))
    transit_ms: Histogram = field(default_factory=Histogram)
    sender_stages: StageSums = field(default_factory=StageSums)
    frames_live_skipped: int = 0
    recording: dict[str, Any] | None = None
    # --animate-from-audio: ticks showing motion generated from speech, and its timing.
    frames_generated: int = 0
    fallback_switch_ms: list[float] = field(default_factory=list)
    generated_lag_ms: list[float] = field(default_factory=list)
    generator_restarts: int = 0
    # The caller's pictures: the last call's state, and totals over calls.
    picture_state: str = "waiting"
    reference_bytes: int = 0
    keyframe_bytes: int = 0
    keyframes: list[str] = field(default_factory=list)
    picture_message_bytes: int = 0
    pictures_dropped: dict[str, int] = field(default_factory=dict)
    reference_arrival_ms: list[float] = field(default_factory=list)
    time_to_face_ms: list[float] = field(default_factory=list)
    face_from_media_ms: list[float] = field(default_factory=list)

    def add_pictures(self, p: PictureStats, time_to_face_ms: float | None, face_after_ms: float | None) -> None:
        """One call's pictures (see :class:`receiver.pictures.PictureStats`).

        Args:
            p: the call's picture statistics.
            time_to_face_ms: from the call's start to the first rendered frame of the caller's picture.
            face_after_ms: media time after which frames showed the caller's picture (before: the placeholder).
        """
        self.picture_state = p.state
        self.reference_bytes += p.reference_bytes
        self.keyframe_bytes += p.keyframe_bytes
        self.keyframes += p.keyframes
        self.picture_message_bytes += p.message_bytes
        for k, n in p.dropped.items():
            self.pictures_dropped[k] = self.pictures_dropped.get(k, 0) + n
        if p.reference_ms is not None:
            self.reference_arrival_ms.append(p.reference_ms)
        if time_to_face_ms is not None:
            self.time_to_face_ms.append(time_to_face_ms)
        if face_after_ms is not None:
            self.face_from_media_ms.append(face_after_ms)
    # What talk-recv --serve-browser relayed to token-mode pages (receiver.relay.RelayStats), or None.
    token_pages: dict[str, Any] | None = None
    # Datagrams of all calls (realtime.wire), and the ICE path of the last one.
    wire: WireTotals = field(default_factory=WireTotals)
    ice: dict[str, str] | None = None
    peer_silences: dict[str, float | int] | None = None

    def to_dict(self) -> dict[str, Any]:
        secs = self.motion_media_ms / 1000.0
        loss = 0.0 if self.packets_expected <= 0 else max(0.0, 1 - self.frames_received / self.packets_expected)
        audio_secs = self.audio_media_ms / 1000.0
        return {
            "calls": self.calls, "calls_refused": self.calls_refused,
            "frames_received": self.frames_received, "frames_no_face": self.frames_no_face,
            "frames_played": self.frames_played, "frames_fresh": self.frames_fresh,
            "frames_concealed": self.frames_concealed, "frames_rendered": self.frames_rendered,
            "frames_skipped": self.frames_skipped, "frames_not_rendered": self.frames_not_rendered,
            "render_failures": self.render_failures,
            "packets_expected": self.packets_expected, "packets_late": self.packets_late,
            "packets_duplicate": self.packets_duplicate, "packets_dropped": dict(self.packets_dropped),
            "packet_loss": round(loss, 4),
            # Token payload only, the codec's rate; the packet rate adds the packet headers (5 bytes a
            # message, and 1-2 per further frame of one), the wire rate (below) all the transport's.
            "motion_kbps": round(self.motion_payload_bytes * 8 / 1000 / secs, 3) if secs > 0 else None,
            "motion_packet_kbps": round(self.motion_packet_bytes * 8 / 1000 / secs, 3) if secs > 0 else None,
            "audio_kbps": round(self.audio_bytes * 8 / 1000 / audio_secs, 3) if audio_secs > 0 else None,
            "motion_messages": self.motion_messages,
            "audio_frames": self.audio_frames, "audio_seconds": round(audio_secs, 2),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
            "clock_offset_ms": round(self.clock_offset_ms, 2),
            "latency_ms": self.render_latency_ms.summary(),
            "shown_latency_ms": self.shown_latency_ms.summary(),
            "playout_latency_ms": self.playout_latency_ms.summary(),
            "audio_latency_ms": self.audio_latency_ms.summary(),
            "latency_breakdown_ms": self.breakdown(),
            "frames_live_skipped": self.frames_live_skipped,
            "recording": self.recording,
            "frames_generated": self.frames_generated, "fallback_switches": len(self.fallback_switch_ms),
            "fallback_switch_ms": percentiles(self.fallback_switch_ms),
            "generated_lag_ms": percentiles(self.generated_lag_ms), "generator_restarts": self.generator_restarts,
            # Times run from the sender's call start (its media time 0) on this clock; one entry per call.
            "picture": {"state": self.picture_state, "reference_bytes": self.reference_bytes,
                        "keyframe_bytes": self.keyframe_bytes, "keyframes": list(self.keyframes),
                        "message_bytes": self.picture_message_bytes, "dropped": dict(self.pictures_dropped),
                        "reference_arrival_ms": [round(x, 1) for x in self.reference_arrival_ms],
                        "time_to_face_ms": [round(x, 1) for x in self.time_to_face_ms],
                        "face_after_media_ms": list(self.face_from_media_ms)},
            "wire": self.wire.report(RECEIVED) if self.calls else None, "ice": self.ice,
            "peer_silences": self.peer_silences,
            "token_pages": self.token_pages,
        }

    def breakdown(self) -> dict[str, Any]:
        """Where a frame's milliseconds went, stage by stage, from capture to the screen.

        The sender's stages (capture ... send) are means and maxima from its
        Timing messages; ``network`` is the mean capture -> arrival less the
        sender's stages (its own per-frame figure is not known here); the
        receiver's stages are per fresh frame. The ``capture_to_*`` totals
        are per frame.
        """
        out: dict[str, Any] = {}
        sender = self.sender_stages
        out.update(sender.summary())
        transit = self.transit_ms.mean
        network = None
        if sender.frames > 0 and transit is not None:
            network = transit - sum(v or 0.0 for v in sender.means().values())
        out["network"] = {"mean": None if network is None else round(network, 1), "n": self.transit_ms.n}
        out.update(self.stages.summary())
        out["capture_to_arrival"] = self.transit_ms.summary()
        out["capture_to_rendered"] = self.render_latency_ms.summary()
        out["capture_to_shown"] = self.shown_latency_ms.summary()
        return out

    def write_json(self, path: str | Path) -> None:
        write_bytes_atomic(path, json.dumps(self.to_dict(), indent=2).encode() + b"\n")
