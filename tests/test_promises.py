"""The promises a threaded program leans on (layer 2, real sockets on loopback).

- ``recv(timeout=T)`` ends at T whatever STUN arrives meanwhile, and each
  thread's T is its own;
- ``close()`` wakes every blocked caller, returns only once the sockets are
  closed, and no call returns a datagram that arrived after it;
- a connection dropped in a reference cycle is closed by the worker without
  deadlocking it, whatever the collector interrupted;
- in a child after ``fork()``, an inherited connection is closed, and new
  ones work.

No assertion here is on elapsed time: every wait has a generous bound that
only guards against a hang. The figures (how late a timeout is, how long a
wake-up takes) are measured by ``bench/blocking_api.py``.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from syncice import (
    Connection,
    ConnectionClosed,
    ConnectionClosedError,
    IceConfig,
    IceTimeoutError,
)

from .conftest import ConnectionPairs, exchange_candidates, requires, spawn

GUARD = 30.0
LOOPBACK = ["127.0.0.1"]
# Consent checks every ~50 ms each way: a reader sees STUN all the time.
CHATTY = IceConfig(consent_interval=0.05, consent_timeout=5.0)

needs_proc_net = requires(
    os.path.exists("/proc/net/udp"), "needs /proc/net/udp to see bound sockets"
)
needs_fork = requires(hasattr(os, "fork"), "needs os.fork()")


def bound_udp_ports() -> set[int]:
    """The local ports of every UDP socket of this network namespace."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            next(lines)
            for line in lines:
                local = line.split()[1]
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def local_ports(conn: Connection) -> set[int]:
    return {c.port for c in conn.local_candidates}


class Arrivals:
    """Put as an inbox's ``watch``: counts the callers that start waiting."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def set(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, GUARD)


def watch_waiting(conn: Connection) -> Arrivals:
    """Count the callers that start waiting in ``conn``'s inbox from now on."""
    arrivals = Arrivals()
    conn._core.inbox.watch = arrivals  # type: ignore[assignment]
    return arrivals


# --- recv(timeout=T) ends at T ---------------------------------------------------


def timed_receives(
    conn: Connection, method: str, timeout: float, repeats: int
) -> list[tuple[BaseException | None, float]]:
    """``repeats`` calls of ``conn.<method>(timeout=timeout)``: what each
    raised (``None``: it returned) and how long it took."""
    call: Callable[..., Any] = getattr(conn, method)
    results: list[tuple[BaseException | None, float]] = []
    for _ in range(repeats):
        start = time.monotonic()
        try:
            call(timeout=timeout)
        except BaseException as exc:
            results.append((exc, time.monotonic() - start))
        else:
            results.append((None, time.monotonic() - start))
    return results


@pytest.mark.parametrize("components", [1, 2])
def test_recv_timeout_ends_the_call_whatever_stun_arrives(
    connection_pairs: ConnectionPairs, components: int
) -> None:
    """Every call raises IceTimeoutError (how late: bench/blocking_api.py);
    the calls run at once in six threads, each with its own T, while consent
    checks arrive every ~50 ms. (Before, each STUN message restarted a
    reader's wait.)"""
    a, b = connection_pairs.pair(components=components, config=CHATTY)
    plan = [(0.5, 4), (2.0, 2), (10.0, 1)]
    calls = {
        (method, timeout): spawn(
            lambda m=method, t=timeout, r=repeats: timed_receives(b, m, t, r)  # type: ignore[misc]
        )
        for method in ("recv", "recvfrom")
        for timeout, repeats in plan
    }
    for (_, timeout), fut in calls.items():
        results = fut.result(timeout * 4 + GUARD)
        for error, _ in results:
            assert isinstance(error, IceTimeoutError)
    # The peer's checks were answered all along: the pair is healthy.
    a.send(b"still there")
    assert b.recv(timeout=GUARD) == b"still there"


# --- close() wakes every caller ----------------------------------------------------


class Sender:
    """Sends numbered datagrams from ``a`` until stopped. Numbers start at
    :attr:`AFTER` once :meth:`mark` was called: those left after it."""

    AFTER = 1 << 30

    def __init__(self, conn: Connection, components: int) -> None:
        self.conn = conn
        self.components = components
        self.base = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        count = 0
        while not self.stopped.wait(0.0005):  # paced: no flood of the buffer
            count += 1
            number = self.base + count
            try:
                self.conn.sendto(number.to_bytes(8, "big"), 1 + count % self.components)
            except ConnectionClosedError:
                return

    def mark(self) -> None:
        self.base = self.AFTER

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(GUARD)


def received_numbers(results: list[Any]) -> list[int]:
    return [int.from_bytes(r[0] if isinstance(r, tuple) else r, "big") for r in results]


def read_until_closed(conn: Connection, method: str) -> tuple[list[Any], BaseException]:
    """Call ``conn.<method>()`` until it raises: what it returned, what it raised."""
    call = getattr(conn, method)
    got: list[Any] = []
    while True:
        try:
            got.append(call(timeout=GUARD))
        except BaseException as exc:
            return got, exc


@needs_proc_net
@pytest.mark.parametrize("peer_sends", [False, True], ids=["silent", "sending"])
@pytest.mark.parametrize("components", [1, 2])
@pytest.mark.parametrize("callers", range(1, 9))
def test_close_wakes_every_blocked_receiver(
    connection_pairs: ConnectionPairs, callers: int, components: int, peer_sends: bool
) -> None:
    a, b = connection_pairs.pair(components=components)
    while True:  # events of the connect, out of the way
        try:
            b.get_event(timeout=0)
        except IceTimeoutError:
            break
    sender = Sender(a, components) if peer_sends else None
    arrivals = watch_waiting(b)
    methods = ["recv", "recvfrom"]
    readers = [
        spawn(lambda m=methods[i % 2]: read_until_closed(b, m))  # type: ignore[misc]
        for i in range(callers)
    ]
    events = spawn(lambda: [b.get_event(timeout=GUARD) for _ in range(2)])
    arrivals.wait_for(callers)
    ports = local_ports(b)
    assert ports <= bound_udp_ports()
    b.close()
    if sender is not None:
        sender.mark()
    # close() returned: every reader has left the sockets, and they are closed.
    assert not b._core.inbox.waiters()
    assert not ports & bound_udp_ports()
    after = []
    for reader in readers:
        got, error = reader.result(GUARD)
        assert isinstance(error, ConnectionClosedError)
        assert error.reason == "closed"
        after += [n for n in received_numbers(got) if n > Sender.AFTER]
    assert after == []  # nothing that arrived after close() was returned
    assert events.result(GUARD) == [ConnectionClosed(), None]
    if sender is not None:
        sender.stop()


@pytest.mark.parametrize("callers", [1, 3, 8])
def test_close_wakes_connect_and_get_event_callers(
    connection_pairs: ConnectionPairs, callers: int
) -> None:
    """Callers of connect() (checks against a silent peer) and of get_event()."""
    a, b = connection_pairs.pair(connect=False)
    a.close()  # silent from now on: b's checks go unanswered
    connects = [spawn(lambda: b.connect(timeout=GUARD)) for _ in range(callers)]
    events = [spawn(lambda: b.get_event(timeout=GUARD)) for _ in range(callers)]
    receivers = [spawn(lambda: b.recv(timeout=GUARD)) for _ in range(callers)]
    for receiver in receivers:  # before connect() succeeded: aioice's error
        with pytest.raises(ConnectionError):
            receiver.result(GUARD)
    b.close()
    for connecting in connects:
        with pytest.raises(ConnectionClosedError):
            connecting.result(GUARD)
    got = [event.result(GUARD) for event in events]
    # One caller gets the ConnectionClosed event, the others None (aioice's
    # get_event() returns None once the connection is closed).
    assert got.count(ConnectionClosed()) == 1
    assert got.count(None) == callers - 1


def test_close_from_many_threads_at_once(connection_pairs: ConnectionPairs) -> None:
    _, b = connection_pairs.pair()
    arrivals = watch_waiting(b)
    readers = [spawn(lambda: read_until_closed(b, "recv")) for _ in range(4)]
    arrivals.wait_for(4)
    barrier = threading.Barrier(6)

    def close() -> None:
        barrier.wait(GUARD)
        b.close()

    closers = [spawn(close) for _ in range(6)]
    for fut in closers:
        fut.result(GUARD)
    for reader in readers:
        assert isinstance(reader.result(GUARD)[1], ConnectionClosedError)


# --- a finalizer never deadlocks the worker ----------------------------------------


class Cycle:
    """An object in a reference cycle with a connection, as aiortc's objects
    make them: only the cycle collector frees it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.me = self


def dropped_in_a_cycle() -> set[int]:
    """A gathered connection, dropped in a cycle: the ports it had bound."""
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.gather_candidates(timeout=GUARD)
    ports = local_ports(conn)
    Cycle(conn)
    return ports


@needs_proc_net
def test_a_collection_on_the_worker_inside_its_event_lock_does_not_deadlock() -> None:
    """The collector runs the finalizer where it interrupts: here, on the
    worker thread while it holds mailbox locks. The finalizer
    queues the close for a later turn, so the worker goes on and closes it."""
    keep = Connection(True, local_addresses=LOOPBACK)  # keeps the worker alive
    keep.gather_candidates(timeout=GUARD)
    worker = keep._core.worker
    assert worker is not None
    gc.disable()
    try:
        ports = dropped_in_a_cycle()

        def collect_holding_the_event_lock() -> None:
            with keep._core.events.lock, keep._core.inbox.lock:
                gc.collect()

        worker.submit(collect_holding_the_event_lock).result(GUARD)
        worker.submit(lambda: None).result(GUARD)  # the queued close has run
    finally:
        gc.enable()
        keep.close()
    assert not ports & bound_udp_ports()


@needs_proc_net
def test_connections_dropped_in_cycles_under_frequent_collections(
    connection_pairs: ConnectionPairs,
) -> None:
    """Pairs connect, talk and are dropped in cycles while the collector runs
    every few allocations, wherever it interrupts: no hang, nothing left bound."""
    thresholds = gc.get_threshold()
    gc.set_threshold(10, 2, 2)
    ports: set[int] = set()
    try:
        for _ in range(8):
            a = Connection(True, local_addresses=LOOPBACK)
            b = Connection(False, local_addresses=LOOPBACK)
            a.gather_candidates(timeout=GUARD)
            b.gather_candidates(timeout=GUARD)
            exchange_candidates(a, b, credentials=True)
            other = spawn(lambda b=b: b.connect(timeout=GUARD))  # type: ignore[misc]
            a.connect(timeout=GUARD)
            other.result(GUARD)
            for i in range(20):
                a.send(b"%d" % i)
                assert b.recv(timeout=GUARD) == b"%d" % i
            ports |= local_ports(a) | local_ports(b)
            Cycle(a)
            Cycle(b)
            del a, b, other
        gc.collect()
    finally:
        gc.set_threshold(*thresholds)
    # The finalizers' closes run on the worker: wait for them through a
    # connection of our own (commands run in order).
    probe = connection_pairs.connection(True)
    probe.gather_candidates(timeout=GUARD)
    worker = probe._core.worker
    assert worker is not None
    worker.submit(lambda: None).result(GUARD)
    assert not ports & bound_udp_ports()


# --- fork() -----------------------------------------------------------------------


def in_child(check: Callable[[], None]) -> None:
    """Run ``check()`` in a forked child; fail here with what failed there."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that a process with threads forks: that is the case.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        code = 0
        try:
            check()
        except BaseException as exc:
            os.write(write_fd, repr(exc).encode()[:4000])
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as report:
        failure = report.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, failure


def inherited_connection_is_closed(conn: Connection) -> None:
    """In the child: every method of ``conn`` raises, close() does nothing."""
    remote = conn.remote_candidates[0]
    calls: dict[str, Callable[[], object]] = {
        "gather_candidates": lambda: conn.gather_candidates(timeout=1),
        "connect": lambda: conn.connect(timeout=1),
        "recv": lambda: conn.recv(timeout=1),
        "recvfrom": lambda: conn.recvfrom(timeout=1),
        "send": lambda: conn.send(b"from the child"),
        "sendto": lambda: conn.sendto(b"from the child", 1),
        "add_remote_candidate": lambda: conn.add_remote_candidate(remote),
        "set_selected_pair": lambda: conn.set_selected_pair(
            1, conn.local_candidates[0].foundation, remote.foundation
        ),
        "get_stats": conn.get_stats,
        "get_event": lambda: conn.get_event(timeout=1),
        "get_default_candidate": lambda: conn.get_default_candidate(1),
    }
    for call in calls.values():
        with pytest.raises(ConnectionClosedError, match="inherited across fork"):
            call()
    conn.close()  # a no-op, however often
    conn.close()


def new_pair_works() -> None:
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    try:
        a.gather_candidates(timeout=GUARD)
        b.gather_candidates(timeout=GUARD)
        exchange_candidates(a, b, credentials=True)
        other = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        other.result(GUARD)
        a.send(b"in the child")
        assert b.recv(timeout=GUARD) == b"in the child"
    finally:
        a.close()
        b.close()


@needs_fork
def test_an_inherited_connection_is_closed_in_the_child(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = connection_pairs.pair()

    def child() -> None:
        inherited_connection_is_closed(a)
        inherited_connection_is_closed(b)
        new_pair_works()

    in_child(child)
    # The child sent nothing to the peer, and the parent's pair still works.
    with pytest.raises(IceTimeoutError):
        b.recv(timeout=0)
    a.send(b"from the parent")
    assert b.recv(timeout=GUARD) == b"from the parent"


@needs_fork
def test_fork_while_a_thread_holds_the_connection_locks(
    connection_pairs: ConnectionPairs,
) -> None:
    """A lock held by another thread at fork() is not held in the child."""
    _, b = connection_pairs.pair()
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with b._core.lock, b._core.inbox.lock, b._core.events.lock:
            held.set()
            release.wait(GUARD)

    holder = spawn(hold)
    assert held.wait(GUARD)
    try:
        in_child(lambda: inherited_connection_is_closed(b))
    finally:
        release.set()
        holder.result(GUARD)


def test_socket_closed_by_close_is_not_reused_under_a_reader(
    connection_pairs: ConnectionPairs,
) -> None:
    """A reader woken by close() never reads a descriptor number that a new
    socket took meanwhile: close() returns only after the readers left."""
    a, b = connection_pairs.pair()
    arrivals = watch_waiting(b)
    readers = [spawn(lambda: read_until_closed(b, "recv")) for _ in range(3)]
    arrivals.wait_for(3)
    b.close()
    # The numbers are free now; a new socket may take one at once.
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with fresh:
        fresh.bind(("127.0.0.1", 0))
        fresh.setblocking(False)
        for reader in readers:
            assert isinstance(reader.result(GUARD)[1], ConnectionClosedError)
        with pytest.raises(BlockingIOError):
            fresh.recv(1)  # nobody wrote to it, nobody read from it
    del a
