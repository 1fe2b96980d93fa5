"""The wire meter: datagram classification, and counts of a real in-process call on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.clock import monotonic_ms
from realtime.peer import IceConfig, PeerLink, gathered_description, new_peer_connection, restrict_ice_to_loopback
from realtime.wire import RECEIVED, SENT, UDP_IPV4_BYTES, WireTotals, classify


def test_classify_by_first_byte() -> None:
    assert classify(b"\x00\x01" + bytes(18)) == "stun"
    assert classify(bytes([23, 254, 253]) + bytes(30)) == "dtls"  # a DTLS 1.2 application-data record
    assert classify(bytes([0x80, 111]) + bytes(20)) == "rtp"  # Opus, payload type 111
    assert classify(bytes([0x80, 200]) + bytes(20)) == "rtcp"  # a sender report
    assert classify(bytes([0x40, 0x00, 0x00, 0x08, 23, 254, 253, 0])) == "dtls"  # TURN ChannelData around DTLS
    assert classify(b"") == "other"
    assert classify(bytes([200])) == "other"


@given(st.binary(max_size=64))
def test_classify_never_fails(data: bytes) -> None:
    assert classify(data) in ("stun", "dtls", "rtp", "rtcp", "other")


def test_report_picks_the_forward_direction() -> None:
    t = WireTotals(seconds=2.0)
    t.sent.datagrams["dtls"].add(1000)
    t.sent.datagrams["rtp"].add(500)
    t.received.datagrams["dtls"].add(250)
    at_sender, at_receiver = t.report(SENT), t.report(RECEIVED)
    assert at_sender["motion_kbps"] == 4.0 and at_sender["audio_kbps"] == 2.0
    assert at_sender["total_kbps"] == 6.0 and at_sender["reverse_kbps"] == 1.0
    assert at_receiver["total_kbps"] == 1.0 and at_receiver["reverse_kbps"] == 6.0


def test_ice_config_checks_urls_and_credentials() -> None:
    IceConfig(("stun:stun.example.org:3478",))
    IceConfig(("turn:127.0.0.1:3478",), "u", "p", relay_only=True)
    with pytest.raises(ValueError, match="not a stun"):
        IceConfig(("http://x",))
    with pytest.raises(ValueError, match="needs --ice-user"):
        IceConfig(("turn:127.0.0.1:3478",))
    with pytest.raises(ValueError, match="needs a TURN server"):
        IceConfig(("stun:127.0.0.1:3478",), relay_only=True)


async def open_pair(ice_a: IceConfig | None = None, ice_b: IceConfig | None = None,
                    delayed_sack: bool = True) -> tuple[PeerLink, PeerLink]:
    """Two linked peers in this process (a = offerer, b = answerer), channels open."""
    from aiortc import RTCSessionDescription

    a = PeerLink(new_peer_connection(ice_a), delayed_sack=delayed_sack)
    b = PeerLink(new_peer_connection(ice_b), delayed_sack=delayed_sack)
    offer = await gathered_description(a.pc, offer=True)
    await b.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    answer = await gathered_description(b.pc, offer=False)
    await a.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.gather(a.wait_open(30), b.wait_open(30))
    return a, b


async def send_and_count(n: int, size: int, delayed_sack: bool = True) -> tuple[WireTotals, WireTotals, Any]:
    restrict_ice_to_loopback()
    a, b = await open_pair(delayed_sack=delayed_sack)
    got = asyncio.Event()
    seen: list[bytes] = []

    def on_message(m: Any) -> None:
        seen.append(m)
        if len(seen) == n:
            got.set()

    b.motion.on("message", on_message)
    try:
        for i in range(n):
            a.send_motion(bytes([i % 256]) * size)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(got.wait(), 30)
        # Let the last acknowledgement come back before the counts are read.
        while a.pc.sctp._sent_queue:
            await asyncio.sleep(0.01)
        now = monotonic_ms() / 1000
        return a.wire.stop(now), b.wire.stop(now), a.ice_pair
    finally:
        await a.close()
        await b.close()


def test_a_call_s_datagrams_are_counted_on_both_ends() -> None:
    n, size = 40, 60
    sent, received, pair = asyncio.run(send_and_count(n, size))
    assert pair == {"local": "host", "remote": "host"}
    assert sent.sent.chunks["motion"].packets == n
    assert received.received.chunks["motion"].packets == n
    # Every message is one datagram: the payload, SCTP's 28 bytes, DTLS's record and UDP/IP.
    dtls = received.received.datagrams["dtls"]
    assert dtls.packets >= n
    motion_bytes = sent.sent.datagrams["dtls"].bytes
    per_message = (size + 28 + UDP_IPV4_BYTES, size + 28 + 64 + UDP_IPV4_BYTES)
    assert n * per_message[0] < motion_bytes
    # Loopback loses nothing: what one end sent, the other received (but a datagram still in flight).
    assert abs(sent.sent.datagrams["dtls"].packets - received.received.datagrams["dtls"].packets) <= 1
    assert received.sent.chunks["sack"].packets >= 1


def test_the_speech_jitter_buffer_holds_about_80_ms_whatever_the_packet_length() -> None:
    from types import SimpleNamespace

    from aiortc.jitterbuffer import JitterBuffer

    from realtime.peer import fit_audio_jitter_buffer

    track = object()
    jb = JitterBuffer(capacity=16, prefetch=4)
    receiver = SimpleNamespace(track=track, _RTCRtpReceiver__jitter_buffer=jb)
    pc = SimpleNamespace(getTransceivers=lambda: [SimpleNamespace(receiver=receiver)])
    assert [fit_audio_jitter_buffer(pc, track, ms) for ms in (20, 40, 60)] == [4, 2, 1]
    assert jb._prefetch == 1
    assert fit_audio_jitter_buffer(pc, object(), 20) is None


def test_the_offer_loses_its_audio_header_extensions_only() -> None:
    from realtime.peer import strip_audio_header_extensions

    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
           "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=rtpmap:111 opus/48000/2\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n")
    lean = strip_audio_header_extensions(sdp)
    assert "ssrc-audio-level" not in lean and "a=rtpmap:111 opus/48000/2\r\n" in lean
    assert lean.endswith("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n")
