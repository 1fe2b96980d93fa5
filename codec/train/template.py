"""Learns the canonical face template from the corpus (generalized Procrustes).

The template is the mean shape of the training clips' landmarks after removing
each frame's similarity transform. The rigid fit then uses only "stable"
points, those that move least with expression once the head pose is removed,
so that an open mouth or a raised brow does not read as a head movement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec import regions as R
from codec.errors import MediaError
from codec.motion import TEMPLATE_PATH, Template, similarity_fit
from codec.paths import atomic_output
from codec.regions import NUM_LANDMARKS
from codec.train.corpus import clip_landmarks, corpus_dir
from codec.train.output import add_output_arguments, check_model_output, training_split
from codec.validate import ArgumentParser, integer_in

NUM_STABLE = 120
_MOBILE = np.concatenate([R.LIPS, R.LIPS_INNER, R.LIPS_OUTER, R.EYES, R.RIGHT_BROW, R.LEFT_BROW,
                          np.arange(468, 478)])
_CHIN_LINE = np.array([152, 148, 176, 149, 150, 136, 172, 58, 132, 377, 400, 378, 379, 365, 397, 288, 361])


def _align(frames: np.ndarray, target: np.ndarray, idx: np.ndarray) -> np.ndarray:
    rot, t, s = similarity_fit(np.broadcast_to(frames[:, idx], frames[:, idx].shape),
                               np.broadcast_to(target[idx], frames[:, idx].shape))
    return s[:, None, None] * np.einsum("bij,bnj->bni", rot, frames) + t[:, None, :]


def _canonical_pose(shape: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Centres on the stable points, eyes along +x, y down, z into the image, IOD 1."""
    x = shape[R.LEFT_EYE_CORNERS[0]] - shape[R.RIGHT_EYE_CORNERS[0]]
    x /= np.linalg.norm(x)
    y = shape[152] - shape[168]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    out = (shape - shape[idx].mean(0)) @ rot.T
    return out / np.linalg.norm(out[R.LEFT_EYE_CORNERS[0], :2] - out[R.RIGHT_EYE_CORNERS[0], :2])


def build_template(landmarks: np.ndarray, iterations: int = 4) -> Template:
    """Generalized Procrustes analysis.

    Args:
        landmarks: ``[N, 478, 3]`` pixels from many frames and people (no NaN).
    Returns:
        the :class:`Template`.
    """
    frames = landmarks.astype(np.float64)
    every = np.arange(NUM_LANDMARKS)
    mean = _canonical_pose(frames[0], every)
    idx = every
    for it in range(iterations):
        aligned = _align(frames, mean, idx)
        mean = _canonical_pose(aligned.mean(0), idx)
        if it == 0:
            # Choose the stable points once the shapes are roughly aligned.
            aligned = _align(frames, mean, every)
            spread = np.linalg.norm(aligned - aligned.mean(0), axis=-1).std(0)
            spread[_MOBILE] = np.inf
            spread[_CHIN_LINE] = np.inf
            idx = np.sort(np.argsort(spread)[:NUM_STABLE])
    return Template(mean, idx)


def save_template(template: Template, path: Path = TEMPLATE_PATH) -> None:
    """Writes the template, whole or not at all (:func:`codec.paths.atomic_output`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        np.savez_compressed(tmp, shape=template.shape.astype(np.float32), stable=template.stable.astype(np.int16))


def train_template(stride: int = 2, out: Path = TEMPLATE_PATH) -> Template:
    """Builds the template from the training clips' cached landmarks and saves it to ``out``.

    Raises:
        MediaError: no training clips, or none with a face.
    """
    root = corpus_dir()
    chunks = []
    for clip in training_split(root).train:
        cl = clip_landmarks(root / clip)
        chunks.append(cl.landmarks[cl.valid][::stride])
    frames = np.concatenate(chunks)
    if not len(frames):
        raise MediaError(f"no face in the training clips under {root}")
    tpl = build_template(frames)
    save_template(tpl, out)
    return tpl


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="talk-train template", description=train_template.__doc__)
    parser.add_argument("--stride", type=integer_in(1, 1000), default=2, help="use every Nth frame")
    add_output_arguments(parser, TEMPLATE_PATH)
    args = parser.parse_args(argv)
    check_model_output(args.out, args.overwrite)
    tpl = train_template(args.stride, args.out)
    print(f"template: {len(tpl.stable)} stable points -> {args.out}")
    return 0
