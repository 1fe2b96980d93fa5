"""The token-mode relay: what it passes on to pages, when a page starts, and the caller's Opus as it came."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from codec.api import EncoderConfig, make_header
from codec.bitstream import Packet, ReferenceInfo, StreamHeader
from codec.stream import StreamWriter
from codec.webexport import pack_container
from realtime.pictures import PacingConfig, PictureInbox
from realtime.protocol import (
    Bye,
    Hello,
    MessageType,
    PictureBegin,
    PictureData,
    Ping,
    Pong,
    Report,
    SenderStats,
    Start,
    encode_message,
    parse_message,
)
from realtime.webpage import TOKEN_CHANNELS
from receiver.relay import PORTRAIT_CHUNK, RelayedAudioTrack, TokenRelay, tap_rtp


class Channel:
    """A data channel that records what is sent."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.readyState = "connecting"
        self.sent: list[bytes] = []
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler

    def open(self) -> None:
        self.readyState = "open"
        if "open" in self.handlers:
            self.handlers["open"]()

    def send(self, data: bytes) -> None:
        self.sent.append(data)


class Peer:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.options: dict[str, dict[str, Any]] = {}
        self.transceivers: list[Any] = []

    def createDataChannel(self, label: str, **options: Any) -> Channel:  # noqa: N802 (aiortc's name)
        self.options[label] = options
        self.channels[label] = Channel(label)
        return self.channels[label]

    def addTransceiver(self, track: Any, direction: str) -> None:  # noqa: N802
        self.transceivers.append((track, direction))


class Clock:
    offset_us = 5000.0  # the sender's clock runs 5 ms ahead of the receiver's


class Link:
    """The parts of a PeerLink the relay uses."""

    def __init__(self) -> None:
        self.motion, self.control = Channel("motion"), Channel("control")
        self.clock = Clock()
        self.pc = self

    def on(self, event: str, handler: Any) -> None:
        pass


def _header(entropy: bool) -> StreamHeader:
    ref = ReferenceInfo(0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (0.3, 0.3), 0.0, (512, 512))
    return make_header(EncoderConfig(entropy=entropy), ref)


def _packets(header: StreamHeader, n: int) -> list[bytes]:
    """Packets of tokens whose FSQ digits drift slowly, as a face's do (entropy coding pays off)."""
    rng = np.random.default_rng(0)
    digits = np.clip(2 + np.cumsum(rng.choice([-1, 0, 1], p=[0.05, 0.9, 0.05], size=(n, 4, 12, 4)), 0), 0, 4)
    tokens = digits @ 5 ** np.arange(4)
    writer = StreamWriter(header)
    return [writer.encode(tokens[i], 40 * i) for i in range(n)]


def _page(relay: TokenRelay) -> Peer:
    pc = Peer()
    relay.add(pc)
    for ch in pc.channels.values():
        ch.open()
    return pc


def test_pages_get_the_negotiated_channels_and_the_portrait_in_chunks() -> None:
    bundle = bytes(range(256)) * (3 * PORTRAIT_CHUNK // 256 + 7)
    relay = TokenRelay(bundle)
    pc = _page(relay)
    assert {k: v["id"] for k, v in pc.options.items()} == {k: v["id"] for k, v in TOKEN_CHANNELS.items()}
    assert all(o["negotiated"] for o in pc.options.values())
    assert pc.options["motion"]["ordered"] is False and pc.options["motion"]["maxRetransmits"] == 0
    sent = pc.channels["portrait"].sent
    assert sent[-1] == b"" and b"".join(sent) == bundle and max(map(len, sent)) <= PORTRAIT_CHUNK
    assert isinstance(pc.transceivers[0][0], RelayedAudioTrack) and pc.transceivers[0][1] == "sendonly"


def test_the_relay_passes_on_what_a_decoder_needs_and_keeps_the_rest() -> None:
    relay = TokenRelay(b"")
    link = Link()
    relay.attach(link)  # type: ignore[arg-type]
    early = _page(relay)
    header = _header(entropy=False)
    messages: list[Any] = [Start(1_000_000), Hello(header.to_bytes()), Ping(1), Pong(1, 2, 3), Report(25, 25, 0),
                SenderStats(25, 1575, 3000, 4)]
    for m in messages:
        relay.on_control(encode_message(m))
    got = [parse_message(d) for d in early.channels["control"].sent]
    # START in the receiver's clock; HELLO and SENDER_STATS byte for byte; no ping, pong or report.
    assert got == [Start(1_000_000 - 5000), Hello(header.to_bytes()), SenderStats(25, 1575, 3000, 4)]
    late = _page(relay)  # a page joining now gets the header and media time at once
    assert [parse_message(d) for d in late.channels["control"].sent] == got
    # Its own pings are answered with this receiver's clock.
    late.channels["control"].handlers["message"](encode_message(Ping(7)))
    pong = parse_message(late.channels["control"].sent[-1])
    assert isinstance(pong, Pong) and pong.t0_us == 7 and pong.t1_us > 0
    relay.detach()
    assert MessageType(early.channels["control"].sent[-1][3]) is MessageType.BYE
    assert relay.call_state() == []


def test_a_page_starts_at_a_keyframe_and_gets_every_packet_after() -> None:
    relay = TokenRelay(b"")
    relay.attach(Link())  # type: ignore[arg-type]
    header = _header(entropy=True)
    relay.on_control(encode_message(Hello(header.to_bytes())))
    packets = _packets(header, 60)
    keyframes = [i for i, p in enumerate(packets) if Packet.from_bytes(p).keyframe]
    start = min(k for k in keyframes if k >= 5)
    assert keyframes[0] == 0 and 5 not in keyframes and start < len(packets)
    early = _page(relay)
    for p in packets[:5]:
        relay.on_motion(p)
    late = _page(relay)  # joins after packet 4: its first packet is the next keyframe
    for p in packets[5:]:
        relay.on_motion(p)
    assert early.channels["motion"].sent == packets
    assert late.channels["motion"].sent == packets[start:]
    relay.on_motion("text")  # not a packet: nobody gets it
    assert len(early.channels["motion"].sent) == len(packets)


def test_a_new_call_starts_pages_over() -> None:
    relay = TokenRelay(b"")
    relay.attach(Link())  # type: ignore[arg-type]
    page = _page(relay)
    header = _header(entropy=True)
    relay.on_control(encode_message(Hello(header.to_bytes())))
    packets = _packets(header, 30)
    predicted = next(p for p in packets if not Packet.from_bytes(p).keyframe)
    relay.on_motion(packets[0])
    relay.detach()
    relay.attach(Link())  # type: ignore[arg-type]
    relay.on_control(encode_message(Hello(header.to_bytes())))
    relay.on_motion(predicted)  # a predicted frame of the new call: not decodable from here
    relay.on_motion(packets[0])
    assert page.channels["motion"].sent == [packets[0], packets[0]]
    assert isinstance(parse_message(page.channels["control"].sent[1]), Bye)


class Rtp:
    def __init__(self, timestamp: int, payload: bytes = b"\xfc\x01\x02", payload_type: int = 111) -> None:
        self.timestamp, self.payload, self.payload_type = timestamp, payload, payload_type


def test_the_callers_opus_goes_out_unchanged_on_one_timeline() -> None:
    async def run() -> list[Any]:
        relay = TokenRelay(b"")
        relay.attach(Link())  # type: ignore[arg-type]
        page = _page(relay)
        track = page.transceivers[0][0]
        origin = 4_294_967_000  # the caller's RTP clock wraps during the call
        for k in range(3):
            relay.on_rtp(Rtp((origin + 960 * k) & 0xFFFFFFFF, bytes([k]) * 40))
        relay.detach()
        relay.attach(Link())  # type: ignore[arg-type]
        relay.on_rtp(Rtp(123, b"next call"))
        return [await track.recv() for _ in range(4)]

    out = asyncio.run(run())
    assert [bytes(p) for p in out] == [bytes([0]) * 40, bytes([1]) * 40, bytes([2]) * 40, b"next call"]
    assert [p.pts for p in out] == [0, 960, 1920, 2880]  # continuous across the wrap and the new call
    assert all(p.time_base == out[0].time_base and p.time_base.denominator == 48_000 for p in out)


def test_tap_rtp_sees_each_packet_before_the_receiver_does() -> None:
    seen: list[str] = []

    class Receiver:
        async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
            seen.append(f"receiver {packet}")

    r = Receiver()
    assert tap_rtp(r, lambda p: seen.append(f"tap {p}"))
    asyncio.run(r._handle_rtp_packet("a", arrival_time_ms=0))
    assert seen == ["tap a", "receiver a"]
    assert not tap_rtp(object(), lambda p: None)


def _bundle(name: str) -> bytes:
    return pack_container("portrait", {"id": name}, {})


def _pictures(channel: Channel) -> tuple[list[bytes], list[bytes]]:
    """The pictures reassembled from a page's control messages, and those messages."""
    inbox, pictures, messages = PictureInbox(), [], []
    for raw in channel.sent:
        msg = parse_message(raw)
        if isinstance(msg, PictureBegin):
            inbox.begin(msg)
        elif isinstance(msg, PictureData):
            done = inbox.data(msg)
            if done is not None:
                pictures.append(done)
        else:
            continue
        messages.append(raw)
    return pictures, messages


def test_pages_get_the_calls_keyframes_paced_behind_motion() -> None:
    made: list[tuple[Any, Any, str, int]] = []

    def make_keyframe(renderer: Any, keyframe: Any, portrait: str, index: int) -> bytes | None:
        made.append((renderer, keyframe, portrait, index))
        return None if keyframe == "turn" else bytes([index]) * 3000 + portrait.encode()

    async def run() -> None:
        now = [100.0]
        relay = TokenRelay(_bundle("first"), lambda r: _bundle(f"of-{r}"), make_keyframe, 16.0, lambda: now[0])
        relay.attach(Link())  # type: ignore[arg-type]
        header = _header(entropy=False)
        relay.on_control(encode_message(Hello(header.to_bytes())))
        early = _page(relay)
        relay.add_keyframe("mouth")  # before the caller's picture: it waits for the caller's renderer
        await asyncio.sleep(0)
        assert made == [] and relay.keyframes == []
        relay.use_renderer("R")
        assert relay._building is not None
        await relay._building
        relay.add_keyframe("turn")  # the renderer takes nothing from it: not sent
        relay.add_keyframe("eyes")
        while relay._preparing is not None and not relay._preparing.done():
            await relay._preparing
        assert [(r, k, p, i) for r, k, p, i in made] == [("R", "mouth", "of-R", 0), ("R", "turn", "of-R", 1),
                                                         ("R", "eyes", "of-R", 2)]
        want = [bytes([0]) * 3000 + b"of-R", bytes([2]) * 3000 + b"of-R"]
        packets = _packets(header, 300)
        control_before = len(early.channels["control"].sent)
        for i, p in enumerate(packets[:150]):
            now[0] += 0.04
            relay.on_motion(p)
            if i == 20:
                late = _page(relay)  # joins mid-way: every keyframe so far, from the start
        pictures, messages = _pictures(early.channels["control"])
        assert pictures == want
        # One message at most behind each motion message, each within one frame interval of the rate,
        # and no more bytes than the rate allows over the time (plus the bucket's depth).
        pacing = PacingConfig(16.0)
        assert len(early.channels["control"].sent) - control_before <= 150
        assert max(map(len, messages)) <= pacing.message_bytes
        assert sum(map(len, messages)) <= 16_000 / 8 * 150 * 0.04 + pacing.depth
        late_pictures, late_messages = _pictures(late.channels["control"])
        assert late_pictures == want[:len(late_pictures)] and late_messages
        stats = relay.stats_dict()
        assert stats["pages"] == 2 and stats["keyframes"] == 2 and stats["keyframe_bytes"] == [3004, 3004]
        assert stats["keyframes_sent"] >= 2
        assert stats["page_keyframe_bytes"] == [sum(map(len, messages)), sum(map(len, late_messages))]
        assert stats["keyframe_message_bytes"] == sum(stats["page_keyframe_bytes"])
        # The call's renderer changes: pages get its bundle, then every keyframe again, cut out for it.
        relay.use_renderer("S")
        await relay._building
        while relay._preparing is not None and not relay._preparing.done():
            await relay._preparing
        assert [p for _, _, p, _ in made[-3:]] == ["of-S"] * 3
        for p in packets[150:]:
            now[0] += 0.04
            relay.on_motion(p)
        pictures, _ = _pictures(early.channels["control"])
        assert pictures[-1] == bytes([2]) * 3000 + b"of-S"
        # The call ends: its keyframes are forgotten; the next call's pages get none of them.
        relay.detach()
        relay.attach(Link())  # type: ignore[arg-type]
        assert relay.keyframes == [] and relay._call_keyframes == []

    asyncio.run(run())


def test_a_receiver_animating_its_own_portrait_sends_no_keyframes() -> None:
    async def run() -> None:
        relay = TokenRelay(_bundle("mine"))  # talk-recv --portrait: no make_bundle, no make_keyframe
        relay.attach(Link())  # type: ignore[arg-type]
        page = _page(relay)
        relay.add_keyframe("mouth")
        relay.use_renderer("R")
        await asyncio.sleep(0)
        header = _header(entropy=False)
        relay.on_control(encode_message(Hello(header.to_bytes())))
        for p in _packets(header, 50):
            relay.on_motion(p)
        assert _pictures(page.channels["control"]) == ([], [])

    asyncio.run(run())
