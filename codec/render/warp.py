"""The geometric rendering stage: warp the portrait onto target landmarks.

Every output pixel looks up where it came from (a dense backward flow) and
samples it there with ``grid_sample``:

1. the target frame's mesh vertices follow from the target landmarks
   (:meth:`GeometricWarp.geometry`): the landmarks as given, centres of the
   openings, iris rings, teeth hanging from the inner lips, and the rings
   around the face moved with the head's 3D rigid motion, fading to its mere
   translation further out, and pushed out where the face's outline moves out
   past them (a cheek widening as the head turns back keeps the hair beside
   it). So does where each vertex samples: mostly fixed, but the mouth's
   interior comes from the picture whose mouth shape is nearest the target's
   (the portrait, a keyframe, or, when none is open wide enough, the interior
   drawn by :mod:`codec.render.interior`), and a closing upper lid samples the
   skin above it instead of stretching its lashes;
2. the mesh is rasterized at the output size (:mod:`codec.render.raster`):
   each pixel gets its source position by the barycentric coordinates of the
   target triangle it falls in;
3. one texture (:mod:`codec.render.texture`: the portrait and its person mask,
   padded past the photo's edges, and patches below it) is sampled there
   (``grid_sample``, torch, on any device) and the person is laid over a
   still background plate (:mod:`codec.render.composite`);
4. with a keyframe of the head turned, a target turned towards it takes its
   face from that keyframe (:mod:`codec.render.turns`: the same target mesh
   rasterized again, the face sampling the keyframe, mixed in by pose inside
   the face oval);
5. the lips and the skin ring around them are drawn again from the picture
   nearest in mouth shape when that is a keyframe (:func:`lip_flow`: the
   lip region's triangles rasterized with the keyframe's sources, laid over
   the frame opaque on the lips and fading out to the ring; cross-faded with
   the second nearest picture's where the two are about as near, so the lips
   do not jump from one picture to the next), so an open mouth shows that
   keyframe's lips with its own interior instead of the portrait's lips
   stretched around it;
6. with a keyframe of closed eyes, a closing eye is blended towards that
   keyframe's eye, moved onto the target's by a similarity transform.

Steps 1 and 2 run on the CPU (about 5 ms a frame at 512x512); everything that
depends on the portrait and the keyframes alone is computed when they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from codec import regions as R
from codec.motion import MotionState, load_template, motion_from_landmarks
from codec.render import interior, turns
from codec.render.composite import background_plate, denoise_portrait, person_alpha, restore_detail
from codec.render.keyframes import Keyframe, canonical_mouth, mouth_distance
from codec.render.mesh import (
    EYE,
    MOUTH,
    OUTSIDE,
    TEETH,
    MeshConfig,
    PortraitMesh,
    build_mesh,
    lip_region,
    push_rings,
    ring_outline,
)
from codec.render.raster import rasterize_batch
from codec.render.texture import Atlas


@dataclass(frozen=True)
class WarpConfig:
    """Settings of the geometric stage.

    Attributes:
        mesh: layout of the rings around the face.
        hole_depth: how far behind the surrounding skin the eye and mouth
            openings lie, in inter-ocular distances (so lids and lips cover them;
            the drawn teeth lie halfway).
        layered: cut the person out of the portrait (MediaPipe selfie
            segmentation) and warp it over a still background plate, the
            portrait with the person filled in; otherwise the background near
            the head bends with the head's motion.
        body_follow: share of the head's translation the body (shoulders, chest) follows.
        denoise: smooth the portrait's sensor and compression noise (an
            edge-preserving bilateral filter) before warping: one frame's noise
            would otherwise be frozen onto every rendered frame.
        smooth_outside: past the portrait's edges, sample a soft continuation of it
            (:func:`codec.render.texture.pad_portrait`); otherwise its edge pixels are repeated (stripes).
        turns: take the face of a head turned far from a keyframe of the head turned that way
            (:mod:`codec.render.turns`); otherwise always from the portrait.
        keyframe_lips: lay the lips of the keyframes nearest in mouth shape over the frame (and take the
            interior of the nearest up to its own inner lips); off: the portrait's own lips, as the browser
            page still draws them.
        restore_detail: give the denoised face its detail back (:func:`codec.render.composite.restore_detail`).
        ring_keep: per ring around the face, the share of the face outline's outward move past the ring
            that the ring is pushed out by. The outline's landmarks slide over the cheek as the head turns
            (a cheek seen edge-on in the portrait widens when the head turns back), further than the rings'
            rigid motion carries the hair beside it; unpushed, the face folds over the hair there and lays
            its edge against the background plate (a hard seam, the hair gone).
    """

    mesh: MeshConfig = field(default_factory=MeshConfig)
    hole_depth: float = 0.1
    layered: bool = True
    body_follow: float = 0.8
    denoise: bool = True
    smooth_outside: bool = True
    turns: bool = True
    keyframe_lips: bool = True
    restore_detail: bool = True
    ring_keep: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)


MAX_KEYFRAMES = 24
"""Keyframes a warp keeps; the oldest goes first. A sender sends at most 22 (:class:`codec.keyframe_select.
SelectConfig`: ``max_mouths`` 16 pictures of the mouth alone, ``per_kind`` 2 of each other kind)."""

SHUT = 0.03
"""Below this opening (canonical, inter-ocular distances) a mouth shows the portrait's own."""

LEND_SHARE = 0.5
"""A picture lends its mouth interior to target openings up to 1 / this times its own."""

MIN_LEND = 0.04
"""Least opening of a keyframe's mouth for it to lend its interior."""

LIP_RINGS = 2
"""Rings of face landmarks around the lips that a keyframe's lips are laid over with: opaque over the lips and
the first ring, fading out across the second (:func:`codec.render.mesh.lip_region`; on three held-out clips one
ring raised mouth SSIM less, three no more)."""

LIP_FADE = 0.5
"""The lips are the nearest picture's alone when ``(d2 - d1) / (d2 + d1)`` (d: distances of mouth shape to the
nearest and the second nearest picture) is at least this; below, cross-faded with the second's (half and half
where the two are as near)."""

RIM_SHRINK = 0.92
"""A keyframe's interior is sampled this far from its centre to its rim, so its lip edge is not copied."""

LID_LIFT = 0.8
"""A fully closed upper lid samples this share of the way from its margin to the skin above it."""

LID_START, LID_SPAN = 0.25, 0.6
"""The lid's samples start moving up at this closure (1 - lid opening over the portrait's) and are fully up
``LID_SPAN`` later (a smoothstep)."""

NARROWING_GAIN = 4.0
NARROWING_FREE = 0.02
"""Interior luma lost per inter-ocular distance a mouth is narrower (beyond the first ``NARROWING_FREE``) than the
picture lending its interior: rounded lips hide the teeth (22 training clips' open mouths: 0.04-0.08 narrower than
the clip's usual, 0.85 of its luma; over 0.08 narrower, 0.63)."""

MIN_GAIN = 0.55

MAX_SHARPEN = 1.0
"""Most unsharp-mask amount given to a keyframe softer than the portrait."""

KEEP_DENSITY = 1.5
"""A keyframe's patches keep its own pixels unless its face is over this many times the portrait's size."""

EYE_BLEND = (0.35, 0.8)
"""Closure (1 - lid opening over the portrait's) at which a keyframe's closed eye starts and ends blending in."""

EYE_AXES = (0.8, 0.55)
"""Half-axes of the ellipse of a keyframe's closed eye that is blended in, in eye widths (corner to corner)."""

EYE_FEATHER = 0.3
"""The blended ellipse fades out over this share of its radius, towards its rim."""


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
        grid: ``[B, H, W, 2]`` where each pixel sampled, in the portrait's ``grid_sample`` coordinates
            (patches of the texture lie outside [-1, 1]).
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
        """``[B, 4, H, W]``: mouth opening (coverage times newness), depth
        into the mouth, eye-opening coverage, person alpha."""
        return torch.cat([self.raster[:, :1] * self.newness, self.raster[:, 1:], self.alpha], 1)


@dataclass
class MouthPicture:
    """A picture of a mouth (the portrait's or a keyframe's) that the mouth fan and the lips can sample.

    Attributes:
        shape: ``[2]`` its canonical opening and width (:func:`codec.render.keyframes.canonical_mouth`).
        patch: the texture patch it lies in (None: the portrait itself).
        rim: ``[20, 2]`` where the fan's rim (the inner lips, ``LIPS_INNER`` order) samples,
            relative to the patch's origin (or in the portrait's pixels), a little inside the opening
            (:data:`RIM_SHRINK`) for when the lips around it are another picture's.
        centre: ``[2]`` likewise for the fan's centre.
        lips: ``[N, 2]`` likewise for the lip region's landmarks (:func:`codec.render.mesh.lip_region`);
            the fan samples its own inner lips exactly when the lips are this picture's too.
        interior: it lends its interior to wider openings (a keyframe's mouth open at least :data:`MIN_LEND`).
        rotation: ``[3, 3]`` the head's rotation in it (:func:`codec.render.keyframes.mouth_distance`).
    """

    shape: np.ndarray
    patch: str | None
    rim: np.ndarray
    centre: np.ndarray
    lips: np.ndarray
    interior: bool = True
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class EyePicture:
    """One eye of a keyframe with closed eyes, for blending over a closing eye.

    Attributes:
        eye: 0 (the subject's right, image left) or 1.
        patch: its texture patch.
        anchors: ``[N, 2]`` the eye's corners and lower lid in patch texels (they hardly move in a blink).
        centre, axes: the feathered ellipse blended in, in patch texels.
    """

    eye: int
    patch: str
    anchors: np.ndarray
    centre: np.ndarray
    axes: np.ndarray


@dataclass
class KeyframePatches:
    """What the warp takes from one keyframe (:meth:`GeometricWarp.keyframe_patches`).

    Attributes:
        patches: name (``"mouth"``, ``"eye0"``, ``"eye1"``) -> ``[h, w, 4]`` float32 texels (alpha 1).
        mouth: its mouth: lips and skin around them, and the interior when ``mouth.interior`` (``patch``
            names one of ``patches``; rim, centre and lips relative to the patch's first texel's corner), or
            None when the patch would not fit the texture.
        eyes: its closed eyes, likewise.
    """

    patches: dict[str, np.ndarray]
    mouth: MouthPicture | None
    eyes: list[EyePicture]


EYE_ANCHORS = (np.concatenate([[33, 133], R.RIGHT_EYE_CONTOUR[9:]]),
               np.concatenate([[263, 362], R.LEFT_EYE_CONTOUR[9:]]))


@dataclass
class Geometry:
    """One batch of frames' mesh: where each vertex lies and samples, and what follows from it.

    Attributes:
        target: ``[B, V, 3]`` float32 vertex positions in the output's pixels (z: depth).
        source: ``[B, V, 2]`` float32 where each vertex samples, in the portrait's pixels
            (texture patches lie outside the portrait).
        state: the target landmarks' motion.
        mouth_gain: ``[B]`` how bright the mouth's interior is drawn (1: as its picture shows it).
        lips: ``[B, 2]`` int the pictures (indices into :meth:`GeometricWarp.mouth_pictures`) the lips come
            from: the nearest in mouth shape, then the second nearest; 0, the portrait: the frame as warped.
        lip_weight: ``[B]`` float32 the nearest picture's share (from 0.5 to 1: see :data:`LIP_FADE`).
        lip_source: ``[B, 2, N, 2]`` float32 where the lip region's landmarks sample in each picture
            (texture patches lie outside the portrait).
    """

    target: np.ndarray
    source: np.ndarray
    state: MotionState
    mouth_gain: np.ndarray
    lips: np.ndarray
    lip_weight: np.ndarray
    lip_source: np.ndarray


def lip_flow(target: np.ndarray, source: np.ndarray, triangles: np.ndarray, alpha: np.ndarray, size: int,
             box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Where the lip region's pixels sample in each of its pictures, and how opaque each pixel is laid over the frame.

    Args:
        target: ``[B, N, 3]`` the region's landmarks in target frames (output pixels; z: depth).
        source: ``[B, K, N, 2]`` where they sample in each of K pictures (the portrait's pixels; patches lie
            outside it).
        triangles: ``[F, 3]`` into the N landmarks; alpha: ``[N]`` opacity at each (1 on the lips).
        size: side of the output.
        box: ``(x0, y0, x1, y1)`` the part of the output rasterized (the region's bounding box).
    Returns:
        grid ``[B, K, y1 - y0, x1 - x0, 2]`` in the portrait's ``grid_sample`` coordinates and alpha
        ``[B, y1 - y0, x1 - x0]`` float32 (barycentric between the landmarks' alphas; 0 outside the region).
    """
    b, k, n = source.shape[:3]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    tv = np.ascontiguousarray(np.repeat(target, k, 0), np.float32)
    tv[..., 0] -= x0
    tv[..., 1] -= y0
    tris = np.ascontiguousarray(triangles, np.int32)
    bias, kind = np.zeros(len(tris)), np.full(len(tris), TEETH, np.int8)  # TEETH: coverage in regions[0]
    grid, _ = rasterize_batch(tv, np.ascontiguousarray(source.reshape(b * k, n, 2), np.float32), tris, bias, kind,
                              side)
    coded = np.zeros((b, n, 2), np.float32)
    coded[..., 0] = alpha * (side / 2)  # the rasterizer's grid x is then alpha - 1
    opacity, regions = rasterize_batch(tv[::k], coded, tris, bias, kind, side)
    # Rasterized at ``side``: grid coordinates back to the portrait's (``size``).
    grid = (grid[:, :y1 - y0, :x1 - x0] + 1) * np.float32(side / size) - 1
    opaque = (opacity[:, :y1 - y0, :x1 - x0, 0] + 1) * regions[:, 0, :y1 - y0, :x1 - x0]
    return grid.reshape(b, k, y1 - y0, x1 - x0, 2), opaque


def _shows(image: np.ndarray, box: np.ndarray, share: float = 0.9) -> bool:
    """Whether at least ``share`` of ``box`` ``[x0, y0, x1, y1]`` lies inside ``image`` (a keyframe may be a
    picture of the mouth alone: it has no eyes or face to lend)."""
    h, w = image.shape[:2]
    area = max(float(box[2] - box[0]) * float(box[3] - box[1]), 1e-9)
    inside = max(0.0, min(box[2], w) - max(box[0], 0)) * max(0.0, min(box[3], h) - max(box[1], 0))
    return bool(inside >= share * area)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class GeometricWarp:
    """Warps one portrait to target landmarks.

    Example:
        >>> warp = GeometricWarp(portrait.image, portrait.landmarks, torch.device("cpu"))
        >>> warp.add_keyframe(keyframe)       # optional: a picture of the caller's open mouth, closed eyes
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
            smooth = denoise_portrait(image)
            image = restore_detail(smooth, image, np.asarray(landmarks, np.float32)) if config.restore_detail \
                else smooth
        self.config = config
        self.device = device
        self.size = int(image.shape[0])
        self.landmarks = np.asarray(landmarks, np.float32)
        self.mesh: PortraitMesh = build_mesh(self.landmarks, self.size, config.mesh)
        self.ring_oval, self.ring_push = ring_outline(self.mesh, config.ring_keep)
        self._stable = load_template().stable
        self.portrait_state = motion_from_landmarks(self.landmarks.astype(np.float64))
        oval = self.landmarks[R.FACE_OVAL].astype(np.float64)
        self._ring_depth = float(oval[:, 2].mean())
        self._head_centre = oval.mean(0)
        self.iod = float(R.inter_ocular(self.landmarks))
        bias = np.zeros(len(self.mesh.triangles), np.float64)
        bias[(self.mesh.kind == EYE) | (self.mesh.kind == MOUTH)] = config.hole_depth * self.iod
        bias[self.mesh.kind == TEETH] = 0.5 * config.hole_depth * self.iod
        lower = self.mesh.teeth[1][0]
        bias[(self.mesh.kind == TEETH) & (self.mesh.triangles[:, 0] >= lower)] = 0.7 * config.hole_depth * self.iod
        bias[self.mesh.kind == OUTSIDE] = 1e6  # hair and background lie behind the face
        self._bias = bias
        self._source_xy = np.ascontiguousarray(self.mesh.vertices[:, :2])
        self._mouth_area = float(_polygon_area(self.landmarks[R.LIPS_INNER, :2]))

        # RGB and the person's alpha, sampled together.
        alpha = person_alpha(image, self.landmarks) if config.layered else np.ones(image.shape[:2], np.float32)
        rgba = np.concatenate([image.astype(np.float32) / 255, alpha[..., None]], -1)
        self.image = torch.from_numpy(rgba).to(device).permute(2, 0, 1)[None].contiguous()
        self.background = None
        if config.layered:
            plate = background_plate(image, alpha).astype(np.float32) / 255
            self.background = torch.from_numpy(plate).to(device).permute(2, 0, 1)[None].contiguous()

        # The body lies below the chin: there the person goes on past the portrait's sides.
        self.atlas = Atlas(rgba, config.smooth_outside, body_from=float(self.landmarks[R.FACE_OVAL, 1].max()))
        self.skin, self.lips = interior.face_colours(image, self.landmarks)
        self._image_u8 = image
        self._init_mouth()
        self._init_lids()
        self.keyframes: list[Keyframe] = []
        # What each keyframe lends (the costly part, cut once): keyframe_patches, and its turned face.
        self._taken: list[tuple[KeyframePatches, tuple[np.ndarray, turns.TurnPicture] | None]] = []
        self._mouths: list[MouthPicture] = []
        self._eyes: list[EyePicture] = []
        self._turns: list[turns.TurnPicture] = []
        self._init_turns()
        self._upload()

    # -- what depends on the portrait alone -----------------------------------------------------

    def _init_mouth(self) -> None:
        """The drawn interior's patches and where the fan and the teeth sample them."""
        mesh = self.mesh
        # Patches sized for 512 px frames, scaled with smaller ones (they must fit the texture's width).
        k = min(1.0, self.size / 512)
        tw, th, cw = max(8, round(128 * k)), max(4, round(24 * k)), max(8, round(64 * k))
        self.atlas.put("teeth_upper", interior.teeth_patch(self.skin, upper=True, width=tw, height=th))
        self.atlas.put("teeth_lower", interior.teeth_patch(self.skin, upper=False, width=tw, height=th))
        self.atlas.put("cavity", interior.cavity_patch(self.lips, width=cw, height=cw))
        # u across the mouth from the template (a face at rest), so the texture does not follow the portrait's smile.
        canon = load_template().shape[:, 0]
        left, right = canon[R.MOUTH_CORNERS[0]], canon[R.MOUTH_CORNERS[1]]
        self.teeth_u = [np.clip((canon[contour] - left) / (right - left), 0, 1) for _, contour, _ in mesh.teeth]
        u = np.clip((canon[R.LIPS_INNER] - left) / (right - left), 0, 1)
        v = np.where(np.isin(R.LIPS_INNER, R.MOUTH_CORNERS), 0.5, np.where(np.arange(len(u)) < 10, 0.0, 1.0))
        self._cavity_uv = np.stack([u, v], 1), np.array([0.5, 0.55])
        rim = mesh.copies[0][1]
        self.lip_region, self.lip_triangles, self.lip_alpha = lip_region(LIP_RINGS)
        self._rim_in_lips = np.searchsorted(self.lip_region, rim)
        self.portrait_mouth = MouthPicture(canonical_mouth(self.portrait_state), None,
                                            self.landmarks[rim, :2].astype(np.float64),
                                            self.landmarks[rim, :2].astype(np.float64).mean(0),
                                            self.landmarks[self.lip_region, :2].astype(np.float64),
                                            rotation=self.portrait_state.rotation)

    def _init_lids(self) -> None:
        """How far each upper lid's margin samples upwards when the eye is closed: ``self.lids``, per eye
        ``(margin landmarks [7], lift [7, 2] in pixels)``."""
        self.lids: list[tuple[np.ndarray, np.ndarray]] = []
        for margin, above in self.mesh.lids:
            a, b = self.landmarks[margin, :2].astype(np.float64), self.landmarks[above, :2].astype(np.float64)
            axis = self.landmarks[margin[-1], :2] - self.landmarks[margin[0], :2]
            up = np.array([axis[1], -axis[0]]) / max(float(np.linalg.norm(axis)), 1e-6)
            up = -up if up[1] > 0 else up
            rise = np.maximum((b - a) @ up, 0.0)
            self.lids.append((margin, LID_LIFT * rise[:, None] * up[None, :]))

    def _init_turns(self) -> None:
        """What a turn picture replaces: the face's mask (sampled where the portrait is), the vertices whose
        sources it gives (``self.turn_vertices``), and the triangles its render needs (all but the rings')."""
        mask = turns.face_mask(self.landmarks, self.size)
        self.face_mask = torch.from_numpy(mask).to(self.device)[None, None].contiguous()
        mesh = self.mesh
        face = np.zeros(len(mesh.vertices), bool)
        face[:R.NUM_LANDMARKS] = True
        for vertex, _ in mesh.centres:
            face[vertex] = vertex != mesh.mouth_centre
        for first, count, _ in mesh.irises:
            face[first:first + count] = True
        self.turn_vertices = np.flatnonzero(face)
        inner = mesh.kind != OUTSIDE
        self._turn_mesh = (np.ascontiguousarray(mesh.triangles[inner]), np.ascontiguousarray(self._bias[inner]),
                           np.ascontiguousarray(mesh.kind[inner]))

    def _patch_uv(self, name: str, uv: np.ndarray) -> np.ndarray:
        """Portrait-pixel coordinates of texture coordinates ``uv [..., 2]`` in [0, 1] of a patch (texel centres)."""
        p = self.atlas.patches[name]
        h, w = p.texels.shape[:2]
        return p.origin(self.atlas.margin) + 0.5 + uv * np.array([w - 1, h - 1])

    def _upload(self) -> None:
        """The texture and its grid transform onto the device, and the sources that depend on the layout."""
        self.texture = torch.from_numpy(self.atlas.texture()).to(self.device).permute(2, 0, 1)[None].contiguous()
        scale, offset = self.atlas.grid_transform()
        self._grid_scale = torch.from_numpy(scale).to(self.device)
        self._grid_offset = torch.from_numpy(offset).to(self.device)
        sv = self._source_xy.astype(np.float64).copy()
        for (first, contour, _), u in zip(self.mesh.teeth, self.teeth_u):
            name = "teeth_upper" if first == self.mesh.teeth[0][0] else "teeth_lower"
            k = len(contour)
            sv[first:first + k] = self._patch_uv(name, np.stack([u, np.zeros(k)], 1))
            sv[first + k:first + 2 * k] = self._patch_uv(name, np.stack([u, np.ones(k)], 1))
        self.base_sources = sv.astype(np.float32)
        uv, centre = self._cavity_uv
        self.drawn_rim = self._patch_uv("cavity", uv).astype(np.float32)
        self.drawn_centre = self._patch_uv("cavity", centre).astype(np.float32)

    # -- keyframes --------------------------------------------------------------------------------

    def add_keyframe(self, keyframe: Keyframe) -> None:
        """Takes what a picture of the caller shows that the portrait does not: an open mouth, closed eyes,
        the head turned.

        Args:
            keyframe: a picture of the portrait's own face (never someone else's).
        """
        self.keyframes.append(keyframe)
        self._taken.append((self.keyframe_patches(keyframe), self.turn_patch(keyframe)))
        if len(self.keyframes) > MAX_KEYFRAMES:
            self.keyframes.pop(0)
            self._taken.pop(0)
        for name in [n for n in self.atlas.patches if n.startswith("key")]:
            del self.atlas.patches[name]
        self._mouths, self._eyes, self._turns = [], [], []
        for i, (taken, turn) in enumerate(self._taken):
            self._take_keyframe(i, taken, turn)
        self.atlas.put("cavity", self.atlas.patches.pop("cavity").texels)  # re-lays out all patches
        self._upload()

    def _crop(self, kf: Keyframe, box: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The keyframe's box ``[x0, y0, x1, y1]`` (its pixels) at ``scale``, as RGBA texels, and its origin."""
        x0, y0 = np.floor(box[:2]).astype(int)
        x1, y1 = np.ceil(box[2:]).astype(int)
        h, w = kf.image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        out = kf.image[y0:y1, x0:x1]
        if scale != 1.0:
            out = cv2.resize(out, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                             interpolation=cv2.INTER_AREA)
        rgba = np.concatenate([out.astype(np.float32) / 255, np.ones((*out.shape[:2], 1), np.float32)], -1)
        return rgba, np.array([x0, y0], np.float64)

    def _take_keyframe(self, i: int, taken: KeyframePatches,
                       turn: tuple[np.ndarray, turns.TurnPicture] | None) -> None:
        names = {name: f"key{i}_{name}" for name in taken.patches}
        for name, texels in taken.patches.items():
            self.atlas.put(names[name], texels)
        if taken.mouth is not None:
            m = taken.mouth
            self._mouths.append(MouthPicture(m.shape, names[str(m.patch)], m.rim, m.centre, m.lips, m.interior,
                                             m.rotation))
        for e in taken.eyes:
            self._eyes.append(EyePicture(e.eye, names[e.patch], e.anchors, e.centre, e.axes))
        if turn is not None:
            texels, picture = turn
            self.atlas.put(f"key{i}_face", texels)
            self._turns.append(replace(picture, patch=f"key{i}_face"))

    def keyframe_patches(self, kf: Keyframe) -> "KeyframePatches":
        """What the warp takes from a keyframe, for this portrait: the patches' texels and where they are sampled.

        Depends on the portrait and the keyframe alone (not on other keyframes), and changes nothing:
        :meth:`add_keyframe` places the patches in the texture; :func:`codec.webexport.keyframe_bundle`
        sends them to a browser page, which places them in its own.
        """
        taken = KeyframePatches({}, None, [])
        lm = kf.landmarks.astype(np.float64)
        if not len(kf.image) or float(R.inter_ocular(lm)) < 4:
            return taken
        # Texels at the keyframe's own density (resampling would blur them), unless it is much
        # denser than the portrait (then as dense as the portrait's, which saves texture).
        scale = min(1.0, KEEP_DENSITY * self.iod / float(R.inter_ocular(lm)))
        if scale * max(kf.image.shape[:2]) > 4 * self.size:
            return taken
        state = motion_from_landmarks(lm)
        shape = canonical_mouth(state)
        rim_lm = lm[self.mesh.copies[0][1], :2]
        lips_lm = lm[self.lip_region, :2]
        # Every keyframe lends its lips and the skin around them, an open one its interior too; they are
        # laid over the portrait's face, so they are denoised as the portrait is, then made as crisp as it
        # (only sharpened, as the eyes are: mouth SSIM 0.823 instead of 0.826 on the held-out clips, detail the
        # same; only denoised: less detail, real3d_may 0.79 instead of 0.81).
        box = np.concatenate([lips_lm.min(0) - 3 / scale, lips_lm.max(0) + 3 / scale])
        if _shows(kf.image, box):  # (denoised and sharpened only then)
            img = denoise_portrait(kf.image) if self.config.denoise else kf.image
            mouth = Keyframe(self._match_sharpness(img, lm, self.lip_region), kf.landmarks, kf.kind)
            texels, origin = self._crop(mouth, box, scale)
            if texels.shape[1] + 4 < self.atlas.width:
                taken.patches["mouth"] = texels
                centre = rim_lm.mean(0)
                rim = centre + RIM_SHRINK * (rim_lm - centre)
                taken.mouth = MouthPicture(shape, "mouth", (rim - origin) * scale, (centre - origin) * scale,
                                           (lips_lm - origin) * scale, bool(shape[0] >= MIN_LEND), state.rotation)
        closed = state.blink < 0.5 * np.maximum(self.portrait_state.blink, 1e-6)
        sharp: Keyframe | None = None
        for eye, (contour, anchors) in enumerate(zip((R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR), EYE_ANCHORS)):
            if not closed[eye]:
                continue
            pts = lm[contour, :2]
            width = float(np.linalg.norm(lm[anchors[0], :2] - lm[anchors[1], :2]))
            centre = pts.mean(0)
            half = np.array([0.95 * width, 0.8 * width])
            box = np.concatenate([centre - half, centre + half])
            if not _shows(kf.image, box):  # a picture of the mouth alone
                continue
            if sharp is None:
                sharp = Keyframe(self._match_sharpness(kf.image, lm), kf.landmarks, kf.kind)
            kf = sharp
            texels, origin = self._crop(kf, box, scale)
            if texels.shape[1] + 4 >= self.atlas.width:
                continue
            texels[..., :3] = np.clip(texels[..., :3] * self._colour_gain(kf, eye), 0, 1)
            name = f"eye{eye}"
            taken.patches[name] = texels
            taken.eyes.append(EyePicture(eye, name, (lm[anchors, :2] - origin) * scale, (centre - origin) * scale,
                                         np.array(EYE_AXES) * width * scale))
        return taken

    def turn_patch(self, kf: Keyframe) -> tuple[np.ndarray, turns.TurnPicture] | None:
        """A keyframe of the head turned as a :class:`codec.render.turns.TurnPicture`: its face's texels
        (``[h, w, 4]``, alpha 1), and where each face vertex samples in them (``patch`` ``"face"``; sources
        and lid lifts in its texels, relative to its first texel's corner). None when the keyframe serves
        as no turn picture (:func:`codec.render.turns.is_turn_picture`, or ``turns`` off).

        Like :meth:`keyframe_patches`, depends on the portrait and the keyframe alone and changes nothing:
        :meth:`add_keyframe` places the patch; :func:`codec.webexport.keyframe_bundle` sends it to a page.
        """
        lm = kf.landmarks.astype(np.float64)
        if not self.config.turns or not len(kf.image) or float(R.inter_ocular(lm)) < 4:
            return None
        scale = min(1.0, KEEP_DENSITY * self.iod / float(R.inter_ocular(lm)))
        if scale * max(kf.image.shape[:2]) > 4 * self.size:
            return None
        state = motion_from_landmarks(lm)
        pose = turns.poses(state.rotation, self.portrait_state.rotation)
        oval = lm[R.FACE_OVAL, :2]
        if not (turns.is_turn_picture(pose[0], state.blink, self.portrait_state.blink)
                and _shows(kf.image, np.concatenate([oval.min(0), oval.max(0)]))):  # not a picture of the mouth alone
            return None
        # The whole face: denoised as the portrait is, then as crisp.
        image = denoise_portrait(kf.image) if self.config.denoise else kf.image
        kf = Keyframe(self._match_sharpness(image, lm), kf.landmarks, kf.kind)
        box = np.concatenate([oval.min(0) - 3 / scale, oval.max(0) + 3 / scale])
        texels, origin = self._crop(kf, box, scale)
        if texels.shape[1] + 4 >= self.atlas.width:
            return None
        mesh = self.mesh
        src = np.full((len(mesh.vertices), 2), np.nan)
        src[:R.NUM_LANDMARKS] = lm[:, :2]
        for vertex, contour in mesh.centres:
            if vertex != mesh.mouth_centre:
                src[vertex] = lm[contour, :2].mean(0)
        # The portrait's iris rings and lid lifts, turned and scaled as the face is from the portrait to the keyframe.
        a, _ = _similarity_2d(self.landmarks[self._stable, :2].astype(np.float64), lm[None, self._stable, :2])
        for first, count, centre in mesh.irises:
            off = mesh.vertices[first:first + count, :2].astype(np.float64) - self.landmarks[centre, :2]
            z = a[0] * (off[:, 0] + 1j * off[:, 1])
            src[first:first + count] = lm[centre, :2] + np.stack([z.real, z.imag], 1)
        lift = []
        for _, up in self.lids:
            z = a[0] * (up[:, 0] + 1j * up[:, 1]) * scale
            lift.append(np.stack([z.real, z.imag], 1))
        return texels, turns.TurnPicture(float(pose[0]), pose[1:].copy(), "face", (src - origin) * scale,
                                         np.stack(lift))

    def turn_pictures(self) -> list[tuple[turns.TurnPicture, np.ndarray]]:
        """The turn pictures and, for each, ``[V, 2]`` float32 where each mesh vertex samples in the texture's
        layout (the portrait's pixels; NaN: keeps the first render's source)."""
        out = []
        for t in self._turns:
            origin = self.atlas.patches[t.patch].origin(self.atlas.margin)
            out.append((t, (t.sources + origin).astype(np.float32)))
        return out

    def _match_sharpness(self, image: np.ndarray, landmarks: np.ndarray,
                         region: np.ndarray = R.FACE_OVAL) -> np.ndarray:
        """A keyframe as crisp as the portrait: frames that show a moving mouth or lid are often
        motion-blurred, and a soft patch in a sharp face looks pasted in. Sharpened (unsharp mask)
        by the ratio of the two pictures' Laplacian variance inside the convex hull of the ``region``
        landmarks (the face's oval; the lips' region for a mouth, which a picture of the mouth alone
        shows alone), at most :data:`MAX_SHARPEN`."""
        def detail(img: np.ndarray, lm: np.ndarray) -> float:
            mask = np.zeros(img.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm[region, :2] - 0.5).astype(np.int32)), (1,))
            lap = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
            return float(lap[mask > 0].var()) if mask.any() else 0.0

        ratio = detail(self._image_u8, self.landmarks.astype(np.float64)) / max(detail(image, landmarks), 1e-6)
        amount = min(float(np.sqrt(ratio)) - 1.0, MAX_SHARPEN)
        if amount <= 0.05:
            return image
        soft = cv2.GaussianBlur(image, (0, 0), 1.0).astype(np.float32)
        return np.clip(image + amount * (image - soft), 0, 255).astype(np.uint8)

    def _colour_gain(self, kf: Keyframe, eye: int) -> np.ndarray:
        """Per-channel gain that gives the keyframe's skin below an eye the portrait's colour."""
        def skin(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
            contour = (R.RIGHT_EYE_CONTOUR, R.LEFT_EYE_CONTOUR)[eye]
            lo = lm[contour[9:], :2].mean(0)
            width = float(R.inter_ocular(lm)) * 0.25
            c = lo + np.array([0.0, 0.6 * width])
            x0, y0 = np.round(c - 0.3 * width).astype(int)
            x1, y1 = np.round(c + 0.3 * width).astype(int)
            patch = image[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)].reshape(-1, 3).astype(np.float64)
            return np.median(patch, 0) if len(patch) else np.full(3, np.nan)
        a, b = skin(self._image_u8, self.landmarks.astype(np.float64)), skin(kf.image, kf.landmarks)
        gain = a / np.maximum(b, 1.0)
        return np.where(np.isfinite(gain), np.clip(gain, 0.8, 1.25), 1.0).astype(np.float32)

    # -- per frame --------------------------------------------------------------------------------

    def geometry(self, target: np.ndarray) -> Geometry:
        """Where every mesh vertex lies in target frames, and where it samples.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            the :class:`Geometry`.
        """
        mesh = self.mesh
        st = motion_from_landmarks(target.astype(np.float64))
        tv = np.empty((target.shape[0], len(mesh.vertices), 3), np.float32)
        tv[:, :R.NUM_LANDMARKS] = target
        for vertex, contour in mesh.centres:
            tv[:, vertex] = target[:, contour].mean(1)
        for first, contour in mesh.copies:
            tv[:, first:first + len(contour)] = target[:, contour]
        a, _ = _similarity_2d(self.landmarks[self._stable, :2].astype(np.float64),
                              target[:, self._stable, :2].astype(np.float64))
        # Hair, ears and neck turn with the head in 3D: the rings sit at the depth of the
        # face's outline, so a turning head moves them less than its face.
        ring = mesh.vertices[mesh.ring_start:].astype(np.float64)
        ring[:, 2] = self._ring_depth
        moved = self._head_motion(st, ring)                           # [B, N, 2]
        # The body follows the head's translation (at the outline's centre), not its turns nor its changes
        # of size (following those too lowered SSIM on every held-out clip), and stays within the texture's
        # margin (past it lie the patches, not more of the portrait).
        body = self._head_motion(st, self._head_centre[None])[:, :1]  # [B, 1, 2]
        body *= self.config.body_follow if self.config.layered else 0.0
        reach = np.linalg.norm(body, axis=-1, keepdims=True)
        body *= np.minimum(1.0, 0.9 * self.atlas.margin / np.maximum(reach, 1e-9))
        f = mesh.ring_follow[None, :, None]
        tv[:, mesh.ring_start:, :2] = ring[:, :2] + f * moved + (1 - f) * body
        # ... pushed out where the face's outline moved out past them (WarpConfig.ring_keep).
        tv[:, mesh.ring_start:, :2] += push_rings(target[..., :2], tv[:, mesh.ring_start:, :2],
                                                  mesh.vertices[mesh.ring_start:, :2], self.landmarks[:, :2],
                                                  self.ring_oval, self.ring_push)
        tv[:, mesh.ring_start:, 2] = 0.0
        sv = np.repeat(self.base_sources[None], len(target), 0)
        for first, count, centre in mesh.irises:
            off = mesh.vertices[first:first + count, :2].astype(np.float64) - self.landmarks[centre, :2]
            off = a[:, None] * (off[:, 0] + 1j * off[:, 1])  # turned and scaled with the head
            tv[:, first:first + count, 0] = target[:, centre, None, 0] + off.real
            tv[:, first:first + count, 1] = target[:, centre, None, 1] + off.imag
            tv[:, first:first + count, 2] = target[:, centre, None, 2]
        drawn, gain, lips, lip_weight, lip_source = self._mouth_sources(st, sv)
        self._teeth(st, target, tv, drawn)
        closure = self._closure(st)
        for eye, (margin, lift) in enumerate(self.lids):
            up = _smoothstep((closure[:, eye] - LID_START) / LID_SPAN)
            sv[:, margin] += (up[:, None, None] * lift).astype(np.float32)
        return Geometry(tv, sv, st, gain, lips, lip_weight, lip_source)

    def mouth_pictures(self) -> list[MouthPicture]:
        """The pictures a mouth's interior can come from: the portrait's own, then the keyframes'."""
        return [self.portrait_mouth, *self._mouths]

    def _mouth_sources(self, st: MotionState,
                       sv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sets where the mouth fan samples in each frame, and picks the lips' picture.

        The lips come from the picture whose mouth shape is nearest the target's (the portrait's own,
        or a keyframe's: then they are laid over the frame, see :func:`lip_overlay`). When that picture
        is open enough to lend its interior, the fan samples it too, up to its own inner lips; otherwise
        the fan samples the nearest-shaped picture that lends one, or the drawn interior.

        Returns:
            ``[B]`` bool, the drawn interior; ``[B]`` the interior's gain (below 1 where the
            target mouth is narrower than the picture it comes from: rounded lips hide the teeth);
            the lips' pictures ``[B, 2]``, the nearest's share ``[B]`` and where the lip region samples in
            each ``[B, 2, N, 2]`` (see :class:`Geometry`).
        """
        pictures = self.mouth_pictures()
        shapes = np.stack([p.shape for p in pictures])                  # [K, 2]
        target = canonical_mouth(st)                                      # [B, 2]
        dist = mouth_distance(target, st.rotation.reshape(-1, 3, 3), shapes,
                              np.stack([p.rotation for p in pictures]))
        order = np.argsort(dist, 1, kind="stable")
        if not self.config.keyframe_lips:
            order = np.zeros_like(order)
        lips = order[:, 0]
        pair = order[:, :2] if len(pictures) > 1 else np.repeat(order, 2, 1)
        d1, d2 = np.take_along_axis(dist, pair, 1).T
        closer = (d2 - d1) / np.maximum(d2 + d1, 1e-9)
        lip_weight = (0.5 + 0.5 * _smoothstep(closer / LIP_FADE)).astype(np.float32)
        lending = np.array([p.interior for p in pictures])
        best = np.argmin(np.where(lending[None], dist, np.inf), 1)
        own = (lips > 0) & lending[lips] & (shapes[lips, 0] >= LEND_SHARE * target[:, 0])
        best = np.where(own, lips, np.where(target[:, 0] < SHUT, 0, best))
        lends = own | (shapes[best, 0] >= LEND_SHARE * target[:, 0])
        drawn = (target[:, 0] >= SHUT) & ~lends
        first, contour = self.mesh.copies[0]
        rim, centre = slice(first, first + len(contour)), self.mesh.mouth_centre
        lent = np.where(drawn, self.portrait_mouth.shape[1], shapes[best, 1])
        gain = np.clip(1 + NARROWING_GAIN * np.minimum(target[:, 1] - lent + NARROWING_FREE, 0.0), MIN_GAIN, 1.0)
        lip_source = np.empty((len(target), 2, len(self.lip_region), 2), np.float32)
        for b in range(len(st.scale)):
            for k in (1, 0):
                q = pictures[pair[b, k]]
                origin = 0.0 if q.patch is None else self.atlas.patches[q.patch].origin(self.atlas.margin)
                lip_source[b, k] = q.lips + origin
            if drawn[b]:
                sv[b, rim], sv[b, centre] = self.drawn_rim, self.drawn_centre
            elif own[b]:  # the fan meets the same picture's lips: up to its own inner lips
                inner = q.lips[self._rim_in_lips] + origin
                sv[b, rim], sv[b, centre] = inner, inner.mean(0)
            else:
                p = pictures[best[b]]
                origin = 0.0 if p.patch is None else self.atlas.patches[p.patch].origin(self.atlas.margin)
                sv[b, rim], sv[b, centre] = p.rim + origin, p.centre + origin
        return drawn, gain, pair, lip_weight, lip_source

    def _teeth(self, st: MotionState, target: np.ndarray, tv: np.ndarray, drawn: np.ndarray) -> None:
        """Places the mouth's inner layers in each frame.

        The fan and the teeth lie flat at the depth of the inner lips' farthest point (the
        triangles' biases put the teeth in front of the fan, the lips in front of both). Where
        the interior is drawn, the teeth hang from the inner lips into the opening, never past
        the other lip; elsewhere they fold flat (no area, nothing drawn).
        """
        mesh = self.mesh
        far = target[:, R.LIPS_INNER, 2].max(1)                           # [B]
        first, contour = mesh.copies[0]
        tv[:, first:first + len(contour), 2] = far[:, None]
        tv[:, mesh.mouth_centre, 2] = far
        down = st.rotation[:, :2, 1] * st.scale[:, None]                  # [B, 2] the head's downwards, per IOD
        unit = down / np.maximum(np.linalg.norm(down, axis=1, keepdims=True), 1e-6)
        (up_first, upper, _), (lo_first, lower, _) = mesh.teeth
        # The inner lips face each other point by point (corner to corner above, reversed below).
        gap = np.einsum("bkc,bc->bk", target[:, lower[::-1], :2] - target[:, upper, :2], unit)
        gap = np.maximum(gap, 0.0) * drawn[:, None]                       # [B, K] the opening's height
        for (first, contour, sign), u in zip(mesh.teeth, self.teeth_u):
            k = len(contour)
            reach = (interior.UPPER_TEETH if sign > 0 else interior.LOWER_TEETH) * interior.teeth_profile(u)
            length = np.minimum(reach[None, :] * st.scale[:, None], gap if sign > 0 else gap[:, ::-1])
            top = target[:, contour]
            tv[:, first:first + k, :2] = top[..., :2]
            tv[:, first + k:first + 2 * k, :2] = top[..., :2] + sign * length[..., None] * unit[:, None, :]
            tv[:, first:first + 2 * k, 2] = far[:, None]

    def _closure(self, st: MotionState) -> np.ndarray:
        """``[B, 2]`` how far each eye is closed compared with the portrait's (0 as open, 1 shut)."""
        return np.clip(1 - st.blink / np.maximum(self.portrait_state.blink, 1e-6), 0.0, 1.0)

    def _head_motion(self, st: MotionState, points: np.ndarray) -> np.ndarray:
        """Displacement ``[B, N, 2]`` of portrait points ``[N, 3]`` moved rigidly with the head to each target."""
        src = self.portrait_state
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
            grid ``[B, H, W, 2]``: where each output pixel samples, in the portrait's
            ``grid_sample`` coordinates; regions ``[B, 3, H, W]``: coverage of the
            mouth opening, depth into it (0 at the lips, 1 at its centre), and
            coverage of the eye openings; both float32 on the device.
        """
        grid, regions, _ = self._flow(np.asarray(target, np.float32))
        return grid, regions

    def _flow(self, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Geometry]:
        geo = self.geometry(target)
        grid, regions = rasterize_batch(geo.target, geo.source, self.mesh.triangles, self._bias, self.mesh.kind,
                                        self.size)
        return torch.from_numpy(grid).to(self.device), torch.from_numpy(regions).to(self.device), geo

    @torch.inference_mode()
    def warp(self, target: np.ndarray) -> WarpResult:
        """Renders target frames, keeping what the neural stage reads.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            the :class:`WarpResult`.
        """
        target = np.asarray(target, np.float32)
        grid, regions, geo = self._flow(target)
        tex_grid = torch.addcmul(self._grid_offset, grid, self._grid_scale)
        sampled = F.grid_sample(self.texture.expand(len(target), -1, -1, -1), tex_grid, mode="bilinear",
                                padding_mode="border", align_corners=False)
        frames, alpha = sampled[:, :3], sampled[:, 3:]
        if self.background is not None:
            frames = torch.lerp(self.background, frames, alpha)
        if self._turns:
            self._blend_turns(frames, grid, geo)
        if (geo.mouth_gain < 1).any():
            # Only the box around the target mouths can change.
            lips = target[:, R.LIPS_OUTER, :2]
            x0, y0 = np.clip(np.floor(lips.min((0, 1))).astype(int) - 2, 0, self.size)
            x1, y1 = np.clip(np.ceil(lips.max((0, 1))).astype(int) + 2, 0, self.size)
            box = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
            dim = torch.from_numpy(1 - geo.mouth_gain.astype(np.float32)).to(self.device).view(-1, 1, 1, 1)
            frames[box] = frames[box] * (1 - dim * regions[:, :1][box])
        self._lay_lips(frames, geo)
        if self._eyes:
            self._blend_eyes(frames, target, geo.state)
        newness = torch.from_numpy(self.mouth_newness(target)).to(self.device).view(-1, 1, 1, 1)
        return WarpResult(frames, grid, regions, alpha, newness)

    def turn_weights(self, st: MotionState) -> np.ndarray:
        """``[B, K]`` how much of each frame's face comes from each turn picture
        (:func:`codec.render.turns.turn_weights`)."""
        pose = turns.poses(st.rotation, self.portrait_state.rotation)
        return turns.turn_weights(pose[:, 0], np.array([t.yaw for t in self._turns], np.float64), pose[:, 1:],
                                  np.array([t.tilt for t in self._turns], np.float64).reshape(-1, 2))

    def _blend_turns(self, frames: torch.Tensor, grid: torch.Tensor, geo: Geometry) -> None:
        """Mixes the face rendered from each turn picture into the frames, by pose, inside the face (in place)."""
        weights = self.turn_weights(geo.state)
        if not (weights > 0).any():
            return
        mask = F.grid_sample(self.face_mask.expand(len(frames), -1, -1, -1), grid, mode="bilinear",
                             padding_mode="zeros", align_corners=False)               # [B, 1, H, W]
        up = _smoothstep((self._closure(geo.state) - LID_START) / LID_SPAN)           # [B, 2]
        tris, bias, kind = self._turn_mesh
        mixed = frames.clone()
        for k, (pic, sources) in enumerate(self.turn_pictures()):
            rows = np.flatnonzero(weights[:, k] > 0)
            if not len(rows):
                continue
            sv = geo.source[rows].copy()
            sv[:, self.turn_vertices] = sources[self.turn_vertices]
            for eye, (margin, _) in enumerate(self.lids):
                sv[:, margin] += (up[rows, eye][:, None, None] * pic.lift[eye]).astype(np.float32)
            g, _ = rasterize_batch(geo.target[rows], sv, tris, bias, kind, self.size)
            turned = F.grid_sample(self.texture[:, :3].expand(len(rows), -1, -1, -1),
                                   torch.addcmul(self._grid_offset, torch.from_numpy(g).to(self.device),
                                                 self._grid_scale), mode="bilinear",
                                   padding_mode="border", align_corners=False)
            idx = torch.from_numpy(rows).to(self.device)
            w = torch.from_numpy(weights[rows, k].astype(np.float32)).to(self.device).view(-1, 1, 1, 1)
            mixed[idx] += w * mask[idx] * (turned - frames[idx])
        frames.copy_(mixed)

    def eye_picture(self, eye: int) -> EyePicture | None:
        """The closed eye a closing ``eye`` (0 or 1) is blended towards: the latest keyframe's, or None."""
        return next((p for p in reversed(self._eyes) if p.eye == eye), None)

    def _lay_lips(self, frames: torch.Tensor, geo: Geometry) -> None:
        """Lays keyframes' lips over the frames whose lips come from one (in place; see :func:`lip_flow`):
        the nearest picture's and the second nearest's mixed by the nearest's share (a portrait's lips: the
        frame as warped), laid over the frame with the region's alpha."""
        sel = np.flatnonzero((geo.lips > 0).any(1))
        if not len(sel):
            return
        tv = np.ascontiguousarray(geo.target[sel][:, self.lip_region])
        xy = tv[..., :2]
        x0, y0 = np.clip(np.floor(xy.min((0, 1))).astype(int) - 1, 0, self.size)
        x1, y1 = np.clip(np.ceil(xy.max((0, 1))).astype(int) + 2, 0, self.size)
        if x1 <= x0 or y1 <= y0:
            return
        rows = torch.from_numpy(sel).to(self.device)
        warped = frames[rows, :, y0:y1, x0:x1]
        flow, alpha = lip_flow(tv, geo.lip_source[sel], self.lip_triangles, self.lip_alpha, self.size,
                               (int(x0), int(y0), int(x1), int(y1)))
        laid = []
        for k in (0, 1):
            grid = torch.from_numpy(np.ascontiguousarray(flow[:, k])).to(self.device)
            tex_grid = torch.addcmul(self._grid_offset, grid, self._grid_scale)
            lips = F.grid_sample(self.texture[:, :3].expand(len(sel), -1, -1, -1), tex_grid, mode="bilinear",
                                 padding_mode="border", align_corners=False)
            own = torch.from_numpy(geo.lips[sel, k] == 0).to(self.device).view(-1, 1, 1, 1)
            laid.append(torch.where(own, warped, lips))           # the portrait's lips: the frame as warped
        share = torch.from_numpy(geo.lip_weight[sel]).to(self.device).view(-1, 1, 1, 1)
        a = torch.from_numpy(alpha[:, None]).to(self.device)
        out = torch.lerp(warped, torch.lerp(laid[1], laid[0], share), a)
        frames[rows, :, y0:y1, x0:x1] = out

    def _blend_eyes(self, frames: torch.Tensor, target: np.ndarray, st: MotionState) -> None:
        """Blends each closing eye towards a keyframe's closed eye (in place)."""
        weight = _smoothstep((self._closure(st) - EYE_BLEND[0]) / (EYE_BLEND[1] - EYE_BLEND[0]))  # [B, 2]
        side = torch.tensor([self.atlas.width, self.atlas.height], dtype=torch.float32, device=self.device)
        for b in range(len(target)):
            for eye in (0, 1):
                if weight[b, eye] <= 0:
                    continue
                pic = self.eye_picture(eye)
                if pic is None:
                    continue
                texels = self.atlas.patches[pic.patch]
                # Similarity from the keyframe's eye (patch texels) onto the target's.
                a, c = _similarity_2d(pic.anchors, target[b:b + 1, EYE_ANCHORS[eye], :2].astype(np.float64))
                h, w = texels.texels.shape[:2]
                corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
                z = a[0] * (corners[:, 0] + 1j * corners[:, 1]) + c[0]
                x0, x1 = int(max(np.floor(z.real.min()), 0)), int(min(np.ceil(z.real.max()), self.size))
                y0, y1 = int(max(np.floor(z.imag.min()), 0)), int(min(np.ceil(z.imag.max()), self.size))
                if x1 - x0 < 2 or y1 - y0 < 2:
                    continue
                ys, xs = torch.meshgrid(torch.arange(y0, y1, device=self.device, dtype=torch.float32) + 0.5,
                                        torch.arange(x0, x1, device=self.device, dtype=torch.float32) + 0.5,
                                        indexing="ij")
                inv = 1 / a[0]
                pz = (xs - float(c[0].real), ys - float(c[0].imag))
                px = float(inv.real) * pz[0] - float(inv.imag) * pz[1]   # patch texel coordinates
                py = float(inv.imag) * pz[0] + float(inv.real) * pz[1]
                r = torch.sqrt(((px - float(pic.centre[0])) / float(pic.axes[0])) ** 2
                               + ((py - float(pic.centre[1])) / float(pic.axes[1])) ** 2)
                mask = (1 - r).clamp(0, EYE_FEATHER) / EYE_FEATHER
                mask = mask * mask * (3 - 2 * mask) * float(weight[b, eye])
                tx = (px + texels.x) * 2 / side[0] - 1
                ty = (py + texels.y) * 2 / side[1] - 1
                grid = torch.stack([tx, ty], -1)[None]
                sample = F.grid_sample(self.texture[:, :3], grid, mode="bilinear", padding_mode="border",
                                       align_corners=False)[0]
                region = frames[b, :, y0:y1, x0:x1]
                region.copy_(torch.lerp(region, sample, mask[None]))

    def __call__(self, target: np.ndarray) -> torch.Tensor:
        """Renders target frames.

        Args:
            target: ``[B, 478, 3]`` target landmarks in the portrait's pixels.
        Returns:
            ``[B, 3, H, W]`` float32 RGB in [0, 1] on the device.
        """
        return self.warp(target).frames
