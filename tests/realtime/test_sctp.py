"""Delayed SACK (RFC 4960 6.2) on aiortc's SCTP transport: when acks go, and what they carry."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk, parse_packet

from realtime.sctp import DelayedSack, serialize_chunks
from tests.realtime.test_wire import send_and_count


class FakeDtls:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_data(self, data: bytes) -> None:
        self.sent.append(data)


class FakeSctp:
    """The receive state and the two methods of aiortc's RTCSctpTransport that DelayedSack replaces."""

    State = RTCSctpTransport.State

    def __init__(self) -> None:
        self._RTCSctpTransport__transport = FakeDtls()
        self._association_state = RTCSctpTransport.State.ESTABLISHED
        self._local_port = self._remote_port = 5000
        self._remote_verification_tag = 1234
        self._last_received_tsn: int | None = 100
        self._sack_misordered: set[int] = set()
        self._sack_duplicates: list[int] = []
        self._sack_needed = False
        self._advertised_rwnd = 1 << 20
        self.chunks: list[Any] = []
        self.acked = asyncio.Event()

    async def _send_sack(self) -> None:
        raise AssertionError("replaced by DelayedSack")

    async def _send_chunk(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        if isinstance(chunk, SackChunk):
            self.acked.set()

    def receive(self, tsn: int) -> None:
        """What aiortc does for an arriving DATA chunk, before it calls _send_sack."""
        assert self._last_received_tsn is not None
        if tsn == self._last_received_tsn + 1:
            self._last_received_tsn = tsn
        else:
            self._sack_misordered.add(tsn)
        self._sack_needed = True

    @property
    def sacks(self) -> list[SackChunk]:
        return [c for c in self.chunks if isinstance(c, SackChunk)]

    @property
    def dtls(self) -> FakeDtls:
        return self._RTCSctpTransport__transport


def data_chunk(tsn: int, payload: bytes = b"motion") -> DataChunk:
    c = DataChunk(flags=0x03)  # first and last fragment: a whole message
    c.tsn, c.stream_id, c.stream_seq, c.protocol, c.user_data = tsn, 1, 0, 53, payload
    return c


def test_every_second_packet_is_acknowledged() -> None:
    async def run() -> FakeSctp:
        s = FakeSctp()
        ds = DelayedSack(s, delay_s=0.5)
        for tsn in range(101, 107):
            s.receive(tsn)
            await ds.on_packet()
        ds.close()
        return s

    s = asyncio.run(run())
    assert [sack.cumulative_tsn for sack in s.sacks] == [102, 104, 106]


def test_a_lone_packet_is_acknowledged_by_the_timer() -> None:
    async def run() -> FakeSctp:
        s = FakeSctp()
        ds = DelayedSack(s, delay_s=0.05)
        s.receive(101)
        await ds.on_packet()
        assert not s.sacks  # not at once
        await asyncio.wait_for(s.acked.wait(), 10)
        return s

    s = asyncio.run(run())
    assert [sack.cumulative_tsn for sack in s.sacks] == [101]


def test_a_gap_is_reported_at_once() -> None:
    async def run() -> FakeSctp:
        s = FakeSctp()
        ds = DelayedSack(s, delay_s=0.5)
        s.receive(101)
        await ds.on_packet()
        s.receive(101 + 2)  # 102 was lost
        ds.unacked = 0  # even as the first packet since an ack
        await ds.on_packet()
        ds.close()
        return s

    s = asyncio.run(run())
    assert len(s.sacks) == 1 and s.sacks[0].cumulative_tsn == 101 and s.sacks[0].gaps == [(2, 2)]


def test_a_pending_ack_rides_in_front_of_outgoing_data() -> None:
    async def run() -> FakeSctp:
        s = FakeSctp()
        ds = DelayedSack(s, delay_s=0.5)
        s.receive(101)
        await ds.on_packet()
        await ds.send_chunk(data_chunk(7000))  # our own data leaves: the ack goes with it
        await ds.send_chunk(data_chunk(7001))  # nothing pending: a plain data packet
        ds.close()
        assert ds.sacks_bundled == 1
        return s

    s = asyncio.run(run())
    assert len(s.dtls.sent) == 1 and not s.sacks
    chunks = parse_packet(s.dtls.sent[0])[3]
    assert [type(c) for c in chunks] == [SackChunk, DataChunk]  # control chunks first (RFC 4960 6.10)
    assert chunks[0].cumulative_tsn == 101 and chunks[1].tsn == 7000 and chunks[1].user_data == b"motion"
    assert [c.tsn for c in s.chunks] == [7001]


def test_bundled_packets_parse_with_the_right_checksum() -> None:
    packet = serialize_chunks(5000, 5000, 99, [data_chunk(1, b"a"), data_chunk(2, b"bcdef")])
    _, _, tag, chunks = parse_packet(packet)
    assert tag == 99 and [c.user_data for c in chunks] == [b"a", b"bcdef"]


def test_a_real_association_acknowledges_half_as_often_and_delivers_everything() -> None:
    n = 40
    _, immediate, _ = asyncio.run(send_and_count(n, 60, delayed_sack=False))
    _, delayed, _ = asyncio.run(send_and_count(n, 60, delayed_sack=True))
    # send_and_count waits until every message arrived and the sender holds nothing unacknowledged.
    assert immediate.sent.chunks["sack"].packets >= n
    assert delayed.sent.chunks["sack"].packets <= n // 2 + 2
    assert delayed.received.chunks["motion"].packets == n
