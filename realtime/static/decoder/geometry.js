// The warp's per-frame geometry (codec/render/warp.py, GeometricWarp.geometry): where every mesh vertex
// of the portrait goes for target landmarks, and where it samples the texture. The mesh itself (face
// tessellation, eye rings, the mouth's teeth strips and fan, rings around the face, border) was built by
// Python once for the portrait and arrives in the portrait bundle, with each vertex's base source.
// Per frame: the mouth fan samples the mouth picture whose shape is nearest the target's (the
// portrait's own or a keyframe's) or, when the target opens wider than any lends, the drawn interior
// (teeth hanging from the inner lips); a closing upper lid samples the skin above it; and with a
// keyframe of closed eyes, a closing eye is blended towards it (the renderer draws that, see `eyes`).

import { similarity2d, similarityFit } from "./motion.js";

const smoothstep = (x) => { const t = Math.min(1, Math.max(0, x)); return t * t * (3 - 2 * t); };

export class WarpGeometry {
  constructor(bundle, assets) {
    const a = bundle.arrays, m = bundle.meta, A = assets.arrays, w = m.warp;
    this.size = m.size;
    this.landmarks = a["warp.landmarks"];
    this.vertices = a["mesh.vertices"];
    this.baseSources = a["mesh.sources"];
    this.vertexCount = this.vertices.length / 3;
    this.ringStart = m.mesh.ring_start;
    this.ringFollow = a["mesh.ring_follow"];
    this.ringOval = a["warp.ring_oval"];
    this.ringPush = a["warp.ring_push"];
    this.centres = m.mesh.centres;
    this.irises = m.mesh.irises;
    this.copies = m.mesh.copies;
    this.teeth = m.mesh.teeth.map(([first, contour, sign], k) => ({ first, contour, sign, u: a[`warp.teeth_u${k}`] }));
    this.lids = m.mesh.lids.map((margin, k) => ({ margin, lift: a[`warp.lid_lift${k}`] }));
    this.mouthCentre = m.mesh.mouth_centre;
    this.w = w;
    this.bodyFollow = w.body_follow;
    this.drawnRim = a["warp.drawn_rim"];
    this.drawnCentre = a["warp.drawn_centre"];
    this.portraitRim = a["warp.portrait_rim"];
    this.portraitCentre = a["warp.portrait_centre"];
    this.margin = m.texture.margin;
    // The lip region (codec.render.mesh.lip_region): its landmarks; the fan's rim among them.
    this.lipRegion = a["warp.lip_region"];
    this.rimInLips = this.copies[0][1].map((c) => this.lipRegion.indexOf(c));
    // Head turns (codec.render.turns): the vertices a turn picture gives sources for; the portrait's rotation
    // (turns and the mouth distance's pose).
    this.turnVertices = a["warp.turn_vertices"];
    this.portraitRotation = a["warp.state.rotation"];
    this.setKeyframes({ places: [] });
    this.stable = A["template.stable"];
    const shape = A["template.shape"];
    this.templateStable = new Float64Array(this.stable.length * 3);
    this.stable.forEach((p, k) => { for (let i = 0; i < 3; i++) this.templateStable[3 * k + i] = shape[3 * p + i]; });
    this.lipsInner = A["regions.lips_inner"];
    this.eyeCorners = [assets.meta.regions.right_eye_corners, assets.meta.regions.left_eye_corners];
    this.innerLips = assets.meta.regions.mouth_inner_lips;
    this.mouthCorners = [this.lipsInner[0], this.lipsInner[10]];
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
      this.ringCanon.set(canon(this.vertices[v], this.vertices[v + 1], w.ring_depth), 3 * k);
    }
    const hc = w.head_centre;
    this.body = { point: hc, canon: canon(hc[0], hc[1], hc[2]) };
    this.target = new Float32Array(3 * this.vertexCount);
    this.source = new Float32Array(2 * this.vertexCount);
  }

  // The keyframes' pictures, placed in the texture by keyframes.js layoutPatches (in the call's order):
  // mouths to pick from (GeometricWarp.mouth_pictures: the portrait's first; each lends its lips, those
  // with `interior` their interior too) and closed eyes.
  setKeyframes({ places }) {
    const w = this.w;
    const portraitRotation = this.portraitRotation;
    this.mouths = [{ shape: w.portrait_mouth, rim: this.portraitRim, centre: this.portraitCentre, lips: null,
                     interior: true, rotation: portraitRotation }];
    this.eyes = [];
    this.turns = [];
    const at = (kf, name) => places.find((p) => p.keyframe === kf && p.name === name);
    // Sources are in the portrait's pixels: a texel t lies at t - margin.
    const shift = (xy, ox, oy) => {
      const out = new Float64Array(xy.length);
      for (let k = 0; k < xy.length; k += 2) { out[k] = xy[k] + ox; out[k + 1] = xy[k + 1] + oy; }
      return out;
    };
    for (const kf of [...new Set(places.map((p) => p.keyframe))]) {
      const mouth = kf.mouth && at(kf, kf.mouth.patch);
      if (mouth) {
        const ox = mouth.x - this.margin, oy = mouth.y - this.margin;
        this.mouths.push({ shape: kf.mouth.shape, rim: shift(kf.mouth.rim, ox, oy),
                           centre: [kf.mouth.centre[0] + ox, kf.mouth.centre[1] + oy],
                           lips: shift(kf.mouth.lips, ox, oy), interior: kf.mouth.interior,
                           rotation: kf.mouth.rotation || portraitRotation });
      }
      const face = kf.turn && w.turns && at(kf, kf.turn.patch);
      if (face) {
        const ox = face.x - this.margin, oy = face.y - this.margin;
        this.turns.push({ yaw: kf.turn.yaw, tilt: kf.turn.tilt, sources: shift(kf.turn.sources, ox, oy),
                          lift: kf.turn.lift });
      }
      for (const e of kf.eyes) {
        const place = at(kf, e.patch);
        if (place) this.eyes.push({ ...e, x: place.x, y: place.y, width: place.bitmap.width - 2 * kf.gutter,
                                    height: place.bitmap.height - 2 * kf.gutter });
      }
    }
  }

  // The frame for target landmarks [478 * 3] (float32): {target [V * 3], source [V * 2], mouthGain, lips,
  // eyes} (lips: null, or the lip region's sources in the nearest and second nearest mouth pictures,
  // null for the portrait's, the nearest's share, and which pictures the two are (0: the portrait); eyes: the keyframe eyes to blend over closing ones,
  // see eyeBlends).
  frame(target) {
    const tv = this.target, v = this.vertices, w = this.w;
    tv.set(target.subarray(0, this.landmarks.length));
    for (const [vertex, contour] of this.centres) {
      for (let i = 0; i < 3; i++) {
        let s = 0;
        for (const c of contour) s += target[3 * c + i];
        tv[3 * vertex + i] = s / contour.length;
      }
    }
    for (const [first, contour] of this.copies) {
      contour.forEach((c, k) => { for (let i = 0; i < 3; i++) tv[3 * (first + k) + i] = target[3 * c + i]; });
    }
    const head = similarityFit(this.templateStable, target, this.stable);
    const H = head.rotation, hs = head.scale, ht = head.translation;
    const moved = (c) => [0, 1].map((i) => hs * (H[3 * i] * c[0] + H[3 * i + 1] * c[1] + H[3 * i + 2] * c[2]) + ht[i]);
    const bm = moved(this.body.canon);
    let bx = (bm[0] - this.body.point[0]) * this.bodyFollow, by = (bm[1] - this.body.point[1]) * this.bodyFollow;
    const reach = Math.hypot(bx, by), keep = Math.min(1, w.body_reach / Math.max(reach, 1e-9));
    bx *= keep; by *= keep;
    for (let k = 0, n = this.vertexCount - this.ringStart; k < n; k++) {
      const j = 3 * (this.ringStart + k), f = this.ringFollow[k];
      const mv = moved(this.ringCanon.subarray(3 * k, 3 * k + 3));
      tv[j] = v[j] + f * (mv[0] - v[j]) + (1 - f) * bx;
      tv[j + 1] = v[j + 1] + f * (mv[1] - v[j + 1]) + (1 - f) * by;
      tv[j + 2] = 0;
    }
    if (this.ringOval) {
      // ... pushed out where the face's outline moved out past them (codec.render.mesh.push_rings).
      const L = this.landmarks, P = this.ringPush;
      for (let k = 0, n = this.ringOval.length; k < n; k++) {
        const o = this.ringOval[k], px = P[2 * k], py = P[2 * k + 1], len = Math.hypot(px, py);
        if (o < 0 || len < 1e-12) continue;
        const j = 3 * (this.ringStart + k);
        const dx = target[3 * o] - L[3 * o] - (tv[j] - v[j]), dy = target[3 * o + 1] - L[3 * o + 1] - (tv[j + 1] - v[j + 1]);
        const e = (dx * px + dy * py) / len;
        if (e > 0) { tv[j] += e * px; tv[j + 1] += e * py; }
      }
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
    const sv = this.source;
    sv.set(this.baseSources);
    // The target in the head's own frame (codec.motion: canonical = R^T (p - t) / s).
    const canon = (p) => {
      const d = [target[3 * p] - ht[0], target[3 * p + 1] - ht[1], target[3 * p + 2] - ht[2]];
      return [0, 1].map((i) => (H[i] * d[0] + H[3 + i] * d[1] + H[6 + i] * d[2]) / hs);
    };
    // The mouth (GeometricWarp._mouth_sources): the lips from the two pictures whose mouth shapes are
    // nearest the target's; the fan from the nearest too when it lends its interior, else from the nearest
    // that lends one, or drawn when the target opens wider than that picture lends.
    const opening = Math.max(canon(this.innerLips[1])[1] - canon(this.innerLips[0])[1], 0);
    const width = canon(this.mouthCorners[1])[0] - canon(this.mouthCorners[0])[0];
    const mouths = this.mouths;
    // codec.render.keyframes.mouth_distance: shape, and the angle between the head's rotations (a bundle
    // without mouth_pose_weight: shape alone).
    const poseWeight = w.mouth_pose_weight || 0;
    const angle = (R) => {
      let trace = 0;
      for (let i = 0; i < 9; i++) trace += H[i] * R[i];  // trace(H R^T)
      return Math.acos(Math.min(1, Math.max(-1, (trace - 1) / 2)));
    };
    const dist = mouths.map(({ shape, rotation }) => Math.abs(opening - shape[0])
      + w.mouth_width_weight * Math.abs(width - shape[1]) + (poseWeight ? poseWeight * angle(rotation) : 0));
    // A stable argsort's first two (the first of equals first); without keyframe lips, the portrait's.
    let first = 0, second = -1;
    for (let k = 1; k < dist.length; k++) {
      if (dist[k] < dist[first]) { second = first; first = k; } else if (second < 0 || dist[k] < dist[second]) second = k;
    }
    if (second < 0 || !w.keyframe_lips) { first = 0; second = 0; }
    let best = 0;
    mouths.forEach(({ interior }, k) => { if (interior && dist[k] < dist[best]) best = k; });  // the portrait lends
    const own = first > 0 && mouths[first].interior && mouths[first].shape[0] >= w.lend_share * opening;
    if (own) best = first; else if (opening < w.shut) best = 0;
    const lends = own || mouths[best].shape[0] >= w.lend_share * opening;
    const drawn = opening >= w.shut && !lends;
    const lent = drawn ? w.portrait_mouth[1] : mouths[best].shape[1];
    const mouthGain = Math.min(1, Math.max(w.min_gain, 1 + w.narrowing_gain * Math.min(width - lent + w.narrowing_free, 0)));
    const [rimFirst, rimContour] = this.copies[0];
    let rim = drawn ? this.drawnRim : mouths[best].rim, centre = drawn ? this.drawnCentre : mouths[best].centre;
    if (own) {  // the fan meets the same picture's lips: up to its own inner lips
      const lips = mouths[first].lips;
      rim = new Float64Array(2 * rimContour.length);
      centre = [0, 0];
      this.rimInLips.forEach((i, k) => {
        rim[2 * k] = lips[2 * i]; rim[2 * k + 1] = lips[2 * i + 1];
        centre[0] += lips[2 * i] / rimContour.length; centre[1] += lips[2 * i + 1] / rimContour.length;
      });
    }
    for (let k = 0; k < rimContour.length; k++) {
      sv[2 * (rimFirst + k)] = rim[2 * k];
      sv[2 * (rimFirst + k) + 1] = rim[2 * k + 1];
    }
    sv[2 * this.mouthCentre] = centre[0];
    sv[2 * this.mouthCentre + 1] = centre[1];
    // The lips laid over the frame (GeometricWarp._lay_lips) when a keyframe's is among the two: the
    // nearest's share cross-fades from a half (the two as near) to all of it (LIP_FADE).
    let lips = null;
    if (first > 0 || second > 0) {
      const d1 = dist[first], d2 = dist[second];
      const weight = 0.5 + 0.5 * smoothstep((d2 - d1) / Math.max(d2 + d1, 1e-9) / w.lip_fade);
      lips = { nearest: mouths[first].lips, second: mouths[second].lips, weight, pictures: [first, second] };
    }
    this.placeTeeth(target, H, hs, drawn);
    // Lids: a closing upper lid samples the skin above it.
    const blink = this.blink(canon);
    const closure = blink.map((b, eye) => Math.min(1, Math.max(0, 1 - b / Math.max(w.portrait_blink[eye], 1e-6))));
    const ups = closure.map((c) => smoothstep((c - w.lid_start) / w.lid_span));
    this.lids.forEach(({ margin, lift }, eye) => {
      const up = ups[eye];
      margin.forEach((p, k) => { sv[2 * p] += up * lift[2 * k]; sv[2 * p + 1] += up * lift[2 * k + 1]; });
    });
    return { target: tv, source: sv, mouthGain, lips, turns: this.turnSources(H, sv, ups),
             eyes: this.eyeBlends(target, closure) };
  }

  // GeometricWarp._blend_turns' sources: per turn picture with a weight (turns.turn_weights), where every
  // vertex samples when the face is taken from it: the face's vertices in the picture, its lids lifted as
  // the portrait's are; the rest as in the first render. [{weight, source [V * 2]}].
  turnSources(H, sv, ups) {
    if (!this.turns.length) return [];
    const weights = this.turnWeights(H), out = [];
    this.turns.forEach((pic, k) => {
      if (!(weights[k] > 0)) return;
      const source = Float32Array.from(sv);
      this.turnVertices.forEach((v, j) => { source[2 * v] = pic.sources[2 * j]; source[2 * v + 1] = pic.sources[2 * j + 1]; });
      this.lids.forEach(({ margin }, eye) => {
        margin.forEach((p, m) => {
          const j = 2 * (eye * margin.length + m);
          source[2 * p] += ups[eye] * pic.lift[j];
          source[2 * p + 1] += ups[eye] * pic.lift[j + 1];
        });
      });
      out.push({ weight: weights[k], source });
    });
    return out;
  }

  // turns.poses of the target's head rotation (row-major) from the portrait's, then turns.turn_weights.
  turnWeights(H) {
    const w = this.w, P = this.portraitRotation;
    const rel = (i, j) => H[3 * i] * P[3 * j] + H[3 * i + 1] * P[3 * j + 1] + H[3 * i + 2] * P[3 * j + 2];  // H P^T
    const deg = 180 / Math.PI;
    const yaw = Math.atan2(rel(0, 2), rel(2, 2)) * deg;
    const pitch = Math.asin(Math.min(1, Math.max(-1, rel(1, 2)))) * deg;
    const roll = Math.atan2(rel(1, 0), rel(0, 0)) * deg;
    const s = Math.abs(yaw);
    // Along the target's side, the nearest picture at or below its turn and the nearest above.
    let lo = -1, hi = -1;
    this.turns.forEach((pic, k) => {
      if (!(Math.sign(pic.yaw) === Math.sign(yaw) && yaw !== 0)) return;
      const a = Math.abs(pic.yaw);
      if (a <= s) { if (lo < 0 || a > Math.abs(this.turns[lo].yaw)) lo = k; } else if (hi < 0 || a < Math.abs(this.turns[hi].yaw)) hi = k;
    });
    const base = lo >= 0 ? Math.abs(this.turns[lo].yaw) : 0;
    const u = (s - base) / (hi >= 0 ? Math.abs(this.turns[hi].yaw) - base : 1);
    const x = Math.min(1, Math.max(0, (u - w.turn_blend[0]) / (w.turn_blend[1] - w.turn_blend[0])));
    const wHi = hi >= 0 ? x * x * (3 - 2 * x) : 0;
    const out = this.turns.map(() => 0);
    if (lo >= 0) out[lo] += 1 - wHi;
    if (hi >= 0) out[hi] += wHi;
    return out.map((v, k) => {
      const t = this.turns[k].tilt, diff = Math.hypot(pitch - t[0], roll - t[1]);
      const g = Math.min(1, Math.max(0, (diff - w.tilt_free) / w.tilt_span));
      const gated = v * (1 - g * g * (3 - 2 * g));
      return gated >= w.turn_min_weight ? gated : 0;
    });
  }

  // GeometricWarp._blend_eyes: each closing eye blended towards the newest keyframe's closed one, moved
  // onto the target's by the similarity of their corners and lower lid. Per eye blended: {eye picture,
  // weight, a: [re, im] (scale and turn), c: [x, y] (shift): output pixel = a * patch texel + c, box:
  // [x0, y0, x1, y1] the output pixels it covers}.
  eyeBlends(target, closure) {
    const w = this.w, out = [];
    for (let eye = 0; eye < 2; eye++) {
      const weight = smoothstep((closure[eye] - w.eye_blend[0]) / (w.eye_blend[1] - w.eye_blend[0]));
      if (weight <= 0) continue;
      const pic = this.eyes.filter((e) => e.eye === eye).pop();
      if (!pic) continue;
      const idx = w.eye_anchors[eye], n = idx.length, src = pic.anchors;
      let msx = 0, msy = 0, mdx = 0, mdy = 0;
      for (let k = 0; k < n; k++) {
        msx += src[2 * k]; msy += src[2 * k + 1]; mdx += target[3 * idx[k]]; mdy += target[3 * idx[k] + 1];
      }
      msx /= n; msy /= n; mdx /= n; mdy /= n;
      let re = 0, im = 0, den = 0;
      for (let k = 0; k < n; k++) {
        const sx = src[2 * k] - msx, sy = src[2 * k + 1] - msy;
        const dx = target[3 * idx[k]] - mdx, dy = target[3 * idx[k] + 1] - mdy;
        re += dx * sx + dy * sy;
        im += dy * sx - dx * sy;
        den += sx * sx + sy * sy;
      }
      re /= den; im /= den;
      const c = [mdx - (re * msx - im * msy), mdy - (im * msx + re * msy)];
      const xs = [], ys = [];
      for (const [px, py] of [[0, 0], [pic.width, 0], [0, pic.height], [pic.width, pic.height]]) {
        xs.push(re * px - im * py + c[0]);
        ys.push(im * px + re * py + c[1]);
      }
      const box = [Math.max(Math.floor(Math.min(...xs)), 0), Math.max(Math.floor(Math.min(...ys)), 0),
                   Math.min(Math.ceil(Math.max(...xs)), this.size), Math.min(Math.ceil(Math.max(...ys)), this.size)];
      if (box[2] - box[0] < 2 || box[3] - box[1] < 2) continue;
      out.push({ picture: pic, weight, a: [re, im], c, box });
    }
    return out;
  }

  // codec.motion._eye_measures' blink (lid opening over eye width) of each eye, in the head's frame.
  blink(canon) {
    const out = [];
    const eyes = [[this.eyeCorners[0][0], this.eyeCorners[0][1], 159, 145], [this.eyeCorners[1][1], this.eyeCorners[1][0], 386, 374]];
    for (const [left, right, up, lo] of eyes) {
      const a = canon(left), b = canon(right), u = canon(up), l = canon(lo);
      const ax = b[0] - a[0], ay = b[1] - a[1], width = Math.hypot(ax, ay);
      const ex = ax / width, ey = ay / width;  // ey-axis: (-ey, ex)
      out.push(((l[0] - u[0]) * -ey + (l[1] - u[1]) * ex) / width);
    }
    return out;
  }

  // The mouth fan and teeth lie flat at the inner lips' farthest depth; the teeth hang from the inner
  // lips (never past the other lip) where the interior is drawn, and fold flat elsewhere.
  placeTeeth(target, H, hs, drawn) {
    const tv = this.target;
    let far = -Infinity;
    for (const c of this.lipsInner) far = Math.max(far, target[3 * c + 2]);
    const [rimFirst, rimContour] = this.copies[0];
    for (let k = 0; k < rimContour.length; k++) tv[3 * (rimFirst + k) + 2] = far;
    tv[3 * this.mouthCentre + 2] = far;
    const dx = H[1] * hs, dy = H[4] * hs, dn = Math.max(Math.hypot(dx, dy), 1e-6), ux = dx / dn, uy = dy / dn;
    const [upper, lower] = this.teeth;
    const K = upper.contour.length;
    const gap = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      const a = upper.contour[k], b = lower.contour[K - 1 - k];
      const g = (target[3 * b] - target[3 * a]) * ux + (target[3 * b + 1] - target[3 * a + 1]) * uy;
      gap[k] = drawn ? Math.max(g, 0) : 0;
    }
    for (const { first, contour, sign, u } of this.teeth) {
      const reach = sign > 0 ? this.w.upper_teeth : this.w.lower_teeth;
      contour.forEach((c, k) => {
        const profile = Math.min(1, Math.max(0, Math.sin(Math.PI * Math.min(1, Math.max(0, u[k]))))) ** this.w.teeth_profile_power;
        const length = Math.min(reach * profile * hs, sign > 0 ? gap[k] : gap[K - 1 - k]);
        const top = 3 * (first + k), bottom = 3 * (first + K + k);
        tv[top] = target[3 * c]; tv[top + 1] = target[3 * c + 1]; tv[top + 2] = far;
        tv[bottom] = target[3 * c] + sign * length * ux;
        tv[bottom + 1] = target[3 * c + 1] + sign * length * uy;
        tv[bottom + 2] = far;
      });
    }
  }
}
