// The warp renderer in WebGL2, mirroring codec/warp.py (GeometricWarp.warp):
// every mesh triangle is drawn at its target position, sampling the portrait at its source
// position (bilinear, clamped at the border: grid_sample's align_corners=False and
// padding_mode="border"); a depth test keeps the nearest surface (eye and mouth openings
// lie behind the lids and lips, hair and background behind the face); the person is laid
// over the background plate by its alpha; the mouth's interior is dimmed by the frame's mouth gain;
// the lips and the skin around them from the keyframes nearest in mouth shape are laid over that
// (LIP_FRAGMENT); with keyframes of closed eyes, closing eyes are blended towards them (EYE_FRAGMENT).
// Output: the canvas, size x size.

const VERTEX = `#version 300 es
in vec3 aTarget;
in vec2 aSource;
in float aKind;
in float aBias;
uniform float uSize;
uniform vec4 uDepth;  // face: (offset, scale); outside: (offset, scale), each onto [0, 1)
uniform float uOutside;
uniform bool uTurned;  // a turn picture's render: the rings around the face are left out
out vec2 vSource;
flat out int vKind;
void main() {
  vSource = aSource;
  vKind = int(aKind + 0.5);
  bool outside = abs(aKind - uOutside) < 0.5;
  float d = aKind < -0.5 ? 1.0 : outside ? 0.5 + 0.49 * clamp((aTarget.z - uDepth.z) * uDepth.w, 0.0, 1.0)
                    : 0.49 * clamp((aTarget.z + aBias - uDepth.x) * uDepth.y, 0.0, 1.0);
  gl_Position = vec4(aTarget.x / uSize * 2.0 - 1.0, 1.0 - aTarget.y / uSize * 2.0, d * 2.0 - 1.0, 1.0);
  if (uTurned && outside) gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // clipped
}`;

const FRAGMENT = `#version 300 es
precision highp float;
uniform sampler2D uImage;
uniform sampler2D uAlpha;
uniform sampler2D uPlate;
uniform float uSize;
uniform vec2 uTexture;  // the texture's width and height in texels
uniform float uMargin;  // the portrait's offset in it
uniform bool uLayered;
uniform float uMouthGain;
uniform int uMouthKind;
uniform int uTeethKind;
uniform sampler2D uMask;  // turns.face_mask, in the portrait's pixels
uniform bool uTurned;
in vec2 vSource;
flat in int vKind;
layout(location = 0) out vec4 colour;
layout(location = 1) out vec4 mask;  // the face mask where this pixel samples (grid_sample, zeros outside)
void main() {
  vec2 uv = (vSource + uMargin) / uTexture;
  vec3 rgb = texture(uImage, uv).rgb;
  vec2 m = vSource / uSize;
  mask = vec4(all(greaterThanEqual(m, vec2(0.0))) && all(lessThanEqual(m, vec2(1.0))) ? texture(uMask, m).r : 0.0);
  if (uLayered && !uTurned) {
    ivec2 p = ivec2(int(gl_FragCoord.x), int(uSize) - 1 - int(gl_FragCoord.y));
    rgb = mix(texelFetch(uPlate, p, 0).rgb, rgb, texture(uAlpha, uv).r);
  }
  if (vKind == uMouthKind || vKind == uTeethKind) rgb *= uMouthGain;
  colour = vec4(rgb, 1.0);
}`;

// GeometricWarp._blend_turns: the frame rendered from the portrait (uFrame) with each turn picture's render
// (uTurn0, uTurn1: the same target mesh sampling the picture's face) mixed in by weight, inside the face mask
// sampled where the first render sampled (uFaceMask).
const QUAD_VERTEX = `#version 300 es
in vec2 aCorner;
void main() { gl_Position = vec4(aCorner, 0.0, 1.0); }`;

const TURN_FRAGMENT = `#version 300 es
precision highp float;
uniform sampler2D uFrame;
uniform sampler2D uFaceMask;
uniform sampler2D uTurn0;
uniform sampler2D uTurn1;
uniform vec2 uWeights;
out vec4 colour;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec3 frame = texelFetch(uFrame, p, 0).rgb;
  float m = texelFetch(uFaceMask, p, 0).r;
  vec3 mixed = frame + uWeights.x * m * (texelFetch(uTurn0, p, 0).rgb - frame)
                     + uWeights.y * m * (texelFetch(uTurn1, p, 0).rgb - frame);
  colour = vec4(mixed, 1.0);
}`;

// GeometricWarp._lay_lips: the lip region's triangles again, at the target's lips, sampling the two
// mouth pictures nearest in shape; their mix laid over the frame with the region's alpha (1 on the lips
// and the first ring of skin, fading to 0 across the second). uOpacity carries the nearest's (or the
// second's) share where the other picture is the portrait, whose lips are the frame as drawn.
const LIP_VERTEX = `#version 300 es
in vec3 aTarget;
in vec2 aNearest;
in vec2 aSecond;
in float aAlpha;
uniform float uSize;
uniform vec2 uDepth;  // (offset, scale) onto [0, 1)
out vec2 vNearest;
out vec2 vSecond;
out float vAlpha;
void main() {
  vNearest = aNearest;
  vSecond = aSecond;
  vAlpha = aAlpha;
  float d = 0.98 * clamp((aTarget.z - uDepth.x) * uDepth.y, 0.0, 1.0);
  gl_Position = vec4(aTarget.x / uSize * 2.0 - 1.0, 1.0 - aTarget.y / uSize * 2.0, d * 2.0 - 1.0, 1.0);
}`;

const LIP_FRAGMENT = `#version 300 es
precision highp float;
uniform sampler2D uImage;
uniform vec2 uTexture;
uniform float uMargin;
uniform float uWeight;   // the nearest picture's share of the mix
uniform float uOpacity;
in vec2 vNearest;
in vec2 vSecond;
in float vAlpha;
out vec4 colour;
void main() {
  vec3 near = texture(uImage, (vNearest + uMargin) / uTexture).rgb;
  vec3 second = texture(uImage, (vSecond + uMargin) / uTexture).rgb;
  colour = vec4(mix(second, near, uWeight), vAlpha * uOpacity);
}`;

// GeometricWarp._blend_eyes: a keyframe's closed eye over the frame, feathered at its ellipse's rim.
const EYE_VERTEX = `#version 300 es
in vec2 aPixel;
uniform float uSize;
void main() { gl_Position = vec4(aPixel.x / uSize * 2.0 - 1.0, 1.0 - aPixel.y / uSize * 2.0, 0.0, 1.0); }`;

const EYE_FRAGMENT = `#version 300 es
precision highp float;
uniform sampler2D uImage;
uniform float uSize;
uniform vec2 uTexture;
uniform vec2 uInverse;  // 1 / a (complex): output pixel -> patch texel
uniform vec2 uShift;    // c
uniform vec2 uPatch;    // the patch's first texel in the texture
uniform vec2 uCentre;
uniform vec2 uAxes;
uniform float uFeather;
uniform float uWeight;
out vec4 colour;
void main() {
  vec2 z = vec2(gl_FragCoord.x, uSize - gl_FragCoord.y) - uShift;
  vec2 q = vec2(uInverse.x * z.x - uInverse.y * z.y, uInverse.y * z.x + uInverse.x * z.y);
  float m = clamp(1.0 - length((q - uCentre) / uAxes), 0.0, uFeather) / uFeather;
  colour = vec4(texture(uImage, (q + uPatch) / uTexture).rgb, m * m * (3.0 - 2.0 * m) * uWeight);
}`;

export function webgl2Available() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    // Give the probe's context back at once: browsers keep only so many (16 in Chromium) alive.
    if (gl) gl.getExtension("WEBGL_lose_context")?.loseContext();
    return !!gl;
  } catch (e) {
    return false;
  }
}

function compile(gl, type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`shader: ${gl.getShaderInfoLog(s)}`);
  return s;
}

function link(gl, vertex, fragment) {
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, vertex));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, fragment));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(prog)}`);
  return prog;
}

// The portrait bundle's images as ImageBitmaps, exactly as sent (no colour management, no premultiplication).
export async function loadImages(bundle) {
  const options = { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "none" };
  const out = {};
  for (const [name, blob] of Object.entries(bundle.files)) out[name] = await createImageBitmap(blob, options);
  return out;
}

export class WarpRenderer {
  constructor(canvas, bundle, assets, images) {
    const m = bundle.meta, a = bundle.arrays, kinds = assets.meta.mesh.kinds;
    this.size = m.size;
    canvas.width = canvas.height = this.size;
    const gl = canvas.getContext("webgl2", { antialias: false, depth: true, alpha: false,
                                             preserveDrawingBuffer: false, premultipliedAlpha: false });
    if (!gl) throw new Error("this browser has no WebGL2");
    if (gl.getParameter(gl.DEPTH_BITS) < 24) throw new Error("WebGL2 without a 24-bit depth buffer");
    this.gl = gl;
    const prog = link(gl, VERTEX, FRAGMENT);
    this.prog = prog;
    gl.useProgram(prog);

    // One vertex per triangle corner, so that a corner carries its triangle's kind and bias.
    const tris = a["mesh.triangles"], kind = a["mesh.kind"], bias = a["mesh.bias"];
    const F = kind.length;
    this.triangles = tris;
    this.kind = kind;
    this.bias = bias;
    this.outsideKind = kinds.outside;
    // Corner 0 of the full-frame quad (two triangles) then the mesh: the quad shows the portrait
    // unwarped where no triangle lands, as the Python grid's identity does.
    const n = 6 + 3 * F, S = this.size;
    this.corners = n;
    const kindA = new Float32Array(n), biasA = new Float32Array(n);
    this.target = new Float32Array(3 * n);
    this.source = new Float32Array(2 * n);
    const source = this.source;
    const quad = [0, 0, S, 0, 0, S, S, 0, S, S, 0, S];
    for (let c = 0; c < 6; c++) {
      source[2 * c] = quad[2 * c]; source[2 * c + 1] = quad[2 * c + 1];
      this.target[3 * c] = quad[2 * c]; this.target[3 * c + 1] = quad[2 * c + 1];
      kindA[c] = -1;
    }
    for (let f = 0; f < F; f++) {
      for (let c = 0; c < 3; c++) {
        const j = 6 + 3 * f + c;
        kindA[j] = kind[f];
        biasA[j] = bias[f];
      }
    }
    this.buffers = [];
    this.textures = [];
    const attribute = (name, data, size, usage) => {
      const buf = gl.createBuffer();
      this.buffers.push(buf);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.bufferData(gl.ARRAY_BUFFER, data, usage);
      const loc = gl.getAttribLocation(prog, name);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, gl.FLOAT, false, 0, 0);
      return buf;
    };
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    this.targetBuffer = attribute("aTarget", this.target, 3, gl.DYNAMIC_DRAW);
    this.sourceBuffer = attribute("aSource", source, 2, gl.DYNAMIC_DRAW);
    attribute("aKind", kindA, 1, gl.STATIC_DRAW);
    attribute("aBias", biasA, 1, gl.STATIC_DRAW);

    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    const texture = (unit, name, bitmap) => {
      const t = gl.createTexture();
      this.textures.push(t);
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.uniform1i(gl.getUniformLocation(prog, name), unit);
      return t;
    };
    this.images = images;
    this.textureWidth = m.texture.width;
    this.baseHeight = m.texture.height;
    this.imageTexture = texture(0, "uImage", images.image);
    this.alphaTexture = texture(1, "uAlpha", images.alpha);
    texture(2, "uPlate", images.plate || images.image);
    texture(3, "uMask", images.face_mask || images.alpha);  // (no face mask: no turn pictures either)
    const u = (name) => gl.getUniformLocation(prog, name);
    this.uTurned = u("uTurned");
    this.uTexture = u("uTexture");
    gl.uniform1f(u("uSize"), S);
    gl.uniform1i(u("uLayered"), m.layered ? 1 : 0);
    gl.uniform1f(u("uOutside"), kinds.outside);
    gl.uniform1i(u("uMouthKind"), kinds.mouth);
    gl.uniform1i(u("uTeethKind"), kinds.teeth);
    gl.uniform2f(this.uTexture, m.texture.width, m.texture.height);
    this.textureHeight = m.texture.height;
    gl.uniform1f(u("uMargin"), m.texture.margin);
    this.uDepth = u("uDepth");
    this.uMouthGain = u("uMouthGain");
    gl.viewport(0, 0, S, S);
    gl.disable(gl.CULL_FACE);
    gl.disable(gl.BLEND);
    gl.depthFunc(gl.LESS);  // the first triangle drawn wins ties, as in the Python rasterizer

    // The eye pass: a box of output pixels per blended eye.
    this.eyeProg = link(gl, EYE_VERTEX, EYE_FRAGMENT);
    gl.useProgram(this.eyeProg);
    this.eyeVao = gl.createVertexArray();
    gl.bindVertexArray(this.eyeVao);
    this.eyeBox = new Float32Array(12);
    this.eyeBuffer = gl.createBuffer();
    this.buffers.push(this.eyeBuffer);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.eyeBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, this.eyeBox, gl.DYNAMIC_DRAW);
    const loc = gl.getAttribLocation(this.eyeProg, "aPixel");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    const e = (name) => gl.getUniformLocation(this.eyeProg, name);
    this.eyeUniforms = Object.fromEntries(["uTexture", "uInverse", "uShift", "uPatch", "uCentre", "uAxes",
                                           "uWeight"].map((n) => [n, e(n)]));
    gl.uniform1i(e("uImage"), 0);
    gl.uniform1f(e("uSize"), S);
    gl.uniform1f(e("uFeather"), m.warp.eye_feather);

    // The lip pass: the lip region's landmarks as vertices, its triangles as indices.
    this.lipProg = link(gl, LIP_VERTEX, LIP_FRAGMENT);
    gl.useProgram(this.lipProg);
    this.lipVao = gl.createVertexArray();
    gl.bindVertexArray(this.lipVao);
    this.lipRegion = a["warp.lip_region"];
    const N = this.lipRegion.length;
    this.lipTarget = new Float32Array(3 * N);
    this.lipNearest = new Float32Array(2 * N);
    this.lipSecond = new Float32Array(2 * N);
    const lipAttribute = (name, data, size, usage) => {
      const buf = gl.createBuffer();
      this.buffers.push(buf);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.bufferData(gl.ARRAY_BUFFER, data, usage);
      const at = gl.getAttribLocation(this.lipProg, name);
      gl.enableVertexAttribArray(at);
      gl.vertexAttribPointer(at, size, gl.FLOAT, false, 0, 0);
      return buf;
    };
    this.lipTargetBuffer = lipAttribute("aTarget", this.lipTarget, 3, gl.DYNAMIC_DRAW);
    this.lipNearestBuffer = lipAttribute("aNearest", this.lipNearest, 2, gl.DYNAMIC_DRAW);
    this.lipSecondBuffer = lipAttribute("aSecond", this.lipSecond, 2, gl.DYNAMIC_DRAW);
    lipAttribute("aAlpha", Float32Array.from(a["warp.lip_alpha"]), 1, gl.STATIC_DRAW);
    const lipTriangles = Uint16Array.from(a["warp.lip_triangles"]);
    this.lipIndices = lipTriangles.length;
    const indices = gl.createBuffer();
    this.buffers.push(indices);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, indices);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, lipTriangles, gl.STATIC_DRAW);
    const l = (name) => gl.getUniformLocation(this.lipProg, name);
    this.lipUniforms = Object.fromEntries(["uTexture", "uDepth", "uWeight", "uOpacity"].map((n) => [n, l(n)]));
    gl.uniform1i(l("uImage"), 0);
    gl.uniform1f(l("uSize"), S);
    gl.uniform1f(l("uMargin"), m.texture.margin);

    // The turn pictures' mix: a full-frame quad over the offscreen renders (made at the first turned frame).
    this.turnProg = link(gl, QUAD_VERTEX, TURN_FRAGMENT);
    gl.useProgram(this.turnProg);
    this.quadVao = gl.createVertexArray();
    gl.bindVertexArray(this.quadVao);
    const quadBuffer = gl.createBuffer();
    this.buffers.push(quadBuffer);
    gl.bindBuffer(gl.ARRAY_BUFFER, quadBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, -1, 1, 1, -1, 1]), gl.STATIC_DRAW);
    const corner = gl.getAttribLocation(this.turnProg, "aCorner");
    gl.enableVertexAttribArray(corner);
    gl.vertexAttribPointer(corner, 2, gl.FLOAT, false, 0, 0);
    const t = (name) => gl.getUniformLocation(this.turnProg, name);
    ["uFrame", "uFaceMask", "uTurn0", "uTurn1"].forEach((name, k) => gl.uniform1i(t(name), 4 + k));
    this.uWeights = t("uWeights");
    this.offscreen = null;
    gl.useProgram(prog);
    gl.bindVertexArray(this.vao);
  }

  // Framebuffers for a frame with turn pictures: the first render and its face mask, and one render per
  // picture (at most two weigh in at once), sharing one depth buffer.
  makeOffscreen() {
    const gl = this.gl, S = this.size;
    const depth = gl.createRenderbuffer();
    gl.bindRenderbuffer(gl.RENDERBUFFER, depth);
    gl.renderbufferStorage(gl.RENDERBUFFER, gl.DEPTH_COMPONENT24, S, S);
    const target = () => {
      const tex = gl.createTexture();
      this.textures.push(tex);
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA8, S, S);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      return tex;
    };
    const framebuffer = (...colours) => {
      const fb = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      colours.forEach((tex, k) => gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + k, gl.TEXTURE_2D, tex, 0));
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.DEPTH_ATTACHMENT, gl.RENDERBUFFER, depth);
      gl.drawBuffers(colours.map((_, k) => gl.COLOR_ATTACHMENT0 + k));
      if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) throw new Error("no offscreen framebuffer");
      return fb;
    };
    gl.activeTexture(gl.TEXTURE4);
    const frame = target(), mask = target(), turn0 = target(), turn1 = target();
    this.offscreen = { depth, textures: [frame, mask, turn0, turn1],
                       frame: framebuffer(frame, mask), turns: [framebuffer(turn0), framebuffer(turn1)] };
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  }

  // The texture again: the bundle's, and below it the keyframes' patches where keyframes.js
  // layoutPatches placed them ({height, places}); opaque (the person's alpha is 1 there).
  setKeyframes({ height, places }) {
    const gl = this.gl, W = this.textureWidth, H = Math.max(height, this.baseHeight);
    if (H > gl.getParameter(gl.MAX_TEXTURE_SIZE)) throw new Error(`a texture of ${W}x${H} is too large here`);
    const upload = (t, unit, base, patch) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, W, H, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, gl.RGBA, gl.UNSIGNED_BYTE, base);
      for (const p of places) patch(p, p.x - p.keyframe.gutter, p.y - p.keyframe.gutter);
    };
    upload(this.imageTexture, 0, this.images.image,
           (p, x, y) => gl.texSubImage2D(gl.TEXTURE_2D, 0, x, y, gl.RGBA, gl.UNSIGNED_BYTE, p.bitmap));
    upload(this.alphaTexture, 1, this.images.alpha, (p, x, y) => {
      const opaque = new Uint8Array(p.bitmap.width * p.bitmap.height * 4).fill(255);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, x, y, p.bitmap.width, p.bitmap.height, gl.RGBA, gl.UNSIGNED_BYTE, opaque);
    });
    this.textureHeight = H;
    gl.useProgram(this.prog);
    gl.uniform2f(this.uTexture, W, H);
  }

  // Blends keyframes' closed eyes over closing ones (WarpGeometry.eyeBlends), on the frame just drawn.
  drawEyes(eyes) {
    const gl = this.gl, U = this.eyeUniforms;
    gl.useProgram(this.eyeProg);
    gl.bindVertexArray(this.eyeVao);
    gl.disable(gl.DEPTH_TEST);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.uniform2f(U.uTexture, this.textureWidth, this.textureHeight);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.eyeBuffer);
    for (const { picture: pic, weight, a, c, box } of eyes) {
      const [x0, y0, x1, y1] = box, n = a[0] * a[0] + a[1] * a[1];
      this.eyeBox.set([x0, y0, x1, y0, x0, y1, x1, y0, x1, y1, x0, y1]);
      gl.bufferSubData(gl.ARRAY_BUFFER, 0, this.eyeBox);
      gl.uniform2f(U.uInverse, a[0] / n, -a[1] / n);
      gl.uniform2f(U.uShift, c[0], c[1]);
      gl.uniform2f(U.uPatch, pic.x, pic.y);
      gl.uniform2f(U.uCentre, pic.centre[0], pic.centre[1]);
      gl.uniform2f(U.uAxes, pic.axes[0], pic.axes[1]);
      gl.uniform1f(U.uWeight, weight);
      gl.drawArrays(gl.TRIANGLES, 0, 6);
    }
    gl.disable(gl.BLEND);
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
  }

  // Lays keyframes' lips over the frame just drawn (WarpGeometry.frame's lips): target [V * 3] of the
  // frame's vertices (the landmarks first).
  drawLips(tv, { nearest, second, weight }) {
    const gl = this.gl, U = this.lipUniforms, region = this.lipRegion, N = region.length;
    let lo = Infinity, hi = -Infinity;
    for (let k = 0; k < N; k++) {
      const v = 3 * region[k], z = tv[v + 2];
      this.lipTarget[3 * k] = tv[v];
      this.lipTarget[3 * k + 1] = tv[v + 1];
      this.lipTarget[3 * k + 2] = z;
      if (z < lo) lo = z;
      if (z > hi) hi = z;
    }
    // The portrait's lips are the frame itself: then only the keyframe's is drawn, at its share.
    const near = nearest || second, other = second || nearest;
    this.lipNearest.set(near);
    this.lipSecond.set(other);
    const mix = nearest && second ? weight : 1, opacity = nearest && second ? 1 : nearest ? weight : 1 - weight;
    gl.useProgram(this.lipProg);
    gl.bindVertexArray(this.lipVao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lipTargetBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, this.lipTarget);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lipNearestBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, this.lipNearest);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.lipSecondBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, this.lipSecond);
    gl.uniform2f(U.uTexture, this.textureWidth, this.textureHeight);
    gl.uniform2f(U.uDepth, lo, 1 / Math.max(hi - lo, 1e-6));
    gl.uniform1f(U.uWeight, mix);
    gl.uniform1f(U.uOpacity, opacity);
    // Depth among the lip triangles alone (the nearest wins, the first drawn on ties, as lip_flow's raster).
    gl.clear(gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LESS);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.drawElements(gl.TRIANGLES, this.lipIndices, gl.UNSIGNED_SHORT, 0);
    gl.disable(gl.BLEND);
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
  }

  // Draws one frame of WarpGeometry.frame(): target [V * 3] and source [V * 2] of every vertex, mouthGain,
  // the turn pictures' renders to mix in, the keyframes' lips to lay over it and the keyframe eyes to blend
  // in (in the warp's order).
  draw({ target: tv, source: sv, mouthGain, turns, lips, eyes }) {
    const gl = this.gl, tris = this.triangles, F = this.kind.length, target = this.target;
    let fLo = Infinity, fHi = -Infinity, oLo = Infinity, oHi = -Infinity;
    for (let f = 0; f < F; f++) {
      const outside = this.kind[f] === this.outsideKind;
      for (let c = 0; c < 3; c++) {
        const j = 3 * (6 + 3 * f + c), v = 3 * tris[3 * f + c];
        const z = tv[v + 2];
        target[j] = tv[v];
        target[j + 1] = tv[v + 1];
        target[j + 2] = z;
        if (outside) { if (z < oLo) oLo = z; if (z > oHi) oHi = z; } else {
          const zb = z + this.bias[f];
          if (zb < fLo) fLo = zb;
          if (zb > fHi) fHi = zb;
        }
      }
    }
    gl.bindBuffer(gl.ARRAY_BUFFER, this.targetBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, target);
    gl.uniform4f(this.uDepth, fLo, 1 / Math.max(fHi - fLo, 1e-6), oLo, 1 / Math.max(oHi - oLo, 1e-6));
    gl.uniform1f(this.uMouthGain, mouthGain);
    const turned = (turns || []).slice(0, 2);
    if (turned.length) {
      if (!this.offscreen) this.makeOffscreen();
      this.drawMesh(sv, false, this.offscreen.frame);
      turned.forEach(({ source }, k) => this.drawMesh(source, true, this.offscreen.turns[k]));
      this.mixTurns(turned.map(({ weight }) => weight));
    } else {
      this.drawMesh(sv, false, null);
    }
    if (lips) this.drawLips(tv, lips);
    if (eyes && eyes.length) this.drawEyes(eyes);
  }

  // The mesh drawn with sources sv [V * 2] into `framebuffer` (null: the canvas); `turned`: a turn
  // picture's render (no rings, no background plate).
  drawMesh(sv, turned, framebuffer) {
    const gl = this.gl, tris = this.triangles, source = this.source;
    for (let k = 0, n = 3 * this.kind.length; k < n; k++) {
      const j = 2 * (6 + k), v = 2 * tris[k];
      source[j] = sv[v];
      source[j + 1] = sv[v + 1];
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.sourceBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, source);
    gl.uniform1i(this.uTurned, turned ? 1 : 0);
    gl.clearDepth(1);
    gl.clear(gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LESS);  // the first triangle drawn wins ties, as in the Python rasterizer
    gl.drawArrays(gl.TRIANGLES, 6, this.corners - 6);
    // Last, at the far plane: only pixels no triangle covered (still at the cleared depth) pass.
    gl.depthFunc(gl.LEQUAL);
    gl.drawArrays(gl.TRIANGLES, 0, 6);
  }

  // frame + sum_k weight_k * mask * (turn_k - frame), onto the canvas (GeometricWarp._blend_turns).
  mixTurns(weights) {
    const gl = this.gl, o = this.offscreen;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.useProgram(this.turnProg);
    gl.bindVertexArray(this.quadVao);
    o.textures.forEach((tex, k) => { gl.activeTexture(gl.TEXTURE4 + k); gl.bindTexture(gl.TEXTURE_2D, tex); });
    gl.uniform2f(this.uWeights, weights[0] || 0, weights[1] || 0);
    gl.disable(gl.DEPTH_TEST);
    gl.drawArrays(gl.TRIANGLES, 0, 6);
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
  }

  // Frees the GL objects (before another renderer takes the canvas).
  dispose() {
    const gl = this.gl;
    for (const t of this.textures) gl.deleteTexture(t);
    for (const b of this.buffers) gl.deleteBuffer(b);
    gl.deleteVertexArray(this.vao);
    gl.deleteVertexArray(this.eyeVao);
    gl.deleteVertexArray(this.lipVao);
    gl.deleteVertexArray(this.quadVao);
    gl.deleteProgram(this.turnProg);
    if (this.offscreen) {
      gl.deleteRenderbuffer(this.offscreen.depth);
      gl.deleteFramebuffer(this.offscreen.frame);
      this.offscreen.turns.forEach((fb) => gl.deleteFramebuffer(fb));
    }
    gl.deleteProgram(this.prog);
    gl.deleteProgram(this.eyeProg);
    gl.deleteProgram(this.lipProg);
  }

  // The frame drawn last, [size * size * 4] RGBA, top row first.
  readPixels() {
    const gl = this.gl, S = this.size;
    const raw = new Uint8Array(S * S * 4), out = new Uint8Array(S * S * 4);
    gl.readPixels(0, 0, S, S, gl.RGBA, gl.UNSIGNED_BYTE, raw);
    for (let y = 0; y < S; y++) out.set(raw.subarray((S - 1 - y) * S * 4, (S - y) * S * 4), y * S * 4);
    return out;
  }

  // Waits until the GPU has drawn (for timing): reading one pixel blocks on it.
  sync() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }
}
