// The motion jitter buffer, a port of realtime/jitterbuffer.py (the same state machine, no
// clock of its own: every call takes the time it is about). Packets in any order in, one
// frame per render tick out: FRESH, INTERPOLATED (a later frame is here), HELD, or EMPTY.

export const MAX_TIMESTAMP_JUMP_MS = 10000;
export const TRANSIT_WINDOW_MS = 5000;
export const SPREAD_WINDOW = 50;

export function unwrapSeq(seq, reference, bits) {
  const mod = 2 ** bits;
  let delta = (((seq - reference) % mod) + mod) % mod;
  if (delta >= mod / 2) delta -= mod;
  return reference + delta;
}

export class JitterBuffer {
  constructor({ targetDelayMs = 50, frameIntervalMs = 40, capacity = 64, seqBits = 16, maxDelayMs = 250 } = {}) {
    this.targetDelayMs = targetDelayMs;
    this.maxDelayMs = Math.max(maxDelayMs, targetDelayMs);
    this.frameIntervalMs = frameIntervalMs;
    this.capacity = capacity;
    this.seqBits = seqBits;
    this.stats = { expected: 0, received: 0, late: 0, duplicates: 0, outOfRange: 0 };
    this.entries = new Map();  // extended seq -> {seq, timestampMs, value}
    this.recent = [];          // the last SPREAD_WINDOW transits
    this.transits = [];        // [arrival, transit], transit increasing: the front is the window's minimum
    this.firstSeq = null;
    this.highestSeq = null;
    this.lastPlayed = null;
    this.playoutTs = null;
  }

  newestTs() {
    if (!this.entries.size) return null;
    return this.entries.get(Math.max(...this.entries.keys())).timestampMs;
  }

  push(seq, timestampMs, value, arrivalMs) {
    const reference = this.highestSeq !== null ? this.highestSeq : seq;
    const ext = unwrapSeq(seq, reference, this.seqBits);
    const anchor = this.playoutTs !== null ? this.playoutTs : this.newestTs();
    if (anchor !== null && Math.abs(timestampMs - anchor) > MAX_TIMESTAMP_JUMP_MS) {
      this.stats.outOfRange++;
      return "out_of_range";
    }
    if (this.entries.has(ext) || (this.lastPlayed !== null && ext === this.lastPlayed.seq)) {
      this.stats.duplicates++;
      return "duplicate";
    }
    if (this.firstSeq === null) this.firstSeq = this.highestSeq = ext;
    else if (ext > this.highestSeq) this.highestSeq = ext;
    else if (ext < this.firstSeq) this.firstSeq = ext;
    this.stats.received++;
    this.stats.expected = this.highestSeq - this.firstSeq + 1;
    this.noteTransit(arrivalMs, arrivalMs - timestampMs);
    if (this.playoutTs !== null && timestampMs <= this.playoutTs) {
      this.stats.late++;
      return "late";
    }
    this.entries.set(ext, { seq: ext, timestampMs, value });
    if (this.entries.size > this.capacity) this.entries.delete(Math.min(...this.entries.keys()));
    return "accepted";
  }

  noteTransit(arrivalMs, transit) {
    this.recent.push(transit);
    if (this.recent.length > SPREAD_WINDOW) this.recent.shift();
    while (this.transits.length && this.transits[this.transits.length - 1][1] >= transit) this.transits.pop();
    this.transits.push([arrivalMs, transit]);
    while (this.transits[0][0] < arrivalMs - TRANSIT_WINDOW_MS && this.transits.length > 1) this.transits.shift();
  }

  get started() { return this.transits.length > 0; }

  get firstTimestampMs() {
    if (!this.entries.size) return null;
    return Math.min(...Array.from(this.entries.values(), (e) => e.timestampMs));
  }

  get delayMs() {
    if (!this.transits.length) return this.targetDelayMs;
    const recent = this.recent.slice().sort((a, b) => a - b);
    const spread = recent[Math.min(recent.length - 1, Math.floor(0.95 * recent.length))] - this.transits[0][1];
    return Math.min(this.maxDelayMs, Math.max(this.targetDelayMs, spread));
  }

  playoutTime(timestampMs) {
    if (!this.transits.length) throw new Error("no frame has arrived yet");
    return timestampMs + this.transits[0][1] + this.delayMs;
  }

  // {kind: "fresh" | "interpolated" | "held" | "empty", frame, after, alpha} for sender time playoutTs.
  pop(playoutTs) {
    this.playoutTs = this.playoutTs === null ? playoutTs : Math.max(this.playoutTs, playoutTs);
    const due = Array.from(this.entries.keys()).filter((k) => this.entries.get(k).timestampMs <= playoutTs)
      .sort((a, b) => a - b);
    let fresh = null;
    for (const k of due) { fresh = this.entries.get(k); this.entries.delete(k); }
    if (fresh !== null && playoutTs - fresh.timestampMs < this.frameIntervalMs) {
      this.lastPlayed = fresh;
      return { kind: "fresh", frame: fresh, after: null, alpha: 0 };
    }
    if (fresh !== null) this.lastPlayed = fresh;
    const last = this.lastPlayed;
    if (last === null) return { kind: "empty", frame: null, after: null, alpha: 0 };
    if (this.entries.size) {
      const after = this.entries.get(Math.min(...this.entries.keys()));
      const span = after.timestampMs - last.timestampMs;
      const alpha = span > 0 ? (playoutTs - last.timestampMs) / span : 1;
      return { kind: "interpolated", frame: last, after, alpha: Math.min(1, Math.max(0, alpha)) };
    }
    return { kind: "held", frame: last, after: null, alpha: 0 };
  }

  // realtime/jitterbuffer.py peek_after: the earliest frame waiting stamped after playoutTs (it stays), or null.
  peekAfter(playoutTs) {
    let best = null;
    for (const e of this.entries.values()) {
      if (e.timestampMs > playoutTs && (best === null || e.timestampMs < best.timestampMs)) best = e;
    }
    return best;
  }

  get size() { return this.entries.size; }
}

// receiver/playout.py tick_landmarks: the landmarks [478 * 3] (float32) of one decision and
// whether they show the sender's face; values are landmarks or null (no face).
export function tickLandmarks(decision, rest) {
  if (decision.kind === "empty" || decision.frame === null) return [rest, false];
  const a = decision.frame.value;
  if (decision.kind === "interpolated" && decision.after !== null) {
    const b = decision.after.value;
    if (a !== null && b !== null) {
      const w = Math.fround(decision.alpha), out = new Float32Array(a.length);
      for (let i = 0; i < a.length; i++) out[i] = (1 - w) * a[i] + w * b[i];
      return [out, true];
    }
    const nearest = decision.alpha < 0.5 ? a : b;
    return nearest === null ? [rest, false] : [nearest, true];
  }
  return a === null ? [rest, false] : [a, true];
}
