"""The geometric warp of many portraits at once, entirely on one torch device.

A GPU serves many calls: each tick, every call's next frame (its own portrait, its own target
landmarks) is rendered in one batch. :class:`BatchRenderer` holds the portraits' assets on the device
(:class:`codec.render.assets.PortraitAssets`, all meshes laid out alike, padded to the largest) and
renders frames ``[B, 3, H, W]`` from portrait indices ``[B]`` and target landmarks ``[B, 478, 3]``:

1. the target mesh vertices and where they sample (torch, float64, as
   :meth:`codec.render.warp.GeometricWarp.geometry`: the mouth's interior from the nearest-shaped picture
   or drawn, the teeth hanging from the inner lips, closing lids sampling the skin above them);
2. the mesh rasterized into a sampling grid and region maps (:mod:`codec.render.raster_torch`);
3. ``grid_sample`` of each portrait's texture, laid over its background plate;
4. the face of frames turned towards a turn keyframe rasterized again from that keyframe and mixed in by pose
   inside the face (:mod:`codec.render.turns`), a narrowed mouth darkened, where a keyframe's mouth is the
   nearest in shape (or the second nearest, cross-faded) its lips and the skin around them rasterized again
   from that keyframe's patch and laid over the frame, faded out over a ring of landmarks
   (:func:`codec.render.warp.lip_flow`), and a closing eye blended towards a keyframe's closed eye, all as the
   CPU warp does.

It computes what :class:`codec.render.warp.GeometricWarp` does with the numba rasterizer, to float rounding.
:class:`DeviceWarp` puts one portrait behind :class:`~codec.render.warp.GeometricWarp`'s interface, for
:class:`codec.render.pipeline.Renderer` on a GPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from codec import regions as R
from codec.motion import load_template, motion_from_landmarks
from codec.render import interior, turns
from codec.render.assets import PortraitAssets
from codec.render.keyframes import MOUTH_POSE_WEIGHT, MOUTH_WIDTH_WEIGHT
from codec.render.mesh import OUTSIDE, RING_POINTS, TEETH, lip_region
from codec.render.raster_torch import RasterConfig, rasterize
from codec.render.warp import (
    EYE_ANCHORS,
    EYE_BLEND,
    EYE_FEATHER,
    LEND_SHARE,
    LID_SPAN,
    LID_START,
    LIP_FADE,
    LIP_RINGS,
    MAX_KEYFRAMES,
    MIN_GAIN,
    NARROWING_FREE,
    NARROWING_GAIN,
    SHUT,
    GeometricWarp,
    WarpResult,
)

CENTRES = 3  # vertices at the centre of a contour: the mouth's, and an eye's whose iris lies outside its lids
IRISES = 2
TEETH_POINTS = 2 * 2 * 11  # two strips, each 11 vertices on an inner lip and 11 hanging from them
RIM = len(R.LIPS_INNER)  # the mouth fan's rim: copies of the inner lips
MOUTHS = 1 + MAX_KEYFRAMES  # pictures a mouth's interior and lips can come from: the portrait and its keyframes
TURNS = MAX_KEYFRAMES  # turn pictures a portrait can have
# Eye measures (codec.motion._eye_measures): the corners left and right in the image, the lids up and down.
EYE_POINTS = ((R.RIGHT_EYE_CORNERS[0], R.RIGHT_EYE_CORNERS[1], *R.RIGHT_EYE_LIDS),
              (R.LEFT_EYE_CORNERS[1], R.LEFT_EYE_CORNERS[0], *R.LEFT_EYE_LIDS))


@dataclass(frozen=True)
class BatchConfig:
    """Settings of the batch renderer.

    Attributes:
        raster: the torch rasterizer's chunking.
    """

    raster: RasterConfig = field(default_factory=RasterConfig)


def _polygon_area(pts: torch.Tensor) -> torch.Tensor:
    """Areas of polygons ``[..., M, 2]`` -> ``[...]``."""
    x, y = pts[..., 0], pts[..., 1]
    return (x * torch.roll(y, -1, -1) - y * torch.roll(x, -1, -1)).sum(-1).abs() / 2


def _inter_ocular(lm: torch.Tensor) -> torch.Tensor:
    """``[..., 478, 2+]`` -> ``[...]`` distance between the outer eye corners."""
    return (lm[..., R.RIGHT_EYE_CORNERS[0], :2] - lm[..., R.LEFT_EYE_CORNERS[0], :2]).norm(dim=-1)


def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares ``dst ≈ s · R · src + t`` (Umeyama), as :func:`codec.motion.similarity_fit`.

    Args:
        src: ``[N, 3]``; dst: ``[B, N, 3]``.
    Returns:
        ``R [B, 3, 3]``, ``t [B, 3]``, ``s [B]``.
    """
    mu_s, mu_d = src.mean(0), dst.mean(1)
    xs, xd = src - mu_s, dst - mu_d[:, None]
    cov = torch.einsum("bni,nj->bij", xd, xs) / src.shape[0]
    u, sig, vt = torch.linalg.svd(cov)
    fix = torch.ones_like(sig)
    fix[:, 2] = torch.sign(torch.linalg.det(u @ vt))
    rot = u @ (fix[:, :, None] * vt)
    s = (sig * fix).sum(-1) / ((xs**2).sum() / src.shape[0])
    t = mu_d - s[:, None] * (rot @ mu_s)
    return rot, t, s


class _Geometry(NamedTuple):
    """One batch's mesh (the shared layout) and what the steps after the first render need."""

    tv: torch.Tensor      # [B, V, 3] float64 target vertices
    sv: torch.Tensor      # [B, V, 2] float64 sources
    gain: torch.Tensor    # [B] the mouth interior's gain
    pose: torch.Tensor    # [B, 3] yaw, pitch, roll from the portrait, degrees
    closure: torch.Tensor  # [B, 2] each eye's closure against the portrait's
    lips: torch.Tensor    # [B, 2] the lips' pictures, nearest and second nearest (0: the portrait's own)
    lip_weight: torch.Tensor  # [B] the nearest's share
    lip_source: torch.Tensor  # [B, 2, N, 2] where the lip region samples in each


def turn_weights(target: torch.Tensor, pictures: torch.Tensor, target_tilt: torch.Tensor,
                 picture_tilt: torch.Tensor) -> torch.Tensor:
    """:func:`codec.render.turns.turn_weights` per frame: yaws ``[B]``, each frame's pictures' yaws ``[B, K]``
    (NaN: none), pitch and roll ``[B, 2]`` and ``[B, K, 2]`` -> ``[B, K]`` float64."""
    t, y = target.double()[:, None], pictures.double()
    same = torch.isfinite(y) & (torch.sign(y) == torch.sign(t)) & (t != 0)
    s, a = t.abs(), torch.where(same, y.abs(), torch.nan)
    below, above = same & (a <= s), same & (a > s)
    lo, lo_k = torch.where(below, a, -torch.inf).max(1)
    hi, hi_k = torch.where(above, a, torch.inf).min(1)
    has_lo, has_hi = torch.isfinite(lo), torch.isfinite(hi)
    base = torch.where(has_lo, lo, 0.0)
    u = (s[:, 0] - base) / torch.where(has_hi, hi - base, 1.0)
    x = ((u - turns.BLEND[0]) / (turns.BLEND[1] - turns.BLEND[0])).clamp(0.0, 1.0)
    w_hi = torch.where(has_hi, x * x * (3 - 2 * x), 0.0)
    out = torch.zeros_like(y)
    rows = torch.arange(len(t), device=t.device)
    out[rows[has_lo], lo_k[has_lo]] += (1.0 - w_hi)[has_lo]
    out[rows[has_hi], hi_k[has_hi]] += w_hi[has_hi]
    d = target_tilt.double()[:, None] - picture_tilt.double()
    x = ((torch.hypot(d[..., 0], d[..., 1]) - turns.TILT_FREE) / turns.TILT_SPAN).clamp(0.0, 1.0)
    out = out * (1.0 - x * x * (3 - 2 * x))
    return torch.where(out >= turns.MIN_WEIGHT, out, 0.0)


class BatchRenderer:
    """Renders frames of many portraits on one device.

    Example:
        >>> r = BatchRenderer([assets_a, assets_b], torch.device("cuda"))
        >>> frames = r(torch.tensor([0, 1, 1]), targets)   # targets [3, 478, 3] -> [3, 3, H, W]
    """

    def __init__(self, assets: Sequence[PortraitAssets], device: torch.device,
                 config: BatchConfig = BatchConfig()) -> None:
        """
        Args:
            assets: the portraits, all of one size and mesh layout.
            device: where everything runs.
            config: settings.
        Raises:
            ValueError: no portraits, or portraits of different sizes or ring layouts.
        """
        if not assets:
            raise ValueError("BatchRenderer needs at least one portrait")
        self.config, self.device = config, device
        self.size = assets[0].size
        rings = {len(a.mesh.vertices) - a.mesh.ring_start for a in assets}
        if {a.size for a in assets} != {self.size} or len(rings) != 1:
            raise ValueError("all portraits of a BatchRenderer must have one size and one mesh layout")
        self.rings = rings.pop()
        self.teeth_base = R.NUM_LANDMARKS + CENTRES + IRISES * RING_POINTS
        self.rim_base = self.teeth_base + TEETH_POINTS
        self.ring_base = self.rim_base + RIM
        self.vertices = self.ring_base + self.rings
        tpl = load_template()
        self._stable = torch.as_tensor(tpl.stable, device=device)
        self._template = torch.as_tensor(tpl.shape[tpl.stable], device=device)
        per = [self._portrait_arrays(a, tpl.stable) for a in assets]
        faces = max(len(p["tris"]) for p in per)
        width = max(p["cidx"].shape[1] for p in per)

        def stack(key: str, pad_to: int | None = None, axis: int = 0) -> torch.Tensor:
            arrays = [p[key] for p in per]
            if pad_to is not None:
                arrays = [np.pad(x, [(0, pad_to - x.shape[axis]) if i == axis else (0, 0) for i in range(x.ndim)])
                          for x in arrays]
            return torch.as_tensor(np.stack(arrays), device=device)

        self.tris = stack("tris", faces).long()
        self.bias = stack("bias", faces)
        self.kind = stack("kind", faces)
        self.sv = stack("sv")
        self.cidx = stack("cidx", width, 1).long()
        self.cw = stack("cw", width, 1)
        self._src2d, self._den = stack("src2d"), stack("den")
        self._iris_off, self._iris_centre = stack("iris_off"), stack("iris_centre")
        self._ring_canon, self._ring_xy, self._follow = stack("ring_canon"), stack("ring_xy"), stack("follow")
        self._head_canon, self._head_xy, self._body_follow = stack("head_canon"), stack("head_xy"), stack("body_follow")
        self._body_reach = stack("body_reach")
        self._ring_oval, self._ring_from = stack("ring_oval").long(), stack("ring_from")
        self._ring_push, self._ring_unit = stack("ring_push"), stack("ring_unit")
        self._mouth_area, self._iod = stack("mouth_area"), stack("iod")
        self._mouths, self._mouth_ok, self._drawn = stack("mouths"), stack("mouth_ok"), stack("drawn")
        self._mouth_rotation = stack("mouth_rotation")                          # [P, K, 3, 3]
        region, lip_tris, lip_alpha = lip_region(LIP_RINGS)
        self._lip_region = torch.as_tensor(region, device=device)
        self._lip_tris = torch.as_tensor(lip_tris, device=device)
        self._lip_alpha = torch.as_tensor(lip_alpha, device=device)
        self._rim_in_lips = torch.as_tensor(np.searchsorted(region, R.LIPS_INNER), device=device)
        self._mouth_slot = stack("mouth_slot").long()
        self._teeth_reach, self._blink = stack("teeth_reach"), stack("blink")
        self._lid_slots, self._lid_lift = stack("lid_slots").long(), stack("lid_lift")
        self._rotation = stack("rotation")
        self._turn_yaw, self._turn_tilt = stack("turn_yaw"), stack("turn_tilt")
        self._turn_src, self._turn_lift = stack("turn_src"), stack("turn_lift")
        self._face_mask = stack("face_mask")[:, None].contiguous()               # [P, 1, H, W]
        # The turn pictures' renders draw no rings (degenerate triangles are skipped).
        self._turn_tris = torch.where((self.kind == OUTSIDE)[..., None], 0, self.tris)
        self._eye_anchors, self._eye_box = stack("eye_anchors"), stack("eye_box")
        self._keyframe_lips = stack("keyframe_lips")
        side = max(p["texture"].shape[0] for p in per)
        self.texture = stack("texture", side).permute(0, 3, 1, 2).contiguous()      # [P, 4, Ht, Wt]
        m = assets[0].margin
        if {a.margin for a in assets} != {m}:
            raise ValueError("all portraits of a BatchRenderer must have one size and one mesh layout")
        tex = np.array([self.texture.shape[3], self.texture.shape[2]], np.float64)
        self._grid_scale = torch.as_tensor(self.size / tex, dtype=torch.float32, device=device)
        self._grid_offset = torch.as_tensor((self.size + 2 * m) / tex - 1, dtype=torch.float32, device=device)
        self.image = self.texture[:, :, m:m + self.size, m:m + self.size].contiguous()  # the refiner's portrait
        self.layered = any(a.background is not None for a in assets)
        self.background = None
        if self.layered:
            self.background = torch.stack([
                torch.from_numpy(a.background.astype(np.float32) / 255).permute(2, 0, 1) if a.background is not None
                else torch.zeros(3, self.size, self.size) for a in assets]).to(device).contiguous()

    def _per_portrait(self) -> list[str]:
        """Names of the attributes that hold one row per portrait."""
        shared = ("_stable", "_template", "_grid_scale", "_grid_offset", "_lip_region", "_lip_tris", "_lip_alpha",
                  "_rim_in_lips")
        return [k for k, v in vars(self).items() if isinstance(v, torch.Tensor) and k not in shared]

    def subset(self, index: torch.Tensor) -> BatchRenderer:
        """A renderer of portraits ``index [N]`` of this one (copies: each row is its own portrait in memory)."""
        out = copy.copy(self)
        for k in self._per_portrait():
            setattr(out, k, getattr(self, k)[index.to(self.device)].contiguous())
        return out

    def portrait_bytes(self) -> int:
        """Device memory one portrait takes (its textures, background plate and mesh), in bytes."""
        tensors = [getattr(self, k) for k in self._per_portrait() if k != "image"]  # image: a view of texture
        return sum(t[0].numel() * t.element_size() for t in tensors)

    def _portrait_arrays(self, a: PortraitAssets, stable: np.ndarray) -> dict[str, np.ndarray]:
        """One portrait's arrays in the shared vertex layout."""
        m, lm = a.mesh, a.landmarks.astype(np.float64)
        slot = np.full(len(m.vertices), -1, np.int64)
        slot[:R.NUM_LANDMARKS] = np.arange(R.NUM_LANDMARKS)
        if len(m.centres) > CENTRES or len(m.irises) > IRISES:
            raise ValueError("unexpected mesh: more contour centres or iris rings than the layout holds")
        cidx = np.zeros((CENTRES, max(len(c) for _, c in m.centres)), np.int64)
        cw = np.zeros(cidx.shape, np.float64)
        mouth_slot = -1
        for j, (vertex, contour) in enumerate(m.centres):
            slot[vertex] = R.NUM_LANDMARKS + j
            cidx[j, :len(contour)] = contour
            cw[j, :len(contour)] = 1.0 / len(contour)
            if vertex == m.mouth_centre:
                mouth_slot = R.NUM_LANDMARKS + j
        iris_off = np.zeros((IRISES, RING_POINTS, 2), np.float64)
        iris_centre = np.zeros(IRISES, np.int64)
        for i, (first, count, centre) in enumerate(m.irises):
            if count != RING_POINTS:
                raise ValueError(f"unexpected mesh: an iris ring of {count} points")
            slot[first:first + count] = R.NUM_LANDMARKS + CENTRES + i * RING_POINTS + np.arange(count)
            iris_off[i] = m.vertices[first:first + count, :2].astype(np.float64) - lm[centre, :2]
            iris_centre[i] = centre
        teeth = [(first, contour, sign) for first, contour, sign in m.teeth]
        if [len(c) for _, c, _ in teeth] != [11, 11] or len(m.copies) != 1 or len(m.copies[0][1]) != RIM:
            raise ValueError("unexpected mesh: its mouth is not laid out as the shared layout's")
        for k, (first, contour, _) in enumerate(teeth):
            slot[first:first + 2 * len(contour)] = self.teeth_base + 22 * k + np.arange(2 * len(contour))
        slot[m.copies[0][0]:m.copies[0][0] + RIM] = self.rim_base + np.arange(RIM)
        slot[m.ring_start:] = self.ring_base + np.arange(len(m.vertices) - m.ring_start)
        if (slot < 0).any() or mouth_slot < 0:
            raise ValueError("unexpected mesh: vertices outside the shared layout")
        sv = np.zeros((self.ring_base + self.rings, 2), np.float32)
        sv[slot] = a.sources
        mouths = np.zeros((MOUTHS, a.mouths.shape[1]), np.float64)
        mouths[:len(a.mouths)] = a.mouths[:MOUTHS]
        reach = np.stack([(interior.UPPER_TEETH if sign > 0 else interior.LOWER_TEETH)
                          * interior.teeth_profile(a.teeth_u[k]) for k, (_, _, sign) in enumerate(teeth)])

        state = motion_from_landmarks(lm)
        mouth_rotation = np.repeat(state.rotation[None], MOUTHS, 0)
        if a.mouth_rotation is not None:
            mouth_rotation[:len(a.mouths)] = a.mouth_rotation[:MOUTHS]
        canon = lambda p: (p - state.translation) @ state.rotation / state.scale  # noqa: E731
        k = len(a.turn_yaw)
        if k > TURNS:
            raise ValueError(f"unexpected assets: {k} turn pictures, the layout holds {TURNS}")
        turn_yaw = np.full(TURNS, np.nan)
        turn_yaw[:k] = a.turn_yaw
        turn_tilt = np.zeros((TURNS, 2))
        turn_tilt[:k] = a.turn_tilt
        turn_src = np.full((TURNS, self.ring_base + self.rings, 2), np.nan)
        turn_src[:k, slot] = a.turn_sources
        turn_lift = np.zeros((TURNS, 2, 7, 2))
        turn_lift[:k] = a.turn_lift
        oval = lm[R.FACE_OVAL]
        ring = m.vertices[m.ring_start:].astype(np.float64)
        pushed = a.ring_oval is not None and a.ring_push is not None
        ring_oval = np.maximum(a.ring_oval, 0) if pushed else np.zeros(len(ring), np.int64)  # type: ignore[arg-type]
        ring_push = np.asarray(a.ring_push, np.float64) if pushed else np.zeros((len(ring), 2))
        ring[:, 2] = oval[:, 2].mean()
        head = oval.mean(0)
        src = lm[stable, :2]
        src_c = src - src.mean(0)
        return {
            "tris": slot[m.triangles], "bias": np.asarray(a.bias, np.float64), "kind": m.kind.astype(np.int64),
            "sv": sv, "cidx": cidx, "cw": cw, "src2d": src_c, "den": np.array((src_c**2).sum()),
            "iris_off": iris_off, "iris_centre": iris_centre, "ring_canon": canon(ring), "ring_xy": ring[:, :2],
            "follow": m.ring_follow.astype(np.float64), "head_canon": canon(head), "head_xy": head[:2],
            "body_follow": np.array(a.body_follow, np.float64), "body_reach": np.array(0.9 * a.margin, np.float64),
            "ring_oval": ring_oval, "ring_from": lm[ring_oval, :2].astype(np.float64), "ring_push": ring_push,
            "ring_unit": ring_push / np.maximum(np.linalg.norm(ring_push, axis=1, keepdims=True), 1e-12),
            "mouth_area": np.array(_polygon_area(torch.from_numpy(a.landmarks[R.LIPS_INNER, :2])).item()),
            "iod": np.array(float(R.inter_ocular(a.landmarks))),
            "mouths": mouths, "mouth_ok": np.arange(MOUTHS) < len(a.mouths), "drawn": a.drawn.astype(np.float64),
            "mouth_slot": np.array(mouth_slot), "teeth_reach": reach, "blink": a.blink.astype(np.float64),
            "lid_slots": np.stack([slot[margin] for margin, _ in m.lids]), "lid_lift": a.lid_lift,
            "keyframe_lips": np.array(a.keyframe_lips),
            "texture": a.texture.astype(np.float32),
            "rotation": state.rotation, "mouth_rotation": mouth_rotation, "turn_yaw": turn_yaw,
            "turn_tilt": turn_tilt, "turn_src": turn_src, "turn_lift": turn_lift,
            "face_mask": turns.face_mask(a.landmarks, a.size),
            "eye_anchors": np.asarray(a.eye_anchors, np.float64), "eye_box": np.asarray(a.eye_box, np.float64),
        }

    def geometry(self, pid: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where every mesh vertex lies in target frames, where it samples, and how bright the mouth is.

        Args:
            pid: ``[B]`` int64 portrait of each frame; target: ``[B, 478, 3]`` float32 target landmarks
                in the portrait's pixels, both on the device.
        Returns:
            target vertices ``[B, V, 3]`` float32 and sources ``[B, V, 2]`` float32, in the shared vertex
            layout, and the mouth interior's gain ``[B]`` float32 (see
            :meth:`codec.render.warp.GeometricWarp.geometry`; the lips' pictures are in :meth:`_geometry`'s).
        """
        g = self._geometry(pid, target)
        return g.tv.float(), g.sv.float(), g.gain.float()

    def _geometry(self, pid: torch.Tensor, target: torch.Tensor) -> _Geometry:
        b = len(pid)
        lm = target.double()
        tv = torch.zeros((b, self.vertices, 3), dtype=torch.float64, device=self.device)
        tv[:, :R.NUM_LANDMARKS] = lm
        rows = torch.arange(b, device=self.device)
        contour = lm[rows[:, None, None], self.cidx[pid]]                       # [B, C, L, 3]
        tv[:, R.NUM_LANDMARKS:R.NUM_LANDMARKS + CENTRES] = (contour * self.cw[pid][..., None]).sum(2)
        inner = torch.as_tensor(R.LIPS_INNER, device=self.device)
        tv[:, self.rim_base:self.ring_base] = lm[:, inner]

        # Scale and rotation in the image plane (the iris rings turn with the head).
        dst = lm[:, self._stable, :2]
        d = dst - dst.mean(1, keepdim=True)
        s = self._src2d[pid]
        den = self._den[pid]
        ar = (d[..., 0] * s[..., 0] + d[..., 1] * s[..., 1]).sum(1) / den
        ai = (d[..., 1] * s[..., 0] - d[..., 0] * s[..., 1]).sum(1) / den
        off = self._iris_off[pid]                                              # [B, I, K, 2]
        centre = lm[rows[:, None], self._iris_centre[pid]]                     # [B, I, 3]
        ox = ar[:, None, None] * off[..., 0] - ai[:, None, None] * off[..., 1]
        oy = ar[:, None, None] * off[..., 1] + ai[:, None, None] * off[..., 0]
        iris = torch.stack([centre[..., None, 0] + ox, centre[..., None, 1] + oy,
                            centre[..., None, 2].expand_as(ox)], -1)
        first = R.NUM_LANDMARKS + CENTRES
        tv[:, first:first + IRISES * RING_POINTS] = iris.reshape(b, -1, 3)

        # Rings: with the head's 3D rigid motion, fading to the body's share of its translation.
        rot, t, scale = similarity_fit(self._template, lm[:, self._stable])
        moved = scale[:, None, None] * (self._ring_canon[pid] @ rot.transpose(1, 2)) + t[:, None]
        head = scale[:, None] * (rot @ self._head_canon[pid][..., None])[..., 0] + t
        body = (head[:, :2] - self._head_xy[pid]) * self._body_follow[pid][:, None]
        reach = body.norm(dim=-1, keepdim=True)
        body = body * torch.clamp(self._body_reach[pid][:, None] / reach.clamp(min=1e-9), max=1.0)
        follow = self._follow[pid][..., None]
        ring_xy = self._ring_xy[pid]
        tv[:, self.ring_base:, :2] = ring_xy + follow * (moved[..., :2] - ring_xy) + (1 - follow) * body[:, None]
        # ... pushed out where the face's outline moved out past them (codec.render.mesh.push_rings).
        push = self._ring_push[pid]
        outline = torch.gather(lm[..., :2], 1, self._ring_oval[pid][..., None].expand(-1, -1, 2))
        d = (outline - self._ring_from[pid]) - (tv[:, self.ring_base:, :2] - ring_xy)
        tv[:, self.ring_base:, :2] += torch.clamp((d * self._ring_unit[pid]).sum(-1), min=0.0)[..., None] * push

        sv = self.sv[pid].double().clone()
        canon = ((lm - t[:, None]) @ rot) / scale[:, None, None]               # [B, 478, 3] the head's own frame
        drawn, gain, lips, lip_weight, lip_source = self._mouth(pid, canon, rot, sv)
        self._teeth(pid, lm, rot, scale, drawn, tv)
        closure = self._lids(pid, canon, sv)
        rel = rot @ self._rotation[pid].transpose(1, 2)
        look = rel[:, :, 2]
        pose = torch.rad2deg(torch.stack([torch.atan2(look[:, 0], look[:, 2]), torch.asin(look[:, 1].clamp(-1, 1)),
                                          torch.atan2(rel[:, 1, 0], rel[:, 0, 0])], -1))
        return _Geometry(tv, sv, gain, pose, closure, lips, lip_weight, lip_source)

    def _mouth(self, pid: torch.Tensor, canon: torch.Tensor, rot: torch.Tensor,
               sv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mouth fan's sources (in ``sv``) and the lips' picture, as
        :meth:`codec.render.warp.GeometricWarp._mouth_sources` picks them.

        Returns:
            ``[B]`` the drawn interior, ``[B]`` its gain, ``[B, 2]`` the lips' pictures (nearest, second
            nearest; 0: the portrait's own), ``[B]`` the nearest's share, ``[B, 2, N, 2]`` where the lip region
            samples in each.
        """
        up, lo = R.MOUTH_INNER_LIPS
        left, right = R.MOUTH_CORNERS
        opening = (canon[:, lo, 1] - canon[:, up, 1]).clamp(min=0.0)
        width = canon[:, right, 0] - canon[:, left, 0]
        pics = self._mouths[pid]                                   # [B, K, 2 + 42 + 2 N + 1]
        trace = torch.einsum("bij,bkij->bk", rot, self._mouth_rotation[pid])     # trace(R R_k^T)
        angle = torch.arccos(((trace - 1) / 2).clamp(-1.0, 1.0))
        dist = ((opening[:, None] - pics[..., 0]).abs() + MOUTH_WIDTH_WEIGHT * (width[:, None] - pics[..., 1]).abs()
                + MOUTH_POSE_WEIGHT * angle)
        dist = torch.where(self._mouth_ok[pid], dist, torch.inf)
        near = torch.sort(dist, dim=1, stable=True)
        second = near.indices[:, 1] if dist.shape[1] > 1 else near.indices[:, 0]
        lips = torch.where(self._keyframe_lips[pid], near.indices[:, 0], 0)
        d1, d2 = near.values[:, 0], dist.gather(1, second[:, None])[:, 0]
        second = torch.where(torch.isfinite(d2) & self._keyframe_lips[pid], second, lips)  # no second picture
        d2 = torch.where(torch.isfinite(d2), d2, d1)
        closer = (d2 - d1) / (d2 + d1).clamp(min=1e-9)
        x = (closer / LIP_FADE).clamp(0.0, 1.0)
        lip_weight = 0.5 + 0.5 * x * x * (3 - 2 * x)
        lending = self._mouth_ok[pid] & (pics[..., -1] > 0.5)
        best = torch.where(lending, dist, torch.inf).argmin(1)
        rows = torch.arange(len(pid), device=self.device)
        own = (lips > 0) & lending[rows, lips] & (pics[rows, lips, 0] >= LEND_SHARE * opening)
        best = torch.where(own, lips, torch.where(opening < SHUT, 0, best))
        lends = own | (pics[rows, best, 0] >= LEND_SHARE * opening)
        drawn = (opening >= SHUT) & ~lends
        lent = torch.where(drawn, pics[:, 0, 1], pics[rows, best, 1])
        gain = torch.clamp(1 + NARROWING_GAIN * torch.clamp(width - lent + NARROWING_FREE, max=0.0), MIN_GAIN, 1.0)
        pair = torch.stack([lips, second], 1)                                            # [B, 2]
        lip_source = pics[rows[:, None], pair, 2 + 2 * (RIM + 1):-1].reshape(len(pid), 2, -1, 2)  # [B, 2, N, 2]
        inner = lip_source[:, 0, self._rim_in_lips]                                       # [B, 20, 2]
        exact = torch.cat([inner, inner.mean(1, keepdim=True)], 1)
        chosen = torch.where(own[:, None, None], exact, pics[rows, best, 2:2 + 2 * (RIM + 1)].reshape(-1, RIM + 1, 2))
        fan = torch.where(drawn[:, None, None], self._drawn[pid], chosen)     # [B, 21, 2]: rim, then centre
        sv[:, self.rim_base:self.ring_base] = fan[:, :RIM]
        sv[rows, self._mouth_slot[pid]] = fan[:, RIM]
        return drawn, gain, pair, lip_weight, lip_source

    def _teeth(self, pid: torch.Tensor, lm: torch.Tensor, rot: torch.Tensor, scale: torch.Tensor,
               drawn: torch.Tensor, tv: torch.Tensor) -> None:
        """The fan and teeth flat at the inner lips' farthest depth; teeth hanging where the interior is drawn."""
        inner = torch.as_tensor(R.LIPS_INNER, device=self.device)
        far = lm[:, inner, 2].amax(1)                                           # [B]
        tv[:, self.rim_base:self.ring_base, 2] = far[:, None]
        tv[torch.arange(len(pid), device=self.device), self._mouth_slot[pid], 2] = far
        down = rot[:, :2, 1] * scale[:, None]
        unit = down / down.norm(dim=-1, keepdim=True).clamp(min=1e-6)          # [B, 2]
        upper = torch.as_tensor(R.LIPS_INNER[:11], device=self.device)
        lower = torch.as_tensor(np.concatenate([R.LIPS_INNER[10:], R.LIPS_INNER[:1]]), device=self.device)
        gap = ((lm[:, lower.flip(0), :2] - lm[:, upper, :2]) * unit[:, None]).sum(-1)
        gap = gap.clamp(min=0.0) * drawn[:, None]                               # [B, 11] the opening's height
        reach = self._teeth_reach[pid] * scale[:, None, None]                  # [B, 2, 11]
        for k, (contour, sign) in enumerate(((upper, 1.0), (lower, -1.0))):
            base = self.teeth_base + 22 * k
            length = torch.minimum(reach[:, k], gap if sign > 0 else gap.flip(1))
            top = lm[:, contour, :2]
            tv[:, base:base + 11, :2] = top
            tv[:, base + 11:base + 22, :2] = top + sign * length[..., None] * unit[:, None]
            tv[:, base:base + 22, 2] = far[:, None]

    def _lids(self, pid: torch.Tensor, canon: torch.Tensor, sv: torch.Tensor) -> torch.Tensor:
        """A closing upper lid's margin samples the skin above it (in ``sv``); returns each eye's closure
        ``[B, 2]``."""
        blink = []
        for left, right, up, lo in EYE_POINTS:
            axis = canon[:, right, :2] - canon[:, left, :2]
            width = axis.norm(dim=-1)
            ex = axis / width[:, None]
            ey = torch.stack([-ex[:, 1], ex[:, 0]], -1)
            blink.append(((canon[:, lo, :2] - canon[:, up, :2]) * ey).sum(-1) / width)
        closure = (1 - torch.stack(blink, -1) / self._blink[pid].clamp(min=1e-6)).clamp(0.0, 1.0)  # [B, 2]
        x = ((closure - LID_START) / LID_SPAN).clamp(0.0, 1.0)
        lift = (x * x * (3 - 2 * x))[..., None, None] * self._lid_lift[pid]     # [B, 2, 7, 2]
        rows = torch.arange(len(pid), device=self.device)[:, None, None]
        sv[rows, self._lid_slots[pid]] += lift
        return closure

    def mouth_newness(self, pid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B]`` float32 share of each target mouth opening the portrait has no interior for
        (as :meth:`codec.render.warp.GeometricWarp.mouth_newness`)."""
        scale2 = (_inter_ocular(target) / self._iod[pid].float()) ** 2
        area = _polygon_area(target[:, R.LIPS_INNER, :2])
        return (1 - self._mouth_area[pid].float() * scale2 / area.clamp(min=1e-6)).clamp(0.0, 1.0)

    def flow(self, pid: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling grid ``[B, H, W, 2]`` and region maps ``[B, 3, H, W]`` of target frames
        (see :meth:`codec.render.warp.GeometricWarp.flow`)."""
        grid, regions, *_ = self._flow(pid, target)
        return grid, regions

    def _flow(self, pid: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, _Geometry]:
        g = self._geometry(pid, target)
        grid, regions = rasterize(g.tv.float(), g.sv.float(), self.tris[pid], self.bias[pid], self.kind[pid],
                                  self.size, self.config.raster)
        return grid, regions, g

    @torch.inference_mode()
    def warp(self, pid: torch.Tensor, target: torch.Tensor) -> WarpResult:
        """Renders target frames, keeping what the neural stage reads.

        Args:
            pid: ``[B]`` int64 portrait indices; target: ``[B, 478, 3]`` float32 landmarks, on the device.
        Returns:
            the :class:`codec.render.warp.WarpResult`.
        """
        pid, target = pid.to(self.device), target.to(self.device, torch.float32)
        grid, regions, g = self._flow(pid, target)
        tex_grid = torch.addcmul(self._grid_offset, grid, self._grid_scale)
        sampled = F.grid_sample(self.texture[pid], tex_grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
        frames, alpha = sampled[:, :3], sampled[:, 3:]
        if self.background is not None:
            frames = torch.lerp(self.background[pid], frames, alpha)
        frames = self._blend_turns(pid, frames, grid, g)
        frames = frames * (1 - (1 - g.gain.float()).view(-1, 1, 1, 1) * regions[:, :1])
        frames = self._lay_lips(pid, target, frames, g.lips, g.lip_weight, g.lip_source)
        frames = self._blend_eyes(pid, frames, target, g.closure)
        newness = self.mouth_newness(pid, target).view(-1, 1, 1, 1)
        return WarpResult(frames, grid, regions, alpha, newness)

    def _blend_turns(self, pid: torch.Tensor, frames: torch.Tensor, grid: torch.Tensor, g: _Geometry) -> torch.Tensor:
        """The face rendered from each frame's turn pictures mixed in by pose, inside the face
        (as :meth:`codec.render.warp.GeometricWarp._blend_turns`)."""
        weights = turn_weights(g.pose[:, 0], self._turn_yaw[pid], g.pose[:, 1:], self._turn_tilt[pid])  # [B, K]
        if not bool((weights > 0).any()):
            return frames
        mask = F.grid_sample(self._face_mask[pid], grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)                               # [B, 1, H, W]
        x = ((g.closure - LID_START) / LID_SPAN).clamp(0.0, 1.0)
        up = x * x * (3 - 2 * x)                                                # [B, 2]
        mixed = frames.clone()
        face = self.teeth_base  # the landmarks, centres and iris rings come first in the layout
        for k in range(TURNS):
            rows = torch.nonzero(weights[:, k] > 0)[:, 0]
            if not len(rows):
                continue
            p = pid[rows]
            src = self._turn_src[p, k, :face]
            sv = g.sv[rows].clone()
            sv[:, :face] = torch.where(torch.isnan(src), sv[:, :face], src)
            lift = up[rows][..., None, None] * self._turn_lift[p, k]               # [R, 2, 7, 2]
            at = torch.arange(len(rows), device=self.device)[:, None, None]
            sv[at, self._lid_slots[p]] += lift
            turned_grid, _ = rasterize(g.tv[rows].float(), sv.float(), self._turn_tris[p], self.bias[p],
                                       self.kind[p], self.size, self.config.raster)
            turned = F.grid_sample(self.texture[p, :3], torch.addcmul(self._grid_offset, turned_grid,
                                                                      self._grid_scale),
                                   mode="bilinear", padding_mode="border", align_corners=False)
            w = weights[rows, k].float().view(-1, 1, 1, 1)
            mixed[rows] += w * mask[rows] * (turned - frames[rows])
        return mixed

    def _blend_eyes(self, pid: torch.Tensor, frames: torch.Tensor, target: torch.Tensor,
                    closure: torch.Tensor) -> torch.Tensor:
        """Each closing eye blended towards its keyframe's closed eye (as
        :meth:`codec.render.warp.GeometricWarp._blend_eyes`)."""
        x = ((closure - EYE_BLEND[0]) / (EYE_BLEND[1] - EYE_BLEND[0])).clamp(0.0, 1.0)
        weight = x * x * (3 - 2 * x)                                            # [B, 2]
        ok = torch.isfinite(self._eye_box[pid, :, 0])                           # [B, 2]
        if not bool(((weight > 0) & ok).any()):
            return frames
        frames = frames.clone()
        side = torch.tensor([self.texture.shape[3], self.texture.shape[2]], dtype=torch.float32, device=self.device)
        pix = (torch.arange(self.size, device=self.device, dtype=torch.float32) + 0.5)
        for eye in (0, 1):
            for b in torch.nonzero((weight[:, eye] > 0) & ok[:, eye])[:, 0].tolist():
                box = self._eye_box[pid[b], eye]
                anchors = self._eye_anchors[pid[b], eye]                         # [N, 2] patch texels
                dst = target[b, torch.as_tensor(EYE_ANCHORS[eye], device=self.device), :2].double()
                zs = torch.complex(anchors[:, 0], anchors[:, 1])
                zd = torch.complex(dst[:, 0], dst[:, 1])
                ms, md = zs.mean(), zd.mean()
                a = ((zd - md) * torch.conj(zs - ms)).sum() / ((zs - ms).abs() ** 2).sum()
                c = md - a * ms
                w, h = float(box[6]), float(box[7])
                corners = torch.tensor([0, w, 1j * h, w + 1j * h], dtype=torch.complex128, device=self.device)
                z = a * corners + c
                x0, x1 = int(max(np.floor(float(z.real.min())), 0)), int(min(np.ceil(float(z.real.max())), self.size))
                y0, y1 = int(max(np.floor(float(z.imag.min())), 0)), int(min(np.ceil(float(z.imag.max())), self.size))
                if x1 - x0 < 2 or y1 - y0 < 2:
                    continue
                ys, xs = torch.meshgrid(pix[y0:y1], pix[x0:x1], indexing="ij")
                inv = 1 / a
                pz = (xs - float(c.real), ys - float(c.imag))
                px = float(inv.real) * pz[0] - float(inv.imag) * pz[1]
                py = float(inv.imag) * pz[0] + float(inv.real) * pz[1]
                cx, cy, ax, ay = (float(v) for v in box[:4])
                r = torch.sqrt(((px - cx) / ax) ** 2 + ((py - cy) / ay) ** 2)
                mask = (1 - r).clamp(0, EYE_FEATHER) / EYE_FEATHER
                mask = mask * mask * (3 - 2 * mask) * float(weight[b, eye])
                tx = (px + float(box[4])) * 2 / side[0] - 1
                ty = (py + float(box[5])) * 2 / side[1] - 1
                sample = F.grid_sample(self.texture[pid[b]:pid[b] + 1, :3], torch.stack([tx, ty], -1)[None],
                                       mode="bilinear", padding_mode="border", align_corners=False)[0]
                region = frames[b, :, y0:y1, x0:x1]
                region.copy_(torch.lerp(region, sample, mask[None]))
        return frames

    def _lay_lips(self, pid: torch.Tensor, target: torch.Tensor, frames: torch.Tensor, lips: torch.Tensor,
                  weight: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Keyframes' lips laid over the frames whose lips come from one: the nearest picture's and the second
        nearest's mixed by the nearest's share, laid over with the region's alpha (as
        :meth:`codec.render.warp.GeometricWarp.warp`)."""
        sel = torch.nonzero((lips > 0).any(1)).flatten()
        if not len(sel):
            return frames
        source, weight = source.float(), weight.float()
        n = len(sel)
        tv = target[sel][:, self._lip_region].contiguous()                   # [n, N, 3]
        tris = self._lip_tris.expand(n, -1, -1)
        bias = torch.zeros(tris.shape[:2], dtype=torch.float64, device=self.device)
        kind = torch.full(tris.shape[:2], TEETH, dtype=torch.int64, device=self.device)  # coverage in regions[0]
        coded = torch.zeros_like(source[sel, 0])
        coded[..., 0] = self._lip_alpha * (self.size / 2)  # the rasterizer's grid x is then alpha - 1
        opacity, regions = rasterize(tv, coded, tris, bias, kind, self.size, self.config.raster)
        alpha = ((opacity[..., 0] + 1) * regions[:, 0])[:, None]
        warped = frames[sel]
        laid = []
        for k in (0, 1):
            grid, _ = rasterize(tv, source[sel, k].contiguous(), tris, bias, kind, self.size, self.config.raster)
            tex_grid = torch.addcmul(self._grid_offset, grid, self._grid_scale)
            pic = F.grid_sample(self.texture[pid[sel], :3], tex_grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
            laid.append(torch.where((lips[sel, k] == 0).view(-1, 1, 1, 1), warped, pic))  # the portrait's: as warped
        out = torch.lerp(warped, torch.lerp(laid[1], laid[0], weight[sel].view(-1, 1, 1, 1)), alpha)
        frames = frames.clone()
        frames[sel] = out
        return frames

    def __call__(self, pid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float32 RGB in [0, 1]: frames of portraits ``pid [B]`` at ``target [B, 478, 3]``."""
        return self.warp(pid, target).frames


class DeviceWarp:
    """One prepared portrait rendered by :class:`BatchRenderer`, behind :class:`codec.render.warp.GeometricWarp`'s
    interface (``warp``, calling, ``image``, ``size``, ``device``)."""

    def __init__(self, warp: GeometricWarp, config: BatchConfig = BatchConfig()) -> None:
        self.device = warp.device
        self.size = warp.size
        self.image = warp.image
        self.renderer = BatchRenderer([PortraitAssets.from_warp(warp)], warp.device, config)

    def warp(self, target: np.ndarray) -> WarpResult:
        """Like :meth:`codec.render.warp.GeometricWarp.warp`: ``target [B, 478, 3]`` in the portrait's pixels."""
        t = torch.as_tensor(np.asarray(target, np.float32), device=self.device)
        return self.renderer.warp(torch.zeros(len(t), dtype=torch.long, device=self.device), t)

    def __call__(self, target: np.ndarray) -> torch.Tensor:
        return self.warp(target).frames
