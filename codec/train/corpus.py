"""The shared talking-head corpus: where it is, how it is split, cached landmarks.

Training and held-out data are split by identity, not by clip, because several
people appear in more than one clip. Landmarks are extracted once per clip and
cached, since the template, the tokenizer, the entropy model and the speech
generator all train on them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.face import ClipLandmarks, extract_landmarks
from codec.paths import cache_dir

# Held out of every training run (all clips of these identities).
HELD_OUT = (
    "clips/real3d_may.mp4",
    "clips/retalking_face4.mp4",
    "clips/styletalk_feifeili_clip1.mp4",
    "clips/styletalk_feifeili_clip2_short.mp4",
    "clips/styletalk_feifeili_clip3.mp4",
    "clips/latentsync_demo2.mp4",
    "clips/liveportrait_d20.mp4",
)


# Speakers with more than one clip in the corpus (its README names them); clips whose names share one
# of these share a speaker.
SHARED_SPEAKERS = ("obama", "andrew", "feifeili", "acosta", "grid_s1_", "mead_M030")


def speaker(clip: str) -> str:
    """Who speaks in a clip, as far as the corpus says (a name shared by all their clips, else the clip's own).

    Cross-validation on the training clips splits by speaker, as training and held-out data are split.
    """
    return next((s for s in SHARED_SPEAKERS if s in clip), clip)


def speaker_folds(speakers: list[str], max_folds: int) -> list[np.ndarray]:
    """Indices of the clips in each cross-validation fold, given each clip's speaker: whole speakers per fold,
    dealt round-robin in a fixed random order, at most ``max_folds`` folds."""
    names = sorted(set(speakers))
    order = np.random.default_rng(0).permutation(len(names))
    k = min(max_folds, len(names))
    fold_of = {names[g]: i % k for i, g in enumerate(order)}
    return [np.flatnonzero([fold_of[s] == f for s in speakers]) for f in range(k)]


def corpus_dir() -> Path:
    """The corpus root: ``$TALKCODEC_CORPUS``, else ``shared/corpus`` beside the repository."""
    env = os.environ.get("TALKCODEC_CORPUS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "corpus"


@dataclass(frozen=True)
class Split:
    """Clip paths relative to the corpus root."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]


def corpus_split(root: Path | None = None) -> Split:
    """Video clips of the corpus split by identity.

    Returns:
        train: every clip in ``clips/`` and ``clips_noaudio/`` not held out;
        held_out: :data:`HELD_OUT` clips that exist.
    """
    root = root or corpus_dir()
    clips = sorted(
        str(p.relative_to(root)) for sub in ("clips", "clips_noaudio") for p in (root / sub).glob("*.mp4")
    )
    held = tuple(c for c in clips if c in HELD_OUT)
    return Split(tuple(c for c in clips if c not in HELD_OUT), held)


def clip_landmarks(path: str | Path) -> ClipLandmarks:
    """Landmarks of a clip, extracted once and cached by file content."""
    p = Path(path)
    h = hashlib.sha1()
    with open(p, "rb") as f:
        h.update(f.read())
    cached = cache_dir() / "landmarks" / f"{p.stem}-{h.hexdigest()[:12]}.npz"
    if cached.exists():
        z = np.load(cached)
        width, height = (int(x) for x in z["size"])
        return ClipLandmarks(z["landmarks"], z["valid"], float(z["fps"]), (width, height))
    cl = extract_landmarks(p)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, landmarks=cl.landmarks, valid=cl.valid, fps=cl.fps, size=np.array(cl.size))
    tmp.replace(cached)
    return cl
