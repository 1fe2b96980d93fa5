"""Motion features: landmarks -> motion state -> delta from the reference, and back.

A face's motion state splits its 478 landmarks into

* a rigid head pose: the similarity transform ``X ≈ s · R · (T + E) + t`` that
  maps the canonical template ``T`` into the image (rotation ``R``,
  translation ``t`` in pixels, scale ``s``), fitted on the points that do not
  move with expression;
* a non-rigid expression ``E``: the landmark residuals in the canonical frame;
* gaze: each iris centre relative to its eye corners, and blink: each eye's
  lid opening, both measured in the canonical frame.

The stream carries a :class:`MotionDelta`, the motion relative to the
sender's reference frame. Applying a delta to any portrait's own state
(:func:`apply_delta`) gives landmarks in that portrait's image: this is
relative transfer, and the portrait may show someone else entirely.

Every function is batched over leading axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from codec import regions as R
from codec.paths import DATA_DIR
from codec.regions import NUM_LANDMARKS

TEMPLATE_PATH = DATA_DIR / "template.npz"

# Sizes of the parts of a delta vector, in order.
DELTA_PARTS = (("rotation", 3), ("translation", 3), ("log_scale", 1),
               ("expression", NUM_LANDMARKS * 3), ("gaze", 4), ("blink", 2))
DELTA_DIM = sum(n for _, n in DELTA_PARTS)


@dataclass(frozen=True)
class Template:
    """The canonical face: the corpus's mean shape.

    Attributes:
        shape: ``[478, 3]`` in units of the inter-ocular distance, centred on
            the stable points, eyes along +x, y down, z into the image.
        stable: indices of the points used for the rigid fit.
    """

    shape: np.ndarray
    stable: np.ndarray


@lru_cache(maxsize=1)
def load_template(path: Path = TEMPLATE_PATH) -> Template:
    """The shipped template (``codec/data/template.npz``, built by ``talk-train template``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `talk-train template`")
    z = np.load(path)
    return Template(z["shape"].astype(np.float64), z["stable"].astype(np.int64))


def lower_face(template: Template | None = None) -> np.ndarray:
    """``[478]`` bool: the landmarks below the nose tip (y points down), the part that speech moves."""
    tpl = template or load_template()
    return tpl.shape[:, 1] > tpl.shape[1, 1]


@dataclass
class MotionState:
    """The motion of one face in one image (batched over leading axes ``...``).

    Attributes:
        rotation: ``[..., 3, 3]``.
        translation: ``[..., 3]`` pixels.
        scale: ``[...]`` pixels per template unit (≈ inter-ocular distance).
        expression: ``[..., 478, 3]`` canonical-frame residuals.
        gaze: ``[..., 4]`` (right u, v, left u, v): iris centre along (image
            rightwards) and across (downwards) the eye's corner-to-corner axis,
            in eye widths from the eye's centre.
        blink: ``[..., 2]`` (right, left) lid opening over eye width.
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    expression: np.ndarray
    gaze: np.ndarray
    blink: np.ndarray


@dataclass
class MotionDelta:
    """Motion relative to a reference state (batched over leading axes ``...``).

    Attributes:
        rotation: ``[..., 3]`` axis-angle of ``R_t · R_ref^T``.
        translation: ``[..., 3]`` ``(t_t - t_ref) / s_ref``.
        log_scale: ``[..., 1]`` ``log(s_t / s_ref)``.
        expression: ``[..., 478, 3]`` ``E_t - E_ref``.
        gaze: ``[..., 4]`` and blink ``[..., 2]``: differences.
    """

    rotation: np.ndarray
    translation: np.ndarray
    log_scale: np.ndarray
    expression: np.ndarray
    gaze: np.ndarray
    blink: np.ndarray

    def to_vector(self) -> np.ndarray:
        """``[..., DELTA_DIM]`` float32 in the order of :data:`DELTA_PARTS`."""
        lead = self.rotation.shape[:-1]
        parts = [self.rotation, self.translation, self.log_scale,
                 self.expression.reshape(*lead, NUM_LANDMARKS * 3), self.gaze, self.blink]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    @staticmethod
    def from_vector(v: np.ndarray) -> "MotionDelta":
        """Inverse of :meth:`to_vector`; ``v`` is ``[..., DELTA_DIM]``."""
        if v.shape[-1] != DELTA_DIM:
            raise ValueError(f"delta vectors have {DELTA_DIM} values, got {v.shape[-1]}")
        out, i = {}, 0
        for name, n in DELTA_PARTS:
            out[name] = v[..., i:i + n]
            i += n
        out["expression"] = out["expression"].reshape(*v.shape[:-1], NUM_LANDMARKS, 3)
        return MotionDelta(**out)

    @staticmethod
    def zero(lead: tuple[int, ...] = ()) -> "MotionDelta":
        return MotionDelta.from_vector(np.zeros((*lead, DELTA_DIM), np.float32))


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity transform ``dst ≈ s · R · src + t`` (Umeyama).

    Args:
        src: ``[..., N, 3]``; dst: ``[..., N, 3]``.
    Returns:
        ``R [..., 3, 3]`` (a proper rotation), ``t [..., 3]``, ``s [...]``.
    """
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    xs, xd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.einsum("...ni,...nj->...ij", xd, xs) / src.shape[-2]
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(sig)
    fix[..., 2] = d
    rot = u @ (fix[..., :, None] * vt)
    var_s = (xs ** 2).sum((-1, -2)) / src.shape[-2]
    s = (sig * fix).sum(-1) / var_s
    t = mu_d - s[..., None] * np.einsum("...ij,...j->...i", rot, mu_s)
    return rot, t, s


def _eye_measures(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaze ``[..., 4]`` and blink ``[..., 2]`` from canonical-frame landmarks ``[..., 478, 3]``."""
    gaze, blink = [], []
    # Both eyes measured left to right in the image and downwards, so that the
    # same gaze or blink gives the same signs on either eye.
    eyes = ((R.RIGHT_EYE_CORNERS, R.RIGHT_EYE_LIDS, R.RIGHT_IRIS_CENTER),
            ((R.LEFT_EYE_CORNERS[1], R.LEFT_EYE_CORNERS[0]), R.LEFT_EYE_LIDS, R.LEFT_IRIS_CENTER))
    for (left, right), (up, lo), iris in eyes:
        a, b = canon[..., left, :2], canon[..., right, :2]
        axis = b - a
        width = np.linalg.norm(axis, axis=-1, keepdims=True)
        ex = axis / width
        ey = np.stack([-ex[..., 1], ex[..., 0]], -1)
        rel = canon[..., iris, :2] - (a + b) / 2
        gaze += [(rel * ex).sum(-1) / width[..., 0], (rel * ey).sum(-1) / width[..., 0]]
        lid = canon[..., lo, :2] - canon[..., up, :2]
        blink.append((lid * ey).sum(-1) / width[..., 0])
    return np.stack(gaze, -1), np.stack(blink, -1)


def motion_from_landmarks(landmarks: np.ndarray, template: Template | None = None) -> MotionState:
    """Splits landmarks into pose, expression, gaze and blink.

    Args:
        landmarks: ``[..., 478, 3]`` pixels (as from :class:`codec.face.FaceTracker`).
    Returns:
        the :class:`MotionState`.
    """
    tpl = template or load_template()
    lm = landmarks.astype(np.float64)
    rot, t, s = similarity_fit(np.broadcast_to(tpl.shape[tpl.stable], lm[..., tpl.stable, :].shape),
                               lm[..., tpl.stable, :])
    canon = np.einsum("...ji,...nj->...ni", rot, lm - t[..., None, :]) / s[..., None, None]
    gaze, blink = _eye_measures(canon)
    return MotionState(rot, t, s, canon - tpl.shape, gaze, blink)


def landmarks_from_motion(state: MotionState, template: Template | None = None) -> np.ndarray:
    """Inverse of :func:`motion_from_landmarks`: ``[..., 478, 3]`` pixels."""
    tpl = template or load_template()
    canon = tpl.shape + state.expression
    return (state.scale[..., None, None] * np.einsum("...ij,...nj->...ni", state.rotation, canon)
            + state.translation[..., None, :])


def _axis_angle(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> axis-angle vectors ``[..., 3]``."""
    cos = np.clip((np.trace(rot, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    w = np.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0],
                  rot[..., 1, 0] - rot[..., 0, 1]], -1)
    sin = np.sin(angle)
    k = np.where(sin > 1e-8, angle / (2 * np.where(sin > 1e-8, sin, 1.0)), 0.5)
    return w * k[..., None]


def _rotation_matrix(aa: np.ndarray) -> np.ndarray:
    """Axis-angle vectors ``[..., 3]`` -> rotation matrices ``[..., 3, 3]`` (Rodrigues)."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    a = angle[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def relative(state: MotionState, reference: MotionState) -> MotionDelta:
    """The delta of ``state`` from ``reference`` (reference broadcasts over frames)."""
    rot = state.rotation @ np.swapaxes(reference.rotation, -1, -2)
    return MotionDelta(
        rotation=_axis_angle(rot),
        translation=(state.translation - reference.translation) / reference.scale[..., None],
        log_scale=np.log(state.scale / reference.scale)[..., None],
        expression=state.expression - reference.expression,
        gaze=state.gaze - reference.gaze,
        blink=state.blink - reference.blink,
    )


def apply_delta(portrait: MotionState, delta: MotionDelta) -> MotionState:
    """Relative transfer: the portrait's own state moved by ``delta``.

    Args:
        portrait: the portrait's state (no leading axes, or matching ``delta``'s).
        delta: ``[...]`` deltas.
    Returns:
        the target state, with ``delta``'s leading axes.
    """
    s = portrait.scale * np.exp(delta.log_scale[..., 0])
    return MotionState(
        rotation=_rotation_matrix(delta.rotation.astype(np.float64)) @ portrait.rotation,
        translation=portrait.translation + delta.translation * np.asarray(portrait.scale)[..., None],
        scale=s,
        expression=portrait.expression + delta.expression,
        gaze=portrait.gaze + delta.gaze,
        blink=np.maximum(portrait.blink + delta.blink, 0.0),
    )


def transfer(portrait_landmarks: np.ndarray, delta: MotionDelta, template: Template | None = None) -> np.ndarray:
    """Target landmarks in the portrait's image for each delta.

    Args:
        portrait_landmarks: ``[478, 3]`` pixels of the portrait.
        delta: ``[T]`` deltas.
    Returns:
        ``[T, 478, 3]`` pixels.
    """
    state = motion_from_landmarks(portrait_landmarks, template)
    return landmarks_from_motion(apply_delta(state, delta), template)
