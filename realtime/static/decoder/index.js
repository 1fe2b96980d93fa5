// talkcodec's decoder in the browser: the token stream in, the avatar drawn with WebGL2.
//
//   fetchContainer("decoder.bin") -> Assets                    (weights and constants, from Python)
//   fetchContainer("portrait.bin") -> portrait bundle           (the receiver's portrait, once at join)
//   MotionDecoder(assets, bundle, header).decodeMessage(message) -> tokens -> delta -> target landmarks, per frame
//   JitterBuffer / tickLandmarks                                 -> the landmarks of each render tick
//   smoothFrame (one frame of look-ahead)                       -> steadier landmarks
//   WarpGeometry.frame(landmarks) -> WarpRenderer.draw          -> the 512x512 frame

export { AssetError, fetchContainer, parseContainer } from "./container.js";
export { IncompatibleStreamError, ReferenceLostError, StreamError, StreamReader, checkCompatible, parseHeader,
         parseMessage, parsePacket, unpackFixed, unwrapMs } from "./bitstream.js";
export { EntropyDecoder } from "./entropy.js";
export { TokenDecoder } from "./tokenizer.js";
export { similarity2d, similarityFit, transferLandmarks } from "./motion.js";
export { Assets, MotionDecoder } from "./decoder.js";
export { JitterBuffer, tickLandmarks, unwrapSeq } from "./jitterbuffer.js";
export { WarpGeometry } from "./geometry.js";
export { WarpRenderer, loadImages, webgl2Available } from "./renderer.js";
export { KeyframeStore, PictureInbox, layoutPatches, readKeyframe } from "./keyframes.js";
export { CallPlayer, FRAME_INTERVAL_MS } from "./player.js";
export { LIMITS, LOOKAHEAD_FRAMES, smoothFrame } from "./smoothing.js";
