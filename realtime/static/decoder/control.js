// Control messages (realtime/protocol.py) as the page reads and writes them, framed by the
// constants the receiver serves (protocol.json, generated from realtime/protocol.py):
//   magic "TK" | version u8 | type u8 | length u16 BE | body

import { StreamError } from "./bitstream.js";

export function parseControl(bytes, P) {
  const c = P.control;
  if (bytes.length < c.prefix_bytes) throw new StreamError("control message truncated");
  if (String.fromCharCode(bytes[0], bytes[1]) !== c.magic) throw new StreamError("not a control message");
  if (bytes[2] !== c.version) throw new StreamError(`control protocol version ${bytes[2]}, this page ${c.version}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = dv.getUint16(4);
  const body = bytes.subarray(c.prefix_bytes);
  if (body.length !== length) throw new StreamError("control message length mismatch");
  const type = Object.keys(c.types).find((k) => c.types[k] === bytes[3]);
  if (!type) throw new StreamError(`unknown control message type ${bytes[3]}`);
  const b = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const u64 = (o) => b.getUint32(o) * 2 ** 32 + b.getUint32(o + 4);
  switch (type) {
    case "HELLO": return { type, header: body };
    case "START": return { type, epochUs: u64(0) };
    case "PING": return { type, t0Us: u64(0) };
    case "PONG": return { type, t0Us: u64(0), t1Us: u64(8), t2Us: u64(16) };
    case "SENDER_STATS":
      return { type, framesSent: b.getUint32(0), motionBytes: u64(4), audioBytes: u64(12), layers: body[20] };
    case "BYE": case "REFUSE": return { type, reason: new TextDecoder().decode(body) };
    // The caller's keyframes, as the relay prepared them for this page (keyframes.js).
    case "PICTURE_BEGIN":
      if (body.length !== 38) throw new StreamError(`PICTURE_BEGIN body is ${body.length} bytes, expected 38`);
      return { type, pictureId: b.getUint16(0), length: b.getUint32(2), sha256: body.slice(6) };
    case "PICTURE_DATA":
      if (body.length <= 6) throw new StreamError(`PICTURE_DATA body is ${body.length} bytes, expected more than 6`);
      return { type, pictureId: b.getUint16(0), offset: b.getUint32(2), data: body.subarray(6) };
    default: return { type };
  }
}

export function encodePing(t0Us, P) {
  const c = P.control, out = new Uint8Array(c.prefix_bytes + 8), dv = new DataView(out.buffer);
  out[0] = c.magic.charCodeAt(0); out[1] = c.magic.charCodeAt(1); out[2] = c.version; out[3] = c.types.PING;
  dv.setUint16(4, 8);
  dv.setUint32(6, Math.floor(t0Us / 2 ** 32));
  dv.setUint32(10, t0Us % 2 ** 32);
  return out;
}

// realtime/clock.py OffsetEstimator: the peer's clock minus ours, from the least-queued recent exchange.
export class OffsetEstimator {
  constructor(window = 16) { this.window = window; this.samples = []; this.rttMs = null; }
  add(t0, t1, t2, t3) {
    const rtt = (t3 - t0) - (t2 - t1);
    if (rtt < 0) return;
    this.samples.push({ offset: ((t1 - t0) + (t2 - t3)) / 2, rtt });
    if (this.samples.length > this.window) this.samples.shift();
    this.rttMs = rtt / 1000;
  }
  get offsetUs() {
    if (!this.samples.length) return 0;
    return this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a)).offset;
  }
}

// Wall clock in µs since the Unix epoch (what pings carry), sub-millisecond where the browser allows.
export const wallUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
