// Playout of a call in the page: what receiver/call.py's playout loop does, driven by the
// page's own clock (performance.now()) or by the speech it plays (a media clock), and drawn
// by the WebGL2 warp. Transport-agnostic: feed it the stream header, motion packets with
// their arrival times, and call frame(now) on every animation frame.

import { ReferenceLostError, StreamError } from "./bitstream.js";
import { MotionDecoder } from "./decoder.js";
import { JitterBuffer, tickLandmarks } from "./jitterbuffer.js";

export const FRAME_INTERVAL_MS = 40;
// A playout this far behind its schedule (a background tab, say) jumps ahead instead of catching up.
export const MAX_BEHIND_MS = 5000;

export class CallPlayer {
  constructor(assets, bundle, geometry, renderer, { jitterMs = 40 } = {}) {
    Object.assign(this, { assets, bundle, geometry, renderer, jitterMs });
    this.rest = bundle.arrays["portrait.landmarks"];
    this.scale = bundle.meta.landmark_scale;
    this.decoder = null;
    this.reset();
  }

  reset() {
    this.buffer = new JitterBuffer({ targetDelayMs: this.jitterMs, frameIntervalMs: FRAME_INTERVAL_MS });
    this.p = null;           // sender media time of the next tick
    this.extraDelayMs = 0;   // added so that motion waits for the speech (see setSpeechDelay)
    this.stats = { fresh: 0, concealed: 0, empty: 0, drawn: 0, skipped: 0, lost: 0, errors: 0, packets: 0,
                   bytes: 0, decodeMs: 0, drawMs: 0, lastError: null, face: false, mediaMs: null };
  }

  // The stream header (bytes). Throws IncompatibleStreamError or StreamError.
  setHeader(bytes) {
    this.decoder = new MotionDecoder(this.assets, this.bundle, bytes);
    this.reset();
    return this.decoder.header;
  }

  // One motion message (one or more frames) as it arrives (arrivalMs on the clock later given to
  // frame()). Returns the jitter buffer's word for its last frame, "lost" or "error".
  push(bytes, arrivalMs) {
    if (!this.decoder) return "no header";
    this.stats.packets++;
    this.stats.bytes += bytes.length;
    const t0 = performance.now();
    let frames;
    try {
      frames = this.decoder.decodeMessage(bytes);
    } catch (e) {
      if (e instanceof StreamError) { this.stats.errors++; this.stats.lastError = e.message; return "error"; }
      throw e;
    } finally {
      this.stats.decodeMs += performance.now() - t0;
    }
    let result = "lost";
    for (const f of frames) {
      if (f instanceof ReferenceLostError) { this.stats.lost++; result = "lost"; continue; }  // concealed at playout
      const value = f.landmarks ? Float32Array.from(f.landmarks) : null;
      result = this.buffer.push(f.seq, f.timestampMs, value, arrivalMs);
    }
    return result;
  }

  // Motion waits this much longer than its own jitter buffer needs, so that it plays with the
  // speech that was captured with it (the browser's audio buffer holds speech back too).
  setSpeechDelay(ms) { this.extraDelayMs = Math.max(0, ms); }

  // Called on every animation frame: pops every tick due by `now` and draws the last one.
  // Returns the tick drawn ({mediaMs, kind, face}) or null when no tick was due.
  frame(now) {
    const buffer = this.buffer;
    if (!buffer.started) return null;
    if (this.p === null) this.p = buffer.firstTimestampMs ?? 0;
    let tick = null;
    for (;;) {
      const due = buffer.playoutTime(this.p) + this.extraDelayMs;
      if (due > now) break;
      if (now - due > MAX_BEHIND_MS) {
        const skip = Math.floor((now - due) / FRAME_INTERVAL_MS);
        this.stats.skipped += skip;
        this.p += skip * FRAME_INTERVAL_MS;
        continue;
      }
      const decision = buffer.pop(this.p);
      const [landmarks, face] = tickLandmarks(decision, this.rest);
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

  // Draws target landmarks [478 * 3] given in the portrait's pixels.
  draw(landmarks) {
    const t0 = performance.now();
    const target = new Float32Array(landmarks.length);
    for (let i = 0; i < target.length; i++) target[i] = landmarks[i] * this.scale;
    this.renderer.draw(this.geometry.targetVertices(target), this.geometry.mouthNewness(target));
    this.stats.drawn++;
    this.stats.drawMs += performance.now() - t0;
  }

  // The portrait at rest (no sender, or before the first frame).
  drawRest() { this.draw(this.rest); }
}
