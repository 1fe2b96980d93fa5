// The receiver's smoothing of decoded landmarks (codec/smoothing.py): each frame pulled towards the
// mean of itself and its neighbours (1/4, 1/2, 1/4), by at most about the quantization error.

// Most a landmark moves, in inter-ocular distances, with 1, 2, 3 and 4 residual layers.
export const LIMITS = [0.03, 0.012, 0.004, 0.004];
export const LOOKAHEAD_FRAMES = 1;

// prev, cur, next: [478 * 3] decoded landmarks (null: no neighbour); eyeCorners: the outer corners'
// indices (right, left). Returns cur smoothed (float32), or cur itself without both neighbours.
export function smoothFrame(prev, cur, next, layers, eyeCorners) {
  if (prev === null || next === null) return cur;
  const [r, l] = eyeCorners;
  const iod = Math.fround(Math.hypot(cur[3 * r] - cur[3 * l], cur[3 * r + 1] - cur[3 * l + 1]));
  const bound = Math.fround(LIMITS[Math.min(Math.max(Math.round(layers), 1), LIMITS.length) - 1] * iod);
  const out = new Float32Array(cur.length);
  for (let i = 0; i < cur.length; i++) {
    const mean = Math.fround(Math.fround(0.25) * Math.fround(prev[i] + next[i]) + Math.fround(0.5) * cur[i]);
    out[i] = cur[i] + Math.min(bound, Math.max(-bound, Math.fround(mean - cur[i])));
  }
  return out;
}
