"""What a browser needs to decode and render a call itself, generated from this package.

The page (``realtime/static/decoder/*.js``) holds no weights and no constants
of its own: it reads two files made here, so the Python codec stays the one
source of truth and a test fails when the two drift apart.

- the **decoder assets** (:func:`decoder_assets`, ``talk-codec export-web``):
  the byte format's constants, the tokenizer's decoder (GRFSQ codebook
  projections and the decoder MLP), the motion template, the landmark
  regions, the mesh layout and the entropy model as integer CDFs
  (:meth:`codec.entropy.EntropyModel.quantized_cdfs`), identified by the
  same hashes stream headers carry;
- the **portrait bundle** (:func:`portrait_bundle`): one prepared portrait
  as the warp renderer sees it (denoised image, person alpha, background
  plate, landmarks, motion state, mesh, depth biases, mouth colours), sent to
  a page once when it joins.

Both are one container::

    b"TKWB" | version u8 | index length u32 LE | index (UTF-8 JSON) | zero padding | blobs

The index is ``{"kind", "meta", "arrays": {name: {"dtype", "shape", "offset",
"bytes"}}, "files": {name: {"type", "offset", "bytes"}}}``; offsets count from
the start of the blobs and are 8-byte aligned, arrays are little-endian
(``f16``, ``f32``, ``f64``, ``u8``, ``u16``, ``u32``, ``i32``), files are PNG
images (WebP for keyframes). Arrays take the smallest of those types that holds them exactly (the
tokenizer's weights ship in float16, so they travel in float16).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from codec import bitstream as B
from codec import regions as R
from codec.entropy import CDF_PRECISION, ENTROPY_PATH, load_entropy_model
from codec.errors import StreamError
from codec.grfsq import GRFSQConfig
from codec.motion import DELTA_PARTS, load_template, motion_from_landmarks
from codec.render.mesh import EYE, FACE, MOUTH, OUTSIDE, TEETH, MeshConfig
from codec.tokenizer import TOKENIZER_PATH, load_tokenizer, weights_hash

if TYPE_CHECKING:
    from codec.render.keyframes import Keyframe
    from codec.render.pipeline import Renderer

WEB_MAGIC = b"TKWB"
WEB_FORMAT_VERSION = 1
DECODER_FILE = "decoder.bin"
PORTRAIT_FILE = "portrait.bin"

_PREFIX = struct.Struct("<4sBI")
_ALIGN = 8
# Exact types tried in order for floating-point and integer arrays.
_FLOAT_TYPES = (("f16", np.float16), ("f32", np.float32), ("f64", np.float64))
_INT_TYPES = (("u8", np.uint8), ("u16", np.uint16), ("i32", np.int32), ("u32", np.uint32))
DTYPES = {name: np.dtype(t).newbyteorder("<") for name, t in _FLOAT_TYPES + _INT_TYPES}


# --------------------------------------------------------------------------- container


def _compact(a: np.ndarray) -> tuple[str, np.ndarray]:
    """The smallest container type that holds ``a`` exactly, and ``a`` in it."""
    a = np.asarray(a)
    types = _FLOAT_TYPES if np.issubdtype(a.dtype, np.floating) else _INT_TYPES
    if a.dtype == bool:
        a = a.astype(np.uint8)
    for name, t in types:
        with np.errstate(over="ignore", invalid="ignore"):
            c = a.astype(DTYPES[name])
        if np.array_equal(c.astype(a.dtype), a) and (not np.issubdtype(a.dtype, np.floating)
                                                     or np.isfinite(c[np.isfinite(a)]).all()):
            return name, c
    raise ValueError(f"no container type holds an array of {a.dtype} exactly")


def pack_container(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   files: dict[str, tuple[str, bytes]] | None = None) -> bytes:
    """Serializes one container (see the module docstring).

    Args:
        kind: what it holds (``"decoder"`` or ``"portrait"``).
        meta: JSON-serializable values.
        arrays: name -> array, stored in the smallest exact type.
        files: name -> (MIME type, bytes).
    """
    index: dict[str, Any] = {"kind": kind, "meta": meta, "arrays": {}, "files": {}}
    blobs: list[bytes] = []
    offset = 0

    def add(data: bytes) -> int:
        nonlocal offset
        start = offset
        pad = -len(data) % _ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
        return start

    for name in sorted(arrays):
        dtype, a = _compact(arrays[name])
        data = np.ascontiguousarray(a).tobytes()
        index["arrays"][name] = {"dtype": dtype, "shape": list(a.shape), "offset": add(data), "bytes": len(data)}
    for name in sorted(files or {}):
        mime, data = (files or {})[name]
        index["files"][name] = {"type": mime, "offset": add(data), "bytes": len(data)}
    body = json.dumps(index, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    head = _PREFIX.pack(WEB_MAGIC, WEB_FORMAT_VERSION, len(body)) + body
    head += b"\0" * (-len(head) % _ALIGN)
    return head + b"".join(blobs)


def unpack_container(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    """Inverse of :func:`pack_container`: the index, the arrays and the files.

    Raises:
        StreamError: not a container, another version, or truncated.
    """
    if len(data) < _PREFIX.size:
        raise StreamError("web asset truncated")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != WEB_MAGIC:
        raise StreamError(f"not a talkcodec web asset (magic {bytes(magic)!r})")
    if version != WEB_FORMAT_VERSION:
        raise StreamError(f"web asset version {version}, this talkcodec reads {WEB_FORMAT_VERSION}")
    end = _PREFIX.size + length
    if len(data) < end:
        raise StreamError("web asset index truncated")
    index = json.loads(data[_PREFIX.size:end].decode())
    base = end + (-end % _ALIGN)
    arrays, files = {}, {}
    for name, a in index["arrays"].items():
        start = base + a["offset"]
        if start + a["bytes"] > len(data):
            raise StreamError(f"web asset array {name} truncated")
        arrays[name] = np.frombuffer(data, DTYPES[a["dtype"]], a["bytes"] // DTYPES[a["dtype"]].itemsize,
                                     start).reshape(a["shape"])
    for name, f in index["files"].items():
        start = base + f["offset"]
        if start + f["bytes"] > len(data):
            raise StreamError(f"web asset file {name} truncated")
        files[name] = data[start:start + f["bytes"]]
    return index, arrays, files


def content_hash(data: bytes) -> str:
    """16 hex digits of SHA-256: how a page names the assets it loaded."""
    return hashlib.sha256(data).hexdigest()[:16]


# --------------------------------------------------------------------------- decoder assets


def _stream_constants() -> dict[str, Any]:
    """The byte format (:mod:`codec.bitstream`) as numbers the page parses with."""
    cfg = GRFSQConfig()
    return {
        "version": B.STREAM_VERSION, "readable_versions": list(B.READABLE_VERSIONS),
        "magic": B.MAGIC.decode("ascii"), "header_prefix_bytes": B._HEADER_PREFIX.size,
        "max_header_bytes": B.MAX_HEADER_BYTES, "packet_header_bytes": B.PACKET_HEADER_BYTES,
        "v1_packet_header_bytes": B.V1_PACKET_HEADER_BYTES, "message_header_bytes": B.MESSAGE_HEADER_BYTES,
        "max_frames_per_message": B.MAX_FRAMES_PER_MESSAGE,
        "max_packet_bytes": B.MAX_PACKET_BYTES, "max_layers": B.MAX_LAYERS, "modes": list(B.MODES),
        "flags": {"layers_mask": 0b11, "face": B._FACE, "keyframe": B._KEYFRAME, "entropy": B._ENTROPY,
                  "more": B._MORE, "reserved": {str(v): bits for v, bits in B._RESERVED.items()}},
        "fixed_payload_bytes": [B.fixed_payload_bytes(r, cfg.groups, cfg.codebook_size)
                                for r in range(1, cfg.residuals + 1)],
    }


def _tokenizer_arrays() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The decoder half of the tokenizer: tokens -> latent -> features -> motion delta."""
    tok = load_tokenizer()
    state = {k: v.detach().cpu().numpy() for k, v in tok.state_dict().items()}
    scales = tok.quantizer.get_buffer("scales").cpu().numpy()  # each residual stage's step (not saved)
    meta = {"config": tok.config.to_dict(), "hash": weights_hash(TOKENIZER_PATH),
            "feature_dim": tok.config.feature_dim, "scales": [float(s) for s in scales],
            "delta_parts": [[name, n] for name, n in DELTA_PARTS], "activation": "gelu_erf"}
    names = ["quantizer.w_out", "quantizer.b_out", "decoder.linear.weight", "decoder.linear.bias",
             "decoder.mlp.0.weight", "decoder.mlp.0.bias", "decoder.mlp.2.weight", "decoder.mlp.2.bias",
             "decoder.mlp.4.weight", "decoder.mlp.4.bias", "feat_mean", "feat_std", "exp_mean", "exp_basis"]
    return meta, {f"tokenizer.{n}": state[n] for n in names}


def _entropy_arrays() -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    if not ENTROPY_PATH.exists():
        return None, {}
    model = load_entropy_model()
    base = model.probs.shape[-1]
    meta = {"hash": model.hash, "config": model.config.to_dict(), "base": base,
            "digits": len(model.config.levels), "precision": CDF_PRECISION,
            "shape": list(model.probs.shape[:-1]), "word_bytes": 4}
    return meta, {"entropy.cdf": model.quantized_cdfs()}


def _region_arrays() -> dict[str, np.ndarray]:
    names = ("LIPS_INNER", "LIPS_OUTER", "FACE_OVAL", "RIGHT_EYE_CONTOUR", "LEFT_EYE_CONTOUR",
             "RIGHT_IRIS", "LEFT_IRIS")
    return {f"regions.{n.lower()}": np.asarray(getattr(R, n)) for n in names}


def decoder_assets() -> bytes:
    """The decoder assets (see the module docstring); deterministic for one set of shipped weights."""
    tok_meta, arrays = _tokenizer_arrays()
    entropy_meta, entropy = _entropy_arrays()
    arrays.update(entropy)
    arrays.update(_region_arrays())
    tpl = load_template()
    arrays["template.shape"] = tpl.shape
    arrays["template.stable"] = tpl.stable
    meta = {
        "stream": _stream_constants(), "tokenizer": tok_meta,
        "entropy": entropy_meta, "landmarks": R.NUM_LANDMARKS,
        "regions": {"right_eye_corners": list(R.RIGHT_EYE_CORNERS), "left_eye_corners": list(R.LEFT_EYE_CORNERS),
                    "mouth_inner_lips": list(R.MOUTH_INNER_LIPS)},
        "mesh": {"kinds": {"face": FACE, "eye": EYE, "mouth": MOUTH, "outside": OUTSIDE, "teeth": TEETH},
                 "config": asdict(MeshConfig())},
    }
    return pack_container("decoder", meta, arrays)


def export_web(out_dir: str | Path, renderer: "Renderer | None" = None) -> dict[str, Any]:
    """Writes the decoder assets (and, given a renderer, its portrait bundle) into ``out_dir``.

    Returns:
        per file written: ``{"path", "bytes", "hash"}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    blobs = {DECODER_FILE: decoder_assets()}
    if renderer is not None:
        blobs[PORTRAIT_FILE] = portrait_bundle(renderer)
    for name, data in blobs.items():
        path = out / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # a page never reads half a file
        written[name] = {"path": str(path), "bytes": len(data), "hash": content_hash(data)}
    return written


# --------------------------------------------------------------------------- portrait bundle


def _png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of ``[H, W, 3]`` RGB or ``[H, W]`` grey uint8."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("could not encode a PNG")
    return buf.tobytes()


def _webp_lossy(image: np.ndarray, quality: int) -> bytes:
    """WebP bytes of ``[H, W, 3]`` RGB uint8 at ``quality`` (0-100)."""
    ok, buf = cv2.imencode(".webp", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a WebP")
    return buf.tobytes()


def _state_arrays(prefix: str, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    st = motion_from_landmarks(np.asarray(landmarks, np.float64))
    return {f"{prefix}.rotation": st.rotation, f"{prefix}.translation": st.translation,
            f"{prefix}.scale": np.asarray(st.scale).reshape(1), f"{prefix}.expression": st.expression}


def portrait_bundle(renderer: "Renderer") -> bytes:
    """One portrait as the warp renderer holds it, for a page to render it alike.

    Everything is read off the renderer's :class:`~codec.render.warp.GeometricWarp`
    (the texture it samples: the denoised portrait padded past its edges and the
    drawn mouth interior below it, with the person's alpha; its plate, its mesh,
    biases and base sources, and what its per-frame geometry needs), so the page
    draws what the Python renderer would draw. Keyframes follow apart, one
    :func:`keyframe_bundle` each.

    Args:
        renderer: a warp :class:`~codec.render.Renderer` (its refiner, if any, is not exported).
    Returns:
        the container bytes (kind ``"portrait"``).
    """
    # lazy: the warp pulls in torch, which the decoder assets alone do not need
    from codec.render import interior, turns
    from codec.render.keyframes import MOUTH_POSE_WEIGHT, MOUTH_WIDTH_WEIGHT
    from codec.render.warp import (
        EYE_ANCHORS,
        EYE_BLEND,
        EYE_FEATHER,
        LEND_SHARE,
        LID_SPAN,
        LID_START,
        LIP_FADE,
        MAX_KEYFRAMES,
        MIN_GAIN,
        NARROWING_FREE,
        NARROWING_GAIN,
        SHUT,
    )

    warp = renderer.warp
    mesh = warp.mesh
    tex = warp.texture[0].permute(1, 2, 0).cpu().numpy()
    image = np.round(np.clip(tex[..., :3], 0, 1) * 255).astype(np.uint8)
    alpha = np.round(np.clip(tex[..., 3], 0, 1) * 255).astype(np.uint8)
    files = {"image": ("image/png", _png(image)), "alpha": ("image/png", _png(alpha))}
    if warp.background is not None:
        plate = np.round(warp.background[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        files["plate"] = ("image/png", _png(plate))
    # Where a turn picture's face is mixed in (turns.face_mask), in the portrait's pixels.
    mask = warp.face_mask[0, 0].cpu().numpy()
    files["face_mask"] = ("image/png", _png(np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8)))
    portrait = renderer.portrait
    mouth = warp.portrait_mouth
    arrays = {
        # Decoding: the portrait's own landmarks and motion, in its pixels (as FrameDecoder holds them).
        "portrait.landmarks": np.asarray(portrait.landmarks, np.float32),
        **_state_arrays("portrait.state", portrait.landmarks),
        # Rendering: the warp's landmarks and mesh, at the rendered size.
        "warp.landmarks": warp.landmarks,
        **_state_arrays("warp.state", warp.landmarks),
        "mesh.vertices": mesh.vertices, "mesh.triangles": mesh.triangles, "mesh.kind": mesh.kind,
        "mesh.ring_follow": mesh.ring_follow, "mesh.bias": warp._bias,
        # How the rings are pushed out past a face outline that moved out (codec.render.mesh.ring_outline).
        "warp.ring_oval": warp.ring_oval, "warp.ring_push": warp.ring_push.astype(np.float32),
        # Where each vertex samples (the portrait's pixels; the drawn interior's lie below it), before the
        # per-frame changes: the mouth fan's picture and the closing lids.
        "mesh.sources": warp.base_sources,
        "warp.drawn_rim": warp.drawn_rim, "warp.drawn_centre": warp.drawn_centre,
        "warp.portrait_rim": mouth.rim, "warp.portrait_centre": mouth.centre,
        **{f"warp.teeth_u{k}": u for k, u in enumerate(warp.teeth_u)},
        **{f"warp.lid_lift{k}": lift for k, (_, lift) in enumerate(warp.lids)},
        # The lips laid over the frame from keyframes (GeometricWarp._lay_lips): the region's landmarks, its
        # triangles (indices into those) and each landmark's opacity.
        "warp.lip_region": warp.lip_region, "warp.lip_triangles": warp.lip_triangles,
        "warp.lip_alpha": warp.lip_alpha,
        # The vertices a turn picture gives sources for (keyframe_bundle's turn.sources, in this order).
        "warp.turn_vertices": warp.turn_vertices,
    }
    config = warp.config
    meta = {
        "size": warp.size, "portrait_size": portrait.size, "landmark_scale": float(renderer._scale),
        "layered": warp.background is not None,
        "texture": {"width": warp.atlas.width, "height": warp.atlas.height, "margin": warp.atlas.margin},
        "mesh": {"mouth_centre": mesh.mouth_centre, "ring_start": mesh.ring_start,
                 "centres": [[int(v), [int(i) for i in contour]] for v, contour in mesh.centres],
                 "irises": [[int(a), int(n), int(c)] for a, n, c in mesh.irises],
                 "copies": [[int(v), [int(i) for i in contour]] for v, contour in mesh.copies],
                 "teeth": [[int(v), [int(i) for i in contour], int(sign)] for v, contour, sign in mesh.teeth],
                 "lids": [[int(i) for i in margin] for margin, _ in warp.lids]},
        "warp": {"ring_depth": warp._ring_depth, "head_centre": [float(x) for x in warp._head_centre],
                 "body_follow": config.body_follow if config.layered else 0.0,
                 "body_reach": 0.9 * warp.atlas.margin,
                 "mouth_area": warp._mouth_area,
                 "portrait_mouth": [float(x) for x in mouth.shape],
                 "portrait_blink": [float(x) for x in warp.portrait_state.blink],
                 "shut": SHUT, "lend_share": LEND_SHARE, "mouth_width_weight": MOUTH_WIDTH_WEIGHT,
                 "mouth_pose_weight": MOUTH_POSE_WEIGHT,
                 "narrowing_gain": NARROWING_GAIN,
                 "narrowing_free": NARROWING_FREE, "min_gain": MIN_GAIN,
                 "upper_teeth": interior.UPPER_TEETH, "lower_teeth": interior.LOWER_TEETH,
                 "teeth_profile_power": interior.TEETH_PROFILE_POWER, "lid_start": LID_START,
                 "lid_span": LID_SPAN,
                 # Keyframes (keyframe_bundle): how many the warp keeps, and how a closed eye blends in.
                 "max_keyframes": MAX_KEYFRAMES, "eye_blend": list(EYE_BLEND), "eye_feather": EYE_FEATHER,
                 "eye_anchors": [[int(i) for i in a] for a in EYE_ANCHORS],
                 # and how keyframes' lips are laid over the frame (keyframe_lips False: never).
                 "keyframe_lips": config.keyframe_lips, "lip_fade": LIP_FADE,
                 # and how a turned head's face comes from turn pictures (codec.render.turns).
                 "turns": config.turns, "turn_blend": list(turns.BLEND), "tilt_free": turns.TILT_FREE,
                 "tilt_span": turns.TILT_SPAN, "turn_min_weight": turns.MIN_WEIGHT},
    }
    # Keyframes are cut out for one portrait: they name it by this id (the rest of the bundle's hash).
    meta["id"] = content_hash(pack_container("portrait", meta, arrays, files))
    return pack_container("portrait", meta, arrays, files)


def bundle_id(bundle: bytes) -> str:
    """The id a portrait bundle names itself by (``meta["id"]``), which its keyframes carry."""
    index, _, _ = unpack_container(bundle)
    return str(index["meta"]["id"])


# --------------------------------------------------------------------------- keyframes


KEYFRAME_WEBP_QUALITY = 95
"""WebP quality of the keyframe patches a page gets. Lossless, a call's 16 mouth pictures, eyes and a turned
face came to 154-290 kB per page on three held-out clips (1.5-3 minutes at 16 kbps, several times the call's own
lossy pictures; a turned face with its mouth even outgrew a picture message); at 95 the patches are about 4x
smaller, and the page against the Python renderer (which samples the exact patches) keeps mouth SSIM 0.998 on the
sample test (lossless 0.9996)."""

KEYFRAME_GUTTER = 2
"""Texels each keyframe patch image is padded by (its edge repeated), so a page can place it in its
texture as it is: bilinear sampling at a patch's edge then reads only its own texels, as in the warp's
atlas (:data:`codec.render.texture.GUTTER`)."""


def keyframe_bundle(renderer: "Renderer", keyframe: "Keyframe", portrait: str, index: int = 0) -> bytes | None:
    """What the renderer's warp takes from one keyframe, for a page that renders with that renderer's bundle.

    The patches are made by :meth:`codec.render.warp.GeometricWarp.keyframe_patches`, the same
    code the Python renderer runs (sharpened to match the portrait, the eyes' colour matched to
    it), so a page only places them in its texture and picks among them per frame as
    :meth:`~codec.render.warp.GeometricWarp.geometry` does. Only what the warp uses
    travels: the box of the mouth's lips and the skin around them (every keyframe lends its lips;
    one open enough also its interior), each closed eye's box, the face of a turn picture
    (:meth:`~codec.render.warp.GeometricWarp.turn_patch`). With ``keyframe_lips`` off the warp
    takes only an interior from a mouth, so a mouth that lends none does not travel; a keyframe the
    warp then takes nothing from is not sent.

    Container kind ``"keyframe"``: meta ``{"portrait": the bundle's id (:func:`bundle_id`), "index", "kind",
    "gutter", "mouth": {"shape": [opening, width], "patch": "mouth", "interior": bool, "rotation": [9]} | null,
    "eyes": [{"eye", "patch", "centre", "axes"}], "turn": {"yaw", "tilt": [pitch, roll], "patch": "face"} | null}``;
    arrays ``mouth.rim`` ``[20, 2]``, ``mouth.centre`` ``[2]``, ``mouth.lips`` ``[N, 2]`` (the portrait
    bundle's ``warp.lip_region`` landmarks), ``eye<k>.anchors``, ``turn.sources`` ``[M, 2]`` (where the
    portrait bundle's ``warp.turn_vertices`` sample in the face), ``turn.lift`` ``[2, 7, 2]`` (the upper
    lids' lifts) (patch texels, relative to the first texel inside the gutter); files: one WebP per patch
    (RGB; the patches are opaque; :data:`KEYFRAME_WEBP_QUALITY`).

    Args:
        renderer: the warp renderer whose :func:`portrait_bundle` the page holds.
        keyframe: a picture of the portrait's own face.
        portrait: :func:`bundle_id` of that bundle: a page uses the keyframe only with it.
        index: the keyframe's place among the call's keyframes (those the warp takes nothing from
            count too): a page keeps the newest :data:`~codec.render.warp.MAX_KEYFRAMES`, as the warp does.
    Returns:
        the container's bytes, or None when the warp takes nothing from this keyframe.
    """
    warp = renderer.warp
    taken = warp.keyframe_patches(keyframe)
    if taken.mouth is not None and not taken.mouth.interior and not warp.config.keyframe_lips:
        taken.patches.pop("mouth", None)
        taken.mouth = None
    turn = warp.turn_patch(keyframe)
    if turn is not None:
        taken.patches[turn[1].patch] = turn[0]
    if not taken.patches:
        return None
    g = KEYFRAME_GUTTER
    files = {}
    for name, texels in taken.patches.items():
        rgb = cv2.copyMakeBorder(np.round(np.clip(texels[..., :3], 0, 1) * 255).astype(np.uint8), g, g, g, g,
                                 cv2.BORDER_REPLICATE)
        files[name] = ("image/webp", _webp_lossy(rgb, KEYFRAME_WEBP_QUALITY))
    arrays: dict[str, np.ndarray] = {}
    mouth = None
    if taken.mouth is not None:
        # The head's rotation in the keyframe (row-major), for a mouth distance that counts the pose.
        mouth = {"shape": [float(x) for x in taken.mouth.shape], "patch": taken.mouth.patch,
                 "interior": taken.mouth.interior, "rotation": [float(x) for x in taken.mouth.rotation.ravel()]}
        arrays["mouth.rim"] = taken.mouth.rim.astype(np.float64)
        arrays["mouth.centre"] = taken.mouth.centre.astype(np.float64)
        # float32: a hundred-thousandth of a texel off, for half the bytes of float64.
        arrays["mouth.lips"] = taken.mouth.lips.astype(np.float32)
    eyes = []
    for e in taken.eyes:
        eyes.append({"eye": e.eye, "patch": e.patch, "centre": [float(x) for x in e.centre],
                     "axes": [float(x) for x in e.axes]})
        arrays[f"eye{e.eye}.anchors"] = e.anchors.astype(np.float64)
    face = None
    if turn is not None:
        t = turn[1]
        face = {"yaw": t.yaw, "tilt": [float(x) for x in t.tilt], "patch": t.patch}
        arrays["turn.sources"] = t.sources[warp.turn_vertices].astype(np.float32)
        arrays["turn.lift"] = t.lift.astype(np.float32)
    meta = {"portrait": portrait, "index": index, "kind": keyframe.kind, "gutter": g, "mouth": mouth, "eyes": eyes,
            "turn": face}
    return pack_container("keyframe", meta, arrays, files)
