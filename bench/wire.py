"""What each codec's frames cost on the wire of a WebRTC call, from their sizes.

talkcodec's motion goes in data-channel messages: each costs its packet
bytes plus SCTP (12-byte common header, 16-byte DATA chunk header), a DTLS 1.2
record (13-byte header, 8-byte explicit nonce, 16-byte AES-GCM tag) and
UDP/IPv4 (28) headers: 93 bytes, as ``python -m bench.measure.wire`` measures
on real calls (and checks with tcpdump). With ``frames_per_packet`` > 1 the
frames go together (:func:`codec.bitstream.bundle`), as ``talk-send
--frames-per-packet`` sends them.

A video codec's frames go as RTP: at most 1200 payload bytes a packet, each
with a 1-byte payload descriptor, the 12-byte RTP header, SRTP's 10-byte tag
and UDP/IPv4. That leaves out what favours talkcodec's rivals to leave out:
RTP header extensions (WebRTC video adds 8-16 bytes a packet for congestion
control), RTCP, and NACK or FEC repairs.
"""

from __future__ import annotations

from collections.abc import Sequence

from codec.bitstream import bundle

DATA_CHANNEL_BYTES = 12 + 16 + 13 + 8 + 16 + 28
RTP_BYTES = 1 + 12 + 10 + 28
RTP_MAX_PAYLOAD = 1200


def talkcodec_wire_kbps(packets: Sequence[bytes], seconds: float, frames_per_packet: int = 1,
                        groups: int = 12, codebook_size: int = 625) -> float:
    """The motion's rate on the wire: ``packets`` (one a frame, byte-format version 2) in messages of
    ``frames_per_packet`` frames, over ``seconds``."""
    if seconds <= 0 or not packets:
        return 0.0
    total = 0
    for i in range(0, len(packets), frames_per_packet):
        total += len(bundle(packets[i:i + frames_per_packet], groups, codebook_size)) + DATA_CHANNEL_BYTES
    return total * 8 / seconds / 1000


def rtp_video_wire_kbps(frame_bytes: Sequence[int], seconds: float) -> float:
    """A video stream's rate on the wire: each frame of ``frame_bytes`` in RTP packets of at most 1200 bytes."""
    if seconds <= 0:
        return 0.0
    total = 0
    for n in frame_bytes:
        packets = max(1, -(-n // RTP_MAX_PAYLOAD))
        total += n + packets * RTP_BYTES
    return total * 8 / seconds / 1000
