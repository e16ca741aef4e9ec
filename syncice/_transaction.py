"""A sans-IO STUN client transaction: the retransmission schedule of RFC 8489 §6.2.1.

A request is sent at once, then again after RTO, 2·RTO, 4·RTO... until it has
been sent ``max_sends`` times (Rc); after the last send the transaction waits
``final_wait`` times the initial RTO (Rm) for a response, then times out. An
optional absolute ``deadline`` ends it sooner (used to bound gathering), and
``rto_max`` caps the doubled interval. The owner asks :meth:`poll` when
``now >= timer_at`` and resends ``data`` when told to; the response itself is
matched by the owner on ``transaction_id``.

The schedule is kept against an owner that polls late: each interval counts
from when the send was due, not from when it went out, so the transaction
times out when the RFC says however late the timers fire (over the 18 sends
of an ICE check, lateness under load once added 0.1 s). Only an owner so late
that the next send would be due at once gets the full interval from now
instead, so that being late never makes a burst.

A response that fails its integrity check is discarded as if it had never
arrived, and the retransmissions go on (RFC 8489 §9.1.5, over UDP): the owner
says so with :meth:`ClientTransaction.discard`. A transaction that ends with
every response it got discarded ends with :attr:`Poll.INTEGRITY_VIOLATED`
rather than :attr:`Poll.TIMEOUT`.
"""

from __future__ import annotations

import enum

__all__ = ["ClientTransaction", "Poll"]


class Poll(enum.Enum):
    """What :meth:`ClientTransaction.poll` asks the owner to do."""

    WAIT = "wait"
    SEND = "send"
    TIMEOUT = "timeout"
    #: The transaction ended, and every response it got had been discarded
    #: (RFC 8489 §9.1.5): an integrity violation rather than a timeout.
    INTEGRITY_VIOLATED = "integrity-violated"


class ClientTransaction:
    """One outstanding STUN request and its retransmission timer.

    :param transaction_id: the request's 12-byte transaction ID.
    :param data: the encoded request, resent as is.
    :param endpoint: where it leaves from (the owner's socket or relay ID).
    :param addr: where it goes.
    :param now: the time of the first send, which the caller makes.
    :param rto: the initial retransmission timeout, seconds.
    :param max_sends: Rc, how many times the request is sent in all.
    :param final_wait: Rm, the wait after the last send, in initial RTOs.
    :param rto_max: a cap on the doubled interval, or ``None``.
    :param deadline: an absolute time at which the transaction times out
        whatever the schedule says, or ``None``.
    """

    __slots__ = (
        "_interval",
        "_rto",
        "addr",
        "data",
        "deadline",
        "discarded",
        "endpoint",
        "final_wait",
        "max_sends",
        "rto_max",
        "sends",
        "sent_at",
        "started_at",
        "timer_at",
        "transaction_id",
    )

    def __init__(
        self,
        *,
        transaction_id: bytes,
        data: bytes,
        endpoint: int,
        addr: tuple[str, int],
        now: float,
        rto: float,
        max_sends: int,
        final_wait: int,
        rto_max: float | None = None,
        deadline: float | None = None,
    ) -> None:
        if rto <= 0 or max_sends < 1 or final_wait < 0:
            raise ValueError("rto must be > 0, max_sends >= 1, final_wait >= 0")
        self.transaction_id = transaction_id
        self.data = data
        self.endpoint = endpoint
        self.addr = addr
        self.max_sends = max_sends
        self.final_wait = final_wait
        self.rto_max = rto_max
        self.deadline = deadline
        self._rto = rto
        self._interval = rto
        self.sends = 1
        #: How many responses failed their integrity check (:meth:`discard`).
        self.discarded = 0
        self.started_at = now
        self.sent_at = now
        self.timer_at = 0.0
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        if self.sends < self.max_sends:
            at = now + self._interval
        else:
            at = now + self.final_wait * self._rto
        if self.deadline is not None and self.deadline < at:
            at = self.deadline
        self.timer_at = at

    def poll(self, now: float) -> Poll:
        """Advance the schedule to ``now``.

        :returns: :attr:`Poll.SEND` when the owner must send ``data`` again
            now, :attr:`Poll.TIMEOUT` when the transaction has failed without
            a response, :attr:`Poll.INTEGRITY_VIOLATED` when it has failed and
            every response it got was discarded, and :attr:`Poll.WAIT` when
            ``now`` is before :attr:`timer_at`.
        """
        if now < self.timer_at:
            return Poll.WAIT
        if (self.deadline is not None and now >= self.deadline) or (
            self.sends >= self.max_sends
        ):
            return Poll.INTEGRITY_VIOLATED if self.discarded else Poll.TIMEOUT
        self.sends += 1
        self.sent_at = now
        self._interval *= 2
        if self.rto_max is not None and self._interval > self.rto_max:
            self._interval = self.rto_max
        self._schedule(self.timer_at)  # from when this send was due
        if self.timer_at <= now:  # so late the next one is due too: no burst
            self._schedule(now)
        return Poll.SEND

    def discard(self) -> None:
        """Count a response that failed its integrity check (RFC 8489 §9.1.5).

        Nothing else changes: the retransmissions go on as if it had never
        arrived, and a later valid response still ends the transaction.
        """
        self.discarded += 1
