"""What the caller's keyframes bring a browser page and what they cost it (the page's decoder, headless Chromium).

On one held-out clip, as a call would go: the clip's reference picture and
its keyframes from the first 5 s (:func:`bench.pictures.clip_pictures`:
compressed as talk-send sends them, decoded as talk-recv does), the
renderer talk-recv makes of them, and the keyframe containers the relay
sends each token page (:func:`codec.webexport.keyframe_bundle`). The rest
of the clip is scored, its true motion transferred onto the portrait (as
``bench.measure.render_quality``'s warp run): the page renders it with the
keyframes and without them, the Python renderer with them; each against
the true frames:

* mouth-region SSIM (every scored frame), and the mean |luma difference|
  inside the inner lips on the 20% widest-open frames (``mouth_lum_diff``);
* eye-region SSIM on the frames with closed eyes; whole-frame SSIM;
* the page against the Python renderer (SSIM, mouth SSIM): agreement;
* bytes: each keyframe's container, the control-message bytes a page gets
  (chunked and paced as the relay does, at the relay's default rate) and
  how long that takes, against the call's own keyframe records;
* the page's cost per frame in this (software, SwiftShader) WebGL: geometry,
  and the draw with and without the keyframe-lip pass and the turn pictures'
  renders (``page_cost``; timings, so the load average is recorded with them).

Usage::

    python -m bench.measure.page_keyframes [--clip clips/latentsync_demo2.mp4 ...] [--max-frames 200] [--no-turns]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure.browser_decoder import CHROMIUM, WEBGL_ARGS, open_page

DEFAULT_CLIP = "clips/latentsync_demo2.mp4"

PAGE_JS = """async ({keyframes}) => {
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  window.unb64 = unb64;
  window.D = await import('/decoder/index.js');
  window.assets = new D.Assets(await D.fetchContainer('/assets/decoder.bin', 'decoder'));
  window.bundle = await D.fetchContainer('/assets/portrait.bin', 'portrait');
  window.kfs = [];
  for (const k of keyframes) kfs.push(await D.readKeyframe(unb64(k)));
  window.canvas = document.createElement('canvas');
  document.body.appendChild(canvas);
}"""

USE_JS = """async (withKeyframes) => {
  if (window.renderer) renderer.dispose();
  window.geometry = new D.WarpGeometry(bundle, assets);
  window.renderer = new D.WarpRenderer(canvas, bundle, assets, await D.loadImages(bundle));
  const store = new D.KeyframeStore();
  if (withKeyframes) for (const k of kfs) store.add(k);
  const layout = D.layoutPatches(bundle.meta.texture.width, bundle.meta.texture.height,
                                 store.of(bundle.meta.id, bundle.meta.warp.max_keyframes));
  renderer.setKeyframes(layout);
  geometry.setKeyframes(layout);
}"""

DRAW_JS = """(targets) => targets.map((t) => {
  renderer.draw(geometry.frame(new Float32Array(unb64(t).buffer)));
  const p = renderer.readPixels();
  let s = '';
  for (let i = 0; i < p.length; i += 0x8000) s += String.fromCharCode.apply(null, p.subarray(i, i + 0x8000));
  return btoa(s);
})"""


# Per frame, in ms: the geometry (landmarks -> mesh, mouth, lip and turn picks) and the draw with and without
# the lip pass, and with and without the turn pictures' renders (uploads, the passes, and waiting for the GPU:
# one pixel read back), interleaved so that a change of load hits both alike; each over the frames that have
# lips to lay (turn pictures to mix in).
COST_JS = """(targets) => {
  const ts = targets.map((t) => new Float32Array(unb64(t).buffer));
  for (const t of ts.slice(0, 10)) { renderer.draw(geometry.frame(t)); renderer.sync(); }  // warm up
  let geo = 0, lips = 0, noLips = 0, nLips = 0, turns = 0, noTurns = 0, nTurns = 0;
  const time = (g) => {
    const t0 = performance.now();
    renderer.draw(g);
    renderer.sync();
    return performance.now() - t0;
  };
  for (const t of ts) {
    const t0 = performance.now();
    const f = geometry.frame(t);
    geo += performance.now() - t0;
    const g = {...f, target: Float32Array.from(f.target), source: Float32Array.from(f.source)};
    const all = time(g);
    if (g.lips) { lips += all; noLips += time({...g, lips: null}); nLips++; }
    if (g.turns.length) { turns += all; noTurns += time({...g, turns: []}); nTurns++; }
  }
  return {geometry_ms: geo / ts.length, draw_ms_with_lip_pass: lips / Math.max(nLips, 1),
          draw_ms_without_lip_pass: noLips / Math.max(nLips, 1), frames_with_lips: nLips,
          draw_ms_with_turn_renders: turns / Math.max(nTurns, 1),
          draw_ms_without_turn_renders: noTurns / Math.max(nTurns, 1), frames_with_turns: nTurns,
          webgl: (() => { const gl = renderer.gl, x = gl.getExtension('WEBGL_debug_renderer_info');
                          return x ? gl.getParameter(x.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })()};
}"""


def _page_frames(page: Any, targets: np.ndarray, with_keyframes: bool, batch: int = 8) -> np.ndarray:
    page.evaluate(USE_JS, with_keyframes)
    out = []
    for i in range(0, len(targets), batch):
        pixels = page.evaluate(DRAW_JS, [base64.b64encode(t.tobytes()).decode() for t in targets[i:i + batch]])
        out += [np.frombuffer(base64.b64decode(p), np.uint8).reshape(512, 512, 4)[..., :3] for p in pixels]
    return np.stack(out)


def paced_bytes(containers: list[bytes], kbps: float) -> tuple[int, float]:
    """Control-message bytes one page gets for ``containers``, and the seconds that takes, paced as the relay
    does (a message behind each 40 ms motion message, :class:`realtime.pictures.PictureOutbox`)."""
    from codec.picture import MAX_PICTURE_BYTES
    from realtime.pictures import FRAME_INTERVAL_S, PacingConfig, PictureOutbox

    outbox = PictureOutbox(PacingConfig(kbps), 0.0)
    for c in containers:
        if len(c) <= MAX_PICTURE_BYTES:  # else the relay sends it not at all (see page_containers)
            outbox.add(c)
    t, sent = 0.0, 0
    while outbox.pending:
        t += FRAME_INTERVAL_S
        msg = outbox.next_message(t)
        sent += len(msg or b"")
    return sent, t


def run(clip: str, max_frames: int, turns: bool = True) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from bench.metrics.features import closed_eyes, eye_ssim, mouth_interior_luma, widest_open
    from bench.metrics.pixels import mouth_ssim, ssim
    from bench.pictures import clip_pictures, keyframe_window
    from codec.media import read_video
    from codec.motion import motion_from_landmarks, relative, transfer
    from codec.render.pipeline import RenderConfig, Renderer
    from codec.render.portrait import portrait_from_picture
    from codec.render.video import hand_keyframe
    from codec.render.warp import WarpConfig
    from codec.train.corpus import clip_landmarks, corpus_dir
    from codec.webexport import bundle_id, decoder_assets, keyframe_bundle, portrait_bundle
    from realtime.pictures import PacingConfig

    load = os.getloadavg()
    root = corpus_dir()
    cl = clip_landmarks(root / clip)
    frames = np.stack(list(read_video(root / clip, len(cl.landmarks))))
    n = len(frames)
    lm, valid = cl.landmarks[:n], cl.valid[:n]
    k = keyframe_window(n, cl.fps)
    pics = clip_pictures(frames, lm, valid, cl.fps, 0)
    portrait = portrait_from_picture(pics.reference)
    renderer = Renderer(portrait, RenderConfig(device="cpu", warp=WarpConfig(turns=turns)))
    bundle = portrait_bundle(renderer)
    containers = [keyframe_bundle(renderer, hand, bundle_id(bundle), i)
                  for i, hand in enumerate(_keyframes(pics.keyframes))]
    for p in pics.keyframes:
        hand_keyframe(renderer, p)
    sent = [c for c in containers if c is not None]

    idx = (k + np.flatnonzero(valid[k:]))[:max_frames]
    truth = frames[idx]
    truth_lm = lm[idx].astype(np.float32)
    delta = relative(motion_from_landmarks(lm[idx].astype(np.float64)), motion_from_landmarks(lm[0].astype(np.float64)))
    targets = transfer(portrait.landmarks.astype(np.float64), delta).astype(np.float32)
    python = np.concatenate([renderer.render(targets[i:i + 8]) for i in range(0, len(targets), 8)])

    assets = {"decoder.bin": decoder_assets(), "portrait.bin": bundle}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=WEBGL_ARGS)
        page = open_page(browser, assets)
        page.evaluate(PAGE_JS, {"keyframes": [base64.b64encode(c).decode() for c in sent]})
        with_kf = _page_frames(page, targets, True)
        without = _page_frames(page, targets, False)
        page.evaluate(USE_JS, True)
        cost = page.evaluate(COST_JS, [base64.b64encode(t.tobytes()).decode() for t in targets])
        browser.close()

    widest = widest_open(truth_lm)
    closed = closed_eyes(truth_lm, reference=truth_lm)
    truth_mouth = mouth_interior_luma(truth[widest], truth_lm[widest])

    def scores(out: np.ndarray) -> dict[str, float]:
        lum = mouth_interior_luma(out[widest], truth_lm[widest])
        return {"ssim": float(ssim(out, truth).mean()), "mouth_ssim": float(mouth_ssim(out, truth, truth_lm).mean()),
                "mouth_lum": float(np.nanmean(lum)), "mouth_lum_diff": float(np.nanmean(np.abs(lum - truth_mouth))),
                "eye_ssim_closed": (float(eye_ssim(out[closed], truth[closed], truth_lm[closed]).mean())
                                    if len(closed) else math.nan)}

    kbps = PacingConfig().kbps
    per_page, seconds = paced_bytes(sent, kbps)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"), "clip": clip, "turns": turns,
        "turn_pictures": len(renderer.warp.turn_pictures()),
        "scored_frames": len(idx), "first_scored": k,
        "widest_frames": len(widest), "closed_frames": len(closed),
        "truth_mouth_lum": float(np.nanmean(truth_mouth)),
        "keyframes": [p.kind.label for p in pics.keyframes],
        "page_with_keyframes": scores(with_kf), "page_without_keyframes": scores(without),
        "python_with_keyframes": scores(python),
        "agreement": {"ssim": float(ssim(with_kf, python).mean()),
                      "mouth_ssim": float(mouth_ssim(with_kf, python, targets).mean()),
                      "mouth_ssim_without_keyframes": float(mouth_ssim(without, python, targets).mean()),
                      "eye_ssim_closed": (float(eye_ssim(with_kf[closed], python[closed], targets[closed]).mean())
                                          if len(closed) else math.nan)},
        "bytes": {"call_keyframe_records": pics.keyframe_bytes,
                  "page_containers": [0 if c is None else len(c) for c in containers],
                  "page_control_messages": per_page, "page_seconds_at_kbps": round(seconds, 2), "kbps": kbps},
        "page_cost": {k: round(v, 3) if isinstance(v, float) else v for k, v in cost.items()},
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _keyframes(pictures: list[Any]) -> list[Any]:
    from codec.render.keyframes import Keyframe

    return [Keyframe(p.image, p.landmarks, p.kind.label) for p in pictures]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measure.page_keyframes", description=__doc__.split("\n")[0])
    p.add_argument("--clip", action="append", help=f"a clip of the corpus, repeatable (default: {DEFAULT_CLIP})")
    p.add_argument("--max-frames", type=int, default=200, help="scored frames at most (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    p.add_argument("--no-turns", dest="turns", action="store_false",
                   help="the renderer without head-turn pictures (Python and page)")
    args = p.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"page_keyframes: no Chromium at {CHROMIUM} (set TALKCODEC_CHROMIUM)", file=sys.stderr)
        return 2
    result = {"clips": [run(clip, args.max_frames, args.turns) for clip in args.clip or [DEFAULT_CLIP]]}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
