"""What the device renderer keeps of a portrait: plain arrays, prepared once on the CPU.

Preparing a portrait (denoising, the person's segmentation, the background plate, the mesh) needs
OpenCV, MediaPipe and SciPy and is done once per call by :class:`codec.render.warp.GeometricWarp`.
:class:`PortraitAssets` is its result as arrays: a GPU server (:mod:`codec.render.batch`) renders every
frame from them alone, and they can be written to a file and rendered on a machine without MediaPipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from codec.render.mesh import PortraitMesh
from codec.render.warp import GeometricWarp

# Images inside a file: as they are, lossless (PNG, WebP), or small (WebP at quality 95).
IMAGE_CODECS = ("raw", "png", "webp-lossless", "webp")


@dataclass(frozen=True)
class PortraitAssets:
    """One prepared portrait.

    Attributes:
        image: ``[H, H, 3]`` uint8 RGB, as the warp samples it (denoised when the warp denoises).
        alpha: ``[H, H]`` float32 the person's alpha (all ones when not layered).
        background: ``[H, H, 3]`` uint8 the background plate, or None (not layered).
        landmarks: ``[478, 3]`` float32 the portrait's landmarks in its pixels.
        mesh: the portrait's :class:`codec.render.mesh.PortraitMesh`.
        bias: ``[F]`` float64 depth added per triangle.
        mouth_edge, mouth_deep: ``[3]`` float32 RGB of the mouth interior at the lips and at its centre.
        body_follow: share of the head's translation the body follows (0 when not layered).
    """

    image: np.ndarray
    alpha: np.ndarray
    background: np.ndarray | None
    landmarks: np.ndarray
    mesh: PortraitMesh
    bias: np.ndarray
    mouth_edge: np.ndarray
    mouth_deep: np.ndarray
    body_follow: float

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @staticmethod
    def from_warp(warp: GeometricWarp) -> PortraitAssets:
        """The assets of a prepared CPU warp (its tensors are read back, exactly)."""
        rgba = warp.image[0].detach().cpu().permute(1, 2, 0).numpy()
        to_u8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
        background = None
        if warp.background is not None:
            background = to_u8(warp.background[0].detach().cpu().permute(1, 2, 0).numpy())
        return PortraitAssets(
            image=to_u8(rgba[..., :3]), alpha=np.ascontiguousarray(rgba[..., 3], np.float32),
            background=background, landmarks=warp.landmarks.astype(np.float32), mesh=warp.mesh,
            bias=np.asarray(warp._bias, np.float64),
            mouth_edge=warp._mouth_edge.detach().cpu().view(3).numpy().astype(np.float32),
            mouth_deep=warp._mouth_deep.detach().cpu().view(3).numpy().astype(np.float32),
            body_follow=float(warp.config.body_follow if warp.config.layered else 0.0))

    def to_arrays(self, prefix: str = "", codec: str = "png") -> dict[str, np.ndarray]:
        """The assets as named arrays (for ``np.savez``), images encoded with ``codec`` (see :data:`IMAGE_CODECS`).

        ``webp`` is lossy (quality 95): for training data, not for checking agreement.
        """
        m = self.mesh
        out = {
            "image": encode_image(self.image, codec),
            "alpha": self.alpha if codec == "raw" else encode_image(np.round(self.alpha * 65535).astype(np.uint16),
                                                                    "png"),
            "landmarks": self.landmarks, "vertices": m.vertices, "triangles": m.triangles, "kind": m.kind,
            "centres": _pack_centres(m.centres), "irises": np.array(m.irises, np.int64).reshape(-1, 3),
            "ring": np.array([m.ring_start, m.mouth_centre], np.int64), "ring_follow": m.ring_follow,
            "bias": self.bias, "mouth": np.stack([self.mouth_edge, self.mouth_deep]),
            "body_follow": np.array(self.body_follow, np.float64),
        }
        if self.background is not None:
            out["background"] = encode_image(self.background, codec)
        return {prefix + k: v for k, v in out.items()}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str = "") -> PortraitAssets:
        """Inverse of :meth:`to_arrays`."""
        a = lambda k: arrays[prefix + k]  # noqa: E731
        ring_start, mouth_centre = (int(v) for v in a("ring"))
        mesh = PortraitMesh(vertices=a("vertices"), triangles=a("triangles"), kind=a("kind"),
                            mouth_centre=mouth_centre, centres=_unpack_centres(a("centres")),
                            irises=tuple(tuple(int(v) for v in row) for row in a("irises")),  # type: ignore[misc]
                            ring_start=ring_start, ring_follow=a("ring_follow"))
        alpha = a("alpha")
        if alpha.dtype != np.float32:  # 16-bit PNG
            alpha = decode_image(alpha).astype(np.float32) / np.float32(65535)
        background = decode_image(a("background")) if prefix + "background" in arrays else None
        mouth = a("mouth")
        return PortraitAssets(image=decode_image(a("image")), alpha=alpha, background=background,
                              landmarks=a("landmarks"), mesh=mesh, bias=a("bias"), mouth_edge=mouth[0],
                              mouth_deep=mouth[1], body_follow=float(a("body_follow")))


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
    """``image`` (``[H, W, 3]`` uint8 RGB or ``[H, W]`` uint16 grey) as a 1-D uint8 array of encoded bytes,
    or itself for ``raw`` (see :data:`IMAGE_CODECS`)."""
    if codec == "raw":
        return image
    if codec not in IMAGE_CODECS:
        raise ValueError(f"unknown image codec {codec!r}; choose from {', '.join(IMAGE_CODECS)}")
    img = image[..., ::-1] if image.ndim == 3 else image
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
    return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else img


def pack_images(images: list[np.ndarray] | np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray]:
    """Images encoded one after another: ``(bytes [N], offsets [count + 1])`` int64 offsets."""
    blobs = [encode_image(np.ascontiguousarray(im), codec).reshape(-1).view(np.uint8) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), offsets


def unpack_images(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pack_images` (encoded images only, not ``raw``)."""
    return [decode_image(data[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
