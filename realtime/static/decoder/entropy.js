// Entropy mode (codec/entropy.py): each FSQ digit of a frame's tokens is range-coded with a
// categorical distribution chosen by its context (the previous frame's digit, the coarser
// layer's digit). The range decoder is constriction's queue RangeDecoder (32-bit words,
// 64-bit state) in integers; the CDFs are constriction's own quantization of the float
// tables, exported by Python (EntropyModel.quantized_cdfs), so decoding is bit-exact.

import { StreamError } from "./bitstream.js";

const MASK = (1n << 64n) - 1n;

class RangeDecoder {
  constructor(payload) {
    // Big-endian 32-bit words; the encoder dropped trailing zero bytes, so pad them back.
    const n = Math.ceil(payload.length / 4);
    this.words = new Uint32Array(n);
    for (let i = 0; i < payload.length; i++) this.words[i >> 2] |= payload[i] << (24 - 8 * (i & 3));
    this.pos = 0;
    this.lower = 0n;
    this.range = MASK;
    this.point = 0n;
    let read = 0;
    while (read < 2 && this.pos < n) {
      this.point = (this.point << 32n) | BigInt(this.words[this.pos++]);
      read++;
    }
    if (read === 1) this.point <<= 32n;
  }

  // One symbol from the CDF cdf[at .. at + size] (cdf[at] = 0, cdf[at + size] = 2**precision).
  decode(cdf, at, size, precision) {
    const scale = this.range >> precision;
    const quantile = ((this.point - this.lower) & MASK) / scale;
    if (quantile >= 1n << precision) throw new StreamError("corrupt entropy-coded payload: invalid data");
    const q = Number(quantile);
    let sym = 0;
    while (sym + 1 < size && cdf[at + sym + 1] <= q) sym++;
    const left = BigInt(cdf[at + sym]);
    this.lower = (this.lower + scale * left) & MASK;
    this.range = scale * (BigInt(cdf[at + sym + 1]) - left);
    if (this.range < 1n << 32n) {
      this.lower = (this.lower << 32n) & MASK;
      this.range <<= 32n;
      const word = this.pos < this.words.length ? this.words[this.pos] : 0;
      this.pos++;
      this.point = ((this.point << 32n) | BigInt(word)) & MASK;
    }
    return sym;
  }
}

export class EntropyDecoder {
  constructor(assets) {
    const m = assets.meta.entropy;
    this.base = m.base;               // L, levels per digit
    this.digits = m.digits;           // D, digits per token
    this.groups = m.config.groups;
    this.residuals = m.config.residuals;
    this.precision = BigInt(m.precision);
    this.cdf = assets.arrays["entropy.cdf"];
    this.contexts = (this.base + 1) ** 2;
    this.perLayer = this.groups * this.digits * this.contexts;
    this.hash = m.hash;
  }

  // Digits [layers][G][D] of tokens [layers * G].
  digitsOf(tokens, layers) {
    const { base, digits, groups } = this;
    const d = new Int32Array(layers * groups * digits);
    for (let i = 0; i < layers * groups; i++) {
      let t = tokens[i];
      for (let k = 0; k < digits; k++) { d[i * digits + k] = t % base; t = Math.floor(t / base); }
    }
    return d;
  }

  // codec.entropy._layer_context for one digit; d: this frame's digits, p: the previous frame's or null.
  context(k, g, i, d, p, prevLayers) {
    const { base, digits, groups } = this;
    const at = (layer) => (layer * groups + g) * digits + i;
    let pCtx, cCtx;
    if (p !== null && k < prevLayers) {
      pCtx = p[at(k)];
      if (k === 0) cCtx = base;
      else {
        const coarse = d[at(k - 1)], before = p[at(k - 1)];
        cCtx = Math.max(-2, Math.min(2, coarse - before)) + 2;
        if (cCtx === 2) {
          // "Unchanged" splits by whether the rest of the coarser token moved.
          const row = ((k - 1) * groups + g) * digits;
          for (let j = 0; j < digits; j++) if (d[row + j] !== p[row + j]) { cCtx = base; break; }
        }
      }
    } else {
      pCtx = base;
      cCtx = k === 0 ? base : d[at(k - 1)];
    }
    return pCtx * (base + 1) + cCtx;
  }

  // Tokens [layers * G] of one payload; prev: {tokens, layers} of the previous frame, or null (keyframe).
  decode(payload, layers, prev) {
    const { base, digits, groups } = this;
    if (layers < 1 || layers > this.residuals) throw new StreamError(`entropy payload with ${layers} layers`);
    const p = prev ? this.digitsOf(prev.tokens, prev.layers) : null;
    const prevLayers = prev ? prev.layers : 0;
    const d = new Int32Array(layers * groups * digits);
    const dec = new RangeDecoder(payload);
    for (let k = 0; k < layers; k++) {
      for (let g = 0; g < groups; g++) {
        for (let i = 0; i < digits; i++) {
          const row = k * this.perLayer + (g * digits + i) * this.contexts + this.context(k, g, i, d, p, prevLayers);
          d[(k * groups + g) * digits + i] = dec.decode(this.cdf, row * (base + 1), base, this.precision);
        }
      }
    }
    const tokens = new Int32Array(layers * groups);
    for (let j = 0; j < tokens.length; j++) {
      let t = 0;
      for (let i = digits - 1; i >= 0; i--) t = t * base + d[j * digits + i];
      tokens[j] = t;
    }
    return tokens;
  }
}
