"""Fewer SCTP acknowledgements: RFC 4960 delayed SACK on aiortc's SCTP transport.

aiortc acknowledges every SCTP packet it receives at once, so each 25-a-second
motion message costs a 93-byte SACK datagram back (about 19 kbps, more than
the motion payload itself). RFC 4960 section 6.2 asks a receiver to
acknowledge *at least every second packet* and within 200 ms of the first
unacknowledged one, and at once when it sees a gap or a duplicate (section
6.7, so the sender still learns of loss immediately). It also lets a SACK
ride in the same SCTP packet as outgoing DATA, ahead of it (section 6.10):
the talk-send side, which sends motion 25 times a second, then acknowledges
the receiver's control messages without a datagram of its own.

:func:`install_delayed_sack` puts both on one ``RTCSctpTransport``. aiortc
has no hook for this, so it replaces two of the transport's methods on the
instance: ``_send_sack`` (called after each received packet that needs an
ack) becomes "ack now or arm the timer", and ``_send_chunk`` puts a pending
SACK in front of a DATA chunk. Both read aiortc's receive state
(``_last_received_tsn``, ``_sack_misordered``, ``_sack_duplicates``) the way
its own ``_send_sack`` does; the tests run against the installed aiortc.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from aiortc.rtcsctptransport import SCTP_TSN_MODULO, Chunk, DataChunk, SackChunk, crc32c, tsn_plus_one

# RFC 4960 section 6.2: ack at least every second packet, within 200 ms (at most 500 ms).
SACK_EVERY = 2
SACK_DELAY_S = 0.2


class DelayedSack:
    """The delayed-ack state of one SCTP association.

    Args:
        sctp: an aiortc ``RTCSctpTransport``.
        every: acknowledge at least every ``every`` packets (RFC: 2).
        delay_s: and at most this long after the first unacknowledged one.
    """

    def __init__(self, sctp: Any, every: int = SACK_EVERY, delay_s: float = SACK_DELAY_S) -> None:
        if every < 1 or not 0 < delay_s <= 0.5:
            raise ValueError(f"delayed SACK needs every >= 1 and 0 < delay <= 0.5 s, got {every}, {delay_s}")
        self.sctp = sctp
        self.every = every
        self.delay_s = delay_s
        self.unacked = 0  # packets received since the last SACK
        self.sacks_sent = 0
        self.sacks_bundled = 0  # of those, carried in front of a DATA chunk
        self._timer: asyncio.TimerHandle | None = None
        self._send_chunk = sctp._send_chunk
        sctp._send_sack = self.on_packet
        sctp._send_chunk = self.send_chunk

    async def on_packet(self) -> None:
        """aiortc's "a packet needs an ack": ack now when due, else within ``delay_s``."""
        s = self.sctp
        self.unacked += 1
        if self.unacked >= self.every or s._sack_misordered or s._sack_duplicates:
            await self.send_sack()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay_s, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.sctp._sack_needed and self.sctp._association_state == self.sctp.State.ESTABLISHED:
            asyncio.ensure_future(self.send_sack())

    async def send_sack(self) -> None:
        """Sends the SACK of everything received so far in its own packet."""
        sack = self._take_sack()
        if sack is not None:
            await self._send_chunk(sack)

    async def send_chunk(self, chunk: Chunk) -> None:
        """aiortc's chunk sender, with a pending SACK put in front of outgoing DATA (one packet, RFC 4960 6.10)."""
        if isinstance(chunk, DataChunk) and self.sctp._sack_needed:
            sack = self._take_sack()
            if sack is not None:
                self.sacks_bundled += 1
                s = self.sctp
                transport = s._RTCSctpTransport__transport  # aiortc keeps its DTLS transport private
                await transport._send_data(serialize_chunks(s._local_port, s._remote_port,
                                                            s._remote_verification_tag, [sack, chunk]))
                return
        await self._send_chunk(chunk)

    def _take_sack(self) -> SackChunk | None:
        """The SACK aiortc's ``_send_sack`` would build; clears what it acknowledges."""
        s = self.sctp
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.unacked = 0
        if s._last_received_tsn is None:
            return None
        gaps: list[list[int]] = []
        gap_next = None
        for tsn in sorted(s._sack_misordered):
            pos = (tsn - s._last_received_tsn) % SCTP_TSN_MODULO
            if tsn == gap_next:
                gaps[-1][1] = pos
            else:
                gaps.append([pos, pos])
            gap_next = tsn_plus_one(tsn)
        sack = SackChunk()
        sack.cumulative_tsn = s._last_received_tsn
        sack.advertised_rwnd = max(0, s._advertised_rwnd)
        sack.duplicates = s._sack_duplicates[:]
        sack.gaps = [(a, b) for a, b in gaps]
        s._sack_duplicates.clear()
        s._sack_needed = False
        self.sacks_sent += 1
        return sack

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def serialize_chunks(source_port: int, destination_port: int, verification_tag: int, chunks: list[Chunk]) -> bytes:
    """One SCTP packet of several chunks (aiortc's ``serialize_packet`` takes one)."""
    header = struct.pack("!HHL", source_port, destination_port, verification_tag)
    data = b"".join(bytes(c) for c in chunks)
    checksum = crc32c(header + b"\x00\x00\x00\x00" + data)
    return header + struct.pack("<L", checksum) + data


def install_delayed_sack(sctp: Any, every: int = SACK_EVERY, delay_s: float = SACK_DELAY_S) -> DelayedSack:
    """Makes ``sctp`` (an aiortc ``RTCSctpTransport``) delay and bundle its acknowledgements."""
    return DelayedSack(sctp, every, delay_s)
