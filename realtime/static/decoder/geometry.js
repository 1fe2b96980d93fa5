// The warp's per-frame geometry (codec/warp.py, GeometricWarp.target_vertices and
// mouth_newness): where every mesh vertex of the portrait goes for target landmarks.
// The mesh itself (face tessellation, eye rings, mouth fan, rings around the face, border)
// was built by Python once for the portrait and arrives in the portrait bundle.

import { similarity2d, similarityFit } from "./motion.js";

function polygonArea(pts, index) {  // |shoelace| over the listed landmarks (x, y)
  let s = 0;
  for (let k = 0; k < index.length; k++) {
    const a = index[k], b = index[(k + 1) % index.length];
    s += pts[3 * a] * pts[3 * b + 1] - pts[3 * a + 1] * pts[3 * b];
  }
  return Math.abs(s) / 2;
}

function interOcular(pts, right, left) {
  return Math.hypot(pts[3 * right] - pts[3 * left], pts[3 * right + 1] - pts[3 * left + 1]);
}

export class WarpGeometry {
  constructor(bundle, assets) {
    const a = bundle.arrays, m = bundle.meta, A = assets.arrays;
    this.size = m.size;
    this.landmarks = a["warp.landmarks"];
    this.vertices = a["mesh.vertices"];
    this.vertexCount = this.vertices.length / 3;
    this.ringStart = m.mesh.ring_start;
    this.ringFollow = a["mesh.ring_follow"];
    this.centres = m.mesh.centres;
    this.irises = m.mesh.irises;
    this.bodyFollow = m.warp.body_follow;
    this.mouthArea = m.warp.mouth_area;
    this.stable = A["template.stable"];
    const shape = A["template.shape"];
    this.templateStable = new Float64Array(this.stable.length * 3);
    this.stable.forEach((p, k) => { for (let i = 0; i < 3; i++) this.templateStable[3 * k + i] = shape[3 * p + i]; });
    this.lipsInner = A["regions.lips_inner"];
    this.eyeCorners = [assets.meta.regions.right_eye_corners[0], assets.meta.regions.left_eye_corners[0]];
    this.iod = Math.fround(interOcular(this.landmarks, ...this.eyeCorners));
    // The rings (at the depth of the face's outline) and the body's anchor in the portrait
    // head's canonical frame: each frame only moves them with the target head.
    const R = a["warp.state.rotation"], t = a["warp.state.translation"], s = a["warp.state.scale"][0];
    const canon = (x, y, z) => {
      const d = [x - t[0], y - t[1], z - t[2]];
      return [0, 1, 2].map((i) => (R[i] * d[0] + R[3 + i] * d[1] + R[6 + i] * d[2]) / s);
    };
    const n = this.vertexCount - this.ringStart;
    this.ringCanon = new Float64Array(3 * n);
    for (let k = 0; k < n; k++) {
      const v = 3 * (this.ringStart + k);
      this.ringCanon.set(canon(this.vertices[v], this.vertices[v + 1], m.warp.ring_depth), 3 * k);
    }
    const hc = m.warp.head_centre;
    this.body = { point: hc, canon: canon(hc[0], hc[1], hc[2]) };
    this.out = new Float32Array(3 * this.vertexCount);
  }

  // Target positions [V * 3] (float32) of every mesh vertex for target landmarks [478 * 3] (float32).
  targetVertices(target) {
    const tv = this.out, v = this.vertices;
    tv.set(target.subarray(0, this.landmarks.length));
    for (const [vertex, contour] of this.centres) {
      for (let i = 0; i < 3; i++) {
        let s = 0;
        for (const c of contour) s += target[3 * c + i];
        tv[3 * vertex + i] = s / contour.length;
      }
    }
    const head = similarityFit(this.templateStable, target, this.stable);
    const moved = (c) => [0, 1].map((i) => head.scale * (head.rotation[3 * i] * c[0] + head.rotation[3 * i + 1] * c[1] +
      head.rotation[3 * i + 2] * c[2]) + head.translation[i]);
    const bm = moved(this.body.canon);
    const bx = (bm[0] - this.body.point[0]) * this.bodyFollow, by = (bm[1] - this.body.point[1]) * this.bodyFollow;
    for (let k = 0, n = this.vertexCount - this.ringStart; k < n; k++) {
      const j = 3 * (this.ringStart + k), f = this.ringFollow[k];
      const mv = moved(this.ringCanon.subarray(3 * k, 3 * k + 3));
      tv[j] = v[j] + f * (mv[0] - v[j]) + (1 - f) * bx;
      tv[j + 1] = v[j + 1] + f * (mv[1] - v[j + 1]) + (1 - f) * by;
      tv[j + 2] = 0;
    }
    if (this.irises.length) {
      // Iris rings keep their shape: turned and scaled with the head (2D similarity of the stable points).
      const [are, aim] = similarity2d(this.landmarks, target, this.stable);
      for (const [first, count, centre] of this.irises) {
        for (let j = first; j < first + count; j++) {
          const ox = v[3 * j] - this.landmarks[3 * centre], oy = v[3 * j + 1] - this.landmarks[3 * centre + 1];
          tv[3 * j] = target[3 * centre] + (are * ox - aim * oy);
          tv[3 * j + 1] = target[3 * centre + 1] + (aim * ox + are * oy);
          tv[3 * j + 2] = target[3 * centre + 2];
        }
      }
    }
    return tv;
  }

  // Share of the target mouth opening the portrait has no interior for, in [0, 1].
  mouthNewness(target) {
    const scale2 = (Math.fround(interOcular(target, ...this.eyeCorners)) / this.iod) ** 2;
    const area = polygonArea(target, this.lipsInner);
    return Math.min(1, Math.max(0, 1 - this.mouthArea * scale2 / Math.max(area, 1e-6)));
  }
}
