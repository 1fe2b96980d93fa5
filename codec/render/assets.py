"""What the device renderer keeps of a portrait: plain arrays, prepared once on the CPU.

Preparing a portrait (denoising, the person's segmentation, the background plate, the mesh) needs
OpenCV, MediaPipe and SciPy and is done once per call by :class:`codec.render.warp.GeometricWarp`.
:class:`PortraitAssets` is its result as arrays: a GPU server (:mod:`codec.render.batch`) renders every
frame from them alone, and they can be written to a file and rendered on a machine without MediaPipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from codec.render.mesh import PortraitMesh
from codec.render.warp import EYE_ANCHORS, GeometricWarp

EYE_BOX = 8
"""Numbers that place a keyframe's closed eye (:attr:`PortraitAssets.eye_box`)."""

# Images inside a file: as they are, lossless (PNG, WebP), or small (WebP at quality 95).
IMAGE_CODECS = ("raw", "png", "webp-lossless", "webp")


@dataclass(frozen=True)
class PortraitAssets:
    """One prepared portrait.

    Attributes:
        texture: ``[Ht, Wt, 4]`` float32 RGB and the person's alpha, as the warp samples them: the
            (denoised) portrait padded by ``margin`` on every side, patches below it
            (:mod:`codec.render.texture`).
        margin: the portrait's offset in ``texture``.
        background: ``[H, H, 3]`` uint8 the background plate, or None (not layered).
        landmarks: ``[478, 3]`` float32 the portrait's landmarks in its pixels.
        mesh: the portrait's :class:`codec.render.mesh.PortraitMesh`.
        bias: ``[F]`` float64 depth added per triangle.
        sources: ``[V, 2]`` float32 where each vertex samples before the per-frame changes (the
            portrait's pixels; patches lie outside it).
        mouths: ``[K, 2 + 21 * 2 + N * 2 + 1]`` float64 the pictures a mouth's interior and lips can come
            from, first the portrait's own: canonical opening and width, the fan's rim (20) and centre
            sources, the lip region's N sources (:func:`codec.render.mesh.lip_region`), and 1 where it lends
            its interior.
        drawn: ``[21, 2]`` float32 the fan's sources in the drawn interior (rim, then centre).
        teeth_u: ``[2, 11]`` float64 where each teeth strip vertex lies across the mouth (0 to 1).
        lid_lift: ``[2, 7, 2]`` float64 how far each upper lid's margin samples upwards when closed.
        blink: ``[2]`` float64 the portrait's lid openings.
        body_follow: share of the head's translation the body follows (0 when not layered).
        turn_yaw: ``[K]`` float64 the turn pictures' head turns from the portrait, degrees
            (:mod:`codec.render.turns`).
        turn_tilt: ``[K, 2]`` float64 their pitch and roll from the portrait, degrees.
        turn_sources: ``[K, V, 2]`` float32 where each vertex samples in each turn picture (NaN: as in the
            first render).
        turn_lift: ``[K, 2, 7, 2]`` float64 ``lid_lift`` in each turn picture.
        eye_anchors: ``[2, 9, 2]`` float64 per eye, a keyframe's closed eye's corners and lower lid in its
            patch's texels (NaN: no closed eye to blend in).
        eye_box: ``[2, 8]`` float64 per eye: the blended ellipse's centre and axes (patch texels), the patch's
            position and size in the texture.
        keyframe_lips: keyframes' lips are laid over the frame (:attr:`codec.render.warp.WarpConfig.keyframe_lips`).
        mouth_rotation: ``[K, 3, 3]`` float64 the head's rotation in each of ``mouths``' pictures (files written
            before it have none: then all are taken as the portrait's, and the lips' picture is chosen by
            shape alone).
        ring_oval: ``[K]`` int64 and ``ring_push`` ``[K, 2]`` float64: how the rings around the face are pushed
            out where its outline moves out past them (:func:`codec.render.mesh.ring_outline`; files written
            before have neither: not pushed).
    """

    texture: np.ndarray
    margin: int
    background: np.ndarray | None
    landmarks: np.ndarray
    mesh: PortraitMesh
    bias: np.ndarray
    sources: np.ndarray
    mouths: np.ndarray
    drawn: np.ndarray
    teeth_u: np.ndarray
    lid_lift: np.ndarray
    blink: np.ndarray
    body_follow: float
    turn_yaw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    turn_tilt: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    turn_sources: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), np.float32))
    turn_lift: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 7, 2)))
    eye_anchors: np.ndarray = field(default_factory=lambda: np.full((2, len(EYE_ANCHORS[0]), 2), np.nan))
    eye_box: np.ndarray = field(default_factory=lambda: np.full((2, EYE_BOX), np.nan))
    keyframe_lips: bool = True
    mouth_rotation: np.ndarray | None = None
    ring_oval: np.ndarray | None = None
    ring_push: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.texture.shape[1]) - 2 * self.margin

    @property
    def image(self) -> np.ndarray:
        """``[H, H, 3]`` uint8 the portrait as the warp samples it (denoised when the warp denoises)."""
        m, s = self.margin, self.size
        return np.round(np.clip(self.texture[m:m + s, m:m + s, :3], 0, 1) * 255).astype(np.uint8)

    @property
    def alpha(self) -> np.ndarray:
        """``[H, H]`` float32 the person's alpha (all ones when not layered)."""
        m, s = self.margin, self.size
        return np.ascontiguousarray(self.texture[m:m + s, m:m + s, 3])

    @staticmethod
    def from_warp(warp: GeometricWarp) -> PortraitAssets:
        """The assets of a prepared CPU warp (its tensors are read back, exactly), with what it takes from its
        keyframes: mouths, turned faces, and the closed eye each eye would blend in."""
        background = None
        if warp.background is not None:
            background = np.round(np.clip(warp.background[0].detach().cpu().permute(1, 2, 0).numpy(), 0, 1)
                                  * 255).astype(np.uint8)
        mouths = []
        for p in warp.mouth_pictures():
            origin = 0.0 if p.patch is None else warp.atlas.patches[p.patch].origin(warp.atlas.margin)
            mouths.append(np.concatenate([p.shape, (p.rim + origin).ravel(), p.centre + origin,
                                          (p.lips + origin).ravel(), [float(p.interior)]]))
        turned = warp.turn_pictures()
        anchors, box = np.full((2, len(EYE_ANCHORS[0]), 2), np.nan), np.full((2, EYE_BOX), np.nan)
        for eye in (0, 1):
            pic = warp.eye_picture(eye)
            if pic is not None:
                patch = warp.atlas.patches[pic.patch]
                anchors[eye] = pic.anchors
                box[eye] = [*pic.centre, *pic.axes, patch.x, patch.y, patch.texels.shape[1], patch.texels.shape[0]]
        return PortraitAssets(
            texture=np.ascontiguousarray(warp.texture[0].detach().cpu().permute(1, 2, 0).numpy(), np.float32),
            margin=warp.atlas.margin, background=background, landmarks=warp.landmarks.astype(np.float32),
            mesh=warp.mesh, bias=np.asarray(warp._bias, np.float64),
            sources=np.asarray(warp.base_sources, np.float32), mouths=np.stack(mouths).astype(np.float64),
            drawn=np.concatenate([warp.drawn_rim, warp.drawn_centre[None]]).astype(np.float32),
            teeth_u=np.stack(warp.teeth_u).astype(np.float64),
            lid_lift=np.stack([lift for _, lift in warp.lids]).astype(np.float64),
            blink=np.asarray(warp.portrait_state.blink, np.float64),
            body_follow=float(warp.config.body_follow if warp.config.layered else 0.0),
            turn_yaw=np.array([t.yaw for t, _ in turned], np.float64),
            turn_tilt=np.array([t.tilt for t, _ in turned], np.float64).reshape(-1, 2),
            turn_sources=(np.stack([src for _, src in turned]) if turned
                          else np.zeros((0, len(warp.mesh.vertices), 2), np.float32)),
            turn_lift=np.stack([t.lift for t, _ in turned]) if turned else np.zeros((0, 2, 7, 2)),
            eye_anchors=anchors, eye_box=box,
            keyframe_lips=warp.config.keyframe_lips,
            mouth_rotation=np.stack([p.rotation for p in warp.mouth_pictures()]).astype(np.float64),
            ring_oval=warp.ring_oval.astype(np.int64), ring_push=warp.ring_push.astype(np.float64))

    def to_arrays(self, prefix: str = "", codec: str = "png") -> dict[str, np.ndarray]:
        """The assets as named arrays (for ``np.savez``), images encoded with ``codec`` (see :data:`IMAGE_CODECS`).

        ``png`` keeps the texture to 16 bits; ``webp`` is lossy (quality 95): for training data, not for
        checking agreement. The alpha is always kept to 16 bits (PNG).
        """
        m = self.mesh
        rgb, alpha = self.texture[..., :3], self.texture[..., 3]
        to16 = lambda x: np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)  # noqa: E731
        if codec == "raw":
            texture, texture_alpha = rgb, alpha
        else:  # the alpha apart: a lossy codec may drop the colour under a transparent alpha
            texture = encode_image(to16(rgb) if codec == "png" else np.round(np.clip(rgb, 0, 1) * 255).astype(
                np.uint8), codec)
            texture_alpha = encode_image(to16(alpha), "png")
        out = {
            "texture": texture, "texture_alpha": texture_alpha, "margin": np.array(self.margin, np.int64),
            "landmarks": self.landmarks, "vertices": m.vertices, "triangles": m.triangles, "kind": m.kind,
            "centres": _pack_centres(m.centres), "irises": np.array(m.irises, np.int64).reshape(-1, 3),
            "ring": np.array([m.ring_start, m.mouth_centre], np.int64), "ring_follow": m.ring_follow,
            "copies": _pack_centres(m.copies),
            "teeth": np.array([[first, sign, *contour] for first, contour, sign in m.teeth], np.int64),
            "lids": np.array([[margin, above] for margin, above in m.lids], np.int64),
            "bias": self.bias, "sources": self.sources, "mouths": self.mouths, "drawn": self.drawn,
            "teeth_u": self.teeth_u, "lid_lift": self.lid_lift, "blink": self.blink,
            "body_follow": np.array(self.body_follow, np.float64),
            "turn_yaw": self.turn_yaw, "turn_tilt": self.turn_tilt, "turn_sources": self.turn_sources,
            "turn_lift": self.turn_lift,
            "eye_anchors": self.eye_anchors, "eye_box": self.eye_box,
            "keyframe_lips": np.array(self.keyframe_lips),
        }
        if self.mouth_rotation is not None:
            out["mouth_rotation"] = self.mouth_rotation
        if self.ring_oval is not None and self.ring_push is not None:
            out["ring_oval"], out["ring_push"] = self.ring_oval, self.ring_push
        if self.background is not None:
            out["background"] = encode_image(self.background, codec)
        return {prefix + k: v for k, v in out.items()}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str = "") -> PortraitAssets:
        """Inverse of :meth:`to_arrays`."""
        a = lambda k: arrays[prefix + k]  # noqa: E731
        ring_start, mouth_centre = (int(v) for v in a("ring"))
        teeth = tuple((int(row[0]), row[2:].astype(np.int64), int(row[1])) for row in a("teeth"))
        mesh = PortraitMesh(vertices=a("vertices"), triangles=a("triangles"), kind=a("kind"),
                            mouth_centre=mouth_centre, centres=_unpack_centres(a("centres")),
                            irises=tuple(tuple(int(v) for v in row) for row in a("irises")),  # type: ignore[misc]
                            ring_start=ring_start, ring_follow=a("ring_follow"),
                            copies=_unpack_centres(a("copies")), teeth=teeth,
                            lids=tuple((row[0], row[1]) for row in a("lids")))
        def unit(x: np.ndarray) -> np.ndarray:
            if x.dtype == np.float32:
                return x
            x = decode_image(x)
            return x.astype(np.float32) / np.float32(65535 if x.dtype == np.uint16 else 255)

        texture = np.concatenate([unit(a("texture")), unit(a("texture_alpha"))[..., None]], -1)
        background = decode_image(a("background")) if prefix + "background" in arrays else None
        # Files written before turn pictures and device eye blends have neither.
        extra = {k: a(k) for k in ("turn_yaw", "turn_tilt", "turn_sources", "turn_lift", "eye_anchors", "eye_box",
                                   "mouth_rotation", "ring_oval", "ring_push") if prefix + k in arrays}
        return PortraitAssets(texture=texture, margin=int(a("margin")), background=background,
                              landmarks=a("landmarks"), mesh=mesh, bias=a("bias"), sources=a("sources"),
                              mouths=a("mouths"), drawn=a("drawn"), teeth_u=a("teeth_u"), lid_lift=a("lid_lift"),
                              blink=a("blink"), body_follow=float(a("body_follow")),
                              keyframe_lips=bool(a("keyframe_lips")) if prefix + "keyframe_lips" in arrays else True,
                              **extra)


def _pack_centres(centres: tuple[tuple[int, np.ndarray], ...]) -> np.ndarray:
    """``[N, 1 + L]`` int64: each centre's vertex, then its contour padded with -1."""
    width = max((len(c) for _, c in centres), default=0)
    out = np.full((len(centres), 1 + width), -1, np.int64)
    for i, (vertex, contour) in enumerate(centres):
        out[i, 0] = vertex
        out[i, 1:1 + len(contour)] = contour
    return out


def _unpack_centres(packed: np.ndarray) -> tuple[tuple[int, np.ndarray], ...]:
    return tuple((int(row[0]), row[1:][row[1:] >= 0].astype(np.int64)) for row in packed)


def encode_image(image: np.ndarray, codec: str) -> np.ndarray:
    """``image`` (``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA, uint8 or uint16 for PNG, or ``[H, W]`` grey) as a
    1-D uint8 array of encoded bytes, or itself for ``raw`` (see :data:`IMAGE_CODECS`)."""
    if codec == "raw":
        return image
    if codec not in IMAGE_CODECS:
        raise ValueError(f"unknown image codec {codec!r}; choose from {', '.join(IMAGE_CODECS)}")
    img = image
    if image.ndim == 3:  # OpenCV's channel order: BGR(A)
        img = np.concatenate([image[..., 2::-1], image[..., 3:]], -1)
    ext, params = {"png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 6]),
                   "webp-lossless": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                   "webp": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 95])}[codec]
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise ValueError(f"could not encode an image as {codec}")
    return buf.reshape(-1)


def decode_image(data: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_image` (raw images come back as they are)."""
    if data.ndim > 1:
        return data
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("could not decode an image")
    if img.ndim == 3:  # back from BGR(A)
        img = np.concatenate([img[..., 2::-1], img[..., 3:]], -1)
    return np.ascontiguousarray(img)


def pack_images(images: list[np.ndarray] | np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray]:
    """Images encoded one after another: ``(bytes [N], offsets [count + 1])`` int64 offsets."""
    blobs = [encode_image(np.ascontiguousarray(im), codec).reshape(-1).view(np.uint8) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), offsets


def unpack_images(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pack_images` (encoded images only, not ``raw``)."""
    return [decode_image(data[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
