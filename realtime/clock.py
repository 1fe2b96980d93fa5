"""Clocks: the sender's media clock, and the offset between two machines' clocks.

Media time is milliseconds since the sender started its media: every motion
packet and every audio frame is stamped on it, which is what lets the
receiver line audio and motion up. Latency needs one more thing: where media
time 0 lies on the receiver's wall clock. The sender tells its own wall time
of media time 0 (:class:`realtime.protocol.Start`), and the receiver corrects
for the difference between the two wall clocks with ping/pong exchanges, as
NTP does (:class:`OffsetEstimator`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass


def wall_us() -> int:
    """This machine's wall clock, µs since the Unix epoch (the clock exchanged in pings)."""
    return time.time_ns() // 1000


def monotonic_ms() -> float:
    """Local monotonic time in ms (intervals, arrivals and schedules on one machine)."""
    return time.monotonic() * 1000.0


class MediaClock:
    """Media time of one sender, started once.

    Attributes:
        epoch_wall_us: wall-clock time of media time 0 (µs), for the receiver.
    """

    def __init__(self) -> None:
        self._t0 = monotonic_ms()
        self.epoch_wall_us = wall_us()

    def now_ms(self) -> float:
        """Media time now."""
        return monotonic_ms() - self._t0

    def monotonic_at(self, media_ms: float) -> float:
        """Local monotonic time (ms) of a media time."""
        return self._t0 + media_ms


@dataclass(frozen=True)
class OffsetSample:
    """One ping/pong exchange (µs).

    Attributes:
        offset_us: the peer's clock minus ours.
        rtt_us: round trip, less the time the peer held the ping.
    """

    offset_us: float
    rtt_us: float


def offset_sample(t0: int, t1: int, t2: int, t3: int) -> OffsetSample:
    """NTP's formulas for one exchange.

    Args:
        t0: ping sent (our clock); t1: ping received (peer's clock);
        t2: pong sent (peer's clock); t3: pong received (our clock). All µs.
    """
    return OffsetSample(((t1 - t0) + (t2 - t3)) / 2.0, float((t3 - t0) - (t2 - t1)))


class OffsetEstimator:
    """Peer clock offset and round-trip time from recent exchanges.

    The exchange with the smallest round trip has the least queueing in it,
    so its offset is the most trustworthy; it is taken over the last
    ``window`` samples.
    """

    def __init__(self, window: int = 16) -> None:
        self._samples: deque[OffsetSample] = deque(maxlen=window)
        self.last_rtt_us: float | None = None

    def add(self, sample: OffsetSample) -> None:
        if sample.rtt_us < 0:  # a clock stepped mid-exchange
            return
        self._samples.append(sample)
        self.last_rtt_us = sample.rtt_us

    @property
    def offset_us(self) -> float:
        """Peer clock minus ours (0 until an exchange completed)."""
        if not self._samples:
            return 0.0
        return min(self._samples, key=lambda s: s.rtt_us).offset_us

    @property
    def rtt_ms(self) -> float | None:
        """The latest round-trip time."""
        return None if self.last_rtt_us is None else self.last_rtt_us / 1000.0
