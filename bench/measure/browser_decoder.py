"""How fast does a browser decode and draw a call itself? (``realtime/static/decoder`` in headless Chromium)

Encodes the bundled clip's tracked face (fixed or entropy mode), loads the
page's decoder with the assets ``talk-codec export-web`` makes and the sample
portrait's bundle into a headless Chromium with software WebGL2
(SwiftShader), and measures, per frame at 512x512:

* token decoding: packet parsing, entropy decoding, the tokenizer's decoder
  MLP and relative transfer (packet -> target landmarks), in ms;
* the warp's geometry (landmarks -> mesh vertices), in ms;
* drawing (vertices uploaded, the mesh drawn, and waiting for the GPU to finish), in ms;
* frames per second when every animation frame decodes one packet and draws it
  (the page's rate limit; a call needs 25).

Usage::

    python -m bench.measure.browser_decoder [--mode fixed|entropy] [--seconds 5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "realtime" / "static"
ORIGIN = "http://talkcodec.bench"
CHROMIUM = os.environ.get("TALKCODEC_CHROMIUM", "/usr/bin/chromium")
WEBGL_ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
MEASURE_JS = """async ({header, packets, seconds}) => {
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const D = await import('/decoder/index.js');
  const assets = new D.Assets(await D.fetchContainer('/assets/decoder.bin', 'decoder'));
  const bundle = await D.fetchContainer('/assets/portrait.bin', 'portrait');
  const canvas = document.createElement('canvas');
  document.body.appendChild(canvas);
  const renderer = new D.WarpRenderer(canvas, bundle, assets, await D.loadImages(bundle));
  const geometry = new D.WarpGeometry(bundle, assets);
  const h = unb64(header), pk = packets.map(unb64), rest = bundle.arrays['portrait.landmarks'];
  const scale = bundle.meta.landmark_scale;
  const target = (lm) => { const t = Float32Array.from(lm || rest); for (let i = 0; i < t.length; i++) t[i] *= scale;
    return t; };
  // Warm up (JIT, shader compilation), then time each stage over the whole clip.
  let dec = new D.MotionDecoder(assets, bundle, h);
  const frames = pk.map((p) => dec.decode(p));
  for (const f of frames) { renderer.draw(geometry.frame(target(f.landmarks))); }
  renderer.sync();
  dec = new D.MotionDecoder(assets, bundle, h);
  let t0 = performance.now();
  const decoded = pk.map((p) => dec.decode(p));
  const decodeMs = (performance.now() - t0) / pk.length;
  const targets = decoded.map((f) => target(f.landmarks));
  t0 = performance.now();
  const geo = targets.map((t) => { const g = geometry.frame(t);
    return {target: Float32Array.from(g.target), source: Float32Array.from(g.source), mouthGain: g.mouthGain}; });
  const geometryMs = (performance.now() - t0) / pk.length;
  t0 = performance.now();
  geo.forEach((g) => { renderer.draw(g); renderer.sync(); });
  const drawMs = (performance.now() - t0) / pk.length;
  // Every animation frame: decode the next packet, draw it, and have it on screen.
  dec = new D.MotionDecoder(assets, bundle, h);
  let n = 0, i = 0;
  const start = performance.now();
  await new Promise((resolve) => {
    const step = () => {
      if (i === pk.length) { dec = new D.MotionDecoder(assets, bundle, h); i = 0; }
      const t = target(dec.decode(pk[i++]).landmarks);
      renderer.draw(geometry.frame(t));
      renderer.sync();
      n++;
      if (performance.now() - start < seconds * 1000) requestAnimationFrame(step); else resolve();
    };
    requestAnimationFrame(step);
  });
  const fps = n / ((performance.now() - start) / 1000);
  const split = dec.timing;
  return {decodeMs, geometryMs, drawMs, fps, frames: pk.length,
          tokensMsInLoop: split.tokens / split.frames, landmarksMsInLoop: split.landmarks / split.frames,
          renderer: (() => { const gl = canvas.getContext('webgl2');
                             const d = gl.getExtension('WEBGL_debug_renderer_info');
                             return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : ''; })()};
}"""


def _stream(mode: str) -> tuple[bytes, list[bytes]]:
    """The bundled clip's face as a stream (its tracked landmarks are cached)."""
    import numpy as np

    from codec.api import EncoderConfig, encode_landmarks
    from codec.train.corpus import clip_landmarks

    cl = clip_landmarks(REPO / "samples" / "clip.mp4")
    stream = encode_landmarks(cl.landmarks.astype(np.float64), cl.valid, EncoderConfig(entropy=mode == "entropy"))
    return stream.header.to_bytes(), stream.packets


def open_page(browser: Any, assets: dict[str, bytes]) -> Any:
    """A page at ``ORIGIN/`` that can import ``/decoder/*.js`` and fetch ``/assets/<name>`` (no server runs)."""

    def serve(route: Any) -> None:
        path = route.request.url[len(ORIGIN):].split("?")[0]
        if path == "/":
            route.fulfill(status=200, body="<!doctype html><meta charset=utf-8>", headers={"Content-Type": "text/html"})
        elif path.startswith("/assets/") and path[8:] in assets:
            route.fulfill(status=200, body=assets[path[8:]], headers={"Content-Type": "application/octet-stream"})
        elif path.startswith("/decoder/") and (STATIC / path[1:]).is_file():
            route.fulfill(status=200, body=(STATIC / path[1:]).read_bytes(),
                          headers={"Content-Type": "text/javascript"})
        else:
            route.fulfill(status=404, body="")

    page = browser.new_page()
    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/")
    return page


def run(mode: str, seconds: float) -> dict[str, Any]:
    import base64

    from playwright.sync_api import sync_playwright

    from codec.render.pipeline import RenderConfig, Renderer
    from codec.render.portrait import prepare_portrait
    from codec.webexport import decoder_assets, portrait_bundle

    renderer = Renderer(prepare_portrait(REPO / "samples" / "portrait.jpg"), RenderConfig(device="cpu"))
    assets = {"decoder.bin": decoder_assets(), "portrait.bin": portrait_bundle(renderer)}
    header, packets = _stream(mode)

    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    load = os.getloadavg()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=WEBGL_ARGS)
        page = open_page(browser, assets)
        out = page.evaluate(MEASURE_JS, {"header": b64(header), "packets": [b64(x) for x in packets],
                                         "seconds": seconds})
        browser.close()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "mode": mode, "cores": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "frames": out["frames"], "webgl": out["renderer"],
            "decode_ms_per_frame": round(out["decodeMs"], 3), "geometry_ms_per_frame": round(out["geometryMs"], 3),
            "draw_ms_per_frame": round(out["drawMs"], 3),
            "fps_decode_and_draw_each_animation_frame": round(out["fps"], 1),
            "loop_tokens_ms": round(out["tokensMsInLoop"], 3), "loop_landmarks_ms": round(out["landmarksMsInLoop"], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.browser_decoder", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("fixed", "entropy"), default="fixed")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="length of the animation-frame run (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = p.parse_args(argv)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("browser_decoder: needs Playwright (pip install playwright)", file=sys.stderr)
        return 2
    if not os.path.exists(CHROMIUM):
        print(f"browser_decoder: no Chromium at {CHROMIUM} (set TALKCODEC_CHROMIUM)", file=sys.stderr)
        return 2
    result = run(args.mode, args.seconds)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
