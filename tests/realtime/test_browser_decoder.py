"""The page's decoder (realtime/static/decoder) against the Python codec, in headless Chromium.

The same stream decoded by the page and by :func:`codec.api.decode_stream`
(what ``talk-codec decode`` runs) must give the same target landmarks (within
0.05 px), and the page's WebGL2 frames must match the Python warp renderer's
(mean SSIM >= 0.97 at 512x512, same portrait). The page reads only what
:mod:`codec.webexport` generates, so these tests are what keeps the two in step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.metrics.pixels import ssim
from codec import regions as R
from codec.api import EncoderConfig, FrameDecoder, MotionEncoder, decode_stream, reference_info
from codec.bitstream import STREAM_VERSION, StreamHeader, bundle
from codec.container import read_tok, write_tok
from codec.entropy import load_entropy_model
from codec.errors import StreamError
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import prepare_portrait
from codec.smoothing import LOOKAHEAD_FRAMES, smooth_frame
from codec.stream import ReferenceLostError, StreamReader, StreamWriter
from codec.tokenizer import weights_hash
from codec.webexport import DECODER_FILE, PORTRAIT_FILE, decoder_assets, portrait_bundle
from realtime.jitterbuffer import JitterBuffer, PlayoutKind
from receiver.playout import tick_landmarks
from tests.realtime.decoder_page import b64, from_b64, open_page, sync_playwright, webgl_browser

FIXTURES = Path(__file__).resolve().parents[1] / "codec" / "fixtures"

LOAD_JS = """async () => {
  window.D = await import('/decoder/index.js');
  window.assets = new D.Assets(await D.fetchContainer('/assets/decoder.bin', 'decoder'));
  window.bundle = await D.fetchContainer('/assets/portrait.bin', 'portrait');
}"""

DECODE_JS = """async ({header, packets}) => {
  const dec = new D.MotionDecoder(assets, bundle, unb64(header));
  const rest = bundle.arrays['portrait.landmarks'];
  const out = new Float64Array(packets.length * rest.length);
  const faces = [];
  packets.forEach((p, t) => { const f = dec.decode(unb64(p)); faces.push(f.face);
    out.set(f.landmarks || rest, t * rest.length); });
  window.decoded = out;
  return {landmarks: b64(new Uint8Array(out.buffer)), faces, mode: dec.header.mode};
}"""

RENDER_JS = """async (frames) => {
  const n = bundle.arrays['portrait.landmarks'].length, scale = bundle.meta.landmark_scale;
  if (!window.renderer) {
    window.geometry = new D.WarpGeometry(bundle, assets);
    window.renderer = new D.WarpRenderer(document.getElementById('c'), bundle, assets, await D.loadImages(bundle));
  }
  return frames.map((t) => {
    const target = Float32Array.from(decoded.subarray(t * n, (t + 1) * n));
    for (let i = 0; i < n; i++) target[i] = Math.fround(target[i] * scale);
    renderer.draw(geometry.frame(target));
    return b64(renderer.readPixels());
  });
}"""


TARGETS_JS = """async (targets) => {
  if (!window.renderer) {
    window.geometry = new D.WarpGeometry(bundle, assets);
    window.renderer = new D.WarpRenderer(document.getElementById('c'), bundle, assets, await D.loadImages(bundle));
  }
  return targets.map((t) => {
    renderer.draw(geometry.frame(new Float32Array(unb64(t).buffer)));
    return b64(renderer.readPixels());
  });
}"""


@dataclass
class Stream:
    header: bytes
    packets: list[bytes]
    landmarks: np.ndarray  # [T, 478, 3] from codec.api.decode_stream


@dataclass
class Setup:
    renderer: Any
    assets: dict[str, bytes]
    streams: dict[str, Stream]


def _stream(tokens: np.ndarray, header: Any, portrait_landmarks: np.ndarray, tmp: Path) -> Stream:
    """A stream with frames without a face and adaptive layer counts, through a .tok file."""
    writer = StreamWriter(header)
    packets = []
    for t in range(len(tokens)):
        layers = (4, 4, 3, 2, 1, 2, 4, 4)[t % 8] if t >= 40 else 4
        packets.append(writer.encode(None if t in (20, 21) else tokens[t, :layers], 40 * t))
    path = tmp / f"{header.mode}.tok"
    write_tok(path, header, packets)
    tok = read_tok(path)
    return Stream(tok.header.to_bytes(), list(tok.packets),
                  decode_stream(tok.header, list(tok.packets), portrait_landmarks))


@pytest.fixture(scope="module")
def setup(sample_landmarks: np.ndarray, sample_portrait: Path, tmp_path_factory: Any) -> Setup:
    sync_playwright()  # skip before the slow part when there is no browser

    portrait = prepare_portrait(sample_portrait)
    renderer = Renderer(portrait, RenderConfig(device="cpu"))
    tmp = tmp_path_factory.mktemp("tok")
    streams = {}
    for mode in ("fixed", "entropy"):
        ref = sample_landmarks[0]
        enc = MotionEncoder(EncoderConfig(entropy=mode == "entropy"), ref, reference_info(ref, 0, (512, 512)))
        streams[mode] = _stream(enc.tokens(sample_landmarks), enc.header, portrait.landmarks, tmp)
    return Setup(renderer, {DECODER_FILE: decoder_assets(), PORTRAIT_FILE: portrait_bundle(renderer)}, streams)


@pytest.fixture(scope="module")
def page(setup: Setup) -> Iterator[Any]:
    with webgl_browser() as browser:
        page = open_page(browser, setup.assets)
        page.evaluate(LOAD_JS)
        yield page
        page.close()


def _decode(page: Any, stream: Stream) -> np.ndarray:
    out = page.evaluate(DECODE_JS, {"header": b64(stream.header), "packets": [b64(p) for p in stream.packets]})
    return from_b64(out["landmarks"], np.float64).reshape(stream.landmarks.shape)


def test_page_reports_the_exported_weights(page: Any, setup: Setup) -> None:

    _decode(page, setup.streams["fixed"])
    got = page.evaluate("() => [assets.tokens.hash, assets.entropy.hash, assets.stream.version, "
                        "assets.tokens.codebook, D.webgl2Available()]")
    assert got == [weights_hash(), load_entropy_model().hash, STREAM_VERSION, 625, True]


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
def test_page_decodes_the_same_landmarks(page: Any, setup: Setup, mode: str) -> None:
    stream = setup.streams[mode]
    landmarks = _decode(page, stream)
    err = np.abs(landmarks - stream.landmarks).max()
    print(f"{mode}: {len(stream.packets)} packets, landmark max error {err:.2e} px")
    assert err < 0.05
    # Not a constant: the decoded face moves, and the no-face frames rest.
    assert np.abs(landmarks[60] - landmarks[0]).max() > 1.0


def test_page_renders_the_same_frames(page: Any, setup: Setup) -> None:

    stream = setup.streams["entropy"]
    _decode(page, stream)
    opening = np.linalg.norm(stream.landmarks[:, 13, :2] - stream.landmarks[:, 14, :2], axis=1)
    frames = sorted({0, 20, 33, 47, 66, 90, 110, 124, int(np.argmax(opening))})
    pixels = page.evaluate(RENDER_JS, frames)
    js = np.stack([from_b64(p).reshape(512, 512, 4)[..., :3] for p in pixels])
    py = setup.renderer.render(stream.landmarks[frames].astype(np.float32))
    scores = ssim(js, py)
    diff = np.abs(js.astype(np.int16) - py.astype(np.int16))
    print(f"SSIM mean {scores.mean():.4f} min {scores.min():.4f}; mean abs diff {diff.mean():.3f} levels, "
          f"99th percentile {np.percentile(diff, 99):.0f}")
    assert scores.mean() >= 0.97 and scores.min() >= 0.95
    # Frames differ from each other, so the agreement is not that of a still image.
    assert ssim(py[:1], py[-1:])[0] < scores.min()


JITTER_JS = """async (script) => {
  const { JitterBuffer } = await import('/decoder/jitterbuffer.js');
  const jb = new JitterBuffer({targetDelayMs: 40, frameIntervalMs: 40});
  return script.map(([op, a, b, c]) => {
    if (op === 'push') return jb.push(a, b, a, c);
    const d = jb.pop(a);
    return [d.kind, d.frame && d.frame.value, d.after && d.after.value, d.alpha, jb.delayMs, jb.playoutTime(a),
            jb.stats.expected, jb.stats.received, jb.stats.late, jb.stats.duplicates];
  });
}"""


def _jitter_script(seed: int) -> list[list[float]]:
    """Arrivals with jitter, loss, duplicates, reordering and a sequence wrap; a pop every 40 ms."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(300):
        if rng.random() < 0.08:
            continue  # lost
        ts = 40 * i
        arrival = 1000.0 + ts + 30 + float(rng.gamma(1.5, 15 if i < 150 else 40))
        events.append((arrival, 0, ["push", (65500 + i) & 0xFFFF, ts, arrival]))
        if rng.random() < 0.05:
            events.append((arrival + 5, 0, ["push", (65500 + i) & 0xFFFF, ts, arrival + 5]))
    for k in range(300):
        events.append((1000.0 + 110 + 40 * k, 1, ["pop", 40 * k]))
    return [e for _, _, e in sorted(events, key=lambda e: (e[0], e[1]))]


def _python_jitter(script: list[list[float]]) -> list[Any]:

    jb: JitterBuffer[int] = JitterBuffer(40.0, 40.0)
    out: list[Any] = []
    for op, a, *rest in script:
        if op == "push":
            out.append(jb.push(int(a), int(rest[0]), int(a), rest[1]).value)
            continue
        d = jb.pop(a)
        s = jb.stats
        out.append([d.kind.value, d.frame.value if d.frame else None, d.after.value if d.after else None, d.alpha,
                    jb.delay_ms, jb.playout_time(a), s.expected, s.received, s.late, s.duplicates])
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_page_jitter_buffer_decides_as_the_receivers(page: Any, seed: int) -> None:
    script = _jitter_script(seed)
    got, want = page.evaluate(JITTER_JS, script), _python_jitter(script)
    kinds = [w[0] for w in want if isinstance(w, list)]
    assert {"fresh", "interpolated", "held"} <= set(kinds)  # the script exercises concealment
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, list):
            assert g[:3] == w[:3] and g[6:] == w[6:]
            assert np.allclose(g[3:6], w[3:6], rtol=0, atol=1e-9)
        else:
            assert g == w


PACKETS_JS = """async ({header, packets}) => {
  const reader = new D.StreamReader(D.parseHeader(unb64(header), assets.stream), assets.stream, assets.entropy);
  return packets.map((p) => { try { const f = reader.decode(unb64(p));
      return f.face ? Array.from(f.tokens) : 'noface'; }
    catch (e) {
      return e instanceof D.ReferenceLostError ? 'lost' : e instanceof D.StreamError ? 'error' : String(e);
    } });
}"""


def _python_outcomes(header: bytes, packets: list[bytes]) -> list[Any]:

    reader = StreamReader(StreamHeader.from_bytes(header))
    out: list[Any] = []
    for p in packets:
        try:
            d = reader.decode(p)
            out.append(d.tokens.ravel().tolist() if d.face and d.tokens is not None else "noface")
        except ReferenceLostError:
            out.append("lost")
        except StreamError:
            out.append("error")
    return out


def _outcomes(page: Any, header: bytes, packets: list[bytes]) -> list[Any]:
    return list(page.evaluate(PACKETS_JS, {"header": b64(header), "packets": [b64(p) for p in packets]}))


def test_page_refuses_the_broken_packets_python_refuses(page: Any) -> None:
    header = (FIXTURES / "header_fixed.bin").read_bytes()
    packets = [f.read_bytes() for f in sorted(FIXTURES.glob("packet_*.bin"))]
    want = _python_outcomes(header, packets)
    assert "error" in want and "noface" in want and any(isinstance(w, list) for w in want)
    assert _outcomes(page, header, packets) == want


def test_page_conceals_entropy_frames_until_a_keyframe(page: Any, setup: Setup) -> None:
    stream = setup.streams["entropy"]
    # Lose packets 50 and 51, deliver 60 late (after 61) and 70 twice, corrupt 80's payload.
    packets = [p for i, p in enumerate(stream.packets) if i not in (50, 51, 60)]
    packets.insert(packets.index(stream.packets[61]) + 1, stream.packets[60])
    packets.insert(packets.index(stream.packets[70]) + 1, stream.packets[70])
    k = packets.index(stream.packets[80])
    packets[k] = packets[k][:7] + bytes(b ^ 0x5A for b in packets[k][7:])
    want = _python_outcomes(stream.header, packets)
    assert want.count("lost") > 5
    assert _outcomes(page, stream.header, packets) == want


MESSAGES_JS = """async ({header, messages}) => {
  const reader = new D.StreamReader(D.parseHeader(unb64(header), assets.stream), assets.stream, assets.entropy);
  return messages.map((m) => { try { return reader.decodeMessage(unb64(m)).map((f) =>
      f instanceof D.ReferenceLostError ? 'lost'
        : [f.seq, f.timestampMs, f.face ? Array.from(f.tokens) : 'noface']); }
    catch (e) { return e instanceof D.StreamError ? 'error' : String(e); } });
}"""


def _python_messages(header: bytes, messages: list[bytes]) -> list[Any]:

    reader = StreamReader(StreamHeader.from_bytes(header))
    out: list[Any] = []
    for m in messages:
        try:
            frames = reader.decode_message(m)
        except StreamError:
            out.append("error")
            continue
        out.append(["lost" if isinstance(f, ReferenceLostError) else
                    [f.seq, f.timestamp_ms, f.tokens.ravel().tolist() if f.face and f.tokens is not None else "noface"]
                    for f in frames])
    return out


@pytest.mark.parametrize("mode", ["fixed", "entropy"])
def test_page_reads_messages_of_several_frames_as_python_does(page: Any, setup: Setup, mode: str) -> None:
    stream = setup.streams[mode]
    messages = [bundle(stream.packets[i:i + 3]) for i in range(0, len(stream.packets), 3)]
    del messages[17]  # a lost message: in entropy mode its followers are concealed until a keyframe
    messages[25] = messages[25][:3]  # a truncated one
    want = _python_messages(stream.header, messages)
    assert "error" in want and sum(len(m) for m in want if m != "error") > 100
    assert (mode == "entropy") == any("lost" in m for m in want if m != "error")
    got = page.evaluate(MESSAGES_JS, {"header": b64(stream.header), "messages": [b64(m) for m in messages]})
    assert got == want


def test_page_reads_the_version_2_fixtures(page: Any) -> None:
    header = (FIXTURES / "header_fixed.bin").read_bytes()
    v2 = b"TKCD" + bytes([2]) + header[5:]  # the same header, version 2
    messages = [(FIXTURES / n).read_bytes() for n in ("v2_packet_fixed_r4.bin", "v2_message_3_frames.bin",
                                                      "v2_message_truncated.bin", "v2_message_reserved_bits.bin")]
    want = _python_messages(v2, messages)
    assert [len(w) if w != "error" else w for w in want] == [1, 3, "error", "error"]
    got = page.evaluate(MESSAGES_JS, {"header": b64(v2), "messages": [b64(m) for m in messages]})
    assert got == want


@pytest.mark.parametrize("change", ["version", "tokenizer_hash", "entropy_hash"])
def test_page_says_when_a_stream_is_incompatible(page: Any, setup: Setup, change: str) -> None:


    header = StreamHeader.from_bytes(setup.streams["entropy"].header)
    body = json.loads(header.to_bytes()[9:])
    version = STREAM_VERSION + 1 if change == "version" else STREAM_VERSION
    if change != "version":
        body[change] = "0123456789abcdef"
    raw = json.dumps(body).encode()
    data = b"TKCD" + bytes([version]) + len(raw).to_bytes(4, "big") + raw
    kind, message = page.evaluate("""async (h) => { try { await new D.MotionDecoder(assets, bundle, unb64(h));
        return ['ok', '']; } catch (e) { return [e.constructor.name, e.message]; } }""", b64(data))
    assert kind == "IncompatibleStreamError"
    assert {"version": "version", "tokenizer_hash": "tokenizer weights", "entropy_hash": "entropy model"}[change] \
        in message


PLAYER_JS = """async ({header, arrivals, nows}) => {
  // Packets arrive at simulated times; animation frames come at simulated times too.
  window.geometry = window.geometry || new D.WarpGeometry(bundle, assets);
  window.renderer = window.renderer ||
    new D.WarpRenderer(document.getElementById('c'), bundle, assets, await D.loadImages(bundle));
  const player = new D.CallPlayer(assets, bundle, geometry, renderer, {jitterMs: 40});
  player.setHeader(unb64(header));
  const ticks = [];
  let next = 0;
  for (const now of nows) {
    for (; next < arrivals.length && arrivals[next][1] <= now; next++) {
      player.push(unb64(arrivals[next][0]), arrivals[next][1]);
    }
    const t = player.frame(now);
    if (t) ticks.push([t.mediaMs, t.kind, f64b64(t.landmarks)]);
  }
  return {ticks, stats: player.stats};
}"""


def _arrivals(stream: Stream, seed: int) -> list[tuple[int, bytes, float]]:
    """(index, packet, arrival ms): jittered, reordered, with a burst lost."""
    rng = np.random.default_rng(seed)
    out = [(i, p, 500.0 + 40 * i + float(rng.gamma(2.0, 12.0))) for i, p in enumerate(stream.packets)
           if not 70 <= i < 74]
    return sorted(out, key=lambda a: a[2])


def _python_ticks(stream: Stream, arrivals: list[tuple[int, bytes, float]], nows: list[float]) -> list[Any]:
    """receiver/call.py's playout loop on the same timeline (drawing the last tick due at each frame), with its
    smoothing: each fresh tick smoothed with its neighbours, one frame interval later."""
    dec = FrameDecoder(StreamHeader.from_bytes(stream.header), stream.landmarks[20])  # 20: no face, the rest
    rest = stream.landmarks[20].astype(np.float32)
    jb: JitterBuffer[np.ndarray | None] = JitterBuffer(40.0, 40.0)
    ticks, nxt, p = [], 0, None
    layers, previous = 4, None
    lookahead = LOOKAHEAD_FRAMES * 40.0  # the receiver's smoothing waits for the next frame
    for now in nows:
        while nxt < len(arrivals) and arrivals[nxt][2] <= now:
            try:
                f = dec.decode(arrivals[nxt][1])
                layers = f.layers or layers
                value = f.landmarks.astype(np.float32) if f.face and f.landmarks is not None else None
                jb.push(f.seq, f.timestamp_ms, value, arrivals[nxt][2])
            except StreamError:
                pass
            nxt += 1
        if not jb.started:
            continue
        if p is None:
            p = float(jb.first_timestamp_ms or 0)
        last = None
        while jb.playout_time(p) + lookahead <= now:
            d = jb.pop(p)
            landmarks, face = tick_landmarks(d, rest)
            decoded = landmarks if d.kind is PlayoutKind.FRESH and face else None
            if decoded is not None:
                after = jb.peek_after(p)
                near = after is not None and after.timestamp_ms - p <= 60.0
                landmarks = smooth_frame(previous, decoded, after.value if after is not None and near else None,
                                         layers)
            previous = decoded
            last = (p, d.kind.value, landmarks)
            p += 40.0
        if last is not None:
            ticks.append(last)
    return ticks


def test_page_plays_out_a_call_as_the_receiver_does(page: Any, setup: Setup) -> None:
    stream = setup.streams["entropy"]
    arrivals = _arrivals(stream, 5)
    nows = [500.0 + 1000 / 60 * k for k in range(int(125 * 40 / (1000 / 60)) + 30)]
    out = page.evaluate(PLAYER_JS, {"header": b64(stream.header), "nows": nows,
                                    "arrivals": [[b64(p), t] for _, p, t in arrivals]})
    want = _python_ticks(stream, arrivals, nows)
    got = out["ticks"]
    assert [(g[0], g[1]) for g in got] == [(w[0], w[1]) for w in want]
    kinds = {w[1] for w in want}
    assert {"fresh", "interpolated"} <= kinds or {"fresh", "held"} <= kinds
    err = max(float(np.abs(from_b64(g[2], np.float64) - w[2].ravel()).max()) for g, w in zip(got, want))
    assert err < 0.05
    assert out["stats"]["drawn"] == len(got) and out["stats"]["errors"] == 0


def _open_mouth(lm: np.ndarray, amount: float) -> np.ndarray:
    """The lower lip and jaw dropped by ``amount`` inter-ocular distances."""
    t = lm.copy()
    upper = lm[R.LIPS_INNER[:11], 1].max()
    below = lm[:, 1] > upper + 1
    below[468:] = False
    t[below, 1] += amount * float(np.linalg.norm(lm[33, :2] - lm[263, :2]))
    return t


def _close_eyes(lm: np.ndarray) -> np.ndarray:
    t = lm.copy()
    for contour in (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR):
        t[contour[1:8]] = 0.9 * lm[contour[9:][::-1]] + 0.1 * lm[contour[1:8]]
    return t


def test_page_draws_the_mouth_interior_and_lids_as_python(page: Any, setup: Setup) -> None:
    # Wider than the portrait's own mouth: drawn teeth and cavity; closed eyes: lids from the skin above.
    lm = setup.renderer.warp.landmarks
    targets = np.stack([_open_mouth(lm, 0.3), _open_mouth(_close_eyes(lm), 0.18), _close_eyes(lm)]).astype(np.float32)
    drawn, gain, *_ = setup.renderer.warp._mouth_sources(setup.renderer.warp.geometry(targets).state,
                                                     np.zeros((3, len(setup.renderer.warp.base_sources), 2)))
    assert drawn[:2].all() and not drawn[2]
    pixels = page.evaluate(TARGETS_JS, [b64(t.tobytes()) for t in targets])
    js = np.stack([from_b64(p).reshape(512, 512, 4)[..., :3] for p in pixels])
    py = setup.renderer.warp(targets)
    py = (py * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    scores = ssim(js, py)
    print(f"drawn interior and lids: SSIM {np.round(scores, 4)}, gains {np.round(gain, 3)}")
    assert scores.min() >= 0.97
