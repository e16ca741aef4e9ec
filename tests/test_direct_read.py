"""The receive path in which ``recv()`` callers read the sockets themselves.

Layer 2 (real sockets on loopback, the real worker) for the behaviour, and the
inbox on its own for the hand-offs between the worker and a waiting reader.
No test sleeps to wait: each waits on an event or a blocking call, with a
generous timeout as a hang guard only.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from syncice import Connection, ConnectionClosedError, IceTimeoutError
from syncice.connection import _Inbox
from syncice.stun import Class, Message, Method

from .conftest import ConnectionPairs, spawn, watch_recv

GUARD = 10.0


def two_sockets(connection_pairs: ConnectionPairs) -> tuple[Connection, Connection]:
    """A connected pair whose connections have two sockets each (one per
    component), so that recv() polls several sockets."""
    a, b = connection_pairs.pair(components=2)
    assert len(b._published.direct) == 2
    return a, b


# --- several sockets: poll() ----------------------------------------------------


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


def test_poll_reader_times_out_and_loses_nothing(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = two_sockets(connection_pairs)
    with pytest.raises(IceTimeoutError):
        b.recvfrom(timeout=0.02)
    a.sendto(b"after the timeout", 2)
    assert b.recvfrom(timeout=GUARD) == (b"after the timeout", 2)


def test_close_wakes_a_poll_reader(connection_pairs: ConnectionPairs) -> None:
    _, b = two_sockets(connection_pairs)
    waiting = watch_recv(b)
    got = spawn(lambda: b.recv(timeout=GUARD))
    assert waiting.wait(GUARD)
    b.close()
    with pytest.raises(ConnectionClosedError):
        got.result(GUARD)


def test_worker_delivers_to_a_poll_reader() -> None:
    """A datagram the worker queues reaches a reader blocked in poll()."""
    inbox = _Inbox(8)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.setblocking(False)
    inbox.watch = threading.Event()
    try:
        got = spawn(
            lambda: inbox.get_direct(GUARD, ((sock, 0), (other, 1)), lambda *_: None)
        )
        assert inbox.watch.wait(GUARD)
        inbox.put((b"from the worker", 1))
        assert got.result(GUARD) == (b"from the worker", 1)
        assert inbox.direct == 0
    finally:
        sock.close()
        other.close()


def test_close_waits_for_the_poll_reader_to_leave() -> None:
    inbox = _Inbox(8)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    inbox.watch = threading.Event()
    got = spawn(
        lambda: inbox.get_direct(
            GUARD, tuple((s, i) for i, s in enumerate(socks)), lambda *_: None
        )
    )
    assert inbox.watch.wait(GUARD)
    error = ConnectionClosedError("closed")
    inbox.close(error, discard=True, sockets=list(socks))
    with pytest.raises(ConnectionClosedError):
        got.result(GUARD)
    # Closed only once the reader was gone: never under its feet.
    assert [s.fileno() for s in socks] == [-1, -1]


# --- one socket ------------------------------------------------------------------


@pytest.fixture
def one_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def reader(
    inbox: _Inbox, sock: socket.socket, timeout: float | None
) -> concurrent.futures.Future[tuple[bytes, int]]:
    return spawn(lambda: inbox.get_direct(timeout, ((sock, 0),), lambda *_: None))


def test_a_queued_datagram_wakes_the_reader(one_socket: socket.socket) -> None:
    inbox = _Inbox(8)
    inbox.watch = threading.Event()
    got = reader(inbox, one_socket, None)
    assert inbox.watch.wait(GUARD)
    inbox.put((b"queued by the worker", 1))
    assert got.result(GUARD) == (b"queued by the worker", 1)


def test_close_wakes_every_reader_of_one_socket(one_socket: socket.socket) -> None:
    inbox = _Inbox(8)
    readers = []
    for _ in range(4):
        inbox.watch = threading.Event()
        readers.append(reader(inbox, one_socket, None))
        assert inbox.watch.wait(GUARD)
    inbox.close(ConnectionClosedError("closed"), discard=True, sockets=[one_socket])
    for got in readers:
        with pytest.raises(ConnectionClosedError):
            got.result(GUARD)
    assert inbox.wait_drained(GUARD)
    assert one_socket.fileno() == -1  # by the last reader to leave


def test_reader_times_out(one_socket: socket.socket) -> None:
    inbox = _Inbox(8)
    with pytest.raises(IceTimeoutError):
        reader(inbox, one_socket, 0.02).result(GUARD)
    assert inbox.direct == 0


def test_unauthenticated_data_is_dropped_by_the_reader(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    session = b._session()
    assert session is not None
    assert len(b._published.direct) == 1
    waiting = watch_recv(b)
    got = spawn(lambda: b.recv(timeout=GUARD))
    assert waiting.wait(GUARD)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with intruder:
        intruder.bind(("127.0.0.1", 0))
        intruder.sendto(
            b"\x80 not from the peer",
            (b.local_candidates[0].host, b.local_candidates[0].port),
        )
        intruder.sendto(b"", (b.local_candidates[0].host, b.local_candidates[0].port))
        a.send(b"from the peer")
        assert got.result(GUARD) == b"from the peer"
    assert session.direct_rejected == 2  # both of the stranger's datagrams


def test_reader_hands_stun_to_the_worker(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    waiting = watch_recv(b)
    got = spawn(lambda: b.recv(timeout=GUARD))
    assert waiting.wait(GUARD)
    before = b._agent.stats.unexpected
    seen = threading.Event()
    original = b._agent.receive_datagram

    def spy(*args: Any) -> Any:
        result = original(*args)
        seen.set()
        return result

    b._agent.receive_datagram = spy  # type: ignore[method-assign, assignment]
    a.send(bytes(Message(Method.BINDING, Class.INDICATION)))  # a keepalive
    assert seen.wait(GUARD)
    assert b._agent.stats.unexpected == before + 1
    a.send(b"then data")
    assert got.result(GUARD) == b"then data"


def test_sockets_go_back_to_the_worker_when_nobody_reads(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    a.send(b"read directly")
    assert b.recv(timeout=GUARD) == b"read directly"
    # The next datagram arrives while nobody reads: the worker takes the
    # socket back (after its parking delay) and queues it.
    queued = threading.Event()
    inbox = b._inbox

    class Watched(type(inbox._items)):  # type: ignore[misc]
        def append(self, item: Any) -> None:
            super().append(item)
            queued.set()

    with inbox._lock:
        inbox._items = Watched()
    a.send(b"queued by the worker")
    assert queued.wait(GUARD)
    assert b.recv(timeout=0) == b"queued by the worker"


def test_stun_handed_to_the_worker_is_bounded(
    connected_pair: tuple[Connection, Connection],
) -> None:
    """A flood of STUN-looking datagrams read by recv() callers cannot queue
    up without end while the worker is busy: beyond 64, they are dropped."""
    _, b = connected_pair
    session = b._session()
    worker = b._worker()
    assert session is not None
    assert worker is not None
    gate = threading.Event()
    busy = worker.submit(lambda: gate.wait(GUARD))  # hold the worker
    before = b._agent.stats.unexpected
    rejected = session.direct_rejected
    indication = bytes(Message(Method.BINDING, Class.INDICATION))
    for _ in range(100):
        assert session.accept(0, indication, ("127.0.0.1", 9)) is None
    assert session.stun_backlog == 64
    assert session.direct_rejected == rejected + 36
    gate.set()
    assert busy.result(GUARD)
    worker.submit(lambda: None).result(GUARD)  # every post before it has run
    assert session.stun_backlog == 0
    assert b._agent.stats.unexpected == before + 64
