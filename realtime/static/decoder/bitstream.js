// The talkcodec byte format (codec/bitstream.py), driven by the exported constants
// (assets.meta.stream), so that a change there reaches the page through codec/webexport.py:
//   header  magic | version u8 | length u32 | JSON          (big-endian)
//   packet  seq u16 | timestamp_ms u32 | flags u8 | payload
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
  if (version !== C.version) {
    throw new IncompatibleStreamError(`stream version ${version} is not supported: this page reads version ` +
      `${C.version}; the sender runs another talkcodec release`);
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

export function parsePacket(bytes, header, C) {
  const n = bytes.length, hb = C.packet_header_bytes, F = C.flags;
  if (n < hb) throw new StreamError(`packet truncated: ${n} bytes, the header alone is ${hb}`);
  if (n > C.max_packet_bytes) throw new StreamError(`packet of ${n} bytes exceeds the ${C.max_packet_bytes}-byte limit`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const seq = dv.getUint16(0), timestampMs = dv.getUint32(2), flags = bytes[6];
  if (flags & F.reserved) throw new StreamError(`packet ${seq} has reserved flag bits set`);
  const payload = bytes.subarray(hb);
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
    this.prev = null;  // {tokens, layers}
  }

  decode(bytes) {
    const pkt = parsePacket(bytes, this.header, this.C);
    if (pkt.entropy && !this.entropy) throw new StreamError(`packet ${pkt.seq} is entropy-coded in a fixed-mode stream`);
    const delta = this.lastSeq === null ? null : (pkt.seq - this.lastSeq) & 0xffff;
    if (delta !== null && !(delta > 0 && delta < 0x8000)) {
      if (pkt.face && pkt.entropy && !pkt.keyframe) {
        throw new ReferenceLostError(`packet ${pkt.seq} arrived late and predicts from a frame already passed`);
      }
      return this.decodePacket(pkt, null);
    }
    this.lastSeq = pkt.seq;
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
