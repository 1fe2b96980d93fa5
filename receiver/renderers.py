"""The renderers of a call: the first one, and those it switches to mid-call.

A call may start on one portrait (a placeholder, or ``--portrait``) and
switch to another when the caller's own picture arrives; ticks after the
switch's media time use the new renderer. Keyframes (more pictures of the
caller's face) go to the renderers switched to, never to the first one (it
may show someone else). The live view's render thread and the recording
process each hold one :class:`Renderers` and apply the same changes in the
same order, so both render a tick with the same portrait.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class Renderers:
    """Picks the renderer for each tick.

    Args:
        first: the renderer a call starts with (``render([B, 478, 3]) -> [B, H, W, 3]`` uint8).
    """

    def __init__(self, first: Any) -> None:
        self.first = first
        self._switched: list[tuple[float, Any]] = []  # (after media ms, renderer), in the order installed
        self._keyframes: list[Any] = []

    def install(self, after_media_ms: float, renderer: Any) -> None:
        """Ticks after ``after_media_ms`` use ``renderer`` (given the call's keyframes so far)."""
        for kf in self._keyframes:
            _add_keyframe(renderer, kf)
        self._switched.append((after_media_ms, renderer))

    def add_keyframe(self, keyframe: Any) -> None:
        """Gives a keyframe to every renderer switched to in this call, and to those switched to later."""
        self._keyframes.append(keyframe)
        for _, r in self._switched:
            _add_keyframe(r, keyframe)

    def reset(self) -> None:
        """A new call: back to the first renderer, no keyframes."""
        self._switched.clear()
        self._keyframes.clear()

    def for_tick(self, media_ms: float) -> Any:
        """The renderer of the latest switch before ``media_ms``, else the first."""
        for after, r in reversed(self._switched):
            if media_ms > after:
                return r
        return self.first


def _add_keyframe(renderer: Any, keyframe: Any) -> None:
    add = getattr(renderer, "add_keyframe", None)  # a renderer without keyframe support ignores them
    if add is None:
        return
    try:
        add(keyframe)
    except Exception as e:  # a keyframe the renderer cannot use is left out, the call goes on
        log.warning("the renderer refused a keyframe: %s: %s", type(e).__name__, e)
