// The talkcodec byte format (codec/bitstream.py), driven by the exported constants
// (assets.meta.stream), so that a change there reaches the page through codec/webexport.py:
//   header   magic | version u8 | length u32 | JSON          (big-endian)
//   version 2 (written now; a message holds one or more frames):
//   message  seq u16 | time u16 | frame+
//   frame    flags u8 | [dt u8: frames after the first] | [length u8: entropy frames not last] | payload
//   version 1 (still read):
//   packet   seq u16 | timestamp_ms u32 | flags u8 | payload
// Every parse error throws StreamError; nothing returns garbage tokens.

export class StreamError extends Error {}
// A predicted (entropy-coded) frame whose reference frame was lost: conceal it.
export class ReferenceLostError extends StreamError {}
// The stream cannot be decoded with the weights this page loaded.
export class IncompatibleStreamError extends StreamError {}

const REQUIRED = ["fps", "mode", "layers", "tokenizer", "tokenizer_hash", "entropy_hash", "reference",
                  "keyframe_interval"];

export function parseHeader(bytes, C) {
  const n = C.header_prefix_bytes;
  if (bytes.length < n) throw new StreamError(`stream header truncated: ${bytes.length} bytes, need at least ${n}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== C.magic) throw new StreamError(`not a talkcodec stream: starts with ${JSON.stringify(magic)}`);
  const version = bytes[4];
  if (!C.readable_versions.includes(version)) {
    throw new IncompatibleStreamError(`stream version ${version} is not supported: this page reads versions ` +
      `${C.readable_versions.join(", ")}; the sender runs another talkcodec release`);
  }
  const length = dv.getUint32(5);
  if (length > C.max_header_bytes) throw new StreamError(`stream header claims ${length} bytes: corrupt stream`);
  if (bytes.length !== n + length) throw new StreamError(`stream header is ${n + length} bytes, got ${bytes.length}`);
  let d;
  try {
    d = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(n)));
  } catch (e) {
    throw new StreamError(`stream header is not valid JSON: ${e.message}`);
  }
  if (typeof d !== "object" || d === null) throw new StreamError("stream header JSON is not an object");
  const missing = REQUIRED.filter((k) => !(k in d));
  if (missing.length) throw new StreamError(`invalid stream header: header lacks ${missing.join(", ")}`);
  if (!C.modes.includes(d.mode)) throw new StreamError(`invalid stream header: mode ${JSON.stringify(d.mode)}`);
  if (!Number.isInteger(d.layers) || d.layers < 1 || d.layers > C.max_layers) {
    throw new StreamError(`invalid stream header: layers ${d.layers}`);
  }
  if (!(d.fps > 0 && d.fps <= 1000)) throw new StreamError(`invalid stream header: fps ${d.fps}`);
  return { version, ...d };
}

// Throws IncompatibleStreamError unless the page's weights speak the sender's language
// (codec.bitstream.check_compatible and the entropy check of codec.api.FrameDecoder).
export function checkCompatible(header, assets) {
  const tok = assets.meta.tokenizer, ent = assets.meta.entropy;
  const mine = tok.config.grfsq, theirs = header.tokenizer || {};
  const same = ["dim", "groups", "residuals"].every((k) => theirs[k] === mine[k]) &&
    JSON.stringify(theirs.levels) === JSON.stringify(mine.levels);
  if (!same) {
    throw new IncompatibleStreamError(`the sender's tokenizer ${JSON.stringify(header.tokenizer)} differs from ` +
      `this page's ${JSON.stringify(tok.config.grfsq)}: the sender runs another talkcodec release`);
  }
  if (header.tokenizer_hash !== tok.hash) {
    throw new IncompatibleStreamError(`the sender's tokenizer weights ${header.tokenizer_hash} differ from the ` +
      `weights served to this page (${tok.hash}): use the same talkcodec release on both ends`);
  }
  if (header.mode === "entropy" && (!ent || header.entropy_hash !== ent.hash)) {
    throw new IncompatibleStreamError(`the sender's entropy model ${header.entropy_hash} differs from the ` +
      `page's ${ent ? ent.hash : "(none)"}: use the same talkcodec release on both ends, or fixed mode`);
  }
}

// codec.bitstream.unwrap_ms: the capture time whose low 16 bits are `low` nearest `referenceMs` (never negative).
export function unwrapMs(low, referenceMs) {
  const ref = Math.round(Math.max(0, referenceMs));
  const value = ref - (ref % 0x10000) + (low & 0xffff);
  let best = null;
  for (const v of [value - 0x10000, value, value + 0x10000]) {
    if (v >= 0 && (best === null || Math.abs(v - ref) < Math.abs(best - ref))) best = v;
  }
  return best % 0x100000000;
}

// One frame's flags against its payload (codec.bitstream._frame).
function checkFrame(seq, timestampMs, flags, payload, header, C, version) {
  const F = C.flags;
  if (flags & F.reserved[String(version)]) throw new StreamError(`packet ${seq} has reserved flag bits set`);
  const face = !!(flags & F.face), keyframe = !!(flags & F.keyframe), entropy = !!(flags & F.entropy);
  if (!face) {
    if (flags || payload.length) throw new StreamError(`packet ${seq} without a face must have no flags and payload`);
    return { seq, timestampMs, layers: 0, face, keyframe, entropy, payload };
  }
  const layers = (flags & F.layers_mask) + 1;
  if (layers > header.layers) {
    throw new StreamError(`packet ${seq} has ${layers} layers but the stream was encoded with ${header.layers}`);
  }
  if (entropy) {
    if (!payload.length) throw new StreamError(`entropy-coded packet ${seq} has an empty payload`);
  } else {
    const size = C.fixed_payload_bytes[layers - 1];
    if (payload.length !== size) throw new StreamError(`fixed packet ${seq} with ${layers} layer(s) needs ${size} bytes`);
    if (!keyframe) throw new StreamError(`fixed packet ${seq} is not marked as a keyframe`);
  }
  return { seq, timestampMs, layers, face, keyframe, entropy, payload };
}

// codec.bitstream.parse_message: one message's frames, in order (version 1: exactly one).
// referenceMs: version 2 unwraps its 16-bit time nearest it (the previous frame's, or a clock's).
export function parseMessage(bytes, header, C, referenceMs = 0) {
  const n = bytes.length, version = header.version;
  if (n > C.max_packet_bytes) throw new StreamError(`packet of ${n} bytes exceeds the ${C.max_packet_bytes}-byte limit`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (version === 1) {
    const hb = C.v1_packet_header_bytes;
    if (n < hb) throw new StreamError(`packet truncated: ${n} bytes, the header alone is ${hb}`);
    return [checkFrame(dv.getUint16(0), dv.getUint32(2), bytes[6], bytes.subarray(hb), header, C, 1)];
  }
  if (n < C.packet_header_bytes) {
    throw new StreamError(`packet truncated: ${n} bytes, the header alone is ${C.packet_header_bytes}`);
  }
  const seq = dv.getUint16(0), F = C.flags;
  let ts = unwrapMs(dv.getUint16(2), referenceMs);
  let pos = C.message_header_bytes;
  const frames = [];
  for (;;) {
    if (frames.length === C.max_frames_per_message) throw new StreamError(`message ${seq} holds too many frames`);
    if (pos >= n) throw new StreamError(`message ${seq} is truncated before frame ${frames.length}`);
    let flags = bytes[pos++];
    const more = !!(flags & F.more);
    flags &= ~F.more;
    if (frames.length) {
      if (pos >= n) throw new StreamError(`message ${seq} is truncated in frame ${frames.length}`);
      ts = (ts + bytes[pos++]) % 0x100000000;
    }
    let size;
    if (!more) size = n - pos;
    else if ((flags & F.face) && (flags & F.entropy)) {
      if (pos >= n) throw new StreamError(`message ${seq} is truncated in frame ${frames.length}`);
      size = bytes[pos++];
    } else if (flags & F.face) size = C.fixed_payload_bytes[flags & F.layers_mask];
    else size = 0;
    if (pos + size > n) throw new StreamError(`message ${seq} is truncated: frame ${frames.length} needs ${size} bytes`);
    frames.push(checkFrame((seq + frames.length) & 0xffff, ts, flags, bytes.subarray(pos, pos + size), header, C,
                           2));
    pos += size;
    if (!more) return frames;
  }
}

// A one-frame packet (parseMessage for messages of several).
export function parsePacket(bytes, header, C, referenceMs = 0) {
  const frames = parseMessage(bytes, header, C, referenceMs);
  if (frames.length !== 1) throw new StreamError(`message ${frames[0].seq} holds ${frames.length} frames`);
  return frames[0];
}

// codec.bitstream.unpack_fixed: one base-`codebook` integer, the first token most significant.
export function unpackFixed(payload, layers, groups, codebook) {
  let value = 0n;
  for (const b of payload) value = (value << 8n) | BigInt(b);
  const n = layers * groups, base = BigInt(codebook);
  if (value >= base ** BigInt(n)) throw new StreamError("fixed payload value is out of range: corrupt packet");
  const tokens = new Int32Array(n);
  for (let i = n - 1; i >= 0; i--) {
    tokens[i] = Number(value % base);
    value /= base;
  }
  return tokens;
}

// The mirror of codec.bitstream.StreamReader: packets -> tokens [layers * groups].
export class StreamReader {
  constructor(header, C, entropy) {
    this.header = header;
    this.C = C;
    this.entropy = header.mode === "entropy" ? entropy : null;
    if (header.mode === "entropy" && !entropy) throw new IncompatibleStreamError("entropy mode, but no entropy model");
    const t = header.tokenizer;
    this.groups = t.groups;
    this.codebook = t.levels.reduce((a, b) => a * b, 1);
    this.lastSeq = null;
    this.lastTs = 0;
    this.timeHintMs = null;  // a call's clock: unwraps 16-bit times whatever gap came before
    this.prev = null;  // {tokens, layers}
  }

  referenceMs() { return this.timeHintMs === null ? this.lastTs : this.timeHintMs; }

  // A one-frame packet. Throws ReferenceLostError (conceal it) or StreamError.
  decode(bytes) {
    return this.decodeFrame(parsePacket(bytes, this.header, this.C, this.referenceMs()));
  }

  // Every frame of a message: per frame, the decoded frame or the ReferenceLostError that says to
  // conceal it. Throws StreamError when the message is corrupt.
  decodeMessage(bytes) {
    return parseMessage(bytes, this.header, this.C, this.referenceMs()).map((pkt) => {
      try {
        return this.decodeFrame(pkt);
      } catch (e) {
        if (e instanceof ReferenceLostError) return e;
        throw e;
      }
    });
  }

  decodeFrame(pkt) {
    if (pkt.entropy && !this.entropy) throw new StreamError(`packet ${pkt.seq} is entropy-coded in a fixed-mode stream`);
    const delta = this.lastSeq === null ? null : (pkt.seq - this.lastSeq) & 0xffff;
    if (delta !== null && !(delta > 0 && delta < 0x8000)) {
      if (pkt.face && pkt.entropy && !pkt.keyframe) {
        throw new ReferenceLostError(`packet ${pkt.seq} arrived late and predicts from a frame already passed`);
      }
      return this.decodePacket(pkt, null);
    }
    this.lastSeq = pkt.seq;
    this.lastTs = pkt.timestampMs;
    const prev = this.prev;
    this.prev = null;  // a failure below leaves no reference
    if (pkt.face && pkt.entropy && !pkt.keyframe && (delta !== 1 || prev === null)) {
      throw new ReferenceLostError(`packet ${pkt.seq} predicts from a frame that was lost; conceal until a keyframe`);
    }
    const out = this.decodePacket(pkt, prev);
    this.prev = out.tokens === null ? null : { tokens: out.tokens, layers: out.layers };
    return out;
  }

  decodePacket(pkt, prev) {
    const base = { seq: pkt.seq, timestampMs: pkt.timestampMs, face: pkt.face, keyframe: pkt.keyframe };
    if (!pkt.face) return { ...base, layers: 0, tokens: null };
    const tokens = pkt.entropy
      ? this.entropy.decode(pkt.payload, pkt.layers, pkt.keyframe ? null : prev)
      : unpackFixed(pkt.payload, pkt.layers, this.groups, this.codebook);
    return { ...base, layers: pkt.layers, tokens };
  }
}
