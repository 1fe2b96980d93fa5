// Motion (codec/motion.py): relative transfer of a decoded delta onto the portrait's own
// motion state, the target landmarks, and the similarity fits the warp needs.
// Matrices are row-major arrays of 9 numbers; points are flat [x, y, z, x, y, z, ...].

// codec.motion._rotation_matrix (Rodrigues) of an axis-angle vector.
export function rotationMatrix(ax, ay, az) {
  const angle = Math.hypot(ax, ay, az);
  const n = angle > 1e-12 ? angle : 1;
  const x = ax / n, y = ay / n, z = az / n;
  const K = [0, -z, y, z, 0, -x, -y, x, 0];
  const s = Math.sin(angle), c1 = 1 - Math.cos(angle);
  const R = new Array(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let kk = 0;
      for (let m = 0; m < 3; m++) kk += K[i * 3 + m] * K[m * 3 + j];
      R[i * 3 + j] = (i === j ? 1 : 0) + s * K[i * 3 + j] + c1 * kk;
    }
  }
  return R;
}

export function matmul3(A, B) {
  const C = new Array(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) C[i * 3 + j] = A[i * 3] * B[j] + A[i * 3 + 1] * B[3 + j] + A[i * 3 + 2] * B[6 + j];
  }
  return C;
}

// apply_delta + landmarks_from_motion: target landmarks [478 * 3] in the portrait's pixels.
// state: {rotation[9], translation[3], scale, expression[478 * 3]}; delta: the decoded vector.
export function transferLandmarks(state, delta, template, out) {
  const R = matmul3(rotationMatrix(delta[0], delta[1], delta[2]), state.rotation);
  const s0 = state.scale;
  const t = [0, 1, 2].map((i) => state.translation[i] + delta[3 + i] * s0);
  const s = s0 * Math.exp(delta[6]);
  const n = template.length / 3;
  for (let p = 0; p < n; p++) {
    const cx = template[3 * p] + state.expression[3 * p] + delta[7 + 3 * p];
    const cy = template[3 * p + 1] + state.expression[3 * p + 1] + delta[8 + 3 * p];
    const cz = template[3 * p + 2] + state.expression[3 * p + 2] + delta[9 + 3 * p];
    for (let i = 0; i < 3; i++) out[3 * p + i] = s * (R[3 * i] * cx + R[3 * i + 1] * cy + R[3 * i + 2] * cz) + t[i];
  }
  return out;
}

// Eigenvector of the largest eigenvalue of a symmetric 4x4 matrix (cyclic Jacobi).
function topEigenvector4(A) {
  const a = A.slice(), V = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < 4; p++) for (let q = p + 1; q < 4; q++) off += a[p * 4 + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < 4; p++) {
      for (let q = p + 1; q < 4; q++) {
        const apq = a[p * 4 + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * 4 + q] - a[p * 4 + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < 4; k++) {  // A <- A J (columns p, q)
          const akp = a[k * 4 + p], akq = a[k * 4 + q];
          a[k * 4 + p] = c * akp - s * akq;
          a[k * 4 + q] = s * akp + c * akq;
        }
        for (let k = 0; k < 4; k++) {  // A <- J^T A (rows p, q)
          const apk = a[p * 4 + k], aqk = a[q * 4 + k];
          a[p * 4 + k] = c * apk - s * aqk;
          a[q * 4 + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < 4; k++) {
          const vkp = V[k * 4 + p], vkq = V[k * 4 + q];
          V[k * 4 + p] = c * vkp - s * vkq;
          V[k * 4 + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  let best = 0;
  for (let i = 1; i < 4; i++) if (a[i * 5] > a[best * 5]) best = i;
  return [V[best], V[4 + best], V[8 + best], V[12 + best]];
}

// codec.motion.similarity_fit: dst ≈ s R src + t (least squares over the listed points).
// Umeyama's solution, found with Horn's quaternion method (the same optimum, no SVD).
export function similarityFit(src, dst, index) {
  const n = index.length;
  const ms = [0, 0, 0], md = [0, 0, 0];
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < 3; i++) { ms[i] += src[3 * k + i]; md[i] += dst[3 * index[k] + i]; }
  }
  for (let i = 0; i < 3; i++) { ms[i] /= n; md[i] /= n; }
  const S = new Array(9).fill(0);  // S[a][b] = sum src_a dst_b (centred)
  let varS = 0;
  for (let k = 0; k < n; k++) {
    const xs = [0, 1, 2].map((i) => src[3 * k + i] - ms[i]);
    const xd = [0, 1, 2].map((i) => dst[3 * index[k] + i] - md[i]);
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) S[a * 3 + b] += xs[a] * xd[b];
    varS += xs[0] ** 2 + xs[1] ** 2 + xs[2] ** 2;
  }
  const [xx, xy, xz, yx, yy, yz, zx, zy, zz] = S;
  const N = [xx + yy + zz, yz - zy, zx - xz, xy - yx,
             yz - zy, xx - yy - zz, xy + yx, zx + xz,
             zx - xz, xy + yx, -xx + yy - zz, yz + zy,
             xy - yx, zx + xz, yz + zy, -xx - yy + zz];
  const [w, x, y, z] = topEigenvector4(N);
  const R = [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y),
             2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
             2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z];
  // s = trace(R^T cov) / var_s, cov[i][j] = sum dst_i src_j = S[j][i].
  let tr = 0;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) tr += R[i * 3 + j] * S[j * 3 + i];
  const s = tr / varS;
  const t = [0, 1, 2].map((i) => md[i] - s * (R[i * 3] * ms[0] + R[i * 3 + 1] * ms[1] + R[i * 3 + 2] * ms[2]));
  return { rotation: R, translation: t, scale: s };
}

// codec.warp._similarity_2d: dst ≈ a src + b in complex numbers; returns [aRe, aIm].
export function similarity2d(src, dst, index) {
  const n = index.length;
  let msx = 0, msy = 0, mdx = 0, mdy = 0;
  for (const i of index) { msx += src[3 * i]; msy += src[3 * i + 1]; mdx += dst[3 * i]; mdy += dst[3 * i + 1]; }
  msx /= n; msy /= n; mdx /= n; mdy /= n;
  let re = 0, im = 0, den = 0;
  for (const i of index) {
    const sx = src[3 * i] - msx, sy = src[3 * i + 1] - msy, dx = dst[3 * i] - mdx, dy = dst[3 * i + 1] - mdy;
    re += dx * sx + dy * sy;   // (dx + i dy)(sx - i sy)
    im += dy * sx - dx * sy;
    den += sx * sx + sy * sy;
  }
  return [re / den, im / den];
}
