"""Keyframes: extra stills of the caller that show what the portrait lacks (teeth, eyelids, a turned head).

The sender picks them during a call (:mod:`codec.keyframe_select`) and sends them as pictures
(:mod:`codec.picture`); the receiver hands them to :meth:`codec.render.pipeline.Renderer.add_keyframe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Keyframe:
    """One still of the portrait's own face.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB; best the reference's crop (same box and size as the portrait).
        landmarks: ``[478, 3]`` float32 in ``image``'s pixels.
        kind: what it shows (``"mouth"``, ``"eyes_closed"``, ``"turn_left"``, ``"turn_right"``); informational,
            the renderer picks per frame by nearest mouth shape, eye closure or head pose.
    """

    image: np.ndarray
    landmarks: np.ndarray
    kind: str = ""
