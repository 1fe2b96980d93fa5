"""The receiver's motion jitter buffer: packets in any order in, one frame per render tick out.

Motion packets travel unordered and unretransmitted, so they arrive late,
twice, out of order or never. The buffer keeps them by sequence number and
hands out, for each render tick at sender time ``p``, the frame stamped
``p``, or a concealment when it is missing:

* ``INTERPOLATED``: a later frame is already here; blend the last shown frame
  and that one;
* ``HELD``: nothing later yet; show the last frame again.

Playout time: a frame stamped ``ts`` (sender media time, ms) is due at local
time ``ts + base_transit + delay``, where ``base_transit`` is the smallest
``arrival - ts`` seen over the last few seconds (the fastest the path has
been) and ``delay`` the head room for jitter: the spread of recent transits
above the base (their 95th percentile), at least ``target_delay`` and at
most ``max_delay``. So a steady path plays out after ``target_delay``, and a
jittery one (a busy sender's face tracker, a congested link) waits just long
enough for most frames. No clock is read here: every call takes the time it
is about, so the buffer is a pure state machine, tested without sleeping.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Packets stamped further than this from the playout point belong to no sane stream.
MAX_TIMESTAMP_JUMP_MS = 10_000
# Window over which the fastest transit is tracked.
TRANSIT_WINDOW_MS = 5_000
# Recent transits whose spread sets the delay.
SPREAD_WINDOW = 50


class PushResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"  # its playout time has passed
    OUT_OF_RANGE = "out_of_range"  # timestamp far from the stream's


class PlayoutKind(enum.Enum):
    FRESH = "fresh"
    INTERPOLATED = "interpolated"
    HELD = "held"
    EMPTY = "empty"  # nothing has arrived yet


@dataclass(frozen=True)
class Entry(Generic[T]):
    seq: int  # extended (unwrapped) sequence number
    timestamp_ms: int
    value: T


@dataclass(frozen=True)
class Playout(Generic[T]):
    """What to show at one render tick.

    Attributes:
        kind: see :class:`PlayoutKind`.
        frame: FRESH: the frame; INTERPOLATED: the earlier end; HELD: the frame held.
        after: INTERPOLATED only: the later end.
        alpha: INTERPOLATED only: weight of ``after`` in ``[0, 1]``.
    """

    kind: PlayoutKind
    frame: Entry[T] | None = None
    after: Entry[T] | None = None
    alpha: float = 0.0

    @property
    def concealed(self) -> bool:
        return self.kind in (PlayoutKind.INTERPOLATED, PlayoutKind.HELD)


@dataclass
class BufferStats:
    """Cumulative counts since the buffer was made.

    Attributes:
        expected: packets the sender sent, from the sequence numbers (highest - first + 1).
        received: distinct packets that arrived (late ones included).
        late, duplicates, out_of_range: packets dropped for that reason.
    """

    expected: int = 0
    received: int = 0
    late: int = 0
    duplicates: int = 0
    out_of_range: int = 0

    @property
    def loss(self) -> float:
        if self.expected <= 0:
            return 0.0
        return max(0.0, 1.0 - self.received / self.expected)


def unwrap_seq(seq: int, reference: int, bits: int) -> int:
    """Extends a ``bits``-bit sequence number to the one nearest ``reference``.

    Args:
        seq: the wire value, ``0 <= seq < 2**bits``.
        reference: an extended sequence number already seen.
    Returns:
        the extended number congruent to ``seq`` modulo ``2**bits`` closest to ``reference``.
    """
    mod = 1 << bits
    delta = (seq - reference) % mod
    if delta >= mod // 2:
        delta -= mod
    return reference + delta


class JitterBuffer(Generic[T]):
    """Reorders motion frames and schedules their playout.

    Args:
        target_delay_ms: least head room added to the fastest transit seen.
        max_delay_ms: most head room, however jittery the path.
        frame_interval_ms: the sender's frame spacing (40 ms at 25 fps).
        capacity: frames kept at most; the oldest go first.
        seq_bits: width of the wire sequence number.
    """

    def __init__(self, target_delay_ms: float = 50.0, frame_interval_ms: float = 40.0,
                 capacity: int = 64, seq_bits: int = 16, max_delay_ms: float = 250.0) -> None:
        self.target_delay_ms = target_delay_ms
        self.max_delay_ms = max(max_delay_ms, target_delay_ms)
        self._recent: deque[float] = deque(maxlen=SPREAD_WINDOW)
        self.frame_interval_ms = frame_interval_ms
        self.capacity = capacity
        self.seq_bits = seq_bits
        self.stats = BufferStats()
        self._entries: dict[int, Entry[T]] = {}
        self._first_seq: int | None = None
        self._highest_seq: int | None = None
        self._transits: deque[tuple[float, float]] = deque()  # (arrival, transit), transit increasing
        self._last_played: Entry[T] | None = None
        self._playout_ts: float | None = None  # sender time of the last tick served

    # -- arrivals ---------------------------------------------------------

    def push(self, seq: int, timestamp_ms: int, value: T, arrival_ms: float) -> PushResult:
        """Adds one frame as it arrives.

        Args:
            seq: the wire sequence number (``seq_bits`` wide).
            timestamp_ms: sender media time of the frame.
            value: what the caller wants back at playout (decoded motion).
            arrival_ms: local time of arrival, on the clock later passed to :meth:`playout_time`.
        """
        reference = self._highest_seq if self._highest_seq is not None else seq
        ext = unwrap_seq(seq, reference, self.seq_bits)
        anchor = self._playout_ts if self._playout_ts is not None else self._newest_ts()
        if anchor is not None and abs(timestamp_ms - anchor) > MAX_TIMESTAMP_JUMP_MS:
            self.stats.out_of_range += 1
            return PushResult.OUT_OF_RANGE
        if ext in self._entries or (self._last_played is not None and ext == self._last_played.seq):
            self.stats.duplicates += 1
            return PushResult.DUPLICATE
        if self._first_seq is None or self._highest_seq is None:
            self._first_seq = self._highest_seq = ext
        elif ext > self._highest_seq:
            self._highest_seq = ext
        elif ext < self._first_seq:
            self._first_seq = ext
        self.stats.received += 1
        self.stats.expected = self._highest_seq - self._first_seq + 1
        self._note_transit(arrival_ms, arrival_ms - timestamp_ms)
        if self._playout_ts is not None and timestamp_ms <= self._playout_ts:
            self.stats.late += 1
            return PushResult.LATE
        self._entries[ext] = Entry(ext, timestamp_ms, value)
        if len(self._entries) > self.capacity:
            del self._entries[min(self._entries)]
        return PushResult.ACCEPTED

    def _newest_ts(self) -> int | None:
        if not self._entries:
            return None
        return self._entries[max(self._entries)].timestamp_ms

    def _note_transit(self, arrival_ms: float, transit: float) -> None:
        self._recent.append(transit)
        # Monotonic deque: the front is the window's minimum.
        while self._transits and self._transits[-1][1] >= transit:
            self._transits.pop()
        self._transits.append((arrival_ms, transit))
        while self._transits[0][0] < arrival_ms - TRANSIT_WINDOW_MS and len(self._transits) > 1:
            self._transits.popleft()

    # -- playout ----------------------------------------------------------

    @property
    def started(self) -> bool:
        """A frame has arrived, so playout times are defined."""
        return bool(self._transits)

    @property
    def first_timestamp_ms(self) -> int | None:
        """The earliest timestamp waiting, where playout should begin."""
        if not self._entries:
            return None
        return min(e.timestamp_ms for e in self._entries.values())

    @property
    def delay_ms(self) -> float:
        """Head room now: the 95th percentile of recent transits above the base, within the bounds."""
        if not self._transits:
            return self.target_delay_ms
        recent = sorted(self._recent)
        spread = recent[min(len(recent) - 1, int(0.95 * len(recent)))] - self._transits[0][1]
        return min(self.max_delay_ms, max(self.target_delay_ms, spread))

    def playout_time(self, timestamp_ms: float) -> float:
        """Local time (ms, the arrival clock) at which the frame stamped ``timestamp_ms`` is due."""
        if not self._transits:
            raise RuntimeError("no frame has arrived yet")
        return timestamp_ms + self._transits[0][1] + self.delay_ms

    def pop(self, playout_ts: float) -> Playout[T]:
        """The frame to show for sender time ``playout_ts``, or its concealment.

        Frames stamped at or before ``playout_ts`` leave the buffer; later
        arrivals stamped there are then late.
        """
        self._playout_ts = playout_ts if self._playout_ts is None else max(self._playout_ts, playout_ts)
        due = [k for k, e in self._entries.items() if e.timestamp_ms <= playout_ts]
        fresh: Entry[T] | None = None
        for k in sorted(due):
            fresh = self._entries.pop(k)
        if fresh is not None and playout_ts - fresh.timestamp_ms < self.frame_interval_ms:
            self._last_played = fresh
            return Playout(PlayoutKind.FRESH, fresh)
        if fresh is not None:
            # Due long ago and never shown (a gap before it): it is the best we have.
            self._last_played = fresh
        last = self._last_played
        if last is None:
            return Playout(PlayoutKind.EMPTY)
        if self._entries:
            after = self._entries[min(self._entries)]
            span = after.timestamp_ms - last.timestamp_ms
            alpha = (playout_ts - last.timestamp_ms) / span if span > 0 else 1.0
            return Playout(PlayoutKind.INTERPOLATED, last, after, min(1.0, max(0.0, alpha)))
        return Playout(PlayoutKind.HELD, last)

    def peek_after(self, playout_ts: float) -> Entry[T] | None:
        """The earliest frame waiting that is stamped after ``playout_ts`` (it stays in the buffer)."""
        later = [e for e in self._entries.values() if e.timestamp_ms > playout_ts]
        return min(later, key=lambda e: e.timestamp_ms) if later else None

    def __len__(self) -> int:
        return len(self._entries)
