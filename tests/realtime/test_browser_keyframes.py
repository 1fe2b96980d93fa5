"""The page renders with the caller's keyframes as talk-recv's renderer does, in headless Chromium.

The same portrait and keyframes (an open mouth with teeth, closed eyes) go to
the Python warp renderer (:meth:`codec.render.pipeline.Renderer.add_keyframe`,
its default settings: keyframes' lips laid over the frame)
and, as :func:`codec.webexport.keyframe_bundle` containers, to the page; both
render the same motion. The page's frames must match the Python renderer's
(mean SSIM >= 0.97, as for the page without keyframes) and, where keyframes
matter, in the mouth (mouth-region SSIM) and the closing eyes. The same page
without the keyframes, and the page with them but without laying their lips,
must each fail the mouth criterion, so the test can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from bench.metrics.features import eye_ssim
from bench.metrics.pixels import mouth_ssim, ssim
from codec import regions as R
from codec.keyframe_select import pick_keyframes
from codec.media import read_video
from codec.motion import motion_from_landmarks, relative, transfer
from codec.render.keyframes import Keyframe, canonical_mouth
from codec.render.pipeline import RenderConfig, Renderer
from codec.render.portrait import Portrait
from codec.render.warp import EYE_BLEND
from codec.webexport import DECODER_FILE, PORTRAIT_FILE, bundle_id, decoder_assets, keyframe_bundle, portrait_bundle
from tests.realtime.decoder_page import b64, from_b64, open_page, sync_playwright, webgl_browser

CLIP_FRAMES = 110  # the sample clip's open mouth (~100) and blink (~7) lie within these
MOUTH_SSIM = 0.95
"""Least mean mouth-region SSIM of the page against the Python renderer, both given the keyframes."""
LIP_SSIM = 0.99
"""Least mean mouth-region SSIM of the page against the Python renderer on the frames where keyframes' lips
are laid over the frame (the page matches at 0.9996; drawing the keyframe's interior but not laying its lips
over it, 0.966 on these frames, 0.978 with the mouth distance counting the head pose)."""

LOAD_JS = """async ({keyframes}) => {
  window.D = await import('/decoder/index.js');
  window.assets = new D.Assets(await D.fetchContainer('/assets/decoder.bin', 'decoder'));
  window.bundle = await D.fetchContainer('/assets/portrait.bin', 'portrait');
  window.kfs = [];
  for (const k of keyframes) kfs.push(await D.readKeyframe(unb64(k)));
  return kfs.map((k) => [k.portrait, k.index, k.mouth ? k.mouth.shape : null, k.eyes.map((e) => e.eye)]);
}"""

# Renders targets [478 * 3] float32 (the renderer's pixels) with the keyframes or without them (and with
# or without laying their lips).
RENDER_JS = """async ({targets, withKeyframes, withLips}) => {
  const canvas = document.getElementById('c');
  if (window.renderer) window.renderer.dispose();
  window.geometry = new D.WarpGeometry(bundle, assets);
  window.renderer = new D.WarpRenderer(canvas, bundle, assets, await D.loadImages(bundle));
  const store = new D.KeyframeStore();
  if (withKeyframes) for (const k of kfs) store.add(k);
  const used = store.of(bundle.meta.id, bundle.meta.warp.max_keyframes);
  const layout = D.layoutPatches(bundle.meta.texture.width, bundle.meta.texture.height, used);
  renderer.setKeyframes(layout);
  geometry.setKeyframes(layout);
  return targets.map((t) => {
    const frame = geometry.frame(new Float32Array(unb64(t).buffer));
    const lips = frame.lips ? [...frame.lips.pictures, frame.lips.weight] : null;
    if (!withLips) frame.lips = null;
    renderer.draw(frame);
    return [b64(renderer.readPixels()), frame.eyes.length, lips];
  });
}"""


@dataclass
class Setup:
    renderer: Renderer
    assets: dict[str, bytes]
    keyframes: list[bytes]
    picks: dict[str, int]
    targets: np.ndarray  # [N, 478, 3] float32, the renderer's pixels
    mouth: list[int]     # rows of targets with the mouth open wider than the portrait's
    eyes: list[int]      # rows with the eyes closing far enough for a keyframe's eye to blend in


def _targets(lm: np.ndarray, idx: list[int]) -> np.ndarray:
    """Self-reenactment from frame 0, as the benchmark renders: the clip's motion moved onto the portrait."""
    delta = relative(motion_from_landmarks(lm[idx].astype(np.float64)), motion_from_landmarks(lm[0].astype(np.float64)))
    return transfer(lm[0].astype(np.float64), delta).astype(np.float32)


@pytest.fixture(scope="module")
def setup(sample_clip: Any, sample_landmarks: np.ndarray) -> Setup:
    sync_playwright()  # skip before the slow part when there is no browser
    frames = np.stack(list(read_video(sample_clip, CLIP_FRAMES)))
    lm = sample_landmarks[:len(frames)].astype(np.float32)
    picks = dict((kind, i) for i, kind in reversed(pick_keyframes(lm, np.ones(len(lm), bool), frames)))
    assert {"mouth", "eyes_closed"} <= set(picks)
    portrait = Portrait(frames[0], lm[0], motion_from_landmarks(lm[0]), (0.0, 0.0, 512.0, 512.0))
    renderer = Renderer(portrait, RenderConfig(device="cpu"))
    bundle = portrait_bundle(renderer)
    keyframes = [Keyframe(frames[picks[k]], lm[picks[k]], k) for k in ("eyes_closed", "mouth")]
    containers = [keyframe_bundle(renderer, kf, bundle_id(bundle), i) for i, kf in enumerate(keyframes)]
    for kf in keyframes:
        renderer.add_keyframe(kf)
    # Frames not given as keyframes: the widest-open mouths and the closing eyes of the blink.
    st = motion_from_landmarks(lm.astype(np.float64))
    opening = canonical_mouth(st)[:, 0]
    used = set(picks.values())
    wide = [int(i) for i in np.argsort(-opening) if int(i) not in used][:4]
    closure = 1 - st.blink.mean(-1) / st.blink[0].mean()
    blink = [int(i) for i in np.flatnonzero(closure > EYE_BLEND[0] + 0.1) if int(i) not in used][:3]
    rest = [0, 40]
    idx = wide + blink + rest
    targets = _targets(lm, idx)
    return Setup(renderer, {DECODER_FILE: decoder_assets(), PORTRAIT_FILE: bundle},
                 [c for c in containers if c is not None], picks, targets,
                 list(range(len(wide))), list(range(len(wide), len(wide) + len(blink))))


@pytest.fixture(scope="module")
def page(setup: Setup) -> Iterator[Any]:
    with webgl_browser() as browser:
        page = open_page(browser, setup.assets)
        page.evaluate(LOAD_JS, {"keyframes": [b64(k) for k in setup.keyframes]})
        yield page
        page.close()


def _render(page: Any, targets: np.ndarray, with_keyframes: bool,
            with_lips: bool = True) -> tuple[np.ndarray, list[int], list[Any]]:
    """The page's frames, per frame the eyes it blended, and the pictures its lips came from with the nearest's
    share (None: the portrait's own)."""
    out = page.evaluate(RENDER_JS, {"targets": [b64(t.tobytes()) for t in targets], "withKeyframes": with_keyframes,
                                    "withLips": with_lips})
    return (np.stack([from_b64(p).reshape(512, 512, 4)[..., :3] for p, _, _ in out]), [n for _, n, _ in out],
            [n for _, _, n in out])


def test_the_page_reads_what_the_renderer_takes_from_each_keyframe(page: Any, setup: Setup) -> None:
    got = page.evaluate("() => kfs.map((k) => [k.portrait, k.index, k.mouth ? k.mouth.shape : null, "
                        "k.eyes.map((e) => e.eye), Object.keys(k.patches).sort()])")
    warp = setup.renderer.warp
    want_mouths = [m.shape.tolist() for m in warp.mouth_pictures()[1:]]
    assert np.allclose([g[2] for g in got if g[2] is not None], want_mouths, rtol=0, atol=1e-12)
    # Every keyframe lends its lips (and where they lie in its patch), the open one its interior too.
    lips = page.evaluate("() => kfs.filter((k) => k.mouth).map((k) => [k.mouth.interior, Array.from(k.mouth.lips)])")
    assert [g[0] for g in lips] == [m.interior for m in warp.mouth_pictures()[1:]] and any(g[0] for g in lips)
    for (_, xy), m in zip(lips, warp.mouth_pictures()[1:]):
        assert np.allclose(np.reshape(xy, (-1, 2)), m.lips, rtol=0, atol=1e-3)
    assert sorted(e for g in got for e in g[3]) == sorted(e.eye for e in warp._eyes)
    ids = {g[0] for g in got}
    assert ids == {page.evaluate("() => bundle.meta.id")} and [g[1] for g in got] == [0, 1]


def test_the_page_renders_keyframes_as_python(page: Any, setup: Setup) -> None:
    py = setup.renderer.render(setup.targets)
    js, eyes, lips = _render(page, setup.targets, True)
    bare, _, _ = _render(page, setup.targets, False)
    unlaid, _, _ = _render(page, setup.targets, True, with_lips=False)
    scores = ssim(js, py)
    mouth, eye = setup.mouth, setup.eyes
    m_with = mouth_ssim(js[mouth], py[mouth], setup.targets[mouth])
    m_without = mouth_ssim(bare[mouth], py[mouth], setup.targets[mouth])
    laid = [i for i, n in enumerate(lips) if n]
    # The lips' pictures and their shares are the Python warp's (GeometricWarp._mouth_sources).
    geo = setup.renderer.warp.geometry(setup.targets)
    assert laid == [int(i) for i in np.flatnonzero((geo.lips > 0).any(1))]
    assert np.array_equal([lips[i][:2] for i in laid], geo.lips[laid])
    assert np.allclose([lips[i][2] for i in laid], geo.lip_weight[laid], rtol=0, atol=1e-4)
    lip_with = mouth_ssim(js[laid], py[laid], setup.targets[laid])
    lip_unlaid = mouth_ssim(unlaid[laid], py[laid], setup.targets[laid])
    e_with = eye_ssim(js[eye], py[eye], setup.targets[eye])
    e_without = eye_ssim(bare[eye], py[eye], setup.targets[eye])
    diff = np.abs(js.astype(np.int16) - py.astype(np.int16))
    print(f"frames SSIM mean {scores.mean():.4f} min {scores.min():.4f}, mean abs diff {diff.mean():.3f}; "
          f"mouth SSIM {m_with.mean():.4f} (without keyframes {m_without.mean():.4f}); frames with lips laid {laid}: "
          f"mouth SSIM {lip_with.mean():.4f} (not laid {lip_unlaid.mean():.4f}); "
          f"eye SSIM {np.nanmean(e_with):.4f} (without {np.nanmean(e_without):.4f}); eyes blended {eyes}")
    assert scores.mean() >= 0.97 and scores.min() >= 0.95
    assert m_with.mean() >= MOUTH_SSIM
    # A page that ignores the keyframes draws its own interior: it fails the mouth criterion.
    assert m_without.mean() < MOUTH_SSIM
    # The keyframes' lips are laid where Python lays them (the open mouths at least), and match; a page
    # that leaves them out keeps the portrait's lips there and fails.
    assert set(mouth) <= set(laid)
    assert lip_with.mean() >= LIP_SSIM and lip_unlaid.mean() < LIP_SSIM
    # The blink's frames blend a keyframe's closed eye in on the page too, and it matches.
    assert eye and all(eyes[i] > 0 for i in eye)
    assert np.nanmean(e_with) > np.nanmean(e_without)


def test_the_page_keeps_the_newest_keyframes_as_the_warp_does(page: Any, setup: Setup) -> None:
    got = page.evaluate("""() => { const s = new D.KeyframeStore();
      for (const i of [0, 1, 2, 9, 11]) s.add({portrait: 'a', index: i});
      s.add({portrait: 'b', index: 30});
      return [s.of('a', 8).map((k) => k.index), s.of('b', 8).map((k) => k.index), s.of('c', 8).length]; }""")
    assert got == [[9, 11], [30], 0]



def _turned(lm: np.ndarray, degrees: float) -> np.ndarray:
    """Landmarks ``[..., 478, 3]`` with the head turned about its vertical axis through the face's centre."""
    a = np.radians(degrees)
    centre = lm[..., R.FACE_OVAL, :].mean(-2, keepdims=True)
    d = lm - centre
    out = lm.copy()
    out[..., 0] = centre[..., 0] + np.cos(a) * d[..., 0] + np.sin(a) * d[..., 2]
    out[..., 2] = centre[..., 2] - np.sin(a) * d[..., 0] + np.cos(a) * d[..., 2]
    return out


TURN_JS = """async ({keyframe, targets}) => {
  const canvas = document.getElementById('c');
  if (window.renderer) window.renderer.dispose();
  window.geometry = new D.WarpGeometry(bundle, assets);
  window.renderer = new D.WarpRenderer(canvas, bundle, assets, await D.loadImages(bundle));
  const kf = await D.readKeyframe(unb64(keyframe));
  const layout = D.layoutPatches(bundle.meta.texture.width, bundle.meta.texture.height, [kf]);
  renderer.setKeyframes(layout);
  geometry.setKeyframes(layout);
  const out = [];
  for (const withTurns of [true, false]) {
    for (const t of targets) {
      const frame = geometry.frame(new Float32Array(unb64(t).buffer));
      const weights = frame.turns.map((x) => x.weight);
      if (!withTurns) frame.turns = [];
      renderer.draw(frame);
      out.push([b64(renderer.readPixels()), weights]);
    }
  }
  return [geometry.turns.length, out];
}"""


def test_the_page_takes_a_turned_face_from_a_turn_picture_as_python(page: Any, setup: Setup, sample_clip: Any,
                                                                   sample_landmarks: np.ndarray) -> None:
    """A keyframe of the head turned (here: the sample's landmarks turned 14 degrees, so that the warp takes
    its face as a turn picture) and targets turned towards it: the page mixes in the face rendered from it
    by the same weights, and matches the Python renderer; without it, it does not."""
    frames = np.stack(list(read_video(sample_clip, CLIP_FRAMES)))
    lm = sample_landmarks[:len(frames)].astype(np.float64)
    portrait = Portrait(frames[0], lm[0].astype(np.float32), motion_from_landmarks(lm[0]), (0.0, 0.0, 512.0, 512.0))
    renderer = Renderer(portrait, RenderConfig(device="cpu"))
    bundle = portrait_bundle(renderer)
    keyframe = Keyframe(frames[60], _turned(lm[60], 14.0).astype(np.float32), "turn_left")
    container = keyframe_bundle(renderer, keyframe, bundle_id(bundle), 0)
    renderer.add_keyframe(keyframe)
    assert container is not None and len(renderer.warp.turn_pictures()) == 1
    targets = np.stack([_turned(t, a) for t, a in zip(_targets(lm.astype(np.float32), [20, 40, 60, 80, 100]),
                                                          (6.0, 9.0, 12.0, 16.0, 20.0))]).astype(np.float32)
    want = renderer.warp.turn_weights(motion_from_landmarks(targets.astype(np.float64)))[:, 0]
    py = renderer.render(targets)
    p = open_page(page.context.browser, {DECODER_FILE: setup.assets[DECODER_FILE], PORTRAIT_FILE: bundle})
    p.evaluate(LOAD_JS, {"keyframes": []})
    pictures, out = p.evaluate(TURN_JS, {"keyframe": b64(container), "targets": [b64(t.tobytes()) for t in targets]})
    p.close()
    n = len(targets)
    js = np.stack([from_b64(x).reshape(512, 512, 4)[..., :3] for x, _ in out[:n]])
    bare = np.stack([from_b64(x).reshape(512, 512, 4)[..., :3] for x, _ in out[n:]])
    got = np.array([w[0] if w else 0.0 for _, w in out[:n]])
    turned = want > 0
    face = [_face_box(t) for t in targets]
    s_with = np.array([ssim(js[i:i + 1, y0:y1, x0:x1], py[i:i + 1, y0:y1, x0:x1])[0]
                       for i, (x0, y0, x1, y1) in enumerate(face)])
    s_without = np.array([ssim(bare[i:i + 1, y0:y1, x0:x1], py[i:i + 1, y0:y1, x0:x1])[0]
                          for i, (x0, y0, x1, y1) in enumerate(face)])
    print(f"turn weights Python {np.round(want, 3)} page {np.round(got, 3)}; face SSIM with the turn picture "
          f"{np.round(s_with, 4)}, without {np.round(s_without, 4)}; frames {np.round(ssim(js, py), 4)}")
    assert pictures == 1 and turned.sum() >= 3 and np.allclose(got, want, rtol=0, atol=1e-6)
    assert ssim(js, py).mean() >= 0.97 and ssim(js, py).min() >= 0.95
    assert s_with[turned].mean() >= FACE_SSIM
    # A page that leaves the turn picture out draws the portrait's face there: it fails.
    assert s_without[turned].mean() < FACE_SSIM


FACE_SSIM = 0.97
"""Least mean SSIM, in the face's box, of the page against the Python renderer on frames turned towards a turn
picture."""


def _face_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    oval = landmarks[R.FACE_OVAL, :2]
    x0, y0 = np.clip(np.floor(oval.min(0)), 0, 512).astype(int)
    x1, y1 = np.clip(np.ceil(oval.max(0)), 0, 512).astype(int)
    return int(x0), int(y0), int(x1), int(y1)
