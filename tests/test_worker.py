"""The clocks (:mod:`syncice._clock`) and the selector thread
(:mod:`syncice._worker`), with real threads and loopback sockets.

No test sleeps to wait for something: each waits on a future or an event, with
:data:`HANG` seconds only as a guard against a hang. To know that the worker has
finished a turn, a test runs a command on it (:func:`settle`). To line up
several inputs for one turn, it keeps the worker busy in a command
(:func:`busy`) while it sends them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from syncice import _worker
from syncice._clock import Clock, FakeClock, MonotonicClock
from syncice._worker import (
    Deadline,
    TimerHandle,
    Worker,
    acquire_worker,
    active_worker_threads,
    release_worker,
)
from tests.conftest import requires
from tests.descriptors import open_descriptors, opened_since

#: Seconds to wait before calling something a hang. Never a timing assertion.
HANG = 10.0

LOGGER = "syncice._worker"

T = TypeVar("T")


# --- helpers ------------------------------------------------------------------


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_worker(clock: FakeClock) -> Iterator[Worker]:
    w = Worker(clock)
    yield w
    w.stop()


def run(worker: Worker, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the worker and return its result."""
    return worker.submit(fn).result(HANG)


def settle(worker: Worker) -> None:
    """Return once the worker has completed a whole turn since the call."""
    # The first command may run early in a turn; the second runs in a later
    # turn, so the first one's turn (its timers too) is over.
    run(worker, lambda: None)
    run(worker, lambda: None)


@contextlib.contextmanager
def busy(worker: Worker) -> Iterator[None]:
    """Keep the worker inside a command for the duration of the block."""
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(HANG)

    fut = worker.submit(hold)
    assert entered.wait(HANG)
    try:
        yield
    finally:
        release.set()
        fut.result(HANG)


@contextlib.contextmanager
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A non-blocking receiver bound to 127.0.0.1 and a sender."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        yield rx, tx


def open_fds() -> frozenset[str]:
    return open_descriptors()


# --- clocks -------------------------------------------------------------------


def test_monotonic_clock_reads_time_monotonic() -> None:
    c: Clock = MonotonicClock()
    before = time.monotonic()
    now = c.now()
    assert before <= now <= time.monotonic()
    assert repr(c) == "MonotonicClock()"


def test_fake_clock_moves_only_when_told() -> None:
    c = FakeClock(5)
    assert c.now() == 5.0
    assert isinstance(c.now(), float)
    assert c.autojump_threshold is None
    c.advance(1.5)
    assert c.now() == 6.5
    c.advance(0)
    c.jump_to(10)
    c.jump_to(10)
    assert c.now() == 10.0
    assert repr(c) == "FakeClock(now=10.0, autojump_threshold=None)"
    assert FakeClock().now() == 0.0


@pytest.mark.parametrize(
    "move",
    [
        pytest.param(lambda c: c.advance(-1), id="advance-negative"),
        pytest.param(lambda c: c.advance(math.nan), id="advance-nan"),
        pytest.param(lambda c: c.advance(math.inf), id="advance-inf"),
        pytest.param(lambda c: c.jump_to(9.5), id="jump-back"),
        pytest.param(lambda c: c.jump_to(math.inf), id="jump-inf"),
        pytest.param(lambda c: c.jump_to(math.nan), id="jump-nan"),
    ],
)
def test_fake_clock_refuses_bad_moves(move: Callable[[FakeClock], None]) -> None:
    c = FakeClock(10)
    with pytest.raises(ValueError, match=r"advance|jump"):
        move(c)
    assert c.now() == 10.0


@pytest.mark.parametrize("value", [-0.1, math.inf, math.nan])
def test_fake_clock_refuses_bad_thresholds(value: float) -> None:
    with pytest.raises(ValueError, match="autojump_threshold"):
        FakeClock(autojump_threshold=value)
    c = FakeClock(autojump_threshold=0.05)
    with pytest.raises(ValueError, match="autojump_threshold"):
        c.autojump_threshold = value
    assert c.autojump_threshold == 0.05
    c.autojump_threshold = None
    assert c.autojump_threshold is None
    c.autojump_threshold = 0
    assert c.autojump_threshold == 0


@pytest.mark.parametrize("start", [math.inf, -math.inf, math.nan])
def test_fake_clock_refuses_a_bad_start(start: float) -> None:
    with pytest.raises(ValueError, match="start"):
        FakeClock(start)


def test_fake_clock_tells_its_listeners_when_it_moves() -> None:
    c = FakeClock()
    seen: list[float] = []

    def listener() -> None:
        seen.append(c.now())

    c._add_listener(listener)
    c.advance(1)
    c.jump_to(3)
    c.autojump_threshold = 0.1
    _, epoch = c._autojump_plan()
    assert not c._autojump(2, epoch)  # behind: no move, no call
    assert not c._autojump(3, epoch)
    assert c._autojump(4, epoch)
    assert seen == [1.0, 3.0, 3.0, 4.0]
    c._remove_listener(listener)
    c._remove_listener(listener)  # no error
    c.advance(1)
    assert seen == [1.0, 3.0, 3.0, 4.0]


def test_a_jump_planned_before_the_threshold_changed_is_refused() -> None:
    # The worker reads the threshold, waits that long, then jumps; a test
    # that pauses the clock meanwhile (threshold None) must find it still
    # once the setter returns, even if the worker's wait had already ended.
    c = FakeClock(autojump_threshold=0.0)
    threshold, before = c._autojump_plan()
    assert threshold == 0.0
    c.autojump_threshold = None
    assert not c._autojump(30.0, before)
    assert c.now() == 0.0
    c.autojump_threshold = 0.0  # back: a plan of the old epoch still fails
    assert not c._autojump(30.0, before)
    _, after = c._autojump_plan()
    assert c._autojump(30.0, after)
    assert c.now() == 30.0


def test_fake_clock_is_thread_safe() -> None:
    c = FakeClock()
    start = threading.Barrier(4)

    def advance() -> None:
        start.wait(HANG)
        for _ in range(2000):
            c.advance(1)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for fut in [pool.submit(advance) for _ in range(4)]:
            fut.result(HANG)
    assert c.now() == 8000.0


# --- commands -----------------------------------------------------------------


def test_submit_returns_the_result(worker: Worker) -> None:
    assert worker.submit(lambda: 42).result(HANG) == 42
    assert run(worker, worker.in_worker_thread) is True
    assert worker.in_worker_thread() is False


def test_submit_hands_the_exception_to_the_future(worker: Worker) -> None:
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        worker.submit(fail).result(HANG)
    assert run(worker, lambda: "still serving") == "still serving"


def test_commands_from_several_threads_keep_each_threads_order(worker: Worker) -> None:
    threads, per_thread = 6, 300
    log: list[tuple[int, int]] = []  # appended on the worker thread only
    start = threading.Barrier(threads)

    def client(tid: int) -> None:
        start.wait(HANG)
        for i in range(per_thread):
            if i % 2:
                worker.post(functools.partial(log.append, (tid, i)))
            else:
                worker.submit(functools.partial(log.append, (tid, i)))

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for fut in [pool.submit(client, t) for t in range(threads)]:
            fut.result(HANG)
    settle(worker)
    assert len(log) == threads * per_thread
    for tid in range(threads):
        assert [i for t, i in log if t == tid] == list(range(per_thread))


def test_commands_run_in_the_order_they_were_posted(worker: Worker) -> None:
    # Across threads, a command posted after another (a happens-before edge
    # through the event) runs after it.
    log: list[str] = []
    posted = threading.Event()

    def other_thread() -> None:
        worker.post(lambda: log.append("first"))
        posted.set()

    with busy(worker):  # so that both wait in the queue together
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert posted.wait(HANG)
        last = worker.submit(lambda: log.append("second"))
    last.result(HANG)
    thread.join(HANG)
    assert log == ["first", "second"]


def test_submit_on_the_worker_thread_runs_inline(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    def outer() -> list[str]:
        log: list[str] = []

        def inline() -> str:
            log.append("inner")
            return "result"

        inner = worker.submit(inline)
        assert inner.done()
        assert inner.result() == "result"
        failed = worker.submit(lambda: 1 // 0)
        assert isinstance(failed.exception(), ZeroDivisionError)
        worker.post(lambda: log.append("posted"))

        def raising() -> None:
            raise ValueError("posted inline")

        worker.post(raising)
        log.append("after")
        return log

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(worker, outer) == ["inner", "posted", "after"]
    assert any("posted inline" in str(r.exc_info) for r in caplog.records)


def test_a_cancelled_future_keeps_its_command_from_running(worker: Worker) -> None:
    ran: list[str] = []
    with busy(worker):
        fut = worker.submit(lambda: ran.append("cancelled"))
        assert fut.cancel()
        worker.post(lambda: ran.append("posted"))
    settle(worker)
    assert ran == ["posted"]


def test_a_burst_of_wakeups_is_harmless(worker: Worker) -> None:
    with busy(worker):
        # More than the small socket buffer holds: the extra writes fail with
        # BlockingIOError, which means a wakeup is pending anyway.
        for _ in range(2000):
            worker._wake()
    settle(worker)
    assert run(worker, lambda: "ok") == "ok"


# --- readers ------------------------------------------------------------------


def test_reader_callbacks_fire_for_a_loopback_udp_socket(worker: Worker) -> None:
    got: queue.Queue[tuple[str, bytes]] = queue.Queue()
    with udp_pair() as (rx, tx):
        addr = rx.getsockname()

        def reader(tag: str) -> Callable[[], None]:
            def on_readable() -> None:
                data, _ = rx.recvfrom(2048)
                got.put((tag, data))

            return on_readable

        run(worker, lambda: worker.add_reader(rx, reader("a")))
        for i in range(3):
            tx.sendto(b"datagram %d" % i, addr)
        assert [got.get(timeout=HANG) for _ in range(3)] == [
            ("a", b"datagram 0"),
            ("a", b"datagram 1"),
            ("a", b"datagram 2"),
        ]

        # A second add_reader replaces the callback.
        run(worker, lambda: worker.add_reader(rx, reader("b")))
        tx.sendto(b"again", addr)
        assert got.get(timeout=HANG) == ("b", b"again")

        run(worker, lambda: worker.remove_reader(rx))
        run(worker, lambda: worker.remove_reader(rx))  # not registered: no error
        tx.sendto(b"unwatched", addr)
        settle(worker)
        assert got.empty()
        assert rx.recvfrom(2048)[0] == b"unwatched"


def test_remove_reader_accepts_a_closed_socket(worker: Worker) -> None:
    with udp_pair() as (rx, _):
        run(worker, lambda: worker.add_reader(rx, lambda: None))
        rx.close()
        run(worker, lambda: worker.remove_reader(rx))
        assert run(worker, lambda: len(worker._keys)) == 1  # the wakeup socket


def test_a_reader_removed_earlier_in_the_same_turn_is_not_called(
    worker: Worker,
) -> None:
    called: list[str] = []
    with udp_pair() as (a, tx), udp_pair() as (b, _):
        socks = {"a": a, "b": b}

        def reader(name: str, other: str) -> Callable[[], None]:
            def on_readable() -> None:
                socks[name].recv(2048)
                called.append(name)
                worker.remove_reader(socks[other])

            return on_readable

        def register() -> None:
            worker.add_reader(a, reader("a", "b"))
            worker.add_reader(b, reader("b", "a"))

        run(worker, register)
        with busy(worker):  # both become readable before the next select
            tx.sendto(b"x", a.getsockname())
            tx.sendto(b"y", b.getsockname())
        settle(worker)
        assert len(called) == 1


def test_worker_only_methods_refuse_other_threads(worker: Worker) -> None:
    with udp_pair() as (rx, _):
        with pytest.raises(RuntimeError, match="worker thread"):
            worker.add_reader(rx, lambda: None)
        with pytest.raises(RuntimeError, match="worker thread"):
            worker.remove_reader(rx)
    with pytest.raises(RuntimeError, match="worker thread"):
        worker.call_at(0.0, lambda: None)


# --- timers -------------------------------------------------------------------


def test_timers_fire_in_deadline_order_and_cancelled_ones_do_not(
    fake_worker: Worker, clock: FakeClock
) -> None:
    fired: list[tuple[str, float]] = []
    last = threading.Event()
    handles: dict[str, TimerHandle] = {}

    def timer(name: str) -> Callable[[], None]:
        def on_timer() -> None:
            fired.append((name, clock.now()))
            if name == "c":
                last.set()

        return on_timer

    def schedule() -> None:
        for when, name in [
            (3.0, "c"),
            (1.0, "a"),
            (2.0, "b1"),
            (1.5, "cancelled"),
            (2.0, "b2"),
            (4.0, "late"),
        ]:
            handles[name] = fake_worker.call_at(when, timer(name))
        handles["cancelled"].cancel()
        handles["cancelled"].cancel()  # idempotent

    run(fake_worker, schedule)
    assert handles["a"].when == 1.0
    settle(fake_worker)
    assert fired == []  # fake time stands still

    clock.advance(3.5)  # wakes the worker
    assert last.wait(HANG)
    settle(fake_worker)
    assert fired == [("a", 3.5), ("b1", 3.5), ("b2", 3.5), ("c", 3.5)]
    assert "done" in repr(handles["a"])
    assert "pending" in repr(handles["late"])
    handles["a"].cancel()  # after firing: no effect

    run(fake_worker, handles["late"].cancel)
    clock.jump_to(100)
    settle(fake_worker)
    assert [name for name, _ in fired] == ["a", "b1", "b2", "c"]
    assert run(fake_worker, lambda: (fake_worker._timers, fake_worker._cancelled)) == (
        [],
        0,
    )


def test_a_deadline_follows_its_latest_value(
    fake_worker: Worker, clock: FakeClock
) -> None:
    fired: list[float] = []
    done = threading.Event()

    def on_deadline() -> None:
        fired.append(clock.now())
        done.set()

    deadline = run(fake_worker, lambda: Deadline(fake_worker, on_deadline))

    def at() -> float | None:
        return run(fake_worker, lambda: deadline.at)

    assert at() is None

    def moves() -> list[int]:
        heap = []
        for at in (5.0, 5.0, 2.0, None, 3.0):
            deadline.set(at)
            heap.append(len(fake_worker._timers))
        return heap

    # The same deadline twice touches nothing; a moved one replaces its timer.
    assert run(fake_worker, moves) == [1, 1, 2, 2, 3]
    assert at() == 3.0
    clock.advance(2.5)
    settle(fake_worker)
    assert fired == []  # 2.0 was cleared, 3.0 is not due
    clock.advance(1.0)
    assert done.wait(HANG)
    settle(fake_worker)
    assert fired == [3.5]
    assert at() is None  # spent: the next set() schedules again
    run(fake_worker, lambda: deadline.set(10.0))
    run(fake_worker, lambda: deadline.set(None))
    clock.jump_to(20.0)
    settle(fake_worker)
    assert fired == [3.5]
    assert run(fake_worker, lambda: fake_worker._timers) == []


def test_timer_callbacks_can_cancel_and_schedule_timers(
    fake_worker: Worker, clock: FakeClock
) -> None:
    fired: list[str] = []
    done = threading.Event()
    handles: dict[str, TimerHandle] = {}

    def rescheduled() -> None:
        fired.append("rescheduled")
        done.set()

    def first() -> None:
        fired.append("first")
        handles["second"].cancel()  # due in this batch too
        # In the past: runs on the next turn, not in this batch.
        fake_worker.call_at(0.0, rescheduled)

    def schedule() -> None:
        handles["first"] = fake_worker.call_at(1.0, first)
        handles["second"] = fake_worker.call_at(1.0, lambda: fired.append("second"))
        fake_worker.call_at(1.0, lambda: fired.append("third"))

    run(fake_worker, schedule)
    clock.advance(1)
    assert done.wait(HANG)
    assert fired == ["first", "third", "rescheduled"]


def test_timers_on_the_real_clock(worker: Worker) -> None:
    fired = threading.Event()
    order: list[str] = []

    def later() -> None:
        order.append("later")
        fired.set()

    def schedule() -> None:
        now = worker.clock.now()
        worker.call_at(now + 0.02, later)
        worker.call_at(now, lambda: order.append("now"))

    run(worker, schedule)
    assert fired.wait(HANG)
    assert order == ["now", "later"]


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf])
def test_call_at_refuses_a_time_that_is_not_finite(worker: Worker, when: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        run(worker, lambda: worker.call_at(when, lambda: None))


def test_a_far_off_timer_does_not_overflow_select(worker: Worker) -> None:
    got: queue.Queue[bytes] = queue.Queue()
    with udp_pair() as (rx, tx):

        def setup() -> None:
            worker.call_at(worker.clock.now() + 1e12, lambda: None)
            worker.add_reader(rx, lambda: got.put(rx.recv(2048)))

        run(worker, setup)
        # The next select waits for that timer: a timeout too long for epoll
        # would end the loop, and this datagram would never be read.
        tx.sendto(b"x", rx.getsockname())
        assert got.get(timeout=HANG) == b"x"


def test_many_cancelled_timers_are_purged_from_the_heap(
    fake_worker: Worker, clock: FakeClock
) -> None:
    def schedule_and_cancel() -> tuple[int, int]:
        handles = [fake_worker.call_at(50.0 + i, lambda: None) for i in range(100)]
        for handle in handles:
            handle.cancel()
        return len(fake_worker._timers), fake_worker._cancelled

    # The 65th cancel rebuilds the heap with the 35 live timers; 35 more
    # cancels are not enough to rebuild it again.
    assert run(fake_worker, schedule_and_cancel) == (35, 35)
    clock.advance(1000)
    settle(fake_worker)
    assert run(fake_worker, lambda: (fake_worker._timers, fake_worker._cancelled)) == (
        [],
        0,
    )


# --- the fake clock and the worker --------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.01])
def test_autojump_fires_a_30_second_timer(threshold: float) -> None:
    clock = FakeClock(autojump_threshold=threshold)
    w = Worker(clock)
    try:
        fired: concurrent.futures.Future[float] = concurrent.futures.Future()
        run(w, lambda: w.call_at(30.0, lambda: fired.set_result(clock.now())))
        assert fired.result(HANG) == 30.0
        assert clock.now() == 30.0
    finally:
        w.stop()
    assert clock._listeners == ()


def test_autojump_skips_cancelled_deadlines(
    fake_worker: Worker, clock: FakeClock
) -> None:
    fired: concurrent.futures.Future[float] = concurrent.futures.Future()

    def schedule() -> None:
        fake_worker.call_at(30.0, lambda: fired.set_result(-1)).cancel()
        fake_worker.call_at(40.0, lambda: fired.set_result(clock.now()))

    run(fake_worker, schedule)
    settle(fake_worker)
    assert clock.now() == 0.0  # no threshold, no jump
    clock.autojump_threshold = 0.0  # wakes the worker, which jumps
    assert fired.result(HANG) == 40.0


def test_autojump_does_not_overtake_a_datagram_in_flight(clock: FakeClock) -> None:
    clock.autojump_threshold = 0.0
    w = Worker(clock)
    try:
        seen: list[tuple[str, float]] = []
        fired = threading.Event()
        with udp_pair() as (rx, tx):

            def on_readable() -> None:
                rx.recv(2048)
                seen.append(("datagram", clock.now()))

            def on_timer() -> None:
                seen.append(("timer", clock.now()))
                fired.set()

            def setup() -> None:
                w.add_reader(rx, on_readable)
                w.call_at(30.0, on_timer)

            with busy(w):
                # In flight before the timer exists: the turn that sees it
                # is not idle, so the clock waits for the one after.
                tx.sendto(b"x", rx.getsockname())
                w.submit(setup)
            assert fired.wait(HANG)
        assert seen == [("datagram", 0.0), ("timer", 30.0)]
    finally:
        w.stop()


# --- errors in callbacks ------------------------------------------------------


def test_raising_callbacks_are_logged_and_the_worker_goes_on(
    fake_worker: Worker, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def raiser(name: str) -> Callable[[], None]:
        def fail() -> None:
            ran.append(name)
            raise RuntimeError(f"{name} failed")

        return fail

    caplog.set_level(logging.ERROR, logger=LOGGER)
    with udp_pair() as (a, tx), udp_pair() as (b, _):

        def reader(sock: socket.socket, name: str) -> Callable[[], None]:
            def on_readable() -> None:
                sock.recv(2048)
                raiser(name)()

            return on_readable

        def setup() -> None:
            fake_worker.add_reader(a, reader(a, "reader a"))
            fake_worker.add_reader(b, reader(b, "reader b"))
            fake_worker.call_at(1.0, raiser("timer 1"))
            fake_worker.call_at(1.0, raiser("timer 2"))

        run(fake_worker, setup)
        with busy(fake_worker):  # everything below lands in one turn
            tx.sendto(b"x", a.getsockname())
            tx.sendto(b"y", b.getsockname())
            fake_worker.post(raiser("posted 1"))
            fake_worker.post(raiser("posted 2"))
            # Moves the clock in the same turn, before its timers run.
            fake_worker.post(lambda: clock.advance(1))
        settle(fake_worker)

    assert sorted(ran[:2]) == ["reader a", "reader b"]
    assert ran[2:] == ["posted 1", "posted 2", "timer 1", "timer 2"]
    failures = sorted(
        str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None
    )
    assert failures == sorted(f"{name} failed" for name in ran)
    assert all(r.name == LOGGER and r.levelno == logging.ERROR for r in caplog.records)
    assert run(fake_worker, lambda: "still serving") == "still serving"


class BrokenClock:
    """A clock that fails: the worker's own loop cannot go on."""

    def now(self) -> float:
        raise OSError("clock broke")


def test_a_fault_of_the_loop_itself_stops_the_worker_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    w = Worker(BrokenClock())
    never_run = threading.Event()
    entered = threading.Event()
    queued = threading.Event()

    def schedule() -> None:
        w.call_at(1.0, never_run.set)  # the loop reads the clock after commands
        entered.set()
        queued.wait(HANG)

    first = w.submit(schedule)
    assert entered.wait(HANG)
    second = w.submit(never_run.set)  # for the next turn, which never comes
    queued.set()
    first.result(HANG)
    w.stop()
    with pytest.raises(RuntimeError, match="stopped before running"):
        second.result(HANG)
    assert not never_run.is_set()
    assert any("the loop failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="stopped"):
        w.submit(lambda: None)


# --- stopping -----------------------------------------------------------------


def test_stop_is_idempotent_and_refuses_later_commands() -> None:
    w = Worker(name="test-worker")
    assert "running" in repr(w)
    assert w._thread.name == "test-worker"
    assert w._thread.daemon
    w.stop()
    w.stop()
    assert not w._thread.is_alive()
    assert "stopped" in repr(w)
    with pytest.raises(RuntimeError, match="stopped"):
        w.submit(lambda: None)
    with pytest.raises(RuntimeError, match="stopped"):
        w.post(lambda: None)


def test_stop_from_the_worker_thread_ends_after_the_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    w = Worker()
    ran: list[str] = []
    entered = threading.Event()
    queued = threading.Event()

    def stop_later() -> None:
        entered.set()
        queued.wait(HANG)
        w.stop()  # returns at once on the worker thread
        ran.append("stopper")

    stopper = w.submit(stop_later)
    assert entered.wait(HANG)
    # Queued while the worker is inside stop_later, hence for a later turn,
    # which never comes.
    late = w.submit(lambda: ran.append("late"))
    cancelled = w.submit(lambda: ran.append("cancelled"))
    assert cancelled.cancel()
    w.post(lambda: ran.append("late post"))
    queued.set()
    stopper.result(HANG)
    w._thread.join(HANG)
    assert not w._thread.is_alive()
    assert ran == ["stopper"]
    with pytest.raises(RuntimeError, match="stopped before running"):
        late.result(HANG)
    assert any("dropped posted function" in r.getMessage() for r in caplog.records)


def test_a_command_that_races_the_end_of_the_loop_fails() -> None:
    w = Worker()
    w.stop()
    # As if submit() had passed its check just before the loop ended.
    w._stopping = False
    fut = w.submit(lambda: "never")
    with pytest.raises(RuntimeError, match="stopped before running"):
        fut.result(HANG)
    w.post(lambda: None)  # dropped the same way, without an error
    assert not w._queue


@requires(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd")
def test_a_failed_start_leaks_no_fd(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socketpair() -> tuple[socket.socket, socket.socket]:
        raise OSError("no more fds")

    before = open_fds()
    monkeypatch.setattr(socket, "socketpair", no_socketpair)
    with pytest.raises(OSError, match="no more fds"):
        Worker()
    assert not opened_since(before)


# --- the shared worker --------------------------------------------------------


@requires(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd")
def test_acquire_and_release_start_and_stop_one_shared_thread() -> None:
    assert _worker._shared is None, "a test left the shared worker acquired"
    base = active_worker_threads()
    gc.collect()
    before = open_fds()
    for _ in range(50):
        first = acquire_worker()
        assert active_worker_threads() == base + 1
        second = acquire_worker()
        assert second is first
        assert first._thread.name == "syncice-worker"
        assert run(first, lambda: "ok") == "ok"
        release_worker(first)
        assert active_worker_threads() == base + 1
        release_worker(second)
        assert active_worker_threads() == base
        assert _worker._shared is None
    gc.collect()
    assert not opened_since(before)


def test_release_more_than_acquire_raises() -> None:
    w = acquire_worker()
    release_worker(w)
    with pytest.raises(RuntimeError, match="more times than"):
        release_worker(w)
    other = Worker()
    try:
        with pytest.raises(RuntimeError, match="more times than"):
            release_worker(other)
    finally:
        other.stop()


def test_the_last_release_may_come_from_the_worker_thread() -> None:
    w = acquire_worker()
    run(w, lambda: release_worker(w))
    w._thread.join(HANG)
    assert not w._thread.is_alive()
    assert _worker._shared is None
    again = acquire_worker()
    assert again is not w
    release_worker(again)


def test_after_fork_the_child_forgets_the_shared_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hook, run here on a stopped worker posing as the inherited one (a
    # real child cannot report coverage; see the next test for a real fork).
    inherited = Worker()
    inherited.stop()
    monkeypatch.setattr(_worker, "_shared", inherited)
    monkeypatch.setattr(_worker, "_refcount", 2)
    monkeypatch.setattr(_worker, "_workers", {inherited})
    monkeypatch.setattr(_worker, "_lock", _worker._lock)
    monkeypatch.setattr(_worker, "_registry_lock", _worker._registry_lock)
    monkeypatch.setattr(_worker, "_lent_released", _worker._lent_released)
    _worker._after_fork_in_child()
    assert _worker._shared is None
    assert _worker._refcount == 0
    assert _worker._workers == set()
    release_worker(inherited)  # a Connection closed in the child: no error
    with pytest.raises(RuntimeError, match="stopped"):
        inherited.submit(lambda: None)
    fresh = acquire_worker()
    assert fresh is not inherited
    assert run(fresh, lambda: "fresh") == "fresh"
    release_worker(fresh)


@requires(hasattr(os, "fork"), "needs fork()")
def test_a_forked_child_starts_its_own_worker() -> None:
    parent = acquire_worker()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a threaded process may deadlock.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover (the child's coverage is not saved)
            code = 1
            try:
                signal.alarm(30)  # the parent's hang guard
                child = acquire_worker()
                ok = (
                    child is not parent
                    and parent._forgotten
                    and child.submit(lambda: "child").result(HANG) == "child"
                )
                release_worker(parent)
                release_worker(child)
                code = 0 if ok and active_worker_threads() == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert run(parent, lambda: "parent") == "parent"
    finally:
        release_worker(parent)


# --- lending a worker (lend_worker) --------------------------------------------


def lend(
    worker: Worker, body: Callable[[], None] = lambda: None, **kwargs: float
) -> None:
    """Run ``body`` in a :func:`~syncice._worker.lend_worker` block."""
    with _worker.lend_worker(worker, **kwargs):
        body()


@pytest.fixture
def lent() -> Iterator[Worker]:
    """A fake-clock worker of the test's own, stopped at the end."""
    w = Worker(FakeClock(), name="test-lent-worker")
    yield w
    w.stop()


def test_a_lent_worker_is_handed_out_inside_the_block_only(lent: Worker) -> None:
    assert _worker._shared is None, "a test left the shared worker acquired"
    with _worker.lend_worker(lent) as given:
        assert given is lent
        first, second = acquire_worker(), acquire_worker()
        assert first is second is lent
        release_worker(first)
        release_worker(second)
        # The lender owns it: the last release does not stop it.
        assert run(lent, lambda: "still running") == "still running"
        assert _worker._shared is None  # no shared worker was started
    after = acquire_worker()
    again = acquire_worker()
    release_worker(again)
    release_worker(after)
    assert after is not lent
    assert again is after  # the shared worker again
    assert run(lent, lambda: "not stopped") == "not stopped"


def test_a_shared_worker_acquired_before_the_block_stays_shared(
    lent: Worker,
) -> None:
    shared = acquire_worker()
    with _worker.lend_worker(lent):
        assert acquire_worker() is lent
        release_worker(lent)
        # Released inside the block, the shared worker stops as usual.
        release_worker(shared)
        shared._thread.join(HANG)
        assert not shared._thread.is_alive()
        assert _worker._shared is None


def test_lend_worker_blocks_do_not_nest(lent: Worker) -> None:
    other = Worker(FakeClock())
    try:
        with _worker.lend_worker(lent):
            with pytest.raises(RuntimeError, match="do not nest"):
                lend(other)
            assert acquire_worker() is lent  # the first loan goes on
            release_worker(lent)
    finally:
        other.stop()


def test_a_stopped_or_shared_worker_cannot_be_lent() -> None:
    stopped = Worker()
    stopped.stop()
    with pytest.raises(RuntimeError, match="cannot lend"):
        lend(stopped)
    shared = acquire_worker()
    try:
        with pytest.raises(RuntimeError, match="cannot lend"):
            lend(shared)
    finally:
        release_worker(shared)
    assert _worker._lent is None


@pytest.mark.parametrize("wait", [-1.0, math.inf, math.nan])
def test_lend_worker_refuses_a_bad_release_wait(lent: Worker, wait: float) -> None:
    with pytest.raises(ValueError, match="release_wait"):
        lend(lent, release_wait=wait)


def test_an_acquisition_left_at_the_end_of_the_block_is_an_error(
    lent: Worker,
) -> None:
    def leak_one() -> None:
        acquire_worker()
        acquire_worker()
        release_worker(lent)

    with pytest.raises(RuntimeError, match=r"^1 connection\(s\) started on .* open"):
        lend(lent, leak_one, release_wait=0)
    assert _worker._lent is None
    # The leaked connection's late release does nothing, again and again.
    release_worker(lent)
    release_worker(lent)
    assert acquire_worker() is not lent
    release_worker(_worker._shared)  # type: ignore[arg-type]


def test_the_end_of_the_block_waits_for_a_release_under_way(
    lent: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection closing on the worker (an asyncio close(), a TURN release)
    # releases it a little later: the block's end waits for that.
    gate = threading.Event()
    waited: list[bool] = []

    class Condition(threading.Condition):
        def wait_for(
            self, predicate: Callable[[], T], timeout: float | None = None
        ) -> T:
            waited.append(bool(predicate()))
            gate.set()  # the release may come now, while we wait
            return super().wait_for(predicate, timeout)

    monkeypatch.setattr(_worker, "_lent_released", Condition(_worker._lock))
    with _worker.lend_worker(lent, release_wait=HANG):
        w = acquire_worker()

        def release_later() -> None:
            assert gate.wait(HANG)
            release_worker(w)

        lent.post(release_later)
    assert waited == [False]  # it had to wait, and did not raise
    assert _worker._lent is None


def test_a_block_that_raises_ends_the_loan_without_waiting(lent: Worker) -> None:
    def fail() -> None:
        acquire_worker()
        raise KeyError("the test's own")  # not hidden by the leak

    with pytest.raises(KeyError, match="the test's own"):
        lend(lent, fail, release_wait=HANG)
    assert _worker._lent is None
    release_worker(lent)  # after the loan: nothing


def test_lent_releases_must_match_acquisitions(lent: Worker) -> None:
    with _worker.lend_worker(lent):
        release_worker(acquire_worker())
        with pytest.raises(RuntimeError, match="more times than"):
            release_worker(lent)


def test_after_fork_the_child_forgets_the_loan(
    lent: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As test_after_fork_the_child_forgets_the_shared_worker: the hook run here.
    for name in ("_lock", "_registry_lock", "_lent_released"):
        monkeypatch.setattr(_worker, name, getattr(_worker, name))
    monkeypatch.setattr(_worker, "_workers", set())  # none to forget here
    with _worker.lend_worker(lent):
        acquire_worker()
        _worker._after_fork_in_child()
        assert _worker._lent is None
        child = acquire_worker()  # the child's own shared worker
        assert child is not lent
        release_worker(child)
    # The block's end, in the child, finds its loan over: no leak error.
    assert _worker._lent is None


# --- autojump and traffic between the worker's own sockets -----------------------


def test_autojump_never_overtakes_a_ping_pong_between_the_workers_sockets(
    clock: FakeClock,
) -> None:
    # Loopback delivery is synchronous: a datagram one callback sends is
    # readable on the next turn, so a turn that sees it is not idle. With a
    # threshold of 0, 200 round trips all happen before a timer at 30 s.
    clock.autojump_threshold = 0.0
    w = Worker(clock)
    seen: list[float] = []
    done: concurrent.futures.Future[float] = concurrent.futures.Future()
    try:
        with udp_pair() as (left, right):
            right.setblocking(False)
            right.bind(("127.0.0.1", 0))

            def bounce(rx: socket.socket, tx_to: socket.socket) -> Callable[[], None]:
                def on_readable() -> None:
                    data = rx.recv(2048)
                    seen.append(clock.now())
                    if len(seen) < 400:
                        rx.sendto(data, tx_to.getsockname())

                return on_readable

            def setup() -> None:
                w.add_reader(left, bounce(left, right))
                w.add_reader(right, bounce(right, left))
                w.call_at(30.0, lambda: done.set_result(clock.now()))
                right.sendto(b"ping", left.getsockname())

            run(w, setup)
            assert done.result(HANG) == 30.0
        assert len(seen) == 400
        assert set(seen) == {0.0}
    finally:
        w.stop()


def test_autojump_waits_for_every_command_queued_from_another_thread(
    clock: FakeClock,
) -> None:
    clock.autojump_threshold = 0.0
    w = Worker(clock)
    try:
        fired: concurrent.futures.Future[float] = concurrent.futures.Future()
        times: list[float] = []
        with busy(w):
            w.submit(lambda: w.call_at(30.0, lambda: fired.set_result(clock.now())))
            for _ in range(100):
                w.post(lambda: times.append(clock.now()))
        assert fired.result(HANG) == 30.0
        assert times == [0.0] * 100
    finally:
        w.stop()
