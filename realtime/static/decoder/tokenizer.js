// The tokenizer's decoder (codec/tokenizer.py, codec/grfsq.py): tokens [r, G] -> 120-d latent
// (GRFSQ: each residual stage's FSQ code projected back and scaled) -> decoder MLP
// (linear + Linear-GELU-Linear-GELU-Linear) -> standardized features -> motion delta
// (pose 7, expression 1434 from 64 principal components, gaze 4, blink 2).
// Weights come from the exported assets; arithmetic in float64 (torch runs float32).

// erf with a fractional error below 1.2e-7 (Numerical Recipes' erfc, Chebyshev fit).
function erf(x) {
  const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

const gelu = (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));

// y = W x + b for a torch Linear (W [out, in], row-major).
function linear(W, b, x, out, inDim) {
  const n = out.length;
  for (let o = 0; o < n; o++) {
    let s = b[o];
    const row = o * inDim;
    for (let i = 0; i < inDim; i++) s += W[row + i] * x[i];
    out[o] = s;
  }
  return out;
}

export class TokenDecoder {
  constructor(assets) {
    const m = assets.meta.tokenizer, a = assets.arrays, g = m.config.grfsq;
    this.hash = m.hash;
    this.groups = g.groups;
    this.residuals = g.residuals;
    this.levels = g.levels;
    this.dim = g.dim;
    this.groupDim = g.dim / g.groups;
    this.codeDim = g.levels.length;
    this.codebook = g.levels.reduce((x, y) => x * y, 1);
    this.scales = m.scales;
    this.hidden = m.config.hidden;
    this.features = m.feature_dim;
    this.components = m.config.expression_components;
    this.deltaDim = m.config.input_dim;
    this.expDim = this.deltaDim - 7 - (this.features - 7 - this.components);
    const w = (name) => a[`tokenizer.${name}`];
    Object.assign(this, {
      wOut: w("quantizer.w_out"), bOut: w("quantizer.b_out"),
      linW: w("decoder.linear.weight"), linB: w("decoder.linear.bias"),
      w0: w("decoder.mlp.0.weight"), b0: w("decoder.mlp.0.bias"), w2: w("decoder.mlp.2.weight"),
      b2: w("decoder.mlp.2.bias"), w4: w("decoder.mlp.4.weight"), b4: w("decoder.mlp.4.bias"),
      featMean: w("feat_mean"), featStd: w("feat_std"), expMean: w("exp_mean"), expBasis: w("exp_basis"),
    });
    this.latent = new Float64Array(this.dim);
    this.h0 = new Float64Array(this.hidden);
    this.h1 = new Float64Array(this.hidden);
    this.lin = new Float64Array(this.features);
    this.feat = new Float64Array(this.features);
    // FSQ digit places and half widths (codec.grfsq.FSQ.indices_to_codes).
    this.basis = [];
    let p = 1;
    for (const lv of this.levels) { this.basis.push(p); p *= lv; }
    this.halfW = this.levels.map((lv) => Math.floor(lv / 2));
  }

  // GroupResidualFSQ.decode: tokens [r * G] -> latent [dim].
  latentOf(tokens, r) {
    const { groups, groupDim: d, codeDim: c, latent } = this;
    latent.fill(0);
    const codes = new Float64Array(c);
    for (let k = 0; k < r; k++) {
      const scale = this.scales[k];
      for (let g = 0; g < groups; g++) {
        const idx = tokens[k * groups + g];
        for (let j = 0; j < c; j++) {
          const digit = Math.floor(idx / this.basis[j]) % this.levels[j];
          codes[j] = (digit - this.halfW[j]) / this.halfW[j];
        }
        for (let i = 0; i < d; i++) {
          const wRow = ((k * groups + g) * d + i) * c;
          let s = this.bOut[(k * groups + g) * d + i];
          for (let j = 0; j < c; j++) s += codes[j] * this.wOut[wRow + j];
          latent[g * d + i] += s * scale;
        }
      }
    }
    return latent;
  }

  // Motion delta [input_dim] from tokens [r * G] (the first r residual layers).
  decode(tokens, r) {
    if (r < 1 || r > this.residuals || tokens.length !== r * this.groups) throw new Error("bad token shape");
    for (const t of tokens) if (t < 0 || t >= this.codebook) throw new Error("token values out of range");
    const x = this.latentOf(tokens, r);
    const { hidden, features: f } = this;
    linear(this.linW, this.linB, x, this.lin, this.dim);
    linear(this.w0, this.b0, x, this.h0, this.dim);
    for (let i = 0; i < hidden; i++) this.h0[i] = gelu(this.h0[i]);
    linear(this.w2, this.b2, this.h0, this.h1, hidden);
    for (let i = 0; i < hidden; i++) this.h1[i] = gelu(this.h1[i]);
    linear(this.w4, this.b4, this.h1, this.feat, hidden);
    const feat = this.feat;
    for (let i = 0; i < f; i++) feat[i] = (this.lin[i] + feat[i]) * this.featStd[i] + this.featMean[i];
    // MotionTokenizer.delta: pose, expression from its components, then gaze and blink.
    const k = this.components, e = this.expDim;
    const delta = new Float64Array(this.deltaDim);
    for (let i = 0; i < 7; i++) delta[i] = feat[i];
    const exp = delta.subarray(7, 7 + e);
    for (let i = 0; i < e; i++) exp[i] = this.expMean[i];
    for (let j = 0; j < k; j++) {
      const c = feat[7 + j], row = j * e;
      for (let i = 0; i < e; i++) exp[i] += c * this.expBasis[row + i];
    }
    for (let i = 7 + k; i < f; i++) delta[7 + e + (i - 7 - k)] = feat[i];
    return delta;
  }
}
