"""Loss and jitter injection on the motion channel (a test hook, like Linux netem).

Sits between the sender and its motion channel: each packet is dropped with
probability ``loss``, else delivered after ``jitter_ms ± jitter_ms`` (uniform
in ``[0, 2 * jitter_ms]``), which also reorders packets. An ``outage``
drops every packet sent within a time window (motion stops, speech goes on).
``burst_ms`` / ``burst_every_s`` drop everything for ``burst_ms`` at random
moments, ``burst_every_s`` apart on average (a Wi-Fi handover, a congested
queue). Delays are event loop timers owned by the object and cancelled by
:meth:`Netem.close`; the clock is passed in, so which packets a burst takes
is tested without waiting.

This is the in-process stand-in for Linux ``tc netem`` in a network
namespace, for machines whose kernel has no ``sch_netem`` (``tc qdisc add ...
netem`` answers "Specified qdisc kind is unknown"): it impairs the motion
channel only, before SCTP and DTLS, so a dropped packet costs no
retransmission, as on a real unreliable channel.

:class:`LinkShaper` simulates a narrow link instead (a FIFO at a fixed rate), and :class:`ShapedLink` puts
a call's messages through it (``talk-send --link-kbps``), measuring each one's delay.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class NetemConfig:
    """Impairments.

    Attributes:
        loss: probability that a packet is dropped, in ``[0, 1)``.
        jitter_ms: half-width of the uniform delay around ``jitter_ms``.
        seed: for repeatable runs.
        outage_s: ``(start, end)``: drop every packet sent from ``start`` to ``end`` seconds
            after the impairment began (the call's start), or None.
        burst_ms: length of each loss burst (0: none).
        burst_every_s: mean time between the starts of bursts (exponentially distributed).
    """

    loss: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    outage_s: tuple[float, float] | None = None
    burst_ms: float = 0.0
    burst_every_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.jitter_ms < 0:
            raise ValueError(f"jitter must be >= 0 ms, got {self.jitter_ms}")
        if self.outage_s is not None and not 0.0 <= self.outage_s[0] < self.outage_s[1]:
            raise ValueError(f"outage must be START:END seconds with 0 <= START < END, got {self.outage_s}")
        if self.burst_ms < 0 or self.burst_every_s < 0 or (self.burst_ms > 0) != (self.burst_every_s > 0):
            raise ValueError(f"bursts need a length > 0 ms and a mean interval > 0 s, got {self.burst_ms:g} ms "
                             f"every {self.burst_every_s:g} s")
        if self.burst_ms > 0 and self.burst_ms / 1000.0 >= self.burst_every_s:
            raise ValueError(f"bursts of {self.burst_ms:g} ms cannot come every {self.burst_every_s:g} s on average")

    @property
    def active(self) -> bool:
        return self.loss > 0 or self.jitter_ms > 0 or self.outage_s is not None or self.burst_ms > 0


class Netem:
    """Impairs packets on their way to ``deliver``.

    Args:
        config: the impairments.
        deliver: sends one packet for real (the data channel's ``send``).
        clock: seconds on any monotonic clock (default: ``time.monotonic``).

    Attributes:
        dropped: packets dropped, all causes; ``dropped_random``, ``dropped_burst``, ``dropped_outage`` by cause.
        bursts: loss bursts that took at least one packet so far.
    """

    def __init__(self, config: NetemConfig, deliver: Callable[[bytes], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._deliver = deliver
        self._clock = clock
        self._rng = random.Random(config.seed)
        # Bursts draw from their own generator, so adding them leaves the random loss pattern as it was.
        self._burst_rng = random.Random(None if config.seed is None else config.seed + 1)
        self._pending: set[asyncio.TimerHandle] = set()
        self._t0 = clock()
        self._burst: tuple[float, float] | None = None
        if config.burst_ms > 0:
            start = self._burst_rng.expovariate(1.0 / config.burst_every_s)
            self._burst = (start, start + config.burst_ms / 1000.0)
        self._counted_burst: float | None = None
        self.dropped = 0
        self.dropped_random = 0
        self.dropped_burst = 0
        self.dropped_outage = 0
        self.bursts = 0

    def _in_burst(self, t: float) -> bool:
        """Whether ``t`` (seconds since the start) falls in a burst; moves on to the next burst once past one."""
        if self._burst is None:
            return False
        while t >= self._burst[1]:
            # The gap after a burst is drawn so that starts are burst_every_s apart on average.
            gap = self._burst_rng.expovariate(1.0 / (self.config.burst_every_s - self.config.burst_ms / 1000.0))
            start = self._burst[1] + gap
            self._burst = (start, start + self.config.burst_ms / 1000.0)
        if t < self._burst[0]:
            return False
        if self._burst[0] != self._counted_burst:
            self._counted_burst = self._burst[0]
            self.bursts += 1
        return True

    def send(self, packet: bytes) -> None:
        t = self._clock() - self._t0
        unlucky = self._rng.random() < self.config.loss  # drawn for every packet: causes do not shift each other
        out = self.config.outage_s
        if out is not None and out[0] <= t < out[1]:
            self.dropped += 1
            self.dropped_outage += 1
            return
        if self._in_burst(t):
            self.dropped += 1
            self.dropped_burst += 1
            return
        if unlucky:
            self.dropped += 1
            self.dropped_random += 1
            return
        if self.config.jitter_ms <= 0:
            self._deliver(packet)
            return
        delay = self._rng.uniform(0.0, 2.0 * self.config.jitter_ms) / 1000.0
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._pending.discard(handle)
            try:
                self._deliver(packet)
            except Exception:  # the channel closed while the packet was "in flight": it is lost
                self.dropped += 1

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._pending.add(handle)

    def close(self) -> None:
        """Drops every packet still in flight."""
        for h in self._pending:
            h.cancel()
        self._pending.clear()


MAX_TRACE = 200_000
"""Messages a :class:`ShapedLink` remembers (about two hours of a call)."""


class LinkShaper:
    """A narrow link, simulated: messages leave one after another at ``kbps``, each waiting for those before it.

    It models the bottleneck's queue as a FIFO at a constant rate (no loss), as a
    cellular or DSL uplink behaves: a message that arrives while others are on the
    wire waits for them. ``overhead_bytes`` per message stands for the headers
    below the data channel (SCTP, DTLS, UDP, IP: about 93 bytes over IPv4) when
    the link's rate is counted on the wire; 0 counts data-channel bytes only.
    Pure: time is passed in.

    Args:
        kbps: the link's rate, kilobits per second.
        overhead_bytes: bytes added to every message.
    """

    def __init__(self, kbps: float, overhead_bytes: int = 0) -> None:
        if not kbps > 0:
            raise ValueError(f"link rate must be > 0 kbps, got {kbps}")
        if overhead_bytes < 0:
            raise ValueError(f"overhead must be >= 0 bytes, got {overhead_bytes}")
        self.rate = kbps * 1000 / 8  # bytes per second
        self.overhead = overhead_bytes
        self._free_at = 0.0  # when the link finishes what it holds
        self.bytes = 0

    def delay_s(self, nbytes: int, now_s: float) -> float:
        """Queues a message of ``nbytes`` at ``now_s``; how long until it has left the link."""
        start = max(now_s, self._free_at)
        self._free_at = start + (nbytes + self.overhead) / self.rate
        self.bytes += nbytes + self.overhead
        return self._free_at - now_s


class ShapedLink:
    """Delivers messages through a :class:`LinkShaper` on the event loop, and measures each one's delay.

    Args:
        shaper: the link.
    """

    def __init__(self, shaper: LinkShaper) -> None:
        self.shaper = shaper
        self.delays_ms: dict[str, list[float]] = {}
        # (seconds since the first message, kind, bytes) of every message, to replay the same traffic offline.
        self.trace: list[tuple[float, str, int]] = []
        self._t0: float | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    def send(self, kind: str, data: bytes, deliver: Callable[[bytes], None]) -> None:
        """Hands ``data`` (a message of class ``kind``, e.g. "motion") to ``deliver`` once the link has carried it."""
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        if len(self.trace) < MAX_TRACE:
            self.trace.append((now - self._t0, kind, len(data)))
        delay = self.shaper.delay_s(len(data), now)
        self.delays_ms.setdefault(kind, []).append(delay * 1000)
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._pending.discard(handle)
            try:
                deliver(data)
            except Exception:  # the channel closed while the message was on the link: it is lost
                pass

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._pending.add(handle)

    def close(self) -> None:
        """Drops what is still on the link."""
        for h in self._pending:
            h.cancel()
        self._pending.clear()
