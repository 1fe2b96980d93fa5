"""Adaptive bitrate: how many residual layers the sender puts in each packet, and how many frames in each message.

Residual layers refine coarse to fine and any prefix decodes, so dropping
layers lowers the rate without breaking the stream. Three limits apply and the
lowest wins:

* loss: the receiver reports its loss about once a second; above
  ``loss_high`` a layer goes (at most one per ``holdoff`` reports, so a drop
  takes effect before the next), and after ``recover_reports`` reports in a
  row below ``loss_low`` one comes back. A layer restored only to be lost again
  soon after (loss in bursts: a lossy second, then clean ones) doubles the
  good reports the next restore needs, up to ``max_recover_reports``, so the
  layer count settles instead of see-sawing; a restore that holds for
  ``proven_reports`` resets it;
* a rate cap on the packets (``--max-kbps``): the most layers whose measured rate fits;
* a cap on the motion's rate on the wire (``--max-wire-kbps``): every message
  also costs ``message_overhead_bytes`` of SCTP, DTLS and UDP/IP headers (97
  bytes, measured with :mod:`realtime.wire`), so the cap is met first by
  putting more frames in each message (``frames_per_packet``, up to 3: each
  frame more waits 40 ms longer, but quality is kept), and only then by
  dropping layers.

Loss the sender caused itself is not the link's: a sender short of CPU (a
busy machine) hands frames to the channel late or skips them, and whatever
the receiver then misses says nothing about the link, while dropping layers
would not give the face tracker one more millisecond. So the sender also
reports each frame's capture -> send delay (:meth:`RateController.on_frame`);
while more than ``starved_fraction`` of the last ``starved_window_ms`` of
frames were late (over ``late_ms``) or skipped, lossy reports hold the layers
instead of dropping them (counted in :attr:`RateController.held_for_cpu`).

The controller reads no clock and sends nothing: the sender feeds it reports,
frame delays and measured rates with the time they are about, and applies
:attr:`RateController.layers` and :attr:`RateController.frames_per_packet`.
So it is tested with made-up times.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RateConfig:
    """Settings of the rate controller.

    Attributes:
        max_layers, min_layers: the range of residual layers (1..4 for GRFSQ).
        max_kbps: cap on the motion rate, None for none.
        loss_high: loss fraction above which a layer is dropped.
        loss_low: loss fraction below which a report counts as good.
        recover_reports: good reports in a row before a layer is restored.
        max_recover_reports: the most that doubling ``recover_reports`` after failed restores reaches.
        proven_reports: reports a restored layer must hold before a drop no longer counts against it.
        holdoff: reports to wait after a drop before dropping again.
        nominal_layer_kbps: rate of one layer before any has been measured
            (12 tokens of log2(625) bits and a share of the packet header, 25
            times a second).
        max_wire_kbps: cap on the motion's rate on the wire, None for none.
        frames_per_packet: the frames-per-message counts to choose from
            (``(1, 2, 3)`` lets the wire cap choose; one value fixes it).
        fps: frames per second of the stream.
        message_overhead_bytes: per message on the wire, beyond its frames:
            message header (4), SCTP common and DATA chunk headers (28), DTLS
            record (37 with AES-GCM) and UDP/IPv4 headers (28).
        late_ms: a frame handed to the channel this long after its capture was late (the sender's CPU).
        starved_fraction: late or skipped frames above this share of the window: the sender is starved.
        starved_window_ms: how far back frames are judged (a report's interval and its way back).
    """

    max_layers: int = 4
    min_layers: int = 1
    max_kbps: float | None = None
    loss_high: float = 0.05
    loss_low: float = 0.01
    recover_reports: int = 3
    max_recover_reports: int = 48
    proven_reports: int = 12
    holdoff: int = 2
    nominal_layer_kbps: float = 25 * (12 * math.log2(625) + 14) / 1000
    max_wire_kbps: float | None = None
    frames_per_packet: tuple[int, ...] = (1,)
    fps: float = 25.0
    message_overhead_bytes: float = 4 + 28 + 37 + 28
    late_ms: float = 100.0
    starved_fraction: float = 0.1
    starved_window_ms: float = 2500.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_layers <= self.max_layers:
            raise ValueError(f"need 1 <= min_layers <= max_layers, got {self.min_layers}, {self.max_layers}")
        if self.max_kbps is not None and self.max_kbps <= 0:
            raise ValueError(f"max_kbps must be positive, got {self.max_kbps}")
        if self.max_wire_kbps is not None and self.max_wire_kbps <= 0:
            raise ValueError(f"max_wire_kbps must be positive, got {self.max_wire_kbps}")
        if not self.frames_per_packet or any(not 1 <= k <= 3 for k in self.frames_per_packet):
            raise ValueError(f"frames_per_packet must be among 1..3, got {self.frames_per_packet}")
        if self.late_ms <= 0 or self.starved_window_ms <= 0 or not 0.0 <= self.starved_fraction < 1.0:
            raise ValueError("need late_ms > 0, starved_window_ms > 0 and 0 <= starved_fraction < 1")


class RateController:
    """Chooses the layer count and the frames per message from loss reports, the sender's own lateness and
    measured rates.

    Attributes:
        reports: loss reports taken.
        lossy_reports: of those, reports above ``loss_high``.
        held_for_cpu: lossy reports that dropped no layer because the sender was starved.
        last_reason: why the layer count last changed: ``"loss"``, ``"recovered"`` or ``"cap"``.
    """

    def __init__(self, config: RateConfig = RateConfig()) -> None:
        self.config = config
        self._loss_layers = config.max_layers
        self._good = 0
        self._recover_needed = config.recover_reports
        self._since_restore: int | None = None  # reports since the last restore, until it is proven
        self._since_drop = config.holdoff
        self._layer_kbps = config.nominal_layer_kbps
        self._frames: deque[tuple[float, bool]] = deque()  # (time, late or skipped)
        self._late_in_window = 0
        self.reports = 0
        self.lossy_reports = 0
        self.held_for_cpu = 0
        self.last_reason = ""

    def on_frame(self, now_ms: float, delay_ms: float | None) -> None:
        """Takes one captured frame's fate on the sender.

        Args:
            now_ms: when it was sent or skipped (any clock, the one :meth:`on_loss` gets).
            delay_ms: capture -> hand-off to the channel; None for a frame the encoder skipped.
        """
        late = delay_ms is None or delay_ms > self.config.late_ms
        self._frames.append((now_ms, late))
        self._late_in_window += late
        self._forget(now_ms)

    def _forget(self, now_ms: float) -> None:
        horizon = now_ms - self.config.starved_window_ms
        while self._frames and self._frames[0][0] < horizon:
            self._late_in_window -= self._frames.popleft()[1]

    def starved(self, now_ms: float) -> bool:
        """Whether the sender itself was late with its frames over the window before ``now_ms``."""
        self._forget(now_ms)
        if not self._frames:
            return False
        return self._late_in_window > self.config.starved_fraction * len(self._frames)

    @property
    def layers(self) -> int:
        """Residual layers to send now."""
        return self._choice()[0]

    @property
    def frames_per_packet(self) -> int:
        """Frames to put in each message now."""
        return self._choice()[1]

    def wire_kbps(self, layers: int, frames_per_packet: int) -> float:
        """The motion's expected rate on the wire with ``layers`` layers in messages of ``frames_per_packet``."""
        cfg = self.config
        return layers * self._layer_kbps + cfg.fps / frames_per_packet * cfg.message_overhead_bytes * 8 / 1000

    def _choice(self) -> tuple[int, int]:
        cfg = self.config
        layers = max(cfg.min_layers, min(self._loss_layers, self._cap_layers()))
        counts = sorted(cfg.frames_per_packet)
        if cfg.max_wire_kbps is None:
            return layers, counts[0]
        for n in range(layers, cfg.min_layers - 1, -1):  # quality first, then latency
            for k in counts:
                if self.wire_kbps(n, k) <= cfg.max_wire_kbps:
                    return n, k
        return cfg.min_layers, counts[-1]

    def _cap_layers(self) -> int:
        cap = self.config.max_kbps
        if cap is None:
            return self.config.max_layers
        return max(self.config.min_layers, min(self.config.max_layers, int(cap / self._layer_kbps)))

    def on_loss(self, loss: float, now_ms: float | None = None) -> int:
        """Takes one receiver report.

        Args:
            loss: fraction of motion packets lost over the report's interval.
            now_ms: when it arrived, on the clock of :meth:`on_frame`; None: the sender's lateness is not
                considered (no frames were reported).
        Returns:
            the layer count now.
        """
        cfg = self.config
        self.reports += 1
        self._since_drop += 1
        if self._since_restore is not None:
            self._since_restore += 1
            if self._since_restore >= cfg.proven_reports:  # the restored layer held: probe at the usual pace
                self._since_restore = None
                self._recover_needed = cfg.recover_reports
        if loss > cfg.loss_high:
            self.lossy_reports += 1
            self._good = 0
            if now_ms is not None and self.starved(now_ms):
                self.held_for_cpu += 1
            elif self._since_drop >= cfg.holdoff and self._loss_layers > cfg.min_layers:
                self._set_loss_layers(self._loss_layers - 1, "loss")
                self._since_drop = 0
                if self._since_restore is not None:  # the last restore did not hold: wait longer next time
                    self._recover_needed = min(cfg.max_recover_reports, 2 * self._recover_needed)
                    self._since_restore = None
        elif loss < cfg.loss_low:
            self._good += 1
            if self._good >= self._recover_needed and self._loss_layers < cfg.max_layers:
                self._set_loss_layers(self._loss_layers + 1, "recovered")
                self._good = 0
                self._since_restore = 0
        else:
            self._good = 0
        return self.layers

    @property
    def recover_reports(self) -> int:
        """Good reports in a row the next restore needs (``recover_reports``, doubled after failed ones)."""
        return self._recover_needed

    def _set_loss_layers(self, layers: int, reason: str) -> None:
        before = self.layers
        self._loss_layers = layers
        if self.layers != before:
            self.last_reason = reason

    def on_rate(self, kbps: float, layers: int) -> int:
        """Takes the motion rate measured over the last second while sending ``layers`` layers.

        Returns:
            the layer count now.
        """
        before = self.layers
        if layers > 0 and kbps > 0:
            # Smoothed, so one odd second (a no-face stretch) does not swing the cap.
            self._layer_kbps = 0.7 * self._layer_kbps + 0.3 * (kbps / layers)
        if self.layers != before:
            self.last_reason = "cap"
        return self.layers
