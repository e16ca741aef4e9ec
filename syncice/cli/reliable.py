"""The reliable stream of ``syncice pipe``: a small framing of its own over
ICE datagrams, sans-IO (the caller hands in ``now`` and sends the packets).

Packets (integers big-endian):

- ``D`` seq(8) payload: data; ``F`` seq(8): the end of the stream. Both take a
  sequence number, so the end arrives in order, after all the data.
- ``A`` next(8) bitmap: an acknowledgement. ``next`` is the first sequence
  number not yet received; bit ``i`` of the bitmap (most significant bit of
  the first byte first) says that ``next + 1 + i`` was received (a selective
  acknowledgement of what arrived out of order).

The sender keeps at most ``window`` sequence numbers in flight, and no more
segments than its congestion window (slow start, then one more segment per
window; halved once per loss episode, as TCP's, RFC 5681, but never under
``min_cwnd``: random loss alone must not stall it), measures the
round-trip time (RFC 6298, Karn's rule) and sends a segment again after the
retransmission timeout, or sooner when a segment sent after it was
acknowledged (a hole: RACK, RFC 8985). The receiver holds at most ``window`` segments
out of order, and ignores what falls outside, and every malformed packet:
what a peer can make it hold is bounded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["Endpoint", "Stats"]

_SEQ = struct.Struct("!Q")


@dataclass
class _Segment:
    data: bytes
    fin: bool
    sent_at: float
    tries: int = 1


@dataclass
class Stats:
    """What an endpoint did, for the final report."""

    segments_sent: int = 0
    retransmissions: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    duplicates: int = 0
    malformed: int = 0
    srtt: float | None = None


@dataclass
class Endpoint:
    """One side of a reliable, ordered, bidirectional stream.

    :param window: the most segments in flight, and held out of order.
    :param mss: the largest payload of one segment.
    """

    window: int = 512
    mss: int = 1100
    rto_initial: float = 0.25
    rto_min: float = 0.02
    rto_max: float = 2.0
    ack_delay: float = 0.005
    min_cwnd: float = 8.0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        if self.window < 8 or self.window % 8:
            raise ValueError("window must be a multiple of 8, at least 8")
        self._next_seq = 0
        self._inflight: dict[int, _Segment] = {}
        self._fin_seq: int | None = None
        self._fin_acked = False
        self._rto = self.rto_initial
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._latest_acked = float("-inf")  # the latest send acknowledged
        self._cwnd = self.min_cwnd * 2
        self._ssthresh = float(self.window)
        self._recovery_until = -1
        # receiving
        self._expected = 0
        self._held: dict[int, tuple[bytes, bool]] = {}
        self._received_fin = False
        self._ack_pending = 0
        self._ack_at: float | None = None

    # --- state -----------------------------------------------------------------

    @property
    def sent_done(self) -> bool:
        """Our end of the stream was sent and acknowledged."""
        return self._fin_acked

    @property
    def received_done(self) -> bool:
        """The peer's whole stream arrived (its end included)."""
        return self._received_fin

    @property
    def rto(self) -> float:
        return self._rto

    def can_write(self) -> bool:
        """Room for one more segment: in the window, and in the congestion
        window (fewer segments in flight than ``cwnd``)."""
        base = min(self._inflight, default=self._next_seq)
        return (
            self._fin_seq is None
            and self._next_seq - base < self.window
            and len(self._inflight) < self.cwnd
        )

    @property
    def cwnd(self) -> float:
        """The congestion window, in segments."""
        return self._cwnd

    def _grow(self, acked: int) -> None:
        """Slow start below ``ssthresh``, then one segment per window."""
        for _ in range(acked):
            if self._cwnd < self._ssthresh:
                self._cwnd += 1
            else:
                self._cwnd += 1 / self._cwnd
        self._cwnd = min(self._cwnd, float(self.window))

    def _on_loss(self, timeout: bool) -> None:
        """Halve the window once per loss episode (a timeout: down to the
        floor), as TCP does (RFC 5681), but never under ``min_cwnd``."""
        if self._next_seq <= self._recovery_until and not timeout:
            return
        self._recovery_until = self._next_seq
        self._ssthresh = max(self.min_cwnd, self._cwnd / 2)
        self._cwnd = self.min_cwnd if timeout else self._ssthresh

    # --- sending ---------------------------------------------------------------

    def write(self, data: bytes, now: float) -> list[bytes]:
        """Send ``data`` (at most ``mss`` bytes); the packet to put on the wire.

        :raises ValueError: too large, or after :meth:`finish`.
        """
        if len(data) > self.mss or not data:
            raise ValueError(f"a segment carries 1 to {self.mss} bytes")
        if self._fin_seq is not None:
            raise ValueError("the stream is finished")
        self.stats.bytes_sent += len(data)
        return [self._new_segment(data, False, now)]

    def finish(self, now: float) -> list[bytes]:
        """End our stream (once); the packet to send."""
        if self._fin_seq is not None:
            return []
        self._fin_seq = self._next_seq
        return [self._new_segment(b"", True, now)]

    def _new_segment(self, data: bytes, fin: bool, now: float) -> bytes:
        seq = self._next_seq
        self._next_seq += 1
        self._inflight[seq] = _Segment(data, fin, now)
        self.stats.segments_sent += 1
        return _packet(seq, data, fin)

    # --- receiving ---------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        """Take one packet from the peer.

        :returns: the data now delivered in order, and the packets to send.
        """
        kind = packet[:1]
        if kind == b"A" and len(packet) == 9 + self.window // 8:
            return [], self._on_ack(packet, now)
        if kind in (b"D", b"F") and len(packet) >= 9:
            fin = kind == b"F"
            if fin and len(packet) != 9:
                self.stats.malformed += 1
                return [], []
            return self._on_data(_SEQ.unpack_from(packet, 1)[0], packet[9:], fin, now)
        self.stats.malformed += 1
        return [], []

    def _on_data(
        self, seq: int, data: bytes, fin: bool, now: float
    ) -> tuple[list[bytes], list[bytes]]:
        if len(data) > self.mss:
            self.stats.malformed += 1
            return [], []
        if seq < self._expected or seq in self._held or self._received_fin:
            self.stats.duplicates += 1
            return [], [self._ack()]
        if seq >= self._expected + self.window:
            return [], [self._ack()]  # beyond the window: dropped
        self._held[seq] = (data, fin)
        delivered: list[bytes] = []
        in_order = seq == self._expected
        while self._expected in self._held:
            data, fin = self._held.pop(self._expected)
            self._expected += 1
            if fin:
                self._received_fin = True
                self._held.clear()
                break
            delivered.append(data)
            self.stats.bytes_received += len(data)
        self._ack_pending += 1
        if not in_order or self._held or self._received_fin or self._ack_pending >= 2:
            return delivered, [self._ack()]
        if self._ack_at is None:
            self._ack_at = now + self.ack_delay
        return delivered, []

    def _ack(self) -> bytes:
        self._ack_pending = 0
        self._ack_at = None
        bits = 0
        for seq in self._held:
            offset = seq - self._expected - 1
            if 0 <= offset < self.window:
                bits |= 1 << (self.window - 1 - offset)
        return b"A" + _SEQ.pack(self._expected) + bits.to_bytes(self.window // 8, "big")

    def _on_ack(self, packet: bytes, now: float) -> list[bytes]:
        (cumulative,) = _SEQ.unpack_from(packet, 1)
        if cumulative > self._next_seq:
            self.stats.malformed += 1
            return []
        bits = int.from_bytes(packet[9:], "big")
        acked = [seq for seq in self._inflight if seq < cumulative]
        for offset in range(self.window):
            if bits >> (self.window - 1 - offset) & 1:
                seq = cumulative + 1 + offset
                if seq in self._inflight:
                    acked.append(seq)
        newest = None
        for seq in acked:
            segment = self._inflight.pop(seq)
            if segment.tries == 1 and (newest is None or segment.sent_at > newest):
                newest = segment.sent_at
            self._latest_acked = max(self._latest_acked, segment.sent_at)
            if segment.fin:
                self._fin_acked = True
        if newest is not None:
            self._sample(now - newest)
        if not acked:
            return []
        self._grow(len(acked))
        # A segment sent before one that was acknowledged, by more than a
        # quarter of a round trip, is lost rather than late (RACK, RFC 8985):
        # send it again now instead of waiting for the timeout.
        srtt = self._srtt if self._srtt is not None else self._rto
        cutoff = self._latest_acked - srtt / 4
        lost = [
            self._resend(seq, segment, now)
            for seq, segment in self._inflight.items()
            if segment.sent_at < cutoff
        ]
        if lost:
            self._on_loss(timeout=False)
        return lost

    def _sample(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self.stats.srtt = self._srtt
        self._rto = min(self.rto_max, max(self.rto_min, self._srtt + 4 * self._rttvar))

    def _resend(self, seq: int, segment: _Segment, now: float) -> bytes:
        segment.sent_at = now
        segment.tries += 1
        self.stats.retransmissions += 1
        return _packet(seq, segment.data, segment.fin)

    # --- time ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has work: a retransmission or a delayed ack."""
        times = [s.sent_at + self._rto for s in self._inflight.values()]
        if self._ack_at is not None:
            times.append(self._ack_at)
        return min(times, default=None)

    def poll(self, now: float) -> list[bytes]:
        """Retransmissions and delayed acks due at ``now``."""
        out: list[bytes] = []
        if self._ack_at is not None and now >= self._ack_at:
            out.append(self._ack())
        timed_out = False
        for seq, segment in self._inflight.items():
            if now >= segment.sent_at + self._rto:
                out.append(self._resend(seq, segment, now))
                timed_out = True
        if timed_out:
            self._rto = min(self.rto_max, self._rto * 2)
            self._on_loss(timeout=True)
        return out

    def ack_now(self) -> list[bytes]:
        """An acknowledgement of what arrived so far (after a quiet spell)."""
        return [self._ack()]


def _packet(seq: int, data: bytes, fin: bool) -> bytes:
    return (b"F" if fin else b"D") + _SEQ.pack(seq) + data
