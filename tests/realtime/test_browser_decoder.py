"""The page's decoder (realtime/static/decoder) against the Python codec, in headless Chromium.

The same stream decoded by the page and by :func:`codec.api.decode_stream`
(what ``talk-codec decode`` runs) must give the same target landmarks (within
0.05 px), and the page's WebGL2 frames must match the Python warp renderer's
(mean SSIM >= 0.97 at 512x512, same portrait). The page reads only what
:mod:`codec.webexport` generates, so these tests are what keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decoder_page import b64, from_b64, open_page, sync_playwright, webgl_browser

FIXTURES = Path(__file__).resolve().parents[1] / "codec" / "fixtures"

DECODE_JS = """async ({header, packets}) => {
  const D = await import('/decoder/index.js');
  window.D = D;
  window.assets = window.assets || new D.Assets(await D.fetchContainer('/assets/decoder.bin', 'decoder'));
  window.bundle = window.bundle || await D.fetchContainer('/assets/portrait.bin', 'portrait');
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
    renderer.draw(geometry.targetVertices(target), geometry.mouthNewness(target));
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
    from codec.api import decode_stream
    from codec.bitstream import StreamWriter
    from codec.container import read_tok, write_tok

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
    from codec.api import EncoderConfig, MotionEncoder, reference_info
    from codec.portrait import prepare_portrait
    from codec.render import RenderConfig, Renderer
    from codec.webexport import DECODER_FILE, PORTRAIT_FILE, decoder_assets, portrait_bundle

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
        yield page
        page.close()


def _decode(page: Any, stream: Stream) -> np.ndarray:
    out = page.evaluate(DECODE_JS, {"header": b64(stream.header), "packets": [b64(p) for p in stream.packets]})
    return from_b64(out["landmarks"], np.float64).reshape(stream.landmarks.shape)


def test_page_reports_the_exported_weights(page: Any, setup: Setup) -> None:
    from codec.bitstream import STREAM_VERSION
    from codec.entropy import load_entropy_model
    from codec.tokenizer import weights_hash

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
    from bench.metrics import ssim

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
