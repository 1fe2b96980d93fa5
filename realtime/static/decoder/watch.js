// Token mode: this page receives the call's own stream (header, motion packets, the caller's
// Opus) relayed by talk-recv, decodes it and draws the avatar with WebGL2. The page's
// channels and the control framing come from protocol.json, the weights and stream constants
// from decoder.bin, the portrait from the receiver at join: none of it is written here.

import { encodePing, OffsetEstimator, parseControl, wallUs } from "./control.js";
import { Assets } from "./decoder.js";
import { fetchContainer, parseContainer } from "./container.js";
import { IncompatibleStreamError } from "./bitstream.js";
import { WarpGeometry } from "./geometry.js";
import { KeyframeStore, PictureInbox, layoutPatches, readKeyframe } from "./keyframes.js";
import { CallPlayer } from "./player.js";
import { WarpRenderer, loadImages } from "./renderer.js";

// Motion messages kept while this page cannot decode yet (its portrait bundle or the header is still on
// the way): the relay starts a joining page at a keyframe, often before the page has its portrait.
export const MAX_EARLY_MOTION = 250;

const median = (a) => { const s = a.slice().sort((x, y) => x - y); return s.length ? s[s.length >> 1] : null; };

// ui: {connect, say, server(), canvas, audio, stateEl, stats (element), token, pictureStates (app.js's words
// for the receiver's placeholder states)}
export async function watchTokens(ui) {
  const [assetsC, P] = await Promise.all([
    fetchContainer("decoder.bin", "decoder"),
    fetch("decoder/protocol.json", { cache: "no-store" }).then((r) => r.json())]);
  const assets = new Assets(assetsC);
  const state = { player: null, header: null, epochUs: null, offset: new OffsetEstimator(), latencies: [],
                  sender: null, error: null, bundleChunks: [], rest: true, stats: null,
                  keyframes: new KeyframeStore(), pictures: new PictureInbox(P.pictures), keyframeBytes: 0,
                  keyframesUsed: [] };
  window.talkcodec = state;  // for tests and the curious: the page's decoder state
  const channels = {};
  let early = [];  // [bytes, arrivalMs, mediaNowMs] that came before the player could decode them

  // The caller's keyframes cut out for the portrait drawn now (its bundle's id), in its texture.
  const useKeyframes = () => {
    const p = state.player;
    if (!p) return;
    const kfs = state.keyframes.of(p.bundle.meta.id, p.bundle.meta.warp.max_keyframes);
    if (kfs.length === state.keyframesUsed.length && kfs.every((k, i) => k === state.keyframesUsed[i])) return;
    const layout = layoutPatches(p.bundle.meta.texture.width, p.bundle.meta.texture.height, kfs);
    p.renderer.setKeyframes(layout);
    p.geometry.setKeyframes(layout);
    state.keyframesUsed = kfs;
  };
  const onPicture = async (m) => {
    if (m.type === "PICTURE_BEGIN") { state.pictures.begin(m); return; }
    const bytes = await state.pictures.data(m);
    if (!bytes) return;
    state.keyframeBytes += bytes.length;
    state.keyframes.add(await readKeyframe(bytes));
    useKeyframes();
  };

  // A portrait bundle: the first at join, another when the caller's own picture has arrived
  // (the receiver shows a placeholder until then), and the first again when a call ends.
  const onBundle = async (bytes) => {
    const bundle = parseContainer(bytes.buffer);
    const images = await loadImages(bundle);
    const old = state.player;
    if (old) old.renderer.dispose();
    const renderer = new WarpRenderer(ui.canvas, bundle, assets, images);
    const geometry = new WarpGeometry(bundle, assets);
    state.portraits = (state.portraits || 0) + 1;
    state.keyframesUsed = [];
    if (old) {
      old.setPortrait(bundle, geometry, renderer);
      useKeyframes();
      if (!old.decoder) old.drawRest();
      return;
    }
    state.player = new CallPlayer(assets, bundle, geometry, renderer);
    useKeyframes();
    state.player.drawRest();
    if (state.header) setHeader(state.header);
  };

  const setHeader = (bytes) => {
    state.header = bytes;
    if (!state.player) return;
    try {
      state.player.setHeader(bytes);
      for (const m of early) state.player.push(...m);
      early = [];
      if (state.error) ui.say("live", "live: decoding the call in this browser (token mode)");
      state.error = null;
    } catch (e) {
      state.error = e instanceof IncompatibleStreamError ? `incompatible stream: ${e.message}`
        : `the sender's stream header is unreadable: ${e.message}`;
      ui.say("error", state.error);
    }
  };

  const onControl = (data) => {
    let m;
    try { m = parseControl(new Uint8Array(data), P); } catch (e) { return; }
    if (m.type === "HELLO") setHeader(m.header);
    else if (m.type === "START") state.epochUs = m.epochUs;
    else if (m.type === "PONG") state.offset.add(m.t0Us, m.t1Us, m.t2Us, wallUs());
    else if (m.type === "SENDER_STATS") state.senderStats = { ...m, at: performance.now() };  // sender totals
    else if (m.type === "PICTURE_BEGIN" || m.type === "PICTURE_DATA") {
      onPicture(m).catch((err) => { state.keyframeError = err.message; });
    }
    else if (m.type === "BYE") {
      state.header = null;
      state.epochUs = null;
      early = [];
      state.keyframes.clear();  // a call's keyframes are of that call (the receiver's renderer forgets them too)
      useKeyframes();
      if (state.player) { state.player.decoder = null; state.player.reset(); state.player.drawRest(); }
    }
  };

  ui.connect(ui.token, "watch", (pc) => {
    for (const [name, spec] of Object.entries(P.channels)) {
      if (name === "status") continue;  // app.js opens it for every viewer
      const ch = channels[name] = pc.createDataChannel(name, { negotiated: true, ...spec });
      ch.binaryType = "arraybuffer";
    }
    channels.portrait.onmessage = (e) => {
      const chunk = new Uint8Array(e.data);
      if (chunk.length) { state.bundleChunks.push(chunk); return; }
      const all = new Uint8Array(state.bundleChunks.reduce((n, c) => n + c.length, 0));
      let o = 0;
      for (const c of state.bundleChunks) { all.set(c, o); o += c.length; }
      state.bundleChunks = [];
      state.bundleBytes = all.length;
      onBundle(all).catch((err) => ui.say("error", `cannot draw the portrait: ${err.message}`));
    };
    channels.control.onmessage = (e) => onControl(e.data);
    channels.control.onopen = () => setInterval(() => {
      if (channels.control.readyState === "open") channels.control.send(encodePing(wallUs(), P));
    }, 1000);
    channels.motion.onmessage = (e) => {
      // The sender's clock now (START is in the receiver's clock; the offset takes it to this page's).
      const mediaNow = state.epochUs === null ? null : (wallUs() + state.offset.offsetUs - state.epochUs) / 1000;
      const m = [new Uint8Array(e.data), performance.now(), mediaNow];
      if (state.player && state.player.decoder) { state.player.push(...m); return; }
      // Kept, not dropped: the first message is the keyframe this page starts at.
      early.push(m);
      if (early.length > MAX_EARLY_MOTION) early.shift();
    };
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (e) => { ui.audio.srcObject = new MediaStream([e.track]); };
  }, () => {
    const s = ui.server();
    state.sender = s.sender;
    // A stream error stays shown until a compatible header comes; the page's own errors for good.
    if (state.error || ["error", "closed"].includes(ui.stateEl.dataset.state)) return;
    if (s.sender && state.header) ui.say("live", "live: decoding the call in this browser (token mode)");
    else if (s.sender) ui.say("live", "live: waiting for the stream header");
    else if (s.sender === false) ui.say("waiting", "no sender connected: showing the portrait at rest");
    if (s.sender && ui.pictureStates[s.picture]) ui.stateEl.textContent += ui.pictureStates[s.picture];
  }, (pc) => showTokenStats(pc, state, ui));

  // Each tick is drawn when it is due (a timer, as the receiver's playout loop sleeps), not on
  // animation frames: those come at the display's rate, or slower on a busy machine.
  const loop = () => {
    const p = state.player;
    let wait = 20;
    if (p && p.decoder) {
      const tick = p.frame(performance.now());
      if (tick && tick.kind === "fresh" && state.epochUs !== null) {
        // Capture time on this page's clock: the receiver's START, less the receiver's clock offset.
        const captured = state.epochUs + tick.mediaMs * 1000 - state.offset.offsetUs;
        state.latencies.push((wallUs() - captured) / 1000);
        if (state.latencies.length > 50) state.latencies.shift();
      }
      const due = p.nextDue();
      if (due !== null) wait = Math.min(100, Math.max(0, due - performance.now()));
    }
    setTimeout(loop, wait);
  };
  loop();
}

// Once a second: frames drawn, what this browser receives (payload bytes: speech RTP payloads and
// data-channel messages, as the sender counts the call's motion and speech), latency.
function showTokenStats(pc, state, ui) {
  let last = null;
  setInterval(async () => {
    const report = await pc.getStats();
    let payload = 0, wire = 0, audioDelay = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        payload += s.bytesReceived || 0;
        if (last && s.jitterBufferEmittedCount > last.emitted) {
          audioDelay = 1000 * (s.jitterBufferDelay - last.jbDelay) / (s.jitterBufferEmittedCount - last.emitted);
        }
        state.audioJb = { jbDelay: s.jitterBufferDelay || 0, emitted: s.jitterBufferEmittedCount || 0 };
      }
      if (s.type === "data-channel") payload += s.bytesReceived || 0;
      if (s.type === "transport") wire += s.bytesReceived || 0;
    });
    const now = performance.now(), p = state.player;
    const drawn = p ? p.stats.drawn : 0;
    // Motion waits for the speech the browser holds back, so that both play at their capture times.
    if (p && audioDelay !== null && p.decoder) p.setSpeechDelay(audioDelay - p.buffer.delayMs);
    const parts = ["token mode"];
    if (last) {
      const dt = (now - last.t) / 1000;
      state.fps = (drawn - last.drawn) / dt;
      state.kbps = (payload - last.payload) * 8 / 1000 / dt;
      state.wireKbps = (wire - last.wire) * 8 / 1000 / dt;
      parts.push(`${state.fps.toFixed(0)} fps`, `received ${state.kbps.toFixed(1)} kbps`);
    }
    const lat = median(state.latencies);
    if (state.sender && lat !== null) parts.push(`latency ${lat.toFixed(0)} ms`);
    state.latencyMs = lat;
    const s = ui.server();
    if (s.viewers) parts.push(`${s.viewers} watching`);
    last = { t: now, drawn, payload, wire, emitted: state.audioJb ? state.audioJb.emitted : 0,
             jbDelay: state.audioJb ? state.audioJb.jbDelay : 0 };
    ui.stats.textContent = parts.join(" | ");
  }, 1000);
}
