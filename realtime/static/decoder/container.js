// The web asset container written by codec/webexport.py (pack_container):
//   "TKWB" | version u8 | index length u32 LE | index JSON | zero padding to 8 | blobs
// Arrays are little-endian typed arrays (float16 is widened to Float32Array here);
// files are images (PNG; WebP for keyframes), returned as Blobs.

export const WEB_MAGIC = "TKWB";
export const WEB_FORMAT_VERSION = 1;

export class AssetError extends Error {}

const TYPES = { f32: Float32Array, f64: Float64Array, u8: Uint8Array, u16: Uint16Array, u32: Uint32Array,
                i32: Int32Array };

// IEEE 754 binary16 -> number, exact.
function halfToFloat(h) {
  const e = (h >> 10) & 0x1f, m = h & 0x3ff, s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function parseContainer(buffer) {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new AssetError("this page needs a little-endian CPU");
  const bytes = new Uint8Array(buffer);
  const dv = new DataView(buffer);
  if (bytes.length < 9) throw new AssetError("web asset truncated");
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== WEB_MAGIC) throw new AssetError(`not a talkcodec web asset (magic ${JSON.stringify(magic)})`);
  const version = bytes[4];
  if (version !== WEB_FORMAT_VERSION) {
    throw new AssetError(`web asset version ${version}, this page reads ${WEB_FORMAT_VERSION}: reload the page`);
  }
  const length = dv.getUint32(5, true);
  const end = 9 + length;
  if (bytes.length < end) throw new AssetError("web asset index truncated");
  const index = JSON.parse(new TextDecoder().decode(bytes.subarray(9, end)));
  const base = end + ((8 - (end % 8)) % 8);
  const arrays = {}, shapes = {}, files = {};
  for (const [name, a] of Object.entries(index.arrays)) {
    const start = base + a.offset;
    if (start + a.bytes > bytes.length) throw new AssetError(`web asset array ${name} truncated`);
    if (a.dtype === "f16") {
      const h = new Uint16Array(buffer, start, a.bytes / 2);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      arrays[name] = out;
    } else {
      const T = TYPES[a.dtype];
      if (!T) throw new AssetError(`web asset array ${name} has unknown type ${a.dtype}`);
      arrays[name] = new T(buffer, start, a.bytes / T.BYTES_PER_ELEMENT);
    }
    shapes[name] = a.shape;
  }
  for (const [name, f] of Object.entries(index.files)) {
    const start = base + f.offset;
    if (start + f.bytes > bytes.length) throw new AssetError(`web asset file ${name} truncated`);
    files[name] = new Blob([bytes.subarray(start, start + f.bytes)], { type: f.type });
  }
  return { kind: index.kind, meta: index.meta, arrays, shapes, files };
}

export async function fetchContainer(url, kind) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new AssetError(`${url}: HTTP ${response.status}`);
  const c = parseContainer(await response.arrayBuffer());
  if (kind && c.kind !== kind) throw new AssetError(`${url} holds ${c.kind}, expected ${kind}`);
  return c;
}
