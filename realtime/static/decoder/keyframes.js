// The caller's keyframes in the page. talk-recv's renderer takes from each keyframe of the call what
// the portrait lacks (codec/render/warp.py add_keyframe): lips and the skin around them in other mouth
// shapes, the inside of an open mouth, closed eyes, the face of the head turned.
// The relay cuts those patches out for the portrait bundle this page holds (codec/webexport.py
// keyframe_bundle: the same Python code, so nothing here re-implements it) and sends them as pictures
// on the control channel, paced behind the motion (realtime/pictures.py). Here they are reassembled
// (PictureInbox), read (readKeyframe), kept per portrait bundle (KeyframeStore) and placed in the
// warp's texture below the bundle's own (layoutPatches). Where a patch lies in the texture does not
// change what is sampled: only its own texels and the gutter around it are read.

import { AssetError, parseContainer } from "./container.js";
import { loadImages } from "./renderer.js";

// realtime/pictures.py PictureInbox, with protocol.json's bounds. A picture that fails a check is
// dropped (counted), never thrown: the call goes on without it.
export class PictureInbox {
  constructor({ max_picture_bytes: maxPicture, max_pending: maxPending }) {
    Object.assign(this, { maxPicture, maxPending });
    this.pending = new Map();
    this.completed = 0;
    this.dropped = 0;
  }

  begin({ pictureId, length, sha256 }) {
    // The relay starts over when the page's portrait changes, abandoning a picture under way.
    this.pending.delete(pictureId);
    if (!(length > 0 && length <= this.maxPicture)) { this.dropped++; return; }
    while (this.pending.size >= this.maxPending) {
      this.pending.delete(this.pending.keys().next().value);
      this.dropped++;
    }
    this.pending.set(pictureId, { length, sha256, data: new Uint8Array(length), got: 0 });
  }

  // A chunk; resolves to the whole picture (Uint8Array) once its last chunk is in and checked, else null.
  async data({ pictureId, offset, data }) {
    const p = this.pending.get(pictureId);
    if (!p) { this.dropped++; return null; }
    if (offset !== p.got || offset + data.length > p.length) {
      this.pending.delete(pictureId);
      this.dropped++;
      return null;
    }
    p.data.set(data, offset);
    p.got += data.length;
    if (p.got < p.length) return null;
    this.pending.delete(pictureId);
    // SHA-256 where the browser offers it (secure contexts only); elsewhere the reliable, ordered,
    // DTLS-protected channel and the checks above stand alone.
    if (globalThis.crypto && globalThis.crypto.subtle) {
      const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", p.data));
      if (digest.some((x, i) => x !== p.sha256[i])) { this.dropped++; return null; }
    }
    this.completed++;
    return p.data;
  }
}

// A keyframe container (codec/webexport.py keyframe_bundle) -> what the warp uses of it.
export async function readKeyframe(bytes) {
  const c = parseContainer(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  if (c.kind !== "keyframe") throw new AssetError(`a keyframe message holds ${c.kind}`);
  const m = c.meta, images = await loadImages(c);
  const patches = {};
  for (const [name, bitmap] of Object.entries(images)) patches[name] = bitmap;
  return {
    portrait: m.portrait, index: m.index, kind: m.kind, gutter: m.gutter, bytes: bytes.length, patches,
    mouth: m.mouth && { shape: m.mouth.shape, patch: m.mouth.patch, interior: m.mouth.interior, rotation: m.mouth.rotation,
                        rim: c.arrays["mouth.rim"], centre: c.arrays["mouth.centre"], lips: c.arrays["mouth.lips"] },
    eyes: m.eyes.map((e) => ({ ...e, anchors: c.arrays[`eye${e.eye}.anchors`] })),
    turn: m.turn && { yaw: m.turn.yaw, tilt: m.turn.tilt, patch: m.turn.patch, sources: c.arrays["turn.sources"],
                      lift: c.arrays["turn.lift"] },
  };
}

// The keyframes this page has, for whichever portrait bundle it draws (each names the bundle's id).
export class KeyframeStore {
  constructor(limit = 32) { this.limit = limit; this.all = []; }

  add(kf) {
    this.all = this.all.filter((k) => !(k.portrait === kf.portrait && k.index === kf.index));
    this.all.push(kf);
    if (this.all.length > this.limit) this.all.shift();
  }

  // Those of portrait `id` the warp keeps: the newest `max` of the call's (by their index), in order.
  of(id, max) {
    const ks = this.all.filter((k) => k.portrait === id).sort((a, b) => a.index - b.index);
    if (!ks.length) return ks;
    const newest = ks[ks.length - 1].index;
    return ks.filter((k) => k.index > newest - max);
  }

  clear() { this.all = []; }
}

// Where the keyframes' patches go: shelves below the bundle's texture (width x height), left to right,
// each patch image with its gutter. Returns the texture's new height and, per patch, the texel where
// its first own texel (inside the gutter) lies.
export function layoutPatches(width, height, keyframes) {
  let x = 0, y = height, shelf = 0;
  const places = [];
  for (const kf of keyframes) {
    for (const [name, bitmap] of Object.entries(kf.patches)) {
      if (bitmap.width > width) continue;  // codec/render/warp.py never cuts one this wide
      if (x + bitmap.width > width) { x = 0; y += shelf; shelf = 0; }
      places.push({ keyframe: kf, name, bitmap, x: x + kf.gutter, y: y + kf.gutter });
      x += bitmap.width;
      shelf = Math.max(shelf, bitmap.height);
    }
  }
  return { height: y + shelf, places };
}
