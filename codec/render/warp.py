"""The geometric rendering stage: warp the portrait onto target landmarks.

Every output pixel looks up where it came from in the portrait (a dense
backward flow) and samples it there with ``grid_sample``:

1. the target frame's mesh vertices follow from the target landmarks
   (:meth:`GeometricWarp.target_vertices`): the landmarks as given, centres
   of the openings, iris rings, and the rings around the face moved with the
   head's 3D rigid motion, fading to its mere translation further out;
2. the mesh is rasterized at the output size (:mod:`codec.render.raster`):
   each pixel gets its source position by the barycentric coordinates of the
   target triangle it falls in;
3. the portrait and its person mask are sampled there (``grid_sample``, torch,
   on any device) and the person is laid over a still background plate
   (:mod:`codec.render.composite`);
4. where the target mouth opens wider than the portrait's, the opening is
   shaded as a dark mouth interior instead of stretched lips.

Steps 1 and 2 run on the CPU (about 5 ms a frame at 512x512); everything that
depends on the portrait alone is computed once in :class:`GeometricWarp`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from codec import regions as R
from codec.motion import load_template, motion_from_landmarks
from codec.render.composite import background_plate, denoise_portrait, person_alpha
from codec.render.mesh import EYE, MOUTH, OUTSIDE, MeshConfig, PortraitMesh, build_mesh
from codec.render.raster import rasterize_batch


@dataclass(frozen=True)
class WarpConfig:
    """Settings of the geometric stage.

    Attributes:
        mesh: layout of the rings around the face.
        hole_depth: how far behind the surrounding skin the eye and mouth
            openings lie, in inter-ocular distances (so lids and lips cover them).
        mouth_edge, mouth_deep: colour of the mouth interior at the lips and at
            its centre, as fractions of the portrait's lip colour.
        layered: cut the person out of the portrait (MediaPipe selfie
            segmentation) and warp it over a still background plate, the
            portrait with the person filled in; otherwise the background near
            the head bends with the head's motion.
        body_follow: share of the head's translation the body (shoulders, chest) follows.
        denoise: smooth the portrait's sensor and compression noise (an
            edge-preserving bilateral filter) before warping: one frame's noise
            would otherwise be frozen onto every rendered frame.
    """

    mesh: MeshConfig = field(default_factory=MeshConfig)
    hole_depth: float = 0.1
    mouth_edge: float = 0.45
    mouth_deep: float = 0.12
    layered: bool = True
    body_follow: float = 0.8
    denoise: bool = True


def _similarity_2d(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 2D similarity ``dst ≈ a · src + b`` in complex form.

    Args:
        src: ``[N, 2]``; dst: ``[B, N, 2]``.
    Returns:
        ``a [B]`` complex (scale and rotation), ``b [B]`` complex (translation).
    """
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[..., 0] + 1j * dst[..., 1]
    ms, md = zs.mean(), zd.mean(-1)
    a = ((zd - md[:, None]) * np.conj(zs - ms)).sum(-1) / (np.abs(zs - ms) ** 2).sum()
    return a, md - a * ms


def _polygon_area(pts: np.ndarray) -> np.ndarray:
    """Areas of polygons ``[..., M, 2]`` -> ``[...]``."""
    x, y = pts[..., 0], pts[..., 1]
    return np.abs((x * np.roll(y, -1, -1) - y * np.roll(x, -1, -1)).sum(-1)) / 2


@dataclass
class WarpResult:
    """Warped frames and the maps that made them (all on the device).

    Attributes:
        frames: ``[B, 3, H, W]`` RGB in [0, 1].
        grid: ``[B, H, W, 2]`` where each pixel sampled the portrait (``grid_sample`` coordinates).
        raster: ``[B, 3, H, W]`` from the rasterizer: mouth-opening coverage, depth
            into the mouth, eye-opening coverage.
        alpha: ``[B, 1, H, W]`` the person's alpha.
        newness: ``[B, 1, 1, 1]`` share of the mouth opening the portrait had no interior for.
    """

    frames: torch.Tensor
    grid: torch.Tensor
    raster: torch.Tensor
    alpha: torch.Tensor
    newness: torch.Tensor

    @property
    def regions(self) -> torch.Tensor:
        """``[B, 4, H, W]``: shaded mouth interior (coverage times newness), depth
        into the mouth, eye-opening coverage, person alpha."""
        return torch.cat([self.raster[:, :1] * self.newness, self.raster[:, 1:], self.alpha], 1)


class GeometricWarp:
    """Warps one portrait to target landmarks.

    Example:
        >>> warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
        >>> frames = warp(targets)            # [B, 3, H, W] float in [0, 1]
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, device: torch.device,
                 config: WarpConfig = WarpConfig()) -> None:
        """
        Args:
            image: ``[H, H, 3]`` uint8 RGB portrait.
            landmarks: ``[478, 3]`` its landmarks in its pixels.
            device: where the sampling runs.
            config: settings.
        """
        if image.ndim != 3 or image.shape[0] != image.shape[1]:
            raise ValueError(f"the portrait must be square, got {image.shape}")
        if config.denoise:
            image = denoise_portrait(image)
        self.config = config
        self.device = device
        self.size = int(image.shape[0])
        self.landmarks = np.asarray(landmarks, np.float32)
        self.mesh: PortraitMesh = build_mesh(self.landmarks, self.size, config.mesh)
        self._stable = load_template().stable
        self._state = motion_from_landmarks(self.landmarks.astype(np.float64))
        oval = self.landmarks[R.FACE_OVAL].astype(np.float64)
        self._ring_depth = float(oval[:, 2].mean())
        self._head_centre = oval.mean(0)
        iod = float(R.inter_ocular(self.landmarks))
        bias = np.zeros(len(self.mesh.triangles), np.float64)
        bias[(self.mesh.kind == EYE) | (self.mesh.kind == MOUTH)] = config.hole_depth * iod
        bias[self.mesh.kind == OUTSIDE] = 1e6  # hair and background lie behind the face
        self._bias = bias
        self._source_xy = np.ascontiguousarray(self.mesh.vertices[:, :2])  # the rasterizer's inner loop reads it
        self._mouth_area = float(_polygon_area(self.landmarks[R.LIPS_INNER, :2]))

        # RGB and the person's alpha, sampled together.
        alpha = person_alpha(image, self.landmarks) if config.layered else np.ones(image.shape[:2], np.float32)
        rgba = np.concatenate([image.astype(np.float32) / 255, alpha[..., None]], -1)
        self.image = torch.from_numpy(rgba).to(device).permute(2, 0, 1)[None].contiguous()
        self.background = None
        if config.layered:
            plate = background_plate(image, alpha).astype(np.float32) / 255
            self.background = torch.from_numpy(plate).to(device).permute(2, 0, 1)[None].contiguous()

        lips = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(lips, [np.round(self.landmarks[R.LIPS_OUTER, :2] - 0.5).astype(np.int32)], (1,))
        cv2.fillPoly(lips, [np.round(self.landmarks[R.LIPS_INNER, :2] - 0.5).astype(np.int32)], (0,))
        lip = image[lips > 0].mean(0) / 255 if lips.any() else np.array([0.6, 0.3, 0.3])
        colour = lambda k: torch.tensor(lip * k, dtype=torch.float32, device=device).view(1, 3, 1, 1)  # noqa: E731
        self._mouth_edge, self._mouth_deep = colour(config.mouth_edge), colour(config.mouth_deep)

    def target_vertices(self, target: np.ndarray) -> np.ndarray:
        """Positions of every mesh vertex in target frames.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            ``[B, V, 3]`` float32.
        """
        mesh = self.mesh
        tv = np.empty((target.shape[0], len(mesh.vertices), 3), np.float32)
        tv[:, :R.NUM_LANDMARKS] = target
        for vertex, contour in mesh.centres:
            tv[:, vertex] = target[:, contour].mean(1)
        a, _ = _similarity_2d(self.landmarks[self._stable, :2].astype(np.float64),
                              target[:, self._stable, :2].astype(np.float64))
        # Hair, ears and neck turn with the head in 3D: the rings sit at the depth of
        # the face's outline, so a turning head moves them less than its face.
        ring = mesh.vertices[mesh.ring_start:].astype(np.float64)
        ring[:, 2] = self._ring_depth
        moved = self._head_motion(target, ring)                       # [B, N, 2]
        # The body follows the head's translation (at the outline's centre), not its turns.
        body = self._head_motion(target, self._head_centre[None])[:, :1]  # [B, 1, 2]
        body *= self.config.body_follow if self.config.layered else 0.0
        f = mesh.ring_follow[None, :, None]
        tv[:, mesh.ring_start:, :2] = ring[:, :2] + f * moved + (1 - f) * body
        tv[:, mesh.ring_start:, 2] = 0.0
        for first, count, centre in mesh.irises:
            off = mesh.vertices[first:first + count, :2].astype(np.float64) - self.landmarks[centre, :2]
            off = a[:, None] * (off[:, 0] + 1j * off[:, 1])  # turned and scaled with the head
            tv[:, first:first + count, 0] = target[:, centre, None, 0] + off.real
            tv[:, first:first + count, 1] = target[:, centre, None, 1] + off.imag
            tv[:, first:first + count, 2] = target[:, centre, None, 2]
        return tv

    def _head_motion(self, target: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Displacement ``[B, N, 2]`` of portrait points ``[N, 3]`` moved rigidly with the head to each target."""
        st = motion_from_landmarks(target.astype(np.float64))
        src = self._state
        canon = np.einsum("ji,nj->ni", src.rotation, points - src.translation) / src.scale
        moved = st.scale[:, None, None] * np.einsum("bij,nj->bni", st.rotation, canon) + st.translation[:, None]
        return moved[..., :2] - points[None, :, :2]

    def mouth_newness(self, target: np.ndarray) -> np.ndarray:
        """Share of each target mouth opening the portrait has no interior for.

        Args:
            target: ``[B, 478, 3]``.
        Returns:
            ``[B]`` in [0, 1]: 0 where the portrait's mouth is open as wide (after
            the head's change of scale), towards 1 as the target opens wider.
        """
        scale2 = (R.inter_ocular(target) / R.inter_ocular(self.landmarks)) ** 2
        area = _polygon_area(target[:, R.LIPS_INNER, :2])
        return np.clip(1 - self._mouth_area * scale2 / np.maximum(area, 1e-6), 0.0, 1.0).astype(np.float32)

    def flow(self, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling grid and region maps of target frames.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            grid ``[B, H, W, 2]``: where each output pixel samples the portrait, in
            ``grid_sample``'s coordinates; regions ``[B, 3, H, W]``: coverage of the
            mouth opening, depth into it (0 at the lips, 1 at its centre), and
            coverage of the eye openings; both float32 on the device.
        """
        target = np.asarray(target, np.float32)
        grid, regions = rasterize_batch(self.target_vertices(target), self._source_xy,
                                         self.mesh.triangles, self._bias, self.mesh.kind, self.size)
        return torch.from_numpy(grid).to(self.device), torch.from_numpy(regions).to(self.device)

    @torch.inference_mode()
    def warp(self, target: np.ndarray) -> WarpResult:
        """Renders target frames, keeping what the neural stage reads.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            the :class:`WarpResult`.
        """
        target = np.asarray(target, np.float32)
        grid, regions = self.flow(target)
        sampled = F.grid_sample(self.image.expand(len(target), -1, -1, -1), grid, mode="bilinear",
                                padding_mode="border", align_corners=False)
        frames, alpha = sampled[:, :3], sampled[:, 3:]
        if self.background is not None:
            frames = torch.lerp(self.background, frames, alpha)
        newness = torch.from_numpy(self.mouth_newness(target)).to(self.device).view(-1, 1, 1, 1)
        if newness.max() > 0:
            # Only the box around the target mouths can change: composite there.
            lips = target[:, R.LIPS_OUTER, :2]
            x0, y0 = np.clip(np.floor(lips.min((0, 1))).astype(int) - 2, 0, self.size)
            x1, y1 = np.clip(np.ceil(lips.max((0, 1))).astype(int) + 2, 0, self.size)
            box = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
            shade = torch.lerp(self._mouth_edge, self._mouth_deep, regions[:, 1:2][box].clamp(0, 1))
            frames[box] = torch.lerp(frames[box], shade, regions[:, :1][box].clamp(0, 1) * newness)
        return WarpResult(frames, grid, regions, alpha, newness)

    def __call__(self, target: np.ndarray) -> torch.Tensor:
        """Renders target frames.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            ``[B, 3, H, W]`` float32 RGB in [0, 1] on the device.
        """
        return self.warp(target).frames
