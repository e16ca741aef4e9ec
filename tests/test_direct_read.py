"""The receive path, and direct reads: a blocking ``recv()`` that reads the
connection's sockets itself while it waits (:mod:`syncice._inbox`).

Two layers:

- real connections on loopback (the worker lends the sockets): what a
  reading caller gets, what it hands the worker (STUN, strangers' data),
  the counts on the true component and pair, close;
- an :class:`~syncice._inbox.Inbox` and its :class:`~syncice._inbox.Lease`
  with real sockets and no worker: the test plays the worker, running the
  commands the lease posts when it chooses, so every step of the hand-over
  is taken in a known order.

No test sleeps to wait: each waits on an event or a blocking call, with a
generous timeout as a hang guard only.
"""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncice import Connection, ConnectionClosedError, IceTimeoutError
from syncice._inbox import BUSY, Inbox, Lease, Owner
from syncice.stun import Class, Message, Method

from .conftest import ConnectionPairs, spawn, watch_recv

GUARD = 10.0
KEEPALIVE = bytes(Message(Method.BINDING, Class.INDICATION))


def two_sockets(connection_pairs: ConnectionPairs) -> tuple[Connection, Connection]:
    """A connected pair whose connections have two sockets each (one per
    component)."""
    return connection_pairs.pair(components=2)


def owner(lease: Lease) -> Owner:
    """Who owns ``lease``'s sockets now (a call: it changes under mypy's feet)."""
    return lease.owner


def holder(lease: Lease) -> object:
    """The caller that holds ``lease``'s token now, or ``None``."""
    return lease.reader


def lease_of(conn: Connection) -> Lease:
    lease = conn._core.inbox.lease
    assert lease is not None  # a blocking connection, connected without TURN
    return lease


@pytest.fixture
def lent(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set each time a worker has lent a connection's sockets to a waiting
    caller (which holds the token from then on)."""
    event = threading.Event()
    original = Lease.lent

    def lent(self: Lease) -> None:
        original(self)
        event.set()

    monkeypatch.setattr(Lease, "lent", lent)
    return event


def reading(conn: Connection, lent: threading.Event, method: str = "recvfrom") -> Any:
    """A ``conn.<method>()`` in a thread, once it holds the sockets: at
    once if they were lent, else once the worker has lent them."""
    lent.clear()
    waiting = watch_recv(conn)
    got = spawn(lambda: getattr(conn, method)(timeout=GUARD))
    assert waiting.wait(GUARD)
    lease = lease_of(conn)
    if holder(lease) is None:
        assert lent.wait(GUARD)
    assert holder(lease) is not None
    return got


# --- whichever path a datagram takes ---------------------------------------------


def test_blocked_recvfrom_gets_data_of_either_component(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = two_sockets(connection_pairs)
    for component in (2, 1, 2):
        waiting = watch_recv(b)
        got = spawn(lambda: b.recvfrom(timeout=GUARD))
        assert waiting.wait(GUARD)
        a.sendto(b"on %d" % component, component)
        assert got.result(GUARD) == (b"on %d" % component, component)


def test_reader_times_out_and_loses_nothing(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = two_sockets(connection_pairs)
    with pytest.raises(IceTimeoutError):
        b.recvfrom(timeout=0.02)
    a.sendto(b"after the timeout", 2)
    assert b.recvfrom(timeout=GUARD) == (b"after the timeout", 2)
    assert not b._core.inbox.waiters()  # the timed-out waiter withdrew


def test_a_recv_in_a_signal_handler_during_a_recv_is_a_call_of_its_own(
    connection_pairs: ConnectionPairs,
) -> None:
    # A thread's calls share one waiter object between them; a call made by
    # a signal handler while another waits must get one of its own.
    a, b = connection_pairs.pair()
    nested: list[bytes | BaseException] = []

    def handler(signum: int, frame: object) -> None:
        a.send(b"for the interrupted call")
        try:
            nested.append(b.recv(timeout=0.05))
        except IceTimeoutError as exc:  # the datagram is the first caller's
            nested.append(exc)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        waiting = watch_recv(b)
        main = threading.get_ident()

        def interrupt() -> None:
            assert waiting.wait(GUARD)
            signal.pthread_kill(main, signal.SIGUSR1)

        poked = spawn(interrupt)
        got = b.recv(timeout=GUARD)
        poked.result(GUARD)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert got == b"for the interrupted call"
    [only] = nested
    assert isinstance(only, IceTimeoutError)
    assert not b._core.inbox.waiters()
    for text in (b"and the next", b"and the one after"):
        a.send(text)
        assert b.recv(timeout=GUARD) == text


def test_close_wakes_a_reader(connection_pairs: ConnectionPairs) -> None:
    _, b = two_sockets(connection_pairs)
    waiting = watch_recv(b)
    got = spawn(lambda: b.recv(timeout=GUARD))
    assert waiting.wait(GUARD)
    b.close()
    with pytest.raises(ConnectionClosedError):
        got.result(GUARD)


def test_every_datagram_is_counted_on_its_component_and_pair(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = two_sockets(connection_pairs)
    for component, count in ((1, 3), (2, 5)):
        for n in range(count):
            a.sendto(b"x" * (10 + n), component)
    got = [b.recvfrom(timeout=GUARD)[1] for _ in range(8)]
    assert sorted(got) == [1] * 3 + [2] * 5
    for conn, field in ((a, "sent"), (b, "received")):
        selected = {s.component: s for s in conn.get_stats() if s.selected}
        counts = {c: getattr(s, f"datagrams_{field}") for c, s in selected.items()}
        assert counts == {1: 3, 2: 5}, (conn, field)
        assert getattr(selected[1], f"bytes_{field}") == 10 + 11 + 12
        assert getattr(selected[2], f"bytes_{field}") == sum(range(10, 15))


def test_data_arriving_while_nobody_reads_is_queued(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    for n in range(100):
        a.send(b"%d" % n)
    # Taken off the socket by the worker meanwhile, in order.
    assert [b.recv(timeout=GUARD) for _ in range(100)] == [
        b"%d" % n for n in range(100)
    ]


# --- a caller reading the sockets itself ------------------------------------------


def test_a_waiting_caller_reads_either_socket_itself_and_it_is_counted(
    connection_pairs: ConnectionPairs, lent: threading.Event
) -> None:
    a, b = two_sockets(connection_pairs)
    lease = lease_of(b)
    sent = {1: [b"one", b"on one"], 2: [b"two", b"on two", b"again two"]}
    for component, datagrams in sent.items():
        for data in datagrams:
            got = reading(b, lent)
            kept = lease.kept
            a.sendto(data, component)
            assert got.result(GUARD) == (data, component)
            assert lease.kept == kept + 1  # read by the caller, not the worker
    selected = {s.component: s for s in b.get_stats() if s.selected}
    assert {c: s.datagrams_received for c, s in selected.items()} == {1: 2, 2: 3}
    assert selected[1].bytes_received == len(b"one" + b"on one")
    assert selected[2].bytes_received == len(b"two" + b"on two" + b"again two")
    assert lease.counts == {}  # all credited to the pairs


def test_stun_a_reader_reads_goes_to_the_agent(
    connected_pair: tuple[Connection, Connection], lent: threading.Event
) -> None:
    a, b = connected_pair
    got = reading(b, lent, "recv")
    agent = b._core.agent
    before = agent.stats.unexpected
    seen = threading.Event()
    original = agent.receive_datagram

    def spy(*args: Any) -> Any:
        result = original(*args)
        seen.set()
        return result

    agent.receive_datagram = spy  # type: ignore[method-assign, assignment]
    a.send(KEEPALIVE)  # not the caller's: the worker's agent sees it
    assert seen.wait(GUARD)
    assert agent.stats.unexpected == before + 1
    a.send(b"then data")
    assert got.result(GUARD) == b"then data"


def test_a_reader_drops_strangers_data_through_the_agent(
    connected_pair: tuple[Connection, Connection], lent: threading.Event
) -> None:
    a, b = connected_pair
    got = reading(b, lent, "recv")
    stats = b._core.agent.stats
    before = stats.unknown_peer_data
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with intruder:
        intruder.bind(("127.0.0.1", 0))
        target = (b.local_candidates[0].host, b.local_candidates[0].port)
        intruder.sendto(b"\x80 not from the peer", target)
        intruder.sendto(b"\x80 nor this", target)
        a.send(b"from the peer")
        assert got.result(GUARD) == b"from the peer"
    worker = b._core.worker
    assert worker is not None
    worker.submit(lambda: None).result(GUARD)  # the forwarded batch has run
    assert stats.unknown_peer_data == before + 2  # counted by the core
    with pytest.raises(IceTimeoutError):
        b.recv(timeout=0)


def test_close_while_a_caller_reads_closes_the_sockets_before_returning(
    connection_pairs: ConnectionPairs, lent: threading.Event
) -> None:
    _, b = two_sockets(connection_pairs)
    got = reading(b, lent)
    lease = lease_of(b)
    b.close()
    # close() returned: the reader left, and closed the sockets as it did.
    assert [sock.fileno() for sock, _ in lease.sockets] == [-1, -1]
    assert holder(lease) is None
    assert owner(lease) is Owner.CLOSED
    with pytest.raises(ConnectionClosedError):
        got.result(GUARD)


# --- the hand-over, step by step (the test is the worker) -------------------------


class FakeWorker:
    """Keeps the commands a lease posts, for the test to run."""

    def __init__(self) -> None:
        self.commands: list[Callable[[], None]] = []
        self.posted = threading.Condition()

    def post(self, command: Callable[[], None]) -> None:
        with self.posted:
            self.commands.append(command)
            self.posted.notify_all()

    def wait_for(self, count: int) -> None:
        with self.posted:
            assert self.posted.wait_for(lambda: len(self.commands) >= count, GUARD)


class Setup:
    """An inbox, a lease of one socket, a peer socket to write to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.worker = FakeWorker()
        self.log: list[str] = []
        self.lease = Lease(
            ((self.sock, 7),),
            post=self.worker.post,
            lend=lambda: self.log.append("lend"),
            reclaim=lambda: self.log.append("reclaim"),
            take=lambda: self.log.append("take"),
        )
        host, port = self.peer.getsockname()
        self.lease.peers = {(7, (host, port)): 2}
        self.inbox = Inbox(8)
        self.inbox.watch = threading.Event()
        self.inbox.offer(self.lease)

    def send(self, data: bytes) -> None:
        self.peer.sendto(data, self.sock.getsockname())

    def get(self, timeout: float | None = GUARD) -> concurrent.futures.Future[Any]:
        """A get() in a thread, once it waits."""
        watch = self.inbox.watch
        assert watch is not None
        watch.clear()
        got = spawn(lambda: self.inbox.get(timeout))
        assert watch.wait(GUARD)
        return got

    def run_posted(self) -> None:
        commands, self.worker.commands = self.worker.commands, []
        for command in commands:
            command()

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.close()


def lend(setup: Setup) -> None:
    """What the session does for a lend command: the sockets out of the
    selector (nothing here), then :meth:`Lease.lent`."""
    setup.run_posted()
    assert setup.log[-1] == "lend"
    setup.lease.lent()


def test_the_first_waiting_caller_asks_once_and_reads_once_lent(setup: Setup) -> None:
    lease = setup.lease
    assert owner(lease) is Owner.WORKER
    got = setup.get()
    setup.worker.wait_for(1)
    assert lease.asked
    second = setup.get()  # asks nothing more: a lend is on its way
    assert len(setup.worker.commands) == 1
    lend(setup)
    assert owner(lease) is Owner.LENT
    assert holder(lease) is not None  # the first caller holds the token
    setup.send(b"first")
    setup.send(b"second")
    assert got.result(GUARD) == (b"first", 2)
    # The token went to the second caller, which reads its own.
    assert second.result(GUARD) == (b"second", 2)
    assert owner(lease) is Owner.LENT  # kept between calls
    assert holder(lease) is None
    third = setup.get()
    assert holder(lease) is not None  # at once: no command
    setup.send(b"third")
    assert third.result(GUARD) == (b"third", 2)
    assert setup.worker.commands == []
    assert lease.take() == ([], {(7, setup.peer.getsockname()): [3, 16]})
    assert lease.kept == 3


def test_a_reader_forwards_stun_and_strangers_and_times_out_on_time(
    setup: Setup,
) -> None:
    got = setup.get(timeout=None)
    lend(setup)
    setup.send(KEEPALIVE)  # STUN, even from the peer
    setup.worker.wait_for(1)  # the first of a batch posts the take command
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.sendto(b"\x80 data", setup.sock.getsockname())
        setup.send(b"mine")
        assert got.result(GUARD) == (b"mine", 2)
        forwarded, counts = setup.lease.take()
        assert forwarded == [
            (7, KEEPALIVE, setup.peer.getsockname()),
            (7, b"\x80 data", stranger.getsockname()),
        ]
    assert counts == {(7, setup.peer.getsockname()): [1, 4]}
    setup.run_posted()
    assert setup.log == ["lend", "take"]  # one command for the batch
    # Whatever STUN comes, a reader's timeout is its own.
    late = setup.get(timeout=0.05)
    for _ in range(3):
        setup.send(KEEPALIVE)
    with pytest.raises(TimeoutError):
        late.result(GUARD)
    assert holder(setup.lease) is None
    assert not setup.inbox.waiters()


def test_a_busy_socket_goes_back_to_the_worker(setup: Setup) -> None:
    lease = setup.lease
    got = setup.get()
    lend(setup)
    for _ in range(BUSY + 1):
        setup.send(KEEPALIVE)
    setup.worker.wait_for(2)  # take, then reclaim
    assert owner(lease) is Owner.RETURNING
    assert holder(lease) is None
    setup.run_posted()
    assert setup.log == ["lend", "take", "reclaim"]
    assert lease.reclaim()  # the session then puts the socket in its selector
    assert owner(lease) is Owner.WORKER
    # The worker reads it now, and delivers to the caller still waiting.
    setup.inbox.put((b"from the worker", 2))
    assert got.result(GUARD) == (b"from the worker", 2)
    assert lease.given_back == 1
    # For a while, callers do not ask for it back.
    waiting = setup.get(timeout=0.01)
    with pytest.raises(TimeoutError):
        waiting.result(GUARD)
    assert setup.worker.commands == []


def test_the_sweep_takes_idle_sockets_back(setup: Setup) -> None:
    lease = setup.lease
    got = setup.get()
    lend(setup)
    assert lease.sweep() is False  # a caller waits all along: stays lent
    setup.send(b"read")
    assert got.result(GUARD) == (b"read", 2)
    assert lease.sweep() is None  # nobody came since the last look
    assert owner(lease) is Owner.WORKER


def test_close_while_reading_leaves_the_socket_to_the_reader(setup: Setup) -> None:
    lease = setup.lease
    got = setup.get()
    lend(setup)
    order: list[str] = []

    class Watched:
        """The socket, telling when it is closed."""

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def fileno(self) -> int:
            return self.sock.fileno()

        def close(self) -> None:
            # A callback registered while the sockets close runs after.
            lease.when_closed(lambda: order.append("late callback"))
            order.append("closed")
            self.sock.close()

    lease.sockets = ((Watched(setup.sock), 7),)  # type: ignore[assignment]
    lease.close()  # the worker's part of a close
    lease.when_closed(lambda: order.append("callback"))
    assert order == []  # the reader holds the socket: not closed under it
    assert setup.sock.fileno() != -1
    error = ConnectionClosedError("closed")
    setup.inbox.end(error, discard=True)  # wakes the reader
    with pytest.raises(ConnectionClosedError):
        got.result(GUARD)
    assert order == ["closed", "callback", "late callback"]
    assert setup.sock.fileno() == -1
    lease.when_closed(lambda: order.append("after"))  # closed: at once
    assert order[-1] == "after"


def test_a_reader_behind_its_sender_reads_ahead_in_order(setup: Setup) -> None:
    # The sockets are lent and their token free once a first reader left.
    first = setup.get()
    setup.worker.wait_for(1)
    lend(setup)
    setup.send(b"first")
    assert first.result(GUARD) == (b"first", 2)
    # The sender is ahead: 40 datagrams wait in the socket's buffer.
    sent = [b"n%02d" % i for i in range(40)]
    for data in sent:
        setup.send(data)
    got, queued = [], []
    for _ in sent:
        got.append(setup.inbox.get(GUARD))
        queued.append(len(setup.inbox))
    assert got == [(data, 2) for data in sent]  # all, in order
    # Some were read ahead into the queue (its bound of 8 kept: none dropped),
    # and every one is counted once for the worker to credit.
    assert max(queued) == 7
    assert setup.inbox.dropped == 0
    host, port = setup.peer.getsockname()
    assert setup.lease.counts[(7, (host, port))] == [41, 5 + 3 * 40]


def test_close_without_a_reader_closes_at_once(setup: Setup) -> None:
    lease = setup.lease
    got = setup.get()
    lend(setup)
    setup.send(b"read")
    assert got.result(GUARD) == (b"read", 2)
    done = threading.Event()
    lease.when_closed(done.set)
    lease.close()
    assert done.is_set()
    assert setup.sock.fileno() == -1
    setup.inbox.end(ConnectionClosedError("closed"), discard=True)
    with pytest.raises(ConnectionClosedError):
        setup.inbox.get(GUARD)  # no reader again: the inbox ended
