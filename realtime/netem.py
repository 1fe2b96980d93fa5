"""Loss and jitter injection on the motion channel (a test hook, like Linux netem).

Sits between the sender and its motion channel: each packet is dropped with
probability ``loss``, else delivered after ``jitter_ms ± jitter_ms`` (uniform
in ``[0, 2 * jitter_ms]``), which also reorders packets. An ``outage``
drops every packet sent within a time window (motion stops, speech goes on). Delays are event
loop timers owned by the object and cancelled by :meth:`Netem.close`.

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
    """

    loss: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    outage_s: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.jitter_ms < 0:
            raise ValueError(f"jitter must be >= 0 ms, got {self.jitter_ms}")
        if self.outage_s is not None and not 0.0 <= self.outage_s[0] < self.outage_s[1]:
            raise ValueError(f"outage must be START:END seconds with 0 <= START < END, got {self.outage_s}")

    @property
    def active(self) -> bool:
        return self.loss > 0 or self.jitter_ms > 0 or self.outage_s is not None


class Netem:
    """Impairs packets on their way to ``deliver``.

    Args:
        config: the impairments.
        deliver: sends one packet for real (the data channel's ``send``).
    """

    def __init__(self, config: NetemConfig, deliver: Callable[[bytes], None]) -> None:
        self.config = config
        self._deliver = deliver
        self._rng = random.Random(config.seed)
        self._pending: set[asyncio.TimerHandle] = set()
        self._t0 = time.monotonic()
        self.dropped = 0

    def send(self, packet: bytes) -> None:
        out = self.config.outage_s
        if out is not None and out[0] <= time.monotonic() - self._t0 < out[1]:
            self.dropped += 1
            return
        if self._rng.random() < self.config.loss:
            self.dropped += 1
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
