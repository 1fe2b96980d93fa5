"""Adaptive bitrate: how many residual layers the sender puts in each packet, and how many frames in each message.

Residual layers refine coarse to fine and any prefix decodes, so dropping
layers lowers the rate without breaking the stream. Three limits apply and the
lowest wins:

* loss: the receiver reports its loss about once a second; above
  ``loss_high`` a layer goes (at most one per ``holdoff`` reports, so a drop
  takes effect before the next), and after ``recover_reports`` reports in a
  row below ``loss_low`` one comes back;
* a rate cap on the packets (``--max-kbps``): the most layers whose measured rate fits;
* a cap on the motion's rate on the wire (``--max-wire-kbps``): every message
  also costs ``message_overhead_bytes`` of SCTP, DTLS and UDP/IP headers (97
  bytes, measured with :mod:`realtime.wire`), so the cap is met first by
  putting more frames in each message (``frames_per_packet``, up to 3: each
  frame more waits 40 ms longer, but quality is kept), and only then by
  dropping layers.

The controller reads no clock and sends nothing: the sender feeds it reports
and measured rates and applies :attr:`RateController.layers` and
:attr:`RateController.frames_per_packet`.
"""

from __future__ import annotations

import math
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
    """

    max_layers: int = 4
    min_layers: int = 1
    max_kbps: float | None = None
    loss_high: float = 0.05
    loss_low: float = 0.01
    recover_reports: int = 3
    holdoff: int = 2
    nominal_layer_kbps: float = 25 * (12 * math.log2(625) + 14) / 1000
    max_wire_kbps: float | None = None
    frames_per_packet: tuple[int, ...] = (1,)
    fps: float = 25.0
    message_overhead_bytes: float = 4 + 28 + 37 + 28

    def __post_init__(self) -> None:
        if not 1 <= self.min_layers <= self.max_layers:
            raise ValueError(f"need 1 <= min_layers <= max_layers, got {self.min_layers}, {self.max_layers}")
        if self.max_kbps is not None and self.max_kbps <= 0:
            raise ValueError(f"max_kbps must be positive, got {self.max_kbps}")
        if self.max_wire_kbps is not None and self.max_wire_kbps <= 0:
            raise ValueError(f"max_wire_kbps must be positive, got {self.max_wire_kbps}")
        if not self.frames_per_packet or any(not 1 <= k <= 3 for k in self.frames_per_packet):
            raise ValueError(f"frames_per_packet must be among 1..3, got {self.frames_per_packet}")


class RateController:
    """Chooses the layer count and the frames per message from loss reports and measured rates."""

    def __init__(self, config: RateConfig = RateConfig()) -> None:
        self.config = config
        self._loss_layers = config.max_layers
        self._good = 0
        self._since_drop = config.holdoff
        self._layer_kbps = config.nominal_layer_kbps

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

    def on_loss(self, loss: float) -> int:
        """Takes one receiver report.

        Args:
            loss: fraction of motion packets lost over the report's interval.
        Returns:
            the layer count now.
        """
        cfg = self.config
        self._since_drop += 1
        if loss > cfg.loss_high:
            self._good = 0
            if self._since_drop >= cfg.holdoff and self._loss_layers > cfg.min_layers:
                self._loss_layers -= 1
                self._since_drop = 0
        elif loss < cfg.loss_low:
            self._good += 1
            if self._good >= cfg.recover_reports and self._loss_layers < cfg.max_layers:
                self._loss_layers += 1
                self._good = 0
        else:
            self._good = 0
        return self.layers

    def on_rate(self, kbps: float, layers: int) -> int:
        """Takes the motion rate measured over the last second while sending ``layers`` layers.

        Returns:
            the layer count now.
        """
        if layers > 0 and kbps > 0:
            # Smoothed, so one odd second (a no-face stretch) does not swing the cap.
            self._layer_kbps = 0.7 * self._layer_kbps + 0.3 * (kbps / layers)
        return self.layers
