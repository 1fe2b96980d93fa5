"""The triangle mesh the geometric renderer warps: the face, its holes, and the world around it.

A portrait's mesh has five kinds of triangles, all over one vertex array whose
first 478 vertices are the face landmarks:

* ``FACE``: MediaPipe's 852-triangle face tessellation (forehead to chin);
* ``EYE``: the two eye openings, each filled between its lid contour and a
  ring around the iris centre, so the iris moves with its landmarks and the
  lids clip it;
* ``MOUTH``: the opening between the inner lips, a fan from its centre over
  copies of the inner-lip landmarks (so that it can sample another picture
  than the lips around it: the portrait's own mouth, a keyframe's, or a drawn
  interior);
* ``TEETH``: two strips hanging from the inner lips into the opening, the
  upper and lower teeth of the drawn interior, between the lips and the fan;
* ``OUTSIDE``: rings of virtual points around the face oval out to the image
  border, which carry hair, ears and neck with the head and keep the
  background still.

The topology is fixed once per portrait (from the portrait's landmarks); only
vertex positions change from frame to frame, and the sources of the mouth's
and the upper lids' vertices (see :class:`codec.render.warp.GeometricWarp`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial import Delaunay

from codec import regions as R
from codec.regions import NUM_LANDMARKS

FACE, EYE, MOUTH, OUTSIDE, TEETH = 0, 1, 2, 3, 4
RING_POINTS = 8  # vertices on the ring that carries each iris
UPPER_INNER_LIP = R.LIPS_INNER[:11]  # corner to corner over the upper lip
LOWER_INNER_LIP = np.concatenate([R.LIPS_INNER[10:], R.LIPS_INNER[:1]])  # corner to corner under the lower lip


@lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """MediaPipe's face tessellation as triangles.

    MediaPipe ships the tessellation as edges; its triangles are the 3-cycles
    of that graph, less two cycles on the nose wings that are not faces (each
    of their edges is shared by three cycles instead of at most two).

    Returns:
        ``[852, 3]`` int32 landmark indices.
    """
    # lazy: slow to import (TensorFlow Lite); loaded when a face is first tracked
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = sorted({tuple(sorted((a, b, c))) for a, b in FACEMESH_TESSELATION for c in adj[a] & adj[b]})
    uses: dict[tuple[int, int], int] = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            uses[e] = uses.get(e, 0) + 1
    faces = [t for t in tris if not all(uses[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    return np.array(faces, dtype=np.int32)


@lru_cache(maxsize=4)
def lip_region(rings: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lips and the rings of face landmarks around them, as the face tessellation joins them: the
    patch of face a keyframe's lips are laid over the portrait's with (see :func:`codec.render.warp.lip_flow`).

    Args:
        rings: rings of neighbouring landmarks taken around the lips; the overlay fades out across the last.
    Returns:
        ``landmarks [N]`` int64 (sorted), ``triangles [F, 3]`` int64 indices into ``landmarks`` (the
        tessellation's triangles that touch the lips or an inner ring), and ``alpha [N]`` float32: 1 on
        the lips and inner rings, 0 on the outermost ring (the overlay fades out towards it).
    """
    tris = face_triangles()
    inner = np.asarray(R.LIPS)
    for _ in range(rings - 1):
        inner = np.unique(tris[np.isin(tris, inner).any(1)])
    touching = tris[np.isin(tris, inner).any(1)]
    region = np.unique(touching).astype(np.int64)
    return region, np.searchsorted(region, touching).astype(np.int64), np.isin(region, inner).astype(np.float32)


@dataclass(frozen=True)
class MeshConfig:
    """Shape of the mesh around the face.

    Attributes:
        rings: ``(expansion, follow)`` per ring of virtual points: the face oval
            scaled about its centre by ``expansion``, moving with ``follow`` times
            the head's rigid motion (1: with the head, 0: still). Falling from 1
            to 0 outwards gives hair and neck the head's motion and a still
            background, joined smoothly.
        border_points: points per image side, held still.
    """

    rings: tuple[tuple[float, float], ...] = ((1.25, 1.0), (1.7, 0.9), (2.3, 0.5), (3.0, 0.0))
    border_points: int = 6


@dataclass(frozen=True)
class PortraitMesh:
    """A portrait's mesh (see the module docstring).

    Attributes:
        vertices: ``[V, 3]`` float32 source positions in the portrait's pixels
            (x, y; z in the same scale, smaller is nearer); the first 478 are the landmarks.
        triangles: ``[F, 3]`` int32 vertex indices.
        kind: ``[F]`` int8, ``FACE``/``EYE``/``MOUTH``/``OUTSIDE``.
        mouth_centre: vertex index of the mouth opening's centre.
        centres: ``(vertex, contour)`` for each added centre vertex (the mouth's,
            and an eye's when its iris lies outside the lids): the vertex sits at
            the mean of the ``contour`` landmarks in every frame.
        irises: ``(first, count, centre)`` for each iris ring: vertices
            ``first .. first + count - 1`` keep their offset from landmark
            ``centre``, turned and scaled with the head.
        ring_start: index of the first ring vertex; rings then border follow.
        ring_follow: ``[V - ring_start]`` float32 share of the head's rigid motion
            of each ring and border vertex.
        copies: ``(first, landmarks)``: vertices ``first .. first + len(landmarks) - 1``
            sit on those landmarks in every frame (the mouth fan's rim).
        teeth: ``(first, landmarks, down)`` for each teeth strip: vertices ``first ..``
            lie on the landmarks (an inner lip, corner to corner), the next as many
            hang from them, downwards (``down`` 1, upper teeth) or upwards (-1, lower).
        lids: ``(margin, above)`` for each eye: the upper lid's landmarks between
            the corners, and for each the face landmark just above it (the skin a
            closing lid is drawn from).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    kind: np.ndarray
    mouth_centre: int
    centres: tuple[tuple[int, np.ndarray], ...]
    irises: tuple[tuple[int, int, int], ...]
    ring_start: int
    ring_follow: np.ndarray
    copies: tuple[tuple[int, np.ndarray], ...] = ()
    teeth: tuple[tuple[int, np.ndarray, int], ...] = ()
    lids: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points ``[N, 2]`` strictly inside polygon ``[M, 2]`` (even-odd rule)."""
    # lazy: slow to import; only the plot needs it
    import matplotlib.path as mpath

    return mpath.Path(poly).contains_points(pts)


def _ray_distances(origin: np.ndarray, dirs: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from ``origin [2]`` along each unit direction ``[K, 2]`` to polygon ``[M, 2]``'s boundary."""
    p, q = poly, np.roll(poly, -1, 0)
    e = q - p                                        # [M, 2] edges
    w = p - origin                                   # [M, 2]
    den = dirs[:, None, 0] * e[None, :, 1] - dirs[:, None, 1] * e[None, :, 0]  # [K, M]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[None, :, 0] * e[None, :, 1] - w[None, :, 1] * e[None, :, 0]) / den   # along the ray
        u = (w[None, :, 0] * dirs[:, None, 1] - w[None, :, 1] * dirs[:, None, 0]) / den  # along the edge
    hit = (np.abs(den) > 1e-12) & (t > 0) & (u >= 0) & (u <= 1)
    return np.where(hit, t, np.inf).min(1)


def _fill_eye(verts: np.ndarray, contour: np.ndarray, iris: np.ndarray,
              first_new: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangles filling one eye opening, and the new vertices they use.

    A ring of new vertices around the iris centre, inside the lids, moves
    rigidly with the iris (so the iris keeps its shape when the gaze turns);
    the band between the ring and the lids stretches like the sclera would.
    When the iris centre is not inside the lids (a closed eye), the opening is
    a fan from a new vertex at the contour's mean.

    Args:
        verts: ``[N, 3]`` vertices so far (the landmarks first).
        contour, iris: landmark indices of the lid contour and the iris (centre first).
        first_new: index the first new vertex will get.
    Returns:
        triangles ``[K, 3]`` and new vertices ``[M, 3]``.
    """
    poly = verts[contour, :2]
    fan = np.stack([contour, np.roll(contour, -1), np.full(len(contour), first_new)], 1)
    centre = verts[iris[0]]
    if not _inside(poly, centre[None, :2])[0]:
        return fan, verts[contour].mean(0, keepdims=True)
    radius = np.linalg.norm(verts[iris[1:], :2] - centre[:2], axis=1).mean()
    ang = np.arange(RING_POINTS) * (2 * np.pi / RING_POINTS)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    r = np.minimum(radius, 0.7 * _ray_distances(centre[:2], dirs, poly))
    ring = np.concatenate([centre[:2] + dirs * r[:, None], np.full((RING_POINTS, 1), centre[2])], 1)
    ring_ids = first_new + np.arange(RING_POINTS)
    core = np.stack([np.full(RING_POINTS, iris[0]), ring_ids, np.roll(ring_ids, -1)], 1)
    ids = np.concatenate([contour, ring_ids])
    pts = np.concatenate([poly, ring[:, :2]])
    band = Delaunay(pts).simplices
    mid = pts[band].mean(1)
    band = ids[band[_inside(poly, mid) & ~_inside(ring[:, :2], mid)]]
    tris = np.concatenate([core, band])
    all_pts = np.concatenate([verts[:, :2], ring[:, :2]])
    # Delaunay may cut across a concave stretch of the lids; a fan from the
    # iris centre is then the safe filling.
    if abs(_area(all_pts[tris]).sum() - _area(poly[None])[0]) > 1e-3 * _area(poly[None])[0]:
        return np.where(fan == first_new, iris[0], fan), np.zeros((0, 3))
    return tris, ring


def _area(polys: np.ndarray) -> np.ndarray:
    """Areas of polygons ``[N, M, 2]`` -> ``[N]``."""
    x, y = polys[..., 0], polys[..., 1]
    return np.abs((x * np.roll(y, -1, -1) - y * np.roll(x, -1, -1)).sum(-1)) / 2


def build_mesh(landmarks: np.ndarray, size: int, config: MeshConfig = MeshConfig()) -> PortraitMesh:
    """The mesh of a portrait.

    Args:
        landmarks: ``[478, 3]`` the portrait's landmarks in its pixels.
        size: the portrait's side in pixels (where the still border lies).
        config: ring layout.
    Returns:
        the :class:`PortraitMesh`.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    verts = [lm]
    tris: list[np.ndarray] = [face_triangles()]
    kinds = [np.full(len(tris[0]), FACE, np.int8)]
    n = NUM_LANDMARKS

    def add_vertex(p: np.ndarray) -> int:
        nonlocal n
        verts.append(p[None])
        n += 1
        return n - 1

    centres, irises = [], []
    for contour, iris in ((R.RIGHT_EYE_CONTOUR, R.RIGHT_IRIS), (R.LEFT_EYE_CONTOUR, R.LEFT_IRIS)):
        eye_tris, new = _fill_eye(np.concatenate(verts), contour, iris, n)
        if len(new) == 1:
            centres.append((add_vertex(new[0]), contour))
        elif len(new):
            irises.append((n, len(new), int(iris[0])))
            for v in new:
                add_vertex(v)
        tris.append(eye_tris.astype(np.int32))
        kinds.append(np.full(len(eye_tris), EYE, np.int8))

    # The mouth: teeth strips first (nearer in depth than the fan, drawn before it), then the fan.
    teeth = []
    for contour, down in ((UPPER_INNER_LIP, 1), (LOWER_INNER_LIP, -1)):
        first = n
        for v in np.concatenate([lm[contour], lm[contour]]):
            add_vertex(v)
        k = len(contour)
        top, bottom = first + np.arange(k), first + k + np.arange(k)
        strip = [(top[i], top[i + 1], bottom[i + 1]) for i in range(k - 1)]
        strip += [(top[i], bottom[i + 1], bottom[i]) for i in range(k - 1)]
        tris.append(np.array(strip, np.int32))
        kinds.append(np.full(len(strip), TEETH, np.int8))
        teeth.append((first, contour, down))
    inner = R.LIPS_INNER
    rim = n
    for v in lm[inner]:
        add_vertex(v)
    mouth_centre = add_vertex(lm[inner].mean(0))
    centres.append((mouth_centre, inner))
    fan = [(rim + k, rim + (k + 1) % len(inner), mouth_centre) for k in range(len(inner))]
    tris.append(np.array(fan, np.int32))
    kinds.append(np.full(len(inner), MOUTH, np.int8))

    ring_start = n
    oval = lm[R.FACE_OVAL]
    centre = oval.mean(0)
    follow = []
    for expansion, share in config.rings:
        ring = centre + (oval - centre) * expansion
        ring[:, 2] = 0.0
        verts.append(ring)
        follow += [share] * len(ring)
    k = config.border_points
    t = np.arange(k) / k * size
    border = np.concatenate([np.stack([t, np.zeros(k)], 1), np.stack([np.full(k, size), t], 1),
                             np.stack([size - t, np.full(k, size)], 1), np.stack([np.zeros(k), size - t], 1)])
    verts.append(np.concatenate([border, np.zeros((len(border), 1))], 1))
    follow += [0.0] * len(border)
    vertices = np.concatenate(verts).astype(np.float32)

    # Outside the face: Delaunay of oval, rings and border, less what the face covers.
    ids = np.concatenate([R.FACE_OVAL, np.arange(ring_start, len(vertices))])
    tri = ids[Delaunay(vertices[ids, :2].astype(np.float64)).simplices]
    keep = ~_inside(oval[:, :2], vertices[tri, :2].mean(1))
    tris.append(tri[keep].astype(np.int32))
    kinds.append(np.full(int(keep.sum()), OUTSIDE, np.int8))

    return PortraitMesh(vertices=vertices, triangles=np.concatenate(tris).astype(np.int32),
                        kind=np.concatenate(kinds), mouth_centre=mouth_centre,
                        centres=tuple(centres), irises=tuple(irises), ring_start=ring_start,
                        ring_follow=np.array(follow, np.float32), copies=((rim, inner),),
                        teeth=tuple(teeth), lids=_lids(lm))


def _lids(lm: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """For each eye, the upper lid's landmarks and the face landmark just above each (see :class:`PortraitMesh`)."""
    tris = face_triangles()
    out = []
    for contour, (outer, inner) in ((R.RIGHT_EYE_CONTOUR, R.RIGHT_EYE_CORNERS),
                                    (R.LEFT_EYE_CONTOUR, R.LEFT_EYE_CORNERS)):
        axis = lm[inner, :2] - lm[outer, :2]
        up = np.array([axis[1], -axis[0]]) / np.linalg.norm(axis)
        if up[1] > 0:  # image y points down: "up" has a negative y
            up = -up
        margin = contour[1:8]  # between the corners, over the upper lid
        ring = set(contour.tolist())
        above = []
        for v in margin:
            nb = {int(u) for t in tris if v in t for u in t} - ring - set(range(468, NUM_LANDMARKS))
            cand = sorted(nb, key=lambda u: -float((lm[u, :2] - lm[v, :2]) @ up))
            above.append(cand[0] if cand else int(v))
        out.append((np.asarray(margin), np.asarray(above)))
    return tuple(out)


PUSH_DOWN_TO = 0.95
"""Ring vertices whose outward direction points down this much or more (its image y component: 72° below
horizontal) are not pushed (:func:`ring_outline`): below the jaw a dropping chin should move over the neck."""

PUSH_DOWN_FADE = 0.15
"""Over this much of the outward direction's y component below :data:`PUSH_DOWN_TO` (from 53° below
horizontal) the push fades from full to none."""


def ring_outline(mesh: PortraitMesh, keep: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Which outline landmark each ring vertex stands out from, and how it is pushed (:func:`push_rings`).

    Every ring is the face oval scaled about its centre, one vertex per oval landmark, in the oval's
    order (:func:`build_mesh`); the border follows.

    Args:
        mesh: the portrait's mesh.
        keep: per ring, the share of the outline's outward move past it the ring takes (rings past
            ``len(keep)`` and the border: none).
    Returns:
        ``[K]`` int64 the oval landmark of each ring and border vertex (``K = V - ring_start``; -1: not
        pushed), and ``[K, 2]`` float64 its outward unit normal (from the oval's centre) times its share.
    """
    n = len(R.FACE_OVAL)
    k = len(mesh.vertices) - mesh.ring_start
    oval = np.full(k, -1, np.int64)
    push = np.zeros((k, 2))
    centre = mesh.vertices[R.FACE_OVAL, :2].astype(np.float64).mean(0)
    rings = mesh.vertices[mesh.ring_start:, :2].astype(np.float64)
    for r, share in enumerate(keep):
        if share <= 0 or (r + 1) * n > k:
            continue
        sl = slice(r * n, (r + 1) * n)
        out = rings[sl] - centre
        oval[sl] = R.FACE_OVAL
        unit = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        # Not below the jaw: a chin that drops moves over the neck.
        side = np.clip((PUSH_DOWN_TO - unit[:, 1]) / PUSH_DOWN_FADE, 0.0, 1.0)
        push[sl] = (share * side)[:, None] * unit
    return oval, push


def push_rings(target: np.ndarray, moved: np.ndarray, rest: np.ndarray, landmarks: np.ndarray,
               oval: np.ndarray, push: np.ndarray) -> np.ndarray:
    """How far each ring vertex is pushed out: by its share of how much further outwards its outline
    landmark moved than the vertex itself (nothing where the outline moved in or less far).

    Args:
        target: ``[B, 478, 2]`` target landmarks; ``moved``: ``[B, K, 2]`` the ring vertices where the
            head's motion put them; ``rest``: ``[K, 2]`` where they lie in the portrait; ``landmarks``:
            ``[478, 2]`` the portrait's; ``oval``, ``push``: :func:`ring_outline`.
    Returns:
        ``[B, K, 2]`` float32 to add to ``moved``.
    """
    on = oval >= 0
    out = np.zeros(moved.shape, np.float32)
    if not on.any():
        return out
    lm = oval[on]
    d = (target[:, lm] - landmarks[lm]) - (moved[:, on] - rest[on])           # [B, k, 2]
    unit = push[on] / np.maximum(np.linalg.norm(push[on], axis=1, keepdims=True), 1e-12)
    excess = np.maximum(np.einsum("bkc,kc->bk", d, unit), 0.0)
    out[:, on] = excess[..., None] * push[on]
    return out
