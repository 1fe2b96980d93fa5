// A call's motion in the page (codec/api.py, FrameDecoder): packets -> tokens -> motion delta
// -> target landmarks in the portrait, with the weights and constants of the exported assets.

import { StreamReader, checkCompatible, parseHeader } from "./bitstream.js";
import { EntropyDecoder } from "./entropy.js";
import { transferLandmarks } from "./motion.js";
import { TokenDecoder } from "./tokenizer.js";

export class Assets {
  // container: the parsed decoder assets (fetchContainer(url, "decoder")).
  constructor(container) {
    if (container.kind !== "decoder") throw new Error(`decoder assets expected, got ${container.kind}`);
    this.meta = container.meta;
    this.arrays = container.arrays;
    this.stream = container.meta.stream;
    this.tokens = new TokenDecoder(this);
    this.entropy = container.meta.entropy ? new EntropyDecoder(this) : null;
  }
}

function stateOf(a, prefix) {
  return { rotation: Array.from(a[`${prefix}.rotation`]), translation: Array.from(a[`${prefix}.translation`]),
           scale: a[`${prefix}.scale`][0], expression: a[`${prefix}.expression`] };
}

export class MotionDecoder {
  // header: the stream header's bytes; bundle: the parsed portrait bundle. Throws
  // IncompatibleStreamError (another version or tokenizer) or StreamError (corrupt header).
  constructor(assets, bundle, headerBytes) {
    this.assets = assets;
    this.header = parseHeader(headerBytes, assets.stream);
    checkCompatible(this.header, assets);
    this.reader = new StreamReader(this.header, assets.stream, assets.entropy);
    this.template = assets.arrays["template.shape"];
    this.timing = { tokens: 0, landmarks: 0, frames: 0 };
    this.setPortrait(bundle);
  }

  // Decodes onto another portrait from now on (the caller's picture arrived): codec.api.FrameDecoder.set_portrait.
  setPortrait(bundle) {
    this.state = stateOf(bundle.arrays, "portrait.state");
    this.rest = bundle.arrays["portrait.landmarks"];
  }

  // Tokens [layers * G] -> motion delta [input_dim].
  delta(tokens, layers) {
    const t0 = performance.now();
    const delta = this.assets.tokens.decode(tokens, layers);
    this.timing.tokens += performance.now() - t0;
    return delta;
  }

  // Motion delta -> target landmarks [478 * 3] in the portrait, float64.
  transfer(delta) {
    const t0 = performance.now();
    const out = transferLandmarks(this.state, delta, this.template, new Float64Array(this.template.length));
    this.timing.landmarks += performance.now() - t0;
    this.timing.frames++;
    return out;
  }

  // Tokens [layers * G] -> motion delta -> target landmarks [478 * 3], float64.
  landmarks(tokens, layers) {
    return this.transfer(this.delta(tokens, layers));
  }

  // One packet: {seq, timestampMs, face, keyframe, layers, tokens, delta and landmarks (null without a face)}.
  // Throws ReferenceLostError (conceal the frame) or StreamError.
  decode(bytes) {
    const t0 = performance.now();
    const p = this.reader.decode(bytes);
    this.timing.tokens += performance.now() - t0;
    const delta = p.face ? this.delta(p.tokens, p.layers) : null;
    return { ...p, delta, landmarks: delta ? this.transfer(delta) : null };
  }

  // Every frame of a message (one or more, talk-send --frames-per-packet): per frame, as decode()
  // returns it, or the ReferenceLostError that says to conceal it. mediaNowMs: the sender's clock
  // now when known (unwraps the 16-bit capture times), else null. Throws StreamError.
  decodeMessage(bytes, mediaNowMs = null) {
    const t0 = performance.now();
    this.reader.timeHintMs = mediaNowMs;
    const frames = this.reader.decodeMessage(bytes);
    this.timing.tokens += performance.now() - t0;
    return frames.map((p) => {
      if (p instanceof Error) return p;
      const delta = p.face ? this.delta(p.tokens, p.layers) : null;
      return { ...p, delta, landmarks: delta ? this.transfer(delta) : null };
    });
  }
}
