"""The bytes a call really puts on the wire, per setting: motion mode x layers x frames per message, and speech.

Each setting is one call over loopback between the real :class:`sender.call.Sender`
and :class:`receiver.listener.Receiver`, both in this process (no face tracking, no
rendering, so the figures do not depend on how busy the machine is): the sender
replays the motion tokens of a clip, tracked once, at 25 fps on its media clock,
with the clip's own speech as Opus. Both ends count their UDP datagrams
(:mod:`realtime.wire`); with ``--tcpdump`` a capture on the loopback interface
counts them again, independently, and the two are compared.

``--speech`` also scores the speech settings without listening: Opus at each
bitrate and packet length, decoded, against the original: STOI (short-time
objective intelligibility, 0..1; needs ``pystoi``), the audio bandwidth and mode
Opus chose (read from each packet's TOC byte: SILK narrow/medium/wideband, hybrid,
CELT), and how often the speech-driven mode's voice-activity gate, run on the
decoded speech, agrees with itself on the original.

    python -m bench.measure.wire --out docs/wire.json --md docs/wire.md [--seconds 10] [--quick] [--tcpdump] [--speech]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codec.api import EncoderConfig, TokenPacketizer, reference_info, track_video
from codec.motion import motion_from_landmarks, relative
from codec.tokenizer import load_tokenizer
from realtime.clock import MediaClock
from realtime.peer import restrict_ice_to_loopback
from realtime.wire import ice_connections

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CLIP = REPO / "samples" / "clip.mp4"
FRAME_MS = 40
# 9 kbps: the least at which Opus codes this speech as wideband SILK (8 kHz) at 60 ms packets.
SPEECH_KBPS = (6.0, 8.0, 9.0, 12.0, 16.0, 24.0, 32.0)


@dataclass(frozen=True)
class Setting:
    """One call's settings."""

    mode: str = "fixed"
    layers: int = 4
    frames_per_packet: int = 1
    audio_kbps: float = 24.0
    audio_ms: int = 20
    delayed_sack: bool = True

    @property
    def name(self) -> str:
        sack = "" if self.delayed_sack else " immediate-SACK"
        return (f"{self.mode} L{self.layers} fpp{self.frames_per_packet} "
                f"opus {self.audio_kbps:g}k/{self.audio_ms}ms{sack}")


@dataclass(frozen=True)
class ClipTokens:
    """The clip's motion tokens ``[T, R, G]`` (None where no face), its reference and its path."""

    path: Path
    tokens: list[np.ndarray | None]
    reference: Any


def clip_tokens(path: Path, max_frames: int) -> ClipTokens:
    """Tracks a clip once and tokenizes its motion (relative to its first face)."""
    landmarks, face, _, size = track_video(path, max_frames)
    first = int(np.argmax(face))
    tok = load_tokenizer()
    ref = motion_from_landmarks(landmarks[first])
    tokens = tok.encode(relative(motion_from_landmarks(landmarks[face]), ref).to_vector())
    out: list[np.ndarray | None] = [None] * len(face)
    for i, t in zip(np.flatnonzero(face), tokens):
        out[i] = t
    return ClipTokens(path, out, reference_info(landmarks[first], first, size))


@dataclass(frozen=True)
class ReplayFrame:
    """One frame of replayed motion: its tokens ``[R, G]`` (None: no face) and media time."""

    tokens: np.ndarray | None
    media_ms: int


class ReplayEncoder:
    """The call's encoder interface (see :class:`sender.call.CameraEncoder`) over tokens already made."""

    def __init__(self, config: EncoderConfig, clip: ClipTokens) -> None:
        self._packets = TokenPacketizer(config, clip.reference)
        self.header = self._packets.header

    def encode_frame(self, frame: ReplayFrame) -> bytes:
        return self._packets.encode(frame.tokens, frame.media_ms)

    def set_layers(self, layers: int) -> None:
        self._packets.set_layers(layers)

    def close(self) -> None:
        pass


class ReplaySource:
    """Frames of replayed tokens at 25 fps on the media clock, looping the clip, for ``seconds``."""

    keep_all = True

    def __init__(self, clip: ClipTokens, seconds: float) -> None:
        self.clip = clip
        self.seconds = seconds

    def make_encoder(self, config: EncoderConfig) -> ReplayEncoder:
        return ReplayEncoder(config, self.clip)

    async def frames(self, clock: MediaClock) -> AsyncIterator[ReplayFrame]:
        n = int(self.seconds * 1000 / FRAME_MS)
        for k in range(n):
            wait = (k * FRAME_MS - clock.now_ms()) / 1000
            if wait > 0:
                await asyncio.sleep(wait)
            yield ReplayFrame(self.clip.tokens[k % len(self.clip.tokens)], k * FRAME_MS)

    def close(self) -> None:
        pass


class NullRenderer:
    """The receiver's renderer where pixels do not matter."""

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        return np.zeros((len(landmarks), 16, 16, 3), np.uint8)


async def _call(setting: Setting, clip: ClipTokens, seconds: float, port: int,
                on_open: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One call; the sender's and the receiver's ``--stats-json`` figures."""
    # The wire module is measured as the programs use it; only SACK is switched for the before/after.
    import receiver.listener
    import sender.call
    from realtime.peer import PeerLink
    from receiver.listener import Receiver, ReceiverConfig
    from sender.call import Sender, SenderConfig
    from sender.sources import FilePcm

    def link(pc: Any) -> PeerLink:
        return PeerLink(pc, delayed_sack=setting.delayed_sack)

    sender.call.PeerLink = link  # type: ignore[assignment,misc]  # measurement only: immediate SACK on demand
    receiver.listener.PeerLink = link  # type: ignore[assignment,misc]
    token = "wire-measurement"
    rest = np.zeros((478, 3), np.float32)
    rest[:, :2] = 256
    rec = Receiver(ReceiverConfig("127.0.0.1", port, token, once=True), _portrait_landmarks(), NullRenderer())
    config = SenderConfig(url=f"ws://127.0.0.1:{port}", token=token, layers=setting.layers,
                          entropy=setting.mode == "entropy", frames_per_packet=setting.frames_per_packet,
                          audio_bitrate=int(setting.audio_kbps * 1000), audio_frame_ms=setting.audio_ms, wait_s=30)
    snd = Sender(config, ReplaySource(clip, seconds), FilePcm(clip.path, loop=True))
    stop_recv, stop_send = asyncio.Event(), asyncio.Event()
    recv_task = asyncio.create_task(rec.run(stop_recv))
    watcher = None if on_open is None else asyncio.create_task(on_open(snd))
    try:
        await snd.run(stop_send)
        await asyncio.wait_for(recv_task, 60)
    finally:
        stop_recv.set()
        await asyncio.gather(recv_task, return_exceptions=True)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    t = snd.totals
    sent = {"frames_sent": t.frames_sent, "messages_sent": t.messages_sent, "motion_bytes": t.motion_bytes,
            "payload_bytes": t.payload_bytes, "audio_bytes": snd.audio_bytes, **snd.wire_stats()}
    return sent, rec.stats.to_dict()


def _portrait_landmarks() -> np.ndarray:
    """The bundled portrait's landmarks (what talk-recv animates by default)."""
    from codec.face import detect_landmarks
    from codec.media import read_image

    return detect_landmarks(read_image(REPO / "samples" / "portrait.jpg"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- tcpdump cross-check


class Capture:
    """tcpdump on the loopback interface, UDP only, into a pcap file (root, or CAP_NET_RAW)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Capture":
        exe = shutil.which("tcpdump")
        if exe is None:
            raise RuntimeError("tcpdump is not installed (apt-get install tcpdump)")
        # Immediate mode: libpcap's block buffering would lose the last half second at SIGINT.
        self.proc = subprocess.Popen([exe, "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "128",
                                      "-w", str(self.path), "udp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode()  # "listening on lo ..." once it captures
        if "listening" not in line:
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)


def pcap_datagrams(path: Path) -> list[tuple[float, int, int, int]]:
    """``(time, source port, destination port, UDP payload bytes)`` of each IPv4 UDP datagram in a pcap."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    link = struct.unpack_from(endian + "I", data, 20)[0]
    skip = {1: 14, 113: 16, 0: 4}.get(link, 14)  # Ethernet, Linux cooked, BSD loopback
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, pos)
        pkt = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        ip = pkt[skip:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0xF) * 4
        sport, dport, length = struct.unpack_from(">HHH", ip, ihl)
        out.append((sec + frac / (1e9 if nano else 1e6), sport, dport, length - 8))
    return out


async def _watch_ports(snd: Any, seen: dict[str, Any]) -> None:
    """Notes the call's two UDP ports and the wall-clock window the wire meter counts."""
    while snd.link is None or not snd.link.wire.counting:
        await asyncio.sleep(0.01)
    for conn in ice_connections(snd.link.pc):
        pair = conn._nominated.get(1)
        if pair is not None:
            seen["ports"] = (pair.local_candidate.port, pair.remote_candidate.port)
    seen["link"] = snd.link


def cross_check(pcap: Path, seen: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The sender's datagram counts against tcpdump's over the same ports and window."""
    a, b = seen["ports"]
    start, stop = (t / 1e6 for t in seen["link"].wire_window_us)
    grams = [g for g in pcap_datagrams(pcap) if start <= g[0] <= stop]
    fwd = [g for g in grams if (g[1], g[2]) == (a, b)]
    rev = [g for g in grams if (g[1], g[2]) == (b, a)]
    w = sent["wire"]
    meter_fwd = sum(v["packets"] for v in w["forward"]["datagrams"].values())
    meter_rev = sum(v["packets"] for v in w["reverse"]["datagrams"].values())
    meter_fwd_bytes = sum(v["bytes"] for v in w["forward"]["datagrams"].values())
    dump_fwd_bytes = sum(g[3] + 28 for g in fwd)
    return {"tcpdump_forward_datagrams": len(fwd), "meter_forward_datagrams": meter_fwd,
            "tcpdump_reverse_datagrams": len(rev), "meter_reverse_datagrams": meter_rev,
            "tcpdump_forward_bytes": dump_fwd_bytes, "meter_forward_bytes": meter_fwd_bytes,
            "forward_bytes_difference": round((meter_fwd_bytes - dump_fwd_bytes) / max(1, dump_fwd_bytes), 4)}


# --------------------------------------------------------------------------- speech without listening


def speech_scores(path: Path, settings: list[tuple[float, int]], seconds: float = 20.0) -> list[dict[str, Any]]:
    """Opus at each ``(kbps, packet ms)``, decoded, scored against the original speech."""
    import av

    from codec.audio import OPUS_RATE, opus_encoder
    from codec.media import read_audio
    from codec.speech.vad import voice_gate

    x = read_audio(path, OPUS_RATE)[: int(seconds * OPUS_RATE)].astype(np.float32)
    x16 = read_audio(path, 16000)[: int(seconds * 16000)].astype(np.float32)
    gate_ref = voice_gate(x16) > 0.5
    out = []
    for kbps, ms in settings:
        enc = opus_encoder(int(kbps * 1000), ms)
        dec = av.CodecContext.create("libopus", "r")
        dec.sample_rate, dec.layout = OPUS_RATE, "mono"
        pcm16 = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        decoded, nbytes, npackets = [], 0, 0
        modes: dict[str, int] = {}
        for k in range(0, len(pcm16) - 960 + 1, 960):
            f = av.AudioFrame.from_ndarray(pcm16[None, k:k + 960], format="s16", layout="mono")
            f.sample_rate, f.pts = OPUS_RATE, k
            for p in enc.encode(f):
                nbytes, npackets = nbytes + p.size, npackets + 1
                mode = opus_mode(bytes(p)[0])
                modes[mode] = modes.get(mode, 0) + 1
                for d in dec.decode(p):
                    decoded.append(d.to_ndarray().reshape(-1).astype(np.float32)
                                   / (32768.0 if d.format.name.startswith("s16") else 1.0))
        y = np.concatenate(decoded)
        lag = _lag(x, y)
        y = y[lag:lag + len(x)]
        n = min(len(x), len(y))
        xs, ys = x[:n], y[:n]
        y16 = _resample(ys, OPUS_RATE, 16000)
        gate = voice_gate(y16, len(gate_ref)) > 0.5
        row: dict[str, Any] = {"kbps": kbps, "packet_ms": ms, "payload_kbps": round(nbytes * 8 / (n / OPUS_RATE)
                                                                                     / 1000, 2),
                               "packets_per_s": round(npackets / (n / OPUS_RATE), 2),
                               "opus_modes": {k: round(v / npackets, 3) for k, v in sorted(modes.items())},
                               "vad_agreement": round(float(np.mean(gate == gate_ref)), 3)}
        try:
            from pystoi import stoi

            row["stoi"] = round(float(stoi(_resample(xs, OPUS_RATE, 10000), _resample(ys, OPUS_RATE, 10000),
                                           10000)), 3)
        except ImportError:
            row["stoi"] = None
        out.append(row)
    return out


def opus_mode(toc: int) -> str:
    """The coding mode and audio bandwidth of an Opus packet, from its TOC byte (RFC 6716 section 3.1)."""
    config = toc >> 3
    if config < 12:
        return "SILK " + ("narrowband 4 kHz", "mediumband 6 kHz", "wideband 8 kHz")[config // 4]
    if config < 16:
        return "hybrid " + ("super-wideband 12 kHz", "fullband 20 kHz")[(config - 12) // 2]
    celt = ("narrowband 4 kHz", "wideband 8 kHz", "super-wideband 12 kHz", "fullband 20 kHz")
    return "CELT " + celt[(config - 16) // 4]


def _lag(x: np.ndarray, y: np.ndarray) -> int:
    """Samples ``y`` (decoded) runs behind ``x`` (the encoder's look-ahead), found by cross-correlation."""
    seg = x[48000:48000 + 24000]
    best, lag = -1.0, 0
    for d in range(0, 1000):
        c = float(np.dot(seg, y[48000 + d:48000 + d + len(seg)]))
        if c > best:
            best, lag = c, d
    return lag


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = np.gcd(rate, to)
    return resample_poly(x, to // g, rate // g).astype(np.float32)


# --------------------------------------------------------------------------- the table


def row(setting: Setting, sent: dict[str, Any], recv: dict[str, Any]) -> dict[str, Any]:
    w, rw = sent["wire"], recv["wire"]
    return {
        "setting": setting.name, "mode": setting.mode, "layers": setting.layers,
        "frames_per_packet": setting.frames_per_packet, "audio_kbps_set": setting.audio_kbps,
        "audio_ms": setting.audio_ms, "delayed_sack": setting.delayed_sack,
        "payload_kbps": recv["motion_kbps"], "packet_kbps": recv["motion_packet_kbps"],
        "opus_payload_kbps": recv["audio_kbps"],
        "wire_motion_kbps": w["motion_kbps"], "wire_audio_kbps": w["audio_kbps"],
        "wire_total_kbps": w["total_kbps"], "wire_reverse_kbps": w["reverse_kbps"],
        "recv_wire_total_kbps": rw["total_kbps"], "recv_wire_reverse_kbps": rw["reverse_kbps"],
        "sacks_back_per_s": round(w["reverse"]["sctp_chunks"]["sack"] / w["seconds"], 2) if w["seconds"] else None,
        "frames_sent": sent["frames_sent"], "messages_sent": sent["messages_sent"],
        "frames_received": recv["frames_received"],
        "playout_latency_ms": recv["playout_latency_ms"], "audio_latency_ms": recv["audio_latency_ms"],
        "forward": w["forward"], "reverse": w["reverse"], "wire_seconds": w["seconds"],
    }


def grid(quick: bool) -> list[Setting]:
    cheap_audio = dict(audio_kbps=8.0, audio_ms=60)
    motion = [Setting(m, n, k, **cheap_audio) for m in ("fixed", "entropy") for n in (1, 2, 3, 4)  # type: ignore[arg-type]
              for k in (1, 2, 3)]
    speech = [Setting("entropy", 4, 3, kbps, ms) for kbps in SPEECH_KBPS for ms in (20, 40, 60)]
    latency = [Setting("entropy", 4, 1, 24.0, 20)]
    before = [Setting("fixed", 4, 1, 24.0, 20, delayed_sack=False), Setting("fixed", 4, 1, 24.0, 20)]
    if quick:
        motion = [s for s in motion if s.layers == 4 and s.frames_per_packet in (1, 3)]
        speech = [s for s in speech if s.audio_kbps in (8.0, 24.0) and s.audio_ms in (20, 60)]
    return before + motion + speech + latency


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.wire", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=None, help="the clip (default: a corpus clip, else the sample)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each call")
    p.add_argument("--quick", action="store_true", help="a few settings only")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only the settings whose name holds TEXT (repeatable), e.g. 'entropy L4 fpp3'")
    p.add_argument("--repeat", type=int, default=1, help="run each setting this many times (latency spreads)")
    p.add_argument("--tcpdump", action="store_true",
                   help="count the first calls' datagrams again with tcpdump on loopback (root)")
    p.add_argument("--speech", action="store_true", help="score the speech settings (STOI, bandwidth, VAD)")
    p.add_argument("--out", type=Path, required=True, help="JSON of every setting's figures")
    p.add_argument("--md", type=Path, help="also the tables, as markdown")
    args = p.parse_args(argv)
    from codec.train.corpus import corpus_dir

    clip = args.clip or next((c for c in [corpus_dir() / "clips" / "edtalk_klobuchar.mp4"] if c.exists()),
                             SAMPLE_CLIP)
    restrict_ice_to_loopback()
    print(f"tracking {clip.name} ...", file=sys.stderr)
    tokens = clip_tokens(clip, max_frames=int(args.seconds * 25))
    results: dict[str, Any] = {"clip": clip.name, "seconds": args.seconds, "load_before": os.getloadavg(),
                               "calls": []}
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [s for s in grid(args.quick) if not args.only or any(t in s.name for t in args.only)]
        for i, setting in enumerate([s for s in chosen for _ in range(args.repeat)]):
            seen: dict[str, Any] = {}
            check = args.tcpdump and i < 3  # a few calls suffice to check the meter
            pcap = Path(tmp) / f"call{i}.pcap"

            async def watch(snd: Any) -> None:
                await _watch_ports(snd, seen)

            if check:
                with Capture(pcap):
                    sent, recv = asyncio.run(_call(setting, tokens, args.seconds, _free_port(), watch))
            else:
                sent, recv = asyncio.run(_call(setting, tokens, args.seconds, _free_port()))
            r = row(setting, sent, recv)
            if check:
                r["tcpdump"] = cross_check(pcap, seen, sent)
            r["load"] = os.getloadavg()
            results["calls"].append(r)
            print(f"{setting.name:44s} motion {r['wire_motion_kbps']:6.2f} audio {r['wire_audio_kbps']:6.2f} "
                  f"total {r['wire_total_kbps']:6.2f} reverse {r['wire_reverse_kbps']:6.2f} kbps "
                  f"(payload {r['payload_kbps']}, playout p50 {r['playout_latency_ms']['p50']} ms, "
                  f"audio p50 {r['audio_latency_ms']['p50']} ms)" + (f" tcpdump {r['tcpdump']}" if check else ""),
                  file=sys.stderr)
    if args.speech:
        settings = [(k, ms) for k in SPEECH_KBPS for ms in (20, 40, 60)]
        speech = REPO / "samples" / "clip.mp4"
        corpus_speech = corpus_dir() / "audio" / "musetalk_eng.wav"
        results["speech"] = speech_scores(corpus_speech if corpus_speech.exists() else speech, settings)
        for s in results["speech"]:
            print(s, file=sys.stderr)
    results["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.md is not None:
        args.md.write_text(markdown(results))
    return 0


def _p50(d: dict[str, Any] | None) -> str:
    return "–" if not d or d.get("p50") is None else f"{d['p50']:.0f}"


def markdown(results: dict[str, Any]) -> str:
    """The tables of a run: motion settings, speech settings, SACK before/after, and the speech scores."""
    calls = results["calls"]
    load = results.get("load_before") or (0, 0, 0), results.get("load_after") or (0, 0, 0)
    out = [f"Calls of {results['seconds']:g} s on loopback replaying {results['clip']}; load average (1, 5, 15 min) "
           f"{', '.join(f'{x:.1f}' for x in load[0])} before, {', '.join(f'{x:.1f}' for x in load[1])} after. "
           "kbps: payload = token payload, packets = with the packet headers, wire = UDP datagrams counted on the "
           "call's sockets (UDP/IP headers included), forward = sender to receiver. Latency: capture -> playout "
           "(motion) and capture -> decoded (speech) p50, ms, on this loaded machine.", ""]
    checked = [c for c in calls if c.get("tcpdump")]
    if checked:
        out += ["tcpdump on loopback, same ports and window: " + "; ".join(
            f"{c['setting']}: {c['tcpdump']['tcpdump_forward_datagrams']}/{c['tcpdump']['meter_forward_datagrams']} "
            f"forward and {c['tcpdump']['tcpdump_reverse_datagrams']}/{c['tcpdump']['meter_reverse_datagrams']} "
            f"reverse datagrams (tcpdump/meter), bytes differ by {c['tcpdump']['forward_bytes_difference']:.2%}"
            for c in checked), ""]
    out += ["| motion | layers | frames/msg | payload | packets | wire motion+control | wire speech | wire forward "
            "| wire reverse | acks back /s | motion p50 | speech p50 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in calls:
        if c["audio_kbps_set"] == 8.0 and c["audio_ms"] == 60 and c["delayed_sack"]:
            out.append(f"| {c['mode']} | {c['layers']} | {c['frames_per_packet']} | {c['payload_kbps']:.2f} "
                       f"| {c['packet_kbps']:.2f} | {c['wire_motion_kbps']:.2f} | {c['wire_audio_kbps']:.2f} "
                       f"| {c['wire_total_kbps']:.2f} | {c['wire_reverse_kbps']:.2f} | {c['sacks_back_per_s']} "
                       f"| {_p50(c['playout_latency_ms'])} | {_p50(c['audio_latency_ms'])} |")
    out += ["", "Speech settings (motion: entropy, 4 layers, 3 frames a message):", "",
            "| Opus kbps | packet ms | Opus payload | wire speech | wire forward | speech p50 |",
            "|---|---|---|---|---|---|"]
    for c in calls:
        if c["mode"] == "entropy" and c["layers"] == 4 and c["frames_per_packet"] == 3:
            out.append(f"| {c['audio_kbps_set']:g} | {c['audio_ms']} | {c['opus_payload_kbps']} "
                       f"| {c['wire_audio_kbps']:.2f} | {c['wire_total_kbps']:.2f} | {_p50(c['audio_latency_ms'])} |")
    out += ["", "Acknowledgements (fixed, 4 layers, 1 frame a message, Opus 24 kbps / 20 ms):", "",
            "| SCTP acks | data packets /s | acks back /s | acks per data packet | wire reverse |",
            "|---|---|---|---|---|"]
    for c in calls:
        if c["mode"] == "fixed" and c["layers"] == 4 and c["frames_per_packet"] == 1 and c["audio_kbps_set"] == 24:
            fwd = c["forward"]["sctp_chunks"]
            data = (fwd["motion"] + fwd["control"]) / c["wire_seconds"]
            out.append(f"| {'delayed (RFC 4960)' if c['delayed_sack'] else 'every packet (aiortc)'} "
                       f"| {data:.1f} | {c['sacks_back_per_s']} | {c['sacks_back_per_s'] / data:.2f} "
                       f"| {c['wire_reverse_kbps']:.2f} |")
    speech = results.get("speech")
    if speech:
        out += ["", "Speech without listening (Opus encoded and decoded, against the original): STOI (0..1), "
                "the mode and bandwidth Opus chose (TOC byte), and how often the voice-activity gate of the "
                "speech-driven mode agrees between decoded and original speech:", "",
                "| Opus kbps | packet ms | payload kbps | STOI | Opus mode | VAD agreement |",
                "|---|---|---|---|---|---|"]
        for s in speech:
            modes = ", ".join(f"{k} {v:.0%}" for k, v in s["opus_modes"].items())
            out.append(f"| {s['kbps']:g} | {s['packet_ms']} | {s['payload_kbps']} | {s['stoi']} | {modes} "
                       f"| {s['vad_agreement']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
