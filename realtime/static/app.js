// talkcodec in the browser: watch a talk-recv call (index.html), or be talk-send's camera (send.html).
//
// Signaling is talk-send's (realtime/signaling.py): the server sends a
// nonce, the page answers with its offer and HMAC(token, "watch" | nonce | sdp)
// ("offer" for a camera), and checks the answer's HMAC(token, "answer" | nonce | sdp). The token
// comes from ?token= and never leaves the page. HMAC-SHA256 is computed here
// because crypto.subtle exists only on https or localhost pages.
"use strict";

const SIGNALING_VERSION = 1;
const stateEl = document.getElementById("state");
const statsEl = document.getElementById("stats");

function say(state, text) {
  // state: connecting | waiting | live | error | closed (tests read data-state)
  stateEl.dataset.state = state;
  stateEl.dataset.kind = state === "error" ? "error" : state === "live" ? "live" : "info";
  stateEl.textContent = text;
}

// ---- HMAC-SHA256 (FIPS 180-4, RFC 2104) ---------------------------------
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
const ror = (x, n) => (x >>> n) | (x << (32 - n));

function sha256(bytes) {
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const dv = new DataView(padded.buffer);
  dv.setUint32(padded.length - 8, Math.floor(bytes.length / 0x20000000));
  dv.setUint32(padded.length - 4, (bytes.length * 8) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  for (let o = 0; o < padded.length; o += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(o + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const odv = new DataView(out.buffer);
  h.forEach((v, i) => odv.setUint32(4 * i, v));
  return out;
}

function hmacSha256(key, msg) {
  if (key.length > 64) key = sha256(key);
  const inner = new Uint8Array(64 + msg.length), outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = (key[i] || 0) ^ 0x36;
    outer[i] = (key[i] || 0) ^ 0x5c;
  }
  inner.set(msg, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

const utf8 = (s) => new TextEncoder().encode(s);
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => new Uint8Array(s.match(/../g).map((x) => parseInt(x, 16)));

function sdpMac(token, role, nonce, sdp) {
  const r = utf8(role), s = utf8(sdp);
  const msg = new Uint8Array(r.length + 1 + nonce.length + s.length);
  msg.set(r); msg.set(nonce, r.length + 1); msg.set(s, r.length + 1 + nonce.length);
  return hex(hmacSha256(utf8(token), msg));
}

// ---- signaling (one offer, one answer) -------------------------------------
let server = {};  // the other end's status, from its "status" data channel
let peer = null;

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

// Authenticates with the room token, then offers what setup(pc) added.
// role: "watch" (this page receives the avatar) or "send" (it sends its camera).
// onConnected(pc) starts the stats line once the offer is out.
function connect(token, role, setup, onStatus, onConnected = showStats) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/`);
  let pc = null, nonce = null;
  say("connecting", "connecting…");

  ws.onerror = () => say("error", "cannot reach the server: is it still running?");
  ws.onclose = () => {
    if (stateEl.dataset.state === "connecting" && !pc?.remoteDescription) say("error", "the server closed the connection");
  };
  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.talkcodec !== SIGNALING_VERSION) {
      say("error", `the server speaks signaling version ${msg.talkcodec}, this page ${SIGNALING_VERSION}`);
      ws.close();
    } else if (msg.type === "reject") {
      say("error", msg.reason.startsWith("wrong token")
        ? "wrong token: check the ?token= in this address against the one printed"
        : `refused: ${msg.reason}`);
      ws.close();
    } else if (msg.type === "challenge") {
      nonce = unhex(msg.nonce);
      pc = peer = new RTCPeerConnection({ iceServers: [] });
      await setup(pc);
      const status = pc.createDataChannel("status", { negotiated: true, id: 0 });
      status.onmessage = (e) => { server = JSON.parse(e.data); onStatus(); };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed") say("error", "the media connection failed (is UDP open between the machines?)");
        else if (pc.connectionState === "closed" || pc.connectionState === "disconnected")
          say("closed", "disconnected: reload to try again");
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const sdp = pc.localDescription.sdp;
      ws.send(JSON.stringify({ talkcodec: SIGNALING_VERSION, type: "offer", role, sdp,
                               mac: sdpMac(token, role === "send" ? "offer" : role, nonce, sdp) }));
      onConnected(pc);
    } else if (msg.type === "answer") {
      ws.close();
      if (msg.mac !== sdpMac(token, "answer", nonce, msg.sdp)) {
        say("error", "the server does not know the room token: not connecting");
        pc.close();
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      say("connecting", "connected; waiting for media…");
    }
  };
}

// ---- viewer (talk-recv --serve-browser) --------------------------------------
// What talk-recv shows until it has the caller's picture (its status "picture"; "caller" and "portrait" need no word).
const PICTURE_STATES = {
  waiting: " (a placeholder until the caller's picture has arrived)",
  private: " (the caller keeps their picture private: a placeholder; talk-recv --portrait IMG animates a face)",
  none: " (the caller sends no picture: a placeholder; talk-recv --portrait IMG animates a face)",
};

// Token mode (the default where the browser has WebGL2): the page gets the call's own motion
// tokens and speech and draws the avatar itself (decoder/watch.js). Video mode (?mode=video,
// or no WebGL2): talk-recv renders the avatar and sends it as a video stream.
function hasWebGL2() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    // Give the probe's context back at once: browsers keep only so many (16 in Chromium) alive.
    if (gl) gl.getExtension("WEBGL_lose_context")?.loseContext();
    return !!gl;
  } catch (e) {
    return false;
  }
}

function watch(token) {
  const asked = new URLSearchParams(location.search).get("mode");
  const mode = asked === "video" || !hasWebGL2() ? "video" : "token";
  document.body.dataset.mode = mode;
  document.getElementById("mode").textContent = mode === "token"
    ? "token mode: this browser decodes the call and draws the avatar (WebGL2)"
    : `video mode: the receiver renders the avatar for this browser${asked === "video" ? "" : " (no WebGL2 here)"}`;
  if (mode === "video") return watchVideo(token);
  const canvas = document.getElementById("avatar-canvas"), audio = document.getElementById("speech");
  const unmute = document.getElementById("unmute");
  document.getElementById("avatar").hidden = true;
  canvas.hidden = false;
  unmute.hidden = false;
  unmute.onclick = () => { audio.muted = false; audio.play(); unmute.hidden = true; };
  import("./decoder/watch.js")
    .then((m) => m.watchTokens({ connect, say, server: () => server, canvas, audio, stateEl,
                                 stats: statsEl, token, pictureStates: PICTURE_STATES }))
    .catch((e) => say("error", `cannot start the decoder: ${e.message}; try ?mode=video`));
}

function watchVideo(token) {
  const video = document.getElementById("avatar");
  const unmute = document.getElementById("unmute");
  unmute.onclick = () => { video.muted = false; unmute.hidden = true; };
  video.addEventListener("playing", () => { unmute.hidden = !video.muted; });
  connect(token, "watch", (pc) => {
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; };
  }, () => {
    if (stateEl.dataset.state === "error" || stateEl.dataset.state === "closed") return;
    if (server.sender) say("live", "live: a sender is connected" + (PICTURE_STATES[server.picture] || ""));
    else if (server.sender === false) say("waiting", "no sender connected");
  });
}

// ---- camera (talk-send --from-browser) ----------------------------------------
async function sendCamera(token) {
  const preview = document.getElementById("camera");
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 25 } }, audio: true });
  } catch (e) {
    say("error", window.isSecureContext
      ? `no camera: ${e.name} (allow camera and microphone for this page)`
      : "browsers give the camera only to https pages or localhost: open this page as http://127.0.0.1:PORT/ on the machine running talk-send");
    return;
  }
  preview.srcObject = media;
  connect(token, "send", (pc) => {
    media.getTracks().forEach((t) => pc.addTrack(t, media));
  }, () => {
    if (stateEl.dataset.state === "error" || stateEl.dataset.state === "closed") return;
    if (server.sending) say("live", `sending: ${server.state}`);
    else say("waiting", server.state || "connected");
  });
}

function showStats(pc) {
  let last = null;
  setInterval(async () => {
    const report = await pc.getStats();
    let bytes = 0, fps = null, delay = 0, emitted = 0;
    report.forEach((s) => {
      if (s.type !== "inbound-rtp" && s.type !== "outbound-rtp") return;
      bytes += s.bytesReceived || s.bytesSent || 0;
      if (s.kind === "video") {
        fps = s.framesPerSecond ?? null;
        delay = s.jitterBufferDelay || 0;
        emitted = s.jitterBufferEmittedCount || 0;
      }
    });
    const now = performance.now();
    const parts = [`${fps === null ? "–" : fps.toFixed(0)} fps`];
    if (last) {
      // This browser's leg is an ordinary video stream; the call itself is the motion rate.
      const leg = peer && peer.getSenders().some((x) => x.track) ? "media from" : "video to";
      parts.push(`${leg} this browser ${((bytes - last.bytes) * 8 / (now - last.t)).toFixed(0)} kbps`);
    }
    if (server.motion_kbps != null) parts.push(`motion ${server.motion_kbps.toFixed(1)} kbps`);
    if (server.sender && server.latency_ms != null) parts.push(`latency ${server.latency_ms.toFixed(0)} ms`);
    if (last && emitted > last.emitted) {
      parts.push(`+ browser buffer ${(1000 * (delay - last.delay) / (emitted - last.emitted)).toFixed(0)} ms`);
    }
    if (server.viewers) parts.push(`${server.viewers} watching`);
    last = { bytes, t: now, delay, emitted };
    statsEl.textContent = parts.join(" | ");
  }, 1000);
}

// Closing the connection tells the other end at once that this page left.
window.addEventListener("pagehide", () => { if (peer) peer.close(); });

const token = new URLSearchParams(location.search).get("token");
if (!token) say("error", "no room token: open this page as http://HOST:PORT/?token=TOKEN (the token was printed)");
else if (document.body.dataset.page === "send") sendCamera(token);
else watch(token);
