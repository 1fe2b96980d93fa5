"""The file a GPU machine renders from: ``.gpu/bench.npz``, made on a CPU machine by ``bench.measure.gpu_prepare``.

The GPU machine has torch, OpenCV and numba but no MediaPipe, PyAV or corpus, so everything that needs them
is computed beforehand and kept here. For each clip (the bundled sample; with the corpus, every held-out clip):

* the portrait (the clip's first frame, as ``bench.measure.render_quality`` takes it) prepared as
  :class:`codec.render.assets.PortraitAssets` (lossless);
* the tracked landmarks of its first frames (the target frames follow from them: :func:`clip_targets`);
* reference frames rendered on the CPU by the numba warp and by the CPU refiner, with their targets
  (lossless), for the CUDA/CPU agreement;
* true frames (WebP), for the refiner comparison's SSIM, mouth SSIM and detail;

and a few portraits of training clips (``extra``, with the corpus), so that the streams measured on the
GPU show many faces. Nothing here needs MediaPipe or PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.motion import motion_from_landmarks, relative, transfer
from codec.render.assets import PortraitAssets, unpack_images

DEFAULT_PATH = Path(".gpu") / "bench.npz"


def clip_targets(portrait_landmarks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Target frames of a clip on its portrait: each frame's motion relative to frame 0, transferred
    (as ``bench.measure.render_quality`` does). ``[T, 478, 3]`` landmarks -> ``[T, 478, 3]`` float32."""
    delta = relative(motion_from_landmarks(landmarks), motion_from_landmarks(landmarks[:1]))
    return transfer(portrait_landmarks, delta).astype(np.float32)


@dataclass
class BundleClip:
    """One clip of a bundle, read back.

    Attributes:
        name: the clip's name.
        assets: its portrait.
        landmarks: ``[T, 478, 3]`` tracked landmarks of its first frames.
        targets: ``[T, 478, 3]`` the target frames on the portrait (:func:`clip_targets`).
        ref_index, ref_targets: reference frames' indices ``[K]`` and targets ``[K, 478, 3]``.
        ref_warp: ``[K, H, W, 3]`` uint8 the numba warp's frames; ref_neural: ``[1, H, W, 3]`` the CPU
            refiner's frame of the first reference, or None.
        eval_index: ``[E]`` frames kept for the refiner comparison; truth: ``[E, H, W, 3]`` uint8 (WebP).
    """

    name: str
    assets: PortraitAssets
    landmarks: np.ndarray
    targets: np.ndarray
    ref_index: np.ndarray
    ref_targets: np.ndarray
    ref_warp: np.ndarray
    ref_neural: np.ndarray | None
    eval_index: np.ndarray
    truth: np.ndarray


@dataclass
class Bundle:
    """A bundle read back: its clips and the extra portraits (see the module docstring)."""

    clips: list[BundleClip]
    extra: list[PortraitAssets]


def load_bundle(path: Path) -> Bundle:
    """Reads a bundle written by ``bench.measure.gpu_prepare``.

    Raises:
        ValueError: a missing or unreadable file (with what to run).
    """
    if not path.exists():
        raise ValueError(f"{path} is missing: run `python -m bench.measure.gpu_prepare --out {path}` on a CPU machine")
    try:
        z = np.load(path)
        clips = []
        for i, name in enumerate(z["clips"]):
            p = f"c{i}_"
            assets = PortraitAssets.from_arrays(z, p + "portrait_")
            neural = unpack_images(z[p + "ref_neural"], z[p + "ref_neural_offsets"]) \
                if p + "ref_neural" in z.files else None
            clips.append(BundleClip(
                name=str(name), assets=assets, landmarks=z[p + "landmarks"],
                targets=clip_targets(assets.landmarks, z[p + "landmarks"]), ref_index=z[p + "ref_index"],
                ref_targets=z[p + "ref_targets"],
                ref_warp=np.stack(unpack_images(z[p + "ref_warp"], z[p + "ref_warp_offsets"])),
                ref_neural=np.stack(neural) if neural else None, eval_index=z[p + "eval_index"],
                truth=np.stack(unpack_images(z[p + "truth"], z[p + "truth_offsets"]))))
        extra = [PortraitAssets.from_arrays(z, f"x{j}_") for j in range(len(z["extra"]))]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable bundle ({e}); make it again with bench.measure.gpu_prepare") from None
    return Bundle(clips, extra)
