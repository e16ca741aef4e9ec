"""Local trickle in both facades (RFC 8838): candidates reach the application
as they are gathered, and connect() may run while gathering still does.

The STUN server of these tests is a UDP socket on loopback that never
answers (:func:`silent_server`): its requests stay pending until the gather
bound (5 s), long after everything a test looks at has happened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import socket
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

import syncice.asyncio as shim
from syncice import (
    Candidate,
    Connection,
    ConnectionClosedError,
    IceConfig,
    IceTimeoutError,
    NotConnectedError,
    _gather,
)
from syncice._appview import ConnectionState
from syncice.stun import Class, Method, parse_message
from syncice.testing import virtual_time
from tests.conftest import spawn

#: Real seconds before a blocking call counts as a hang. Never a timing.
GUARD = 10.0
LOOPBACK = ["127.0.0.1"]


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A STUN server that never answers: a bound UDP socket nobody answers
    from (the test may read what it got)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(GUARD)
    yield sock
    sock.close()


def address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()
    return host, port


def binding_request_arrived(server: socket.socket) -> bool:
    """Whether the server got a Binding request (sent before the host
    candidate was handed out: the worker flushes first)."""
    data, _ = server.recvfrom(2048)
    message = parse_message(data)
    return (message.method, message.message_class) == (Method.BINDING, Class.REQUEST)


def state_of(conn: Connection) -> ConnectionState:
    """``conn.state``, read anew (a call, which a type checker does not
    take as settled by an earlier look)."""
    return conn.state


#: Set by ``held_bind``'s bind when a gathering thread reaches it.
BIND_ENTERED = threading.Event()


def binding(conn: Connection) -> None:
    """Return once the thread gathering ``conn`` has started binding (it
    holds there: see ``held_bind``)."""
    assert BIND_ENTERED.wait(GUARD), "gathering did not start"
    assert state_of(conn) is ConnectionState.GATHERING


# --- the blocking API ---------------------------------------------------------


def test_host_candidates_reach_the_callback_while_the_stun_server_is_pending(
    silent_server: socket.socket,
) -> None:
    conn = Connection(
        True, stun_server=address(silent_server), local_addresses=LOOPBACK
    )
    seen: list[tuple[Candidate | None, int, ConnectionState, bool]] = []

    def on_candidate(candidate: Candidate | None) -> None:
        pending = binding_request_arrived(silent_server) if not seen else True
        seen.append((candidate, threading.get_ident(), conn.state, pending))
        conn.close()  # ends gathering early: the test need not wait 5 s

    try:
        with pytest.raises(ConnectionClosedError):
            conn.gather_candidates(on_candidate=on_candidate, timeout=GUARD)
    finally:
        conn.close()
    [(candidate, thread, state, pending)] = seen
    assert candidate is not None
    assert candidate.type == "host"
    assert candidate.host == "127.0.0.1"
    assert thread == threading.get_ident()  # the caller's thread
    assert state is ConnectionState.GATHERING  # the STUN server still pending
    assert pending


def test_the_callback_gets_every_candidate_then_none_and_again_on_each_call() -> None:
    with Connection(True, components=2, local_addresses=LOOPBACK) as conn:
        first: list[Candidate | None] = []
        conn.gather_candidates(on_candidate=first.append, timeout=GUARD)
        assert first[-1] is None
        assert first[:-1] == conn.local_candidates
        assert [c.component for c in conn.local_candidates] == [1, 2]
        again: list[Candidate | None] = []
        conn.gather_candidates(on_candidate=again.append, timeout=GUARD)
        assert again == first


def test_an_exception_of_the_callback_comes_out_and_gathering_goes_on() -> None:
    with Connection(True, local_addresses=LOOPBACK) as conn:

        def fail(candidate: Candidate | None) -> None:
            raise KeyError("from the callback")

        with pytest.raises(KeyError, match="from the callback"):
            conn.gather_candidates(on_candidate=fail, timeout=GUARD)
        conn.gather_candidates(timeout=GUARD)
        assert [c.type for c in conn.local_candidates] == ["host"]


def test_the_timeout_bounds_the_whole_call_and_loses_no_candidate(
    silent_server: socket.socket,
) -> None:
    with Connection(
        True, stun_server=address(silent_server), local_addresses=LOOPBACK
    ) as conn:
        got: list[Candidate | None] = []
        with pytest.raises(IceTimeoutError, match="gather_candidates"):
            conn.gather_candidates(on_candidate=got.append, timeout=0.2)
        # The host candidate came; the end did not (the server is silent).
        assert [c.type for c in got if c is not None] == ["host"]
        assert None not in got
        assert conn.state is ConnectionState.GATHERING


def start_trickling(
    conn: Connection, peer: Connection, first: threading.Event
) -> concurrent.futures.Future[None]:
    """Gather ``conn`` in a thread of its own, handing each candidate to
    ``peer`` as it comes (the signalling channel); ``first`` is set once the
    first one went."""

    def on_candidate(candidate: Candidate | None) -> None:
        peer.add_remote_candidate(candidate)
        first.set()

    return spawn(lambda: conn.gather_candidates(on_candidate=on_candidate))


def test_connect_over_host_pairs_completes_while_srflx_gathering_runs(
    silent_server: socket.socket,
) -> None:
    stun = address(silent_server)
    a = Connection(True, stun_server=stun, local_addresses=LOOPBACK)
    b = Connection(False, stun_server=stun, local_addresses=LOOPBACK)
    try:
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        a_first, b_first = threading.Event(), threading.Event()
        gathering_a = start_trickling(a, b, a_first)
        gathering_b = start_trickling(b, a, b_first)
        assert a_first.wait(GUARD)
        assert b_first.wait(GUARD)
        controlled = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        controlled.result(GUARD)
        # Connected, and both still gathering (their STUN server is silent).
        assert a.state is ConnectionState.CONNECTED
        assert b.state is ConnectionState.CONNECTED
        assert not gathering_a.done()
        assert not gathering_b.done()
        assert a.local_candidates == []  # published when gathering ends
        pair = a.selected_pair()
        assert pair is not None
        assert (pair.local.type, pair.remote.type) == ("host", "host")
        a.send(b"while gathering")
        assert b.recv(timeout=GUARD) == b"while gathering"
    finally:
        a.close()
        b.close()
    for gathering in (gathering_a, gathering_b):
        with pytest.raises(ConnectionClosedError):
            gathering.result(GUARD)


@pytest.fixture
def held_bind(monkeypatch: pytest.MonkeyPatch) -> queue.SimpleQueue[object]:
    """The gathering's first bind waits until the test puts an item here:
    ``None`` lets it bind, an exception makes it raise that."""
    release: queue.SimpleQueue[object] = queue.SimpleQueue()
    BIND_ENTERED.clear()
    original = _gather.bind_udp

    def bind_udp(address: str) -> socket.socket:
        BIND_ENTERED.set()
        item = release.get(timeout=GUARD)
        if isinstance(item, BaseException):
            raise item
        release.put(None)  # the next binds go on
        return original(address)

    monkeypatch.setattr(_gather, "bind_udp", bind_udp)
    return release


def test_connect_while_the_sockets_are_bound_waits_for_them_then_checks(
    held_bind: queue.SimpleQueue[object],
) -> None:
    b = Connection(False, local_addresses=LOOPBACK)
    held = Connection(True, local_addresses=LOOPBACK)
    try:
        held_bind.put(None)
        b.gather_candidates(timeout=GUARD)  # b's binds pass
        assert held_bind.get(timeout=GUARD) is None  # held's first bind waits
        for candidate in b.local_candidates:
            held.add_remote_candidate(candidate)
        held.add_remote_candidate(None)
        held.remote_username, held.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = held.local_username, held.local_password
        gathering = spawn(lambda: held.gather_candidates(timeout=GUARD))
        binding(held)
        # What held.connect() does, without waiting: its outcome.
        connecting = held._core.connect(b.local_username, b.local_password, False)
        assert held.state is ConnectionState.GATHERING
        assert not connecting.done()
        held_bind.put(None)
        gathering.result(GUARD)
        for candidate in held.local_candidates:
            b.add_remote_candidate(candidate)
        b.add_remote_candidate(None)
        b.connect(timeout=GUARD)
        connecting.result(GUARD)
        held.connect(timeout=GUARD)  # the same outcome
        assert state_of(held) is ConnectionState.COMPLETED
    finally:
        held.close()
        b.close()


def test_connect_while_binding_fails_with_the_binding_error(
    held_bind: queue.SimpleQueue[object],
) -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        gathering = spawn(lambda: conn.gather_candidates(timeout=GUARD))
        binding(conn)
        connecting = conn._core.connect("peer", "p" * 22, False)
        held_bind.put(KeyboardInterrupt())  # not an OSError: gathering gives up
        with pytest.raises(KeyboardInterrupt):
            gathering.result(GUARD)
        with pytest.raises(NotConnectedError, match="gathering failed") as info:
            connecting.result(GUARD)
        assert isinstance(info.value.__cause__, KeyboardInterrupt)
        assert conn.state is ConnectionState.NEW  # the next call starts over
    finally:
        conn.close()


def test_connect_before_any_gathering_still_raises() -> None:
    with Connection(True, local_addresses=LOOPBACK) as conn:
        conn.remote_username, conn.remote_password = "peer", "p" * 22
        with pytest.raises(NotConnectedError, match="gathering was not performed"):
            conn.connect(timeout=GUARD)


# --- the asyncio shim ----------------------------------------------------------


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_the_async_iterator_yields_host_candidates_while_stun_is_pending(
    silent_server: socket.socket,
) -> None:
    stun = address(silent_server)

    async def main() -> None:
        conn = shim.Connection(True, stun_server=stun, local_addresses=LOOPBACK)
        got: list[tuple[Candidate | None, ConnectionState]] = []

        async def consume() -> None:
            async for candidate in conn.gather_candidates_iter():
                got.append((candidate, conn.state))
                await conn.close()

        with pytest.raises(ConnectionClosedError):
            await consume()
        [(candidate, state)] = got
        assert candidate is not None
        assert candidate.type == "host"
        assert state is ConnectionState.GATHERING

    run(main())
    assert binding_request_arrived(silent_server)


def test_the_async_iterator_ends_with_none_and_replays() -> None:
    async def main() -> None:
        async with shim.Connection(
            True, components=2, local_addresses=LOOPBACK
        ) as conn:
            first = [c async for c in conn.gather_candidates_iter()]
            assert first[-1] is None
            assert first[:-1] == conn.local_candidates
            again = [c async for c in conn.gather_candidates_iter()]
            assert again == first
            # Leaving a loop early leaves nothing behind.
            async for _ in conn.gather_candidates_iter():
                break
        assert conn.state is ConnectionState.CLOSED

    run(main())


def test_async_connect_over_host_pairs_completes_while_srflx_gathering_runs(
    silent_server: socket.socket,
) -> None:
    stun = address(silent_server)

    async def trickle(conn: shim.Connection, peer: shim.Connection) -> None:
        async for candidate in conn.gather_candidates_iter():
            await peer.add_remote_candidate(candidate)

    async def main() -> None:
        a = shim.Connection(True, stun_server=stun, local_addresses=LOOPBACK)
        b = shim.Connection(False, stun_server=stun, local_addresses=LOOPBACK)
        try:
            a.remote_username, a.remote_password = b.local_username, b.local_password
            b.remote_username, b.remote_password = a.local_username, a.local_password
            tasks = [
                asyncio.create_task(trickle(a, b)),
                asyncio.create_task(trickle(b, a)),
            ]
            # connect() right away: the gathering has just started binding.
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            assert a.state is ConnectionState.CONNECTED
            assert not any(task.done() for task in tasks)  # still gathering
            pair = await a.selected_pair()
            assert pair is not None
            assert pair.local.type == "host"
            await a.send(b"while gathering")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"while gathering"
        finally:
            await a.close()
            await b.close()
        for task in tasks:
            with pytest.raises(ConnectionClosedError):
                await task

    run(main())


# --- in virtual time --------------------------------------------------------------


def test_in_virtual_time_the_connection_is_up_long_before_the_gather_bound(
    silent_server: socket.socket,
) -> None:
    """On the worker's virtual clock: both sides connect at the start, over
    host pairs; end-of-candidates comes at the gather bound (5 s), when the
    silent server's requests give up."""
    stun = address(silent_server)
    bound = IceConfig().gather_timeout
    with virtual_time() as vt:
        a = Connection(True, stun_server=stun, local_addresses=LOOPBACK)
        b = Connection(False, stun_server=stun, local_addresses=LOOPBACK)
        ends: dict[str, float] = {}

        def trickle(
            conn: Connection, peer: Connection, name: str, first: threading.Event
        ) -> concurrent.futures.Future[None]:
            def on_candidate(candidate: Candidate | None) -> None:
                peer.add_remote_candidate(candidate)
                if candidate is None:
                    ends[name] = vt.now()
                first.set()

            return spawn(lambda: conn.gather_candidates(on_candidate=on_candidate))

        try:
            a.remote_username, a.remote_password = b.local_username, b.local_password
            b.remote_username, b.remote_password = a.local_username, a.local_password
            with vt.paused():  # no jump while the connect runs
                start = vt.now()
                firsts = [threading.Event(), threading.Event()]
                gathering = [
                    trickle(a, b, "a", firsts[0]),
                    trickle(b, a, "b", firsts[1]),
                ]
                assert all(first.wait(GUARD) for first in firsts)
                controlled = spawn(lambda: b.connect(timeout=GUARD))
                a.connect(timeout=GUARD)
                controlled.result(GUARD)
                assert vt.now() == start  # not a virtual moment later
                assert state_of(a) is ConnectionState.CONNECTED
            for future in gathering:
                future.result(GUARD)  # the clock jumps to the bound
            assert ends["a"] >= start + bound
            assert ends["b"] >= start + bound
            assert state_of(a) is ConnectionState.COMPLETED
        finally:
            a.close()
            b.close()


def test_one_thread_signals_connects_and_signals_again(
    silent_server: socket.socket,
) -> None:
    """The iterator of the blocking API: the first candidate, connect(),
    the rest, in one thread (the peer, controlled, connects in another)."""
    stun = address(silent_server)
    config = IceConfig(gather_timeout=0.5)
    a = Connection(True, stun_server=stun, local_addresses=LOOPBACK, config=config)
    b = Connection(False, local_addresses=LOOPBACK)
    with a, b:
        b.gather_candidates(timeout=GUARD)
        for candidate in b.local_candidates:
            a.add_remote_candidate(candidate)
        a.add_remote_candidate(None)
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        candidates = a.gather_candidates_iter(timeout=GUARD)
        first = next(candidates)
        assert first is not None
        assert first.type == "host"
        b.add_remote_candidate(first)
        controlled = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        controlled.result(GUARD)
        assert state_of(a) is ConnectionState.CONNECTED  # still gathering
        rest = list(candidates)
        assert rest == [None]  # the silent server gave nothing
        b.add_remote_candidate(None)
        assert state_of(a) is ConnectionState.COMPLETED


def test_a_step_of_the_iterator_that_times_out_ends_it(
    silent_server: socket.socket,
) -> None:
    stun = address(silent_server)
    with Connection(True, stun_server=stun, local_addresses=LOOPBACK) as conn:
        host = next(conn.gather_candidates_iter(timeout=GUARD))
        probe = conn.gather_candidates_iter(timeout=0)
        assert next(probe) == host  # every call starts from the first
        with pytest.raises(IceTimeoutError, match="gather_candidates_iter"):
            next(probe)  # the server is silent for 5 s
        assert list(probe) == []  # ended
        assert state_of(conn) is ConnectionState.GATHERING  # it goes on
