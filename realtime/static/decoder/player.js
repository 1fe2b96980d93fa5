// Playout of a call in the page: what receiver/call.py's playout loop does, on the page's own
// clock (performance.now()), drawn by the WebGL2 warp. Transport-agnostic: feed it the stream
// header and motion packets with their arrival times, and call frame(now) when nextDue() comes.

import { ReferenceLostError, StreamError } from "./bitstream.js";
import { MotionDecoder } from "./decoder.js";
import { JitterBuffer, tickLandmarks } from "./jitterbuffer.js";
import { LOOKAHEAD_FRAMES, smoothFrame } from "./smoothing.js";

export const FRAME_INTERVAL_MS = 40;
// A playout this far behind its schedule (a background tab, say) jumps ahead instead of catching up.
export const MAX_BEHIND_MS = 5000;
export const MAX_SPEECH_WAIT_MS = 1000;

// A jitter-buffer decision with each frame's landmarks for its value (entries hold {delta, landmarks}).
function landmarksOf(d) {
  const v = (e) => (e ? { ...e, value: e.value ? e.value.landmarks : null } : null);
  return { ...d, frame: v(d.frame), after: v(d.after) };
}

export class CallPlayer {
  // smoothing: smooth decoded motion with the next frame, each tick one frame later (receiver/call.py).
  constructor(assets, bundle, geometry, renderer, { jitterMs = 20, smoothing = true } = {}) {
    Object.assign(this, { assets, bundle, geometry, renderer, jitterMs });
    this.lookaheadMs = smoothing ? LOOKAHEAD_FRAMES * FRAME_INTERVAL_MS : 0;
    const regions = assets.meta.regions;
    this.eyeCorners = [regions.right_eye_corners[0], regions.left_eye_corners[0]];
    this.rest = bundle.arrays["portrait.landmarks"];
    this.scale = bundle.meta.landmark_scale;
    this.decoder = null;
    // Totals since the page opened (over calls): what it decoded, drew and concealed.
    // `waiting`: predicted frames before the first one this page could decode (it joined mid-call, or its
    // portrait came after the first keyframe), not losses.
    this.stats = { fresh: 0, concealed: 0, empty: 0, drawn: 0, skipped: 0, lost: 0, waiting: 0, errors: 0,
                   packets: 0, bytes: 0, decodeMs: 0, drawMs: 0, lastError: null, face: false, mediaMs: null,
                   calls: 0 };
    this.reset();
  }

  // A new stream: an empty jitter buffer, playout from its first frame.
  reset() {
    this.buffer = new JitterBuffer({ targetDelayMs: this.jitterMs, frameIntervalMs: FRAME_INTERVAL_MS });
    this.p = null;           // sender media time of the next tick
    this.previous = null;    // the last tick's decoded landmarks, when fresh with a face
    this.layers = 4;         // of the latest decoded frame: how coarse its quantization is
    this.extraDelayMs = 0;   // added so that motion waits for the speech (see setSpeechDelay)
  }

  // The stream header (bytes). Throws IncompatibleStreamError or StreamError.
  setHeader(bytes) {
    this.decoder = new MotionDecoder(this.assets, this.bundle, bytes);
    this.synced = false;  // no frame decoded yet: the stream starts at its next keyframe
    this.reset();
    this.stats.calls++;
    return this.decoder.header;
  }

  // One motion message (one or more frames) as it arrives (arrivalMs on the clock later given to
  // frame(); mediaNowMs the sender's clock now, when known). Returns the jitter buffer's word for
  // its last frame, "lost" or "error".
  push(bytes, arrivalMs, mediaNowMs = null) {
    if (!this.decoder) return "no header";
    this.stats.packets++;
    this.stats.bytes += bytes.length;
    const t0 = performance.now();
    let frames;
    try {
      frames = this.decoder.decodeMessage(bytes, mediaNowMs);
    } catch (e) {
      if (e instanceof StreamError) { this.stats.errors++; this.stats.lastError = e.message; return "error"; }
      throw e;
    } finally {
      this.stats.decodeMs += performance.now() - t0;
    }
    let result = "lost";
    for (const f of frames) {
      if (f instanceof ReferenceLostError) {  // concealed at playout
        if (this.synced) this.stats.lost++; else this.stats.waiting++;
        result = "lost";
        continue;
      }
      this.synced = true;
      this.layers = f.layers || this.layers;
      // The delta too: should the portrait change, the frames waiting are moved onto the new one.
      const value = f.landmarks ? { delta: f.delta, landmarks: Float32Array.from(f.landmarks) } : null;
      result = this.buffer.push(f.seq, f.timestampMs, value, arrivalMs);
    }
    return result;
  }

  // Motion waits this much longer than its own jitter buffer needs, so that it plays with the
  // speech that was captured with it (the browser's audio buffer holds speech back too); at most
  // MAX_SPEECH_WAIT_MS, as talk-recv holds speech back for its video viewers at most that long.
  setSpeechDelay(ms) { this.extraDelayMs = Math.min(MAX_SPEECH_WAIT_MS, Math.max(0, ms)); }

  // When the next tick is due (on the clock given to frame()), or null before the first packet.
  nextDue() {
    if (!this.buffer.started) return null;
    const p = this.p === null ? (this.buffer.firstTimestampMs ?? 0) : this.p;
    return this.buffer.playoutTime(p) + this.lookaheadMs + this.extraDelayMs;
  }

  // Pops every tick due by `now` and draws the last one (call it when nextDue() has come).
  // Returns the tick drawn ({mediaMs, kind, face}) or null when no tick was due.
  frame(now) {
    const buffer = this.buffer;
    if (!buffer.started) return null;
    if (this.p === null) this.p = buffer.firstTimestampMs ?? 0;
    let tick = null;
    for (;;) {
      const due = buffer.playoutTime(this.p) + this.lookaheadMs + this.extraDelayMs;
      if (due > now) break;
      if (now - due > MAX_BEHIND_MS) {
        const skip = Math.floor((now - due) / FRAME_INTERVAL_MS);
        this.stats.skipped += skip;
        this.p += skip * FRAME_INTERVAL_MS;
        continue;
      }
      const decision = buffer.pop(this.p);
      const [raw, face] = tickLandmarks(landmarksOf(decision), this.rest);
      let landmarks = raw;
      const decoded = decision.kind === "fresh" && face ? raw : null;
      if (decoded !== null && this.lookaheadMs) {
        const next = buffer.peekAfter(this.p);
        const near = next !== null && next.value !== null && next.timestampMs - this.p <= 1.5 * FRAME_INTERVAL_MS;
        landmarks = smoothFrame(this.previous, decoded, near ? next.value.landmarks : null, this.layers,
                                this.eyeCorners);
      }
      this.previous = decoded;
      if (decision.kind === "fresh") this.stats.fresh++;
      else if (decision.kind === "empty") this.stats.empty++;
      else this.stats.concealed++;
      tick = { mediaMs: this.p, kind: decision.kind, face, landmarks, due };
      this.p += FRAME_INTERVAL_MS;
    }
    if (tick !== null) this.draw(tick.landmarks);
    if (tick !== null) { this.stats.face = tick.face; this.stats.mediaMs = tick.mediaMs; }
    return tick;
  }

  // Another portrait from now on (the caller's picture arrived): what is drawn, and the frames waiting,
  // are moved onto it; the stream goes on decoding where it was.
  setPortrait(bundle, geometry, renderer) {
    Object.assign(this, { bundle, geometry, renderer });
    this.rest = bundle.arrays["portrait.landmarks"];
    this.scale = bundle.meta.landmark_scale;
    this.previous = null;  // on the old portrait: the next tick is not smoothed with it
    if (!this.decoder) return;
    this.decoder.setPortrait(bundle);
    const move = (e) => {
      if (e && e.value) e.value.landmarks = Float32Array.from(this.decoder.transfer(e.value.delta));
    };
    this.buffer.entries.forEach(move);
    move(this.buffer.lastPlayed);
  }

  // Draws target landmarks [478 * 3] given in the portrait's pixels.
  draw(landmarks) {
    const t0 = performance.now();
    const target = new Float32Array(landmarks.length);
    for (let i = 0; i < target.length; i++) target[i] = landmarks[i] * this.scale;
    this.renderer.draw(this.geometry.frame(target));
    this.stats.drawn++;
    this.stats.drawMs += performance.now() - t0;
  }

  // The portrait at rest (no sender, or before the first frame).
  drawRest() { this.draw(this.rest); }
}
