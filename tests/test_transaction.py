"""The STUN client transaction schedule (``syncice._transaction``, RFC 8489 §6.2.1)."""

from __future__ import annotations

import pytest

from syncice._transaction import ClientTransaction, Poll

TID = bytes(range(12))


def transaction(
    *,
    now: float = 0.0,
    rto: float = 0.5,
    max_sends: int = 7,
    final_wait: int = 16,
    rto_max: float | None = None,
    deadline: float | None = None,
) -> ClientTransaction:
    return ClientTransaction(
        transaction_id=TID,
        data=b"request",
        endpoint=3,
        addr=("192.0.2.1", 3478),
        now=now,
        rto=rto,
        max_sends=max_sends,
        final_wait=final_wait,
        rto_max=rto_max,
        deadline=deadline,
    )


def schedule(tx: ClientTransaction) -> tuple[list[float], float]:
    """Poll at every deadline: the times of the sends (the first included)
    and the time of the timeout."""
    sends = [tx.started_at]
    while True:
        at = tx.timer_at
        assert tx.poll(at - 1e-9) is Poll.WAIT
        result = tx.poll(at)
        if result is Poll.TIMEOUT:
            return sends, at
        assert result is Poll.SEND
        assert tx.sent_at == at
        sends.append(at)


def test_rfc8489_schedule_with_default_values() -> None:
    # RFC 8489 §6.2.1: with RTO 500 ms, Rc 7 and Rm 16, requests go out at
    # 0, 500, 1500, 3500, 7500, 15500 and 31500 ms, and the transaction fails
    # at 39500 ms.
    tx = transaction()
    assert tx.timer_at == 0.5
    assert tx.sends == 1
    sends, timeout = schedule(tx)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert timeout == 39.5
    assert tx.sends == 7


def test_schedule_starts_at_now() -> None:
    tx = transaction(now=100.0)
    assert (tx.started_at, tx.sent_at, tx.timer_at) == (100.0, 100.0, 100.5)
    sends, timeout = schedule(tx)
    assert sends == [100.0, 100.5, 101.5, 103.5, 107.5, 115.5, 131.5]
    assert timeout == 139.5


def test_attributes_are_kept() -> None:
    tx = transaction()
    assert tx.transaction_id == TID
    assert tx.data == b"request"
    assert tx.endpoint == 3
    assert tx.addr == ("192.0.2.1", 3478)


def test_rto_max_caps_the_doubled_interval() -> None:
    tx = transaction(rto_max=1.0)
    sends, timeout = schedule(tx)
    assert sends == [0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    # Rm counts initial RTOs, not capped intervals.
    assert timeout == 5.5 + 16 * 0.5


def test_rto_max_equal_to_rto_keeps_the_interval_constant() -> None:
    sends, timeout = schedule(transaction(rto=0.1, max_sends=4, rto_max=0.1))
    assert sends == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert timeout == pytest.approx(0.3 + 1.6)


def test_deadline_ends_the_transaction_sooner() -> None:
    tx = transaction(deadline=2.0)
    sends, timeout = schedule(tx)
    assert sends == [0.0, 0.5, 1.5]
    assert timeout == 2.0


def test_deadline_before_the_first_retransmission() -> None:
    tx = transaction(now=1.0, deadline=1.2)
    assert tx.timer_at == 1.2
    assert tx.poll(1.2) is Poll.TIMEOUT


def test_deadline_later_than_the_schedule_changes_nothing() -> None:
    sends, timeout = schedule(transaction(deadline=100.0))
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert timeout == 39.5


def test_deadline_equal_to_a_send_time_times_out_instead() -> None:
    # At the deadline the transaction is over, even if a send was due.
    sends, timeout = schedule(transaction(deadline=1.5))
    assert sends == [0.0, 0.5]
    assert timeout == 1.5


def test_single_send_waits_final_wait_rtos() -> None:
    tx = transaction(max_sends=1, final_wait=3)
    assert tx.timer_at == 1.5
    assert tx.poll(1.0) is Poll.WAIT
    assert tx.poll(1.5) is Poll.TIMEOUT


def test_final_wait_zero_times_out_at_the_last_send() -> None:
    sends, timeout = schedule(transaction(max_sends=3, final_wait=0))
    assert sends == [0.0, 0.5, 1.5]
    assert timeout == 1.5


def test_a_late_poll_keeps_the_schedule() -> None:
    # The owner may be late (a busy loop): the next send stays where the RFC
    # puts it, counted from when this one was due.
    tx = transaction()
    assert tx.poll(0.7) is Poll.SEND
    assert tx.sent_at == 0.7
    assert tx.timer_at == 1.5
    assert tx.poll(1.6) is Poll.SEND
    assert tx.timer_at == 3.5


def test_lateness_does_not_add_up_to_a_later_timeout() -> None:
    # Every poll 30 ms late, as on a loaded machine: the sends go out 30 ms
    # late each, the transaction still times out at 39.5 s (18 sends, ICE's
    # schedule), not 18 * 30 ms later.
    tx = transaction(max_sends=18, rto_max=2.0)
    sends = []
    while (result := tx.poll(tx.timer_at + 0.03)) is Poll.SEND:
        sends.append(tx.sent_at)
    assert result is Poll.TIMEOUT
    assert len(sends) == 17
    assert sends[-1] == pytest.approx(31.53)
    assert tx.timer_at == pytest.approx(39.5)


def test_a_very_late_poll_sends_once_not_a_burst() -> None:
    # Polled after the next send was due as well: one send now, and the next
    # a full interval later.
    tx = transaction()
    assert tx.poll(2.0) is Poll.SEND
    assert tx.timer_at == 3.0
    assert tx.poll(2.0) is Poll.WAIT
    assert tx.poll(3.0) is Poll.SEND
    assert tx.timer_at == 5.0


def test_a_late_poll_still_meets_the_deadline() -> None:
    tx = transaction(deadline=1.0)
    assert tx.poll(0.9) is Poll.SEND
    assert tx.timer_at == 1.0
    assert tx.poll(1.0) is Poll.TIMEOUT


def test_poll_before_timer_changes_nothing() -> None:
    tx = transaction()
    for now in (0.0, 0.1, 0.49):
        assert tx.poll(now) is Poll.WAIT
    assert (tx.sends, tx.sent_at, tx.timer_at) == (1, 0.0, 0.5)


@pytest.mark.parametrize(
    ("rto", "max_sends", "final_wait"),
    [(0.0, 7, 16), (-1.0, 7, 16), (0.5, 0, 16), (0.5, 7, -1)],
)
def test_invalid_parameters(rto: float, max_sends: int, final_wait: int) -> None:
    with pytest.raises(ValueError, match="rto must be > 0"):
        transaction(rto=rto, max_sends=max_sends, final_wait=final_wait)


# --- responses discarded for their integrity (RFC 8489 §9.1.5) ------------------------


def test_discarded_responses_change_nothing_but_the_outcome() -> None:
    # A discarded response is as if it had never arrived: the schedule goes
    # on, and the transaction ends when it would have, as an integrity
    # violation rather than a timeout.
    tx = transaction()
    tx.discard()
    assert (tx.discarded, tx.sends, tx.timer_at) == (1, 1, 0.5)
    sends = [tx.started_at]
    while (result := tx.poll(tx.timer_at)) is Poll.SEND:
        sends.append(tx.sent_at)
        tx.discard()
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.timer_at == 39.5
    assert result is Poll.INTEGRITY_VIOLATED
    assert tx.discarded == 7


def test_a_transaction_without_responses_still_times_out() -> None:
    tx = transaction(max_sends=1, final_wait=1)
    assert tx.discarded == 0
    assert tx.poll(0.5) is Poll.TIMEOUT


def test_a_discarded_response_before_the_deadline_ends_in_a_violation() -> None:
    tx = transaction(deadline=1.0)
    assert tx.poll(0.5) is Poll.SEND
    tx.discard()
    assert tx.poll(0.9) is Poll.WAIT
    assert tx.poll(1.0) is Poll.INTEGRITY_VIOLATED
