"""Browser viewers: the rendered avatar and the caller's speech as ordinary WebRTC tracks.

The receiver renders once per sender, and encodes each rendered frame once
per video codec in use (VP8 for every browser that offers it, which all
current ones do; H.264 for one that offers only that): every viewer's peer
connection sends the same encoded packets, so a fourth viewer costs the
receiver some packetizing and bandwidth, not another encoder. Each source
has one job:

* :mod:`receiver.viewer_video`: the avatar's frames, encoded once per codec;
* :mod:`receiver.viewer_audio`: the caller's speech, encoded once;
* :class:`Viewers` (here): answers viewers' offers, sends them the call's
  status on a small data channel once a second, and closes them.

The browser side is ``realtime/static`` (served by :mod:`realtime.webpage`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.sdp import SessionDescription

from realtime.peer import gathered_description, new_peer_connection
from realtime.signaling import SignalingError
from receiver.relay import RTP_TAP, TokenRelay
from receiver.viewer_audio import CallerAudioTrack, SharedAudio
from receiver.viewer_video import AvatarTrack, SharedVideo, video_codec

log = logging.getLogger(__name__)

STATUS_LABEL, STATUS_ID = "status", 0
MAX_VIEWERS = 16


class Viewers:
    """The browsers watching this receiver.

    A page whose offer has no video is in token mode: it decodes and draws the
    call itself, fed by ``relay`` (:class:`receiver.relay.TokenRelay`); the
    others get the rendered avatar as video.

    Args:
        rest: ``[H, W, 3]`` uint8, the rendered portrait at rest.
        relay: forwards the call's stream to token-mode pages; None serves video only.
    """

    def __init__(self, rest: np.ndarray, relay: TokenRelay | None = None) -> None:
        self.relay = relay
        self.video = AvatarTrack(rest)
        self.audio = CallerAudioTrack()
        self.shared = SharedVideo(self.video)
        self.shared_audio = SharedAudio(self.audio)
        self._pcs: dict[Any, Any] = {}  # peer connection -> its status channel
        self._tracks: dict[Any, list[Any]] = {}  # peer connection -> the tracks it sends
        self._closing: set[asyncio.Task[None]] = set()
        self._status = b"{}"
        self._published = 0

    def __len__(self) -> int:
        return len(self._pcs)

    @property
    def video_viewers(self) -> int:
        """Viewers that get the rendered avatar (the others decode the call themselves)."""
        return len(self.shared)

    async def on_watch(self, sdp: str) -> str:
        """Answers a viewer's authenticated offer (a ``SignalingServer`` handler).

        Raises:
            SignalingError: too many viewers, or an offer aiortc cannot use.
        """
        if len(self._pcs) >= MAX_VIEWERS:
            raise SignalingError(f"this receiver already serves {MAX_VIEWERS} viewers")
        try:
            tokens = self.relay is not None and not any(m.kind == "video" for m in SessionDescription.parse(sdp).media)
        except Exception as e:
            raise SignalingError(f"unusable viewer offer ({type(e).__name__}: {e})") from None
        pc = new_peer_connection()
        if tokens:
            assert self.relay is not None
            page = self.relay.add(pc, None if RTP_TAP else self.shared_audio.subscribe())
            channel = page.status
        else:
            channel = pc.createDataChannel(STATUS_LABEL, negotiated=True, id=STATUS_ID)
        channel.on("open", lambda: self._send(channel, self._status))
        # A closed tab closes the channel at once; the connection state would take until ICE consent fails.
        channel.on("close", lambda: self._drop(pc))
        self._pcs[pc] = channel
        self._tracks[pc] = []

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._drop(pc)

        pc.on("connectionstatechange", on_state)
        try:
            codec = None if tokens else self._add_tracks(pc, sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            answer = await gathered_description(pc, offer=False)
            if codec is not None and _first_video_codec(answer) != codec.lower():
                raise ValueError(f"the answer's video is not {codec}")
        except Exception as e:
            self._drop(pc)
            raise SignalingError(f"unusable viewer offer ({type(e).__name__}: {e})") from None
        log.info("a browser is watching in %s mode (%d viewers)", "token" if tokens else "video", len(self._pcs))
        return answer

    def _add_tracks(self, pc: Any, sdp: str) -> str | None:
        """Adds a sending transceiver per kind the page asks for (before the offer, so that its
        codec preferences apply); the video codec chosen, or None without video."""
        offer = SessionDescription.parse(sdp)
        codec = None
        for kind in dict.fromkeys(m.kind for m in offer.media if m.kind in ("audio", "video")):
            if kind == "audio":
                audio = self.shared_audio.subscribe()
                self._tracks[pc].append(audio)
                pc.addTransceiver(audio, direction="sendonly")
                continue
            codec = video_codec(offer)
            if codec is None:
                raise ValueError("the page offers neither VP8 nor H.264 video")
            track = self.shared.subscribe(codec)
            self._tracks[pc].append(track)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            # Only the codec encoded: the answer then names it (with its retransmissions).
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                             if c.mimeType.lower() in (codec.lower(), "video/rtx")])
            # aiortc asks a frame encoder for a keyframe on a browser's PLI/FIR; packets come
            # encoded, so the request goes to the shared encoder instead.
            setattr(transceiver.sender, "_send_keyframe", lambda c=codec: self.shared.request_keyframe(c))
        return codec

    def publish(self, status: dict[str, Any]) -> None:
        """Sends the call's status to every viewer (JSON on the status channel).

        Token-mode pages get it every other time (once a second): they measure
        their own frame rate and latency, and on a ~35 kbps stream the status
        line would otherwise be a noticeable share of what they receive.
        """
        rounded = {k: round(v, 1) if isinstance(v, float) else v for k, v in status.items()}
        self._status = json.dumps({**rounded, "viewers": len(self._pcs)}, separators=(",", ":")).encode()
        self._published += 1
        for pc, channel in self._pcs.items():
            if self._published % 2 == 0 or self.relay is None or pc not in self.relay.pages:
                self._send(channel, self._status)

    @staticmethod
    def _send(channel: Any, data: bytes) -> None:
        if channel.readyState == "open":
            try:
                channel.send(data.decode())
            except Exception:  # closing under us: the state change drops the viewer
                pass

    def _drop(self, pc: Any) -> None:
        if self._pcs.pop(pc, None) is None:
            return
        if self.relay is not None:
            self.relay.remove(pc)
        for track in self._tracks.pop(pc, []):
            track.stop()  # a sender that never started would not stop its track
        task = asyncio.create_task(pc.close(), name="viewer-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Closes every viewer and stops the source tracks."""
        for pc in list(self._pcs):
            self._drop(pc)
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.shared.close()
        await self.shared_audio.close()
        self.video.stop()
        self.audio.stop()


def _first_video_codec(sdp: str) -> str | None:
    """The first codec of an SDP's video section, lower case (``video/vp8``), or None."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            return str(media.rtp.codecs[0].mimeType).lower()
    return None
