"""The asyncio shim, :mod:`syncice.asyncio` (layer 2, and aioice interop).

The scenario tests of the blocking API run against the shim too: the
``connection_pairs`` fixture of ``tests/conftest.py`` is parameterised over
``blocking`` and ``asyncio`` (``tests/shim_adapter.py``). This file holds what
is the shim's own: the event loop never blocks (debug mode), cancellation
loses nothing, several loops share the worker, aioice's API and examples.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import random
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioice
import aioice.ice
import pytest

import syncice
import syncice.asyncio as shim
from syncice import ConnectionClosedError, NotConnectedError
from syncice.asyncio import Connection
from syncice.candidate import Candidate, candidate_priority
from tests.conftest import TurnService, requires

GUARD = 10.0
LOOPBACK = ["127.0.0.1"]
ROOT = Path(__file__).resolve().parent.parent

needs_proc_fd = requires(
    os.path.isdir("/proc/self/fd"), "needs /proc/self/fd to count fds"
)


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "syncice-worker"]


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    """Each test stops every worker it started (a shim close() releases the
    worker from the worker thread, which then ends on its own)."""
    before = set(worker_threads())
    yield
    for thread in set(worker_threads()) - before:
        thread.join(GUARD)
    assert set(worker_threads()) <= before


def payload(i: int, size: int = 100) -> bytes:
    """Datagram ``i``: its number, then bytes that depend on it."""
    return i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4)


async def exchange(a: Connection, b: Connection) -> None:
    """The signalling: candidates, end-of-candidates and credentials."""
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for local, remote in ((a, b), (b, a)):
        for candidate in remote.local_candidates:
            await local.add_remote_candidate(candidate)
        await local.add_remote_candidate(None)
        local.remote_username = remote.local_username
        local.remote_password = remote.local_password


@asynccontextmanager
async def shim_pair(**kwargs: Any) -> AsyncIterator[tuple[Connection, Connection]]:
    """Two connected shim connections on 127.0.0.1, closed on exit."""
    a = Connection(True, local_addresses=LOOPBACK, **kwargs)
    b = Connection(False, local_addresses=LOOPBACK, **kwargs)
    try:
        await exchange(a, b)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
        yield a, b
    finally:
        await a.close()
        await b.close()


# --- aioice's API ---------------------------------------------------------------


def test_importing_syncice_leaves_asyncio_out() -> None:
    code = (
        "import sys, syncice\n"
        "c = syncice.Connection(True, local_addresses=['127.0.0.1'])\n"
        "c.gather_candidates(timeout=10)\n"
        "c.close()\n"
        "assert 'asyncio' not in sys.modules, 'asyncio imported'\n"
        "import syncice.asyncio\n"
        "assert 'asyncio' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


def test_names_of_aioice() -> None:
    for name in ("Candidate", "Connection", "ConnectionClosed", "TransportPolicy"):
        assert hasattr(shim, name), name
    assert shim.ConnectionClosed is syncice.ConnectionClosed
    assert shim.Candidate is syncice.Candidate
    assert shim.TransportPolicy is syncice.TransportPolicy


def test_constructor_parameters_and_defaults_are_aioices() -> None:
    theirs = inspect.signature(aioice.Connection).parameters
    ours = inspect.signature(Connection).parameters
    for name, param in theirs.items():
        assert name in ours, name
        if name == "transport_policy":
            assert ours[name].default is shim.TransportPolicy.ALL
        else:
            assert ours[name].default == param.default, name
    assert list(ours)[: len(theirs)] == list(theirs)
    extras = [p for name, p in ours.items() if name not in theirs]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extras)


def test_constructor_parameters_are_the_blocking_ones() -> None:
    blocking = inspect.signature(syncice.Connection).parameters
    ours = inspect.signature(Connection).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in blocking.values()
    ]


@pytest.mark.parametrize(
    "name",
    [
        "add_remote_candidate",
        "gather_candidates",
        "connect",
        "close",
        "recv",
        "recvfrom",
        "send",
        "sendto",
        "get_default_candidate",
        "set_selected_pair",
    ],
)
def test_coroutines_where_aioice_has_them(name: str) -> None:
    assert inspect.iscoroutinefunction(
        getattr(Connection, name)
    ) == inspect.iscoroutinefunction(getattr(aioice.Connection, name))


def test_errors_before_connect() -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            with pytest.raises(ConnectionError):
                await conn.connect()  # before gathering
            with pytest.raises(NotConnectedError):
                await conn.recv()
            with pytest.raises(NotConnectedError):
                await conn.send(b"x")
            with pytest.raises(ValueError, match="component"):
                await conn.sendto(b"x", 2)
            await conn.gather_candidates()
            assert conn.local_candidates
            assert conn.get_default_candidate(1) in conn.local_candidates
            with pytest.raises(ConnectionError, match="Remote username"):
                await conn.connect()
            await conn.add_remote_candidate(None)
            with pytest.raises(ValueError, match="end-of-candidates"):
                await conn.add_remote_candidate(None)
            with pytest.raises(TypeError):
                await conn.add_remote_candidate("a:1")  # type: ignore[arg-type]
        finally:
            await conn.close()
        with pytest.raises(ConnectionClosedError):
            await conn.recv()
        with pytest.raises(ConnectionClosedError):
            await conn.gather_candidates()
        await conn.close()  # twice is fine

    asyncio.run(main())


def test_bad_constructor_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="components"):
        Connection(True, components=0)
    with pytest.raises(ValueError, match="turn_transport"):
        Connection(True, turn_transport="sctp")
    with pytest.raises(ValueError, match="address"):
        Connection(True, local_addresses=["not an address"])


def test_recv_of_a_queued_datagram_does_not_suspend() -> None:
    async def main() -> None:
        async with shim_pair() as (a, b):
            await a.send(b"queued")
            inbox = b._conn._inbox
            deadline = asyncio.get_running_loop().time() + GUARD
            while not inbox._items:  # the worker queues it: wait, bounded
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.001)
            coro = b.recv()
            with pytest.raises(StopIteration) as stop:
                coro.send(None)  # one step: done, never suspended
            assert stop.value.value == b"queued"

    asyncio.run(main())


def test_get_event_returns_connection_closed_then_none() -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        await conn.gather_candidates()
        pending = asyncio.create_task(conn.get_event())
        cancelled = asyncio.create_task(conn.get_event())
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert not pending.done()
        await conn.close()
        assert await asyncio.wait_for(pending, GUARD) == shim.ConnectionClosed()
        assert await asyncio.wait_for(conn.get_event(), GUARD) is None

    asyncio.run(main())


def test_events_survive_a_cancelled_get_event() -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        await conn.gather_candidates()
        waiting = asyncio.create_task(conn.get_event())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await conn.close()
        assert (
            await asyncio.wait_for(conn.get_event(), GUARD) == shim.ConnectionClosed()
        )

    asyncio.run(main())


# --- the event loop never blocks -------------------------------------------------


def test_debug_mode_moves_10000_datagrams_each_way_intact() -> None:
    """10,000 datagrams a->b, then 10,000 b->a, in windows of 100, under
    asyncio's debug mode: each one arrives intact and in order. (How long the
    loop's callbacks take is a figure for bench/, not a test: a wall-clock
    bound fails on a loaded machine.)"""
    count, window = 10_000, 100

    async def main() -> None:
        assert asyncio.get_running_loop().get_debug()
        async with shim_pair() as (a, b):
            for sender, receiver in ((a, b), (b, a)):
                expected = 0
                for start in range(0, count, window):
                    for i in range(start, start + window):
                        await sender.send(payload(i))
                        if i % 10 == 9:
                            await asyncio.sleep(0)
                    for _ in range(window):
                        data = await asyncio.wait_for(receiver.recv(), GUARD)
                        assert data == payload(expected)
                        expected += 1
                assert expected == count
                assert receiver.recv_drops == 0

    asyncio.run(main(), debug=True)


# --- cancellation ----------------------------------------------------------------


@pytest.fixture
def claimed(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set when the worker hands a datagram to a waiting shim recv()."""
    event = threading.Event()
    original = shim._RecvWaiter.set_result

    def set_result(self: shim._RecvWaiter, item: tuple[bytes, int]) -> None:
        original(self, item)
        event.set()

    monkeypatch.setattr(shim._RecvWaiter, "set_result", set_result)
    return event


async def waiting_recv(
    conn: Connection,
) -> tuple[asyncio.Task[bytes], shim._RecvWaiter]:
    """A recv() task that waits in ``conn``'s inbox, and its waiter."""
    task = asyncio.create_task(conn.recv())
    await asyncio.sleep(0)  # its first step: it waits
    [waiter] = conn._conn._inbox._waiters
    assert waiter.state == shim._WAITING
    return task, waiter


def test_recv_cancelled_before_the_worker_came() -> None:
    async def main() -> None:
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waiter.state == shim._WITHDRAWN
            assert not b._conn._inbox._waiters
            await a.send(b"next")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"next"

    asyncio.run(main())


def test_recv_cancelled_after_the_worker_claimed_it(claimed: threading.Event) -> None:
    """The worker handed the datagram over; the task is cancelled before the
    loop delivers it: it goes back to the front of the inbox, before the one
    that came next."""

    async def main() -> None:
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            await a.send(b"first")
            # Block the loop until the worker has claimed the waiter, so that
            # the delivery is still queued on the loop when we cancel.
            assert claimed.wait(GUARD)
            assert waiter.state == shim._CLAIMED
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waiter.state == shim._RECLAIMED
            await a.send(b"second")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"first"
            assert await asyncio.wait_for(b.recv(), GUARD) == b"second"

    asyncio.run(main())


def test_recv_cancelled_after_its_result_was_set(claimed: threading.Event) -> None:
    """The loop delivered the datagram, then the task was cancelled before it
    resumed (asyncio then throws CancelledError anyway): it is put back."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            await a.send(b"only")
            assert claimed.wait(GUARD)
            # Runs after the delivery (queued first), before the task resumes.
            loop.call_soon(task.cancel)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert waiter.state == shim._RECLAIMED
            assert await asyncio.wait_for(b.recv(), GUARD) == b"only"

    asyncio.run(main())


def test_many_cancelled_recvs_lose_nothing() -> None:
    """3,000 datagrams arrive while recv() calls are cancelled at random
    points (before, during and after the worker's hand-over): every datagram
    is received once, intact and in order."""
    count = 3000

    async def main() -> tuple[list[bytes], int]:
        got: list[bytes] = []
        cancels = 0
        progress = asyncio.Event()
        rng = random.Random(1)
        async with shim_pair() as (a, b):

            async def sender() -> None:
                for i in range(count):
                    while i - len(got) > 200:  # a window: no loss to buffers
                        progress.clear()
                        await progress.wait()
                    await a.send(payload(i))
                    if rng.random() < 0.3:
                        await asyncio.sleep(0)

            sending = asyncio.create_task(sender())
            while len(got) < count:
                task = asyncio.create_task(b.recv())
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                if rng.random() < 0.6:
                    task.cancel()
                try:
                    got.append(await asyncio.wait_for(task, GUARD))
                    progress.set()
                except asyncio.CancelledError:
                    cancels += 1
            await sending
        return got, cancels

    got, cancels = asyncio.run(main())
    assert got == [payload(i) for i in range(count)]
    assert cancels > 100


@needs_proc_fd
def test_cancelled_connect_then_close_leaks_nothing() -> None:
    threads, fds = set(threading.enumerate()), set(os.listdir("/proc/self/fd"))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(GUARD)
    host, port = silent.getsockname()
    peer = Candidate(
        foundation="silent",
        component=1,
        transport="udp",
        priority=candidate_priority(1, "host", 1000),
        host=host,
        port=port,
        type="host",
    )

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        await conn.gather_candidates()
        conn.remote_username, conn.remote_password = "user", "p" * 22
        await conn.add_remote_candidate(peer)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.connect(), 0.05)
        data, _ = silent.recvfrom(2048)  # checks go on after the cancel
        assert data[0] in (0, 1)
        waiting = asyncio.create_task(conn.connect())  # waits again
        await asyncio.sleep(0)
        assert not waiting.done()
        await conn.close()
        with pytest.raises(ConnectionClosedError):
            await waiting
        with pytest.raises(ConnectionClosedError):
            await conn.connect()

    try:
        asyncio.run(main())
    finally:
        silent.close()
    for thread in worker_threads():
        thread.join(GUARD)
    assert set(threading.enumerate()) <= threads
    assert set(os.listdir("/proc/self/fd")) == fds


def test_cancelled_connect_connects_when_called_again() -> None:
    async def main() -> None:
        a = Connection(True, local_addresses=LOOPBACK)
        b = Connection(False, local_addresses=LOOPBACK)
        try:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            # Credentials but no candidate yet: this connect() cannot finish
            # (b answers checks before its own connect(), so with candidates
            # the worker could connect a before the cancel).
            a.remote_username, a.remote_password = b.local_username, b.local_password
            first = asyncio.create_task(a.connect())
            await asyncio.sleep(0)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await exchange(a, b)
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            await a.send(b"after")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"after"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


# --- several loops ---------------------------------------------------------------


def test_event_loops_in_several_threads_share_the_worker() -> None:
    loops, count = 4, 300
    start = threading.Barrier(loops)
    workers: set[int] = set()

    async def run(n: int) -> int:
        async with shim_pair() as (a, b):
            worker = a._conn._worker()
            workers.add(id(worker))
            received = 0
            for i in range(count):
                await a.send(payload(n * count + i))
                assert await asyncio.wait_for(b.recv(), GUARD) == payload(n * count + i)
                await b.send(payload(i))
                assert await asyncio.wait_for(a.recv(), GUARD) == payload(i)
                received += 2
            return received

    def thread(n: int) -> int:
        start.wait(GUARD)
        return asyncio.run(run(n))

    with concurrent.futures.ThreadPoolExecutor(loops) as pool:
        results = list(pool.map(thread, range(loops)))
    assert results == [2 * count] * loops
    assert len(workers) == 1


# --- interop -------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.usefixtures("aioice_on_loopback")
@pytest.mark.parametrize(
    "ours_controlling", [True, False], ids=["ours-controlling", "ours-controlled"]
)
def test_against_aioice(ours_controlling: bool) -> None:
    async def main() -> None:
        ours = Connection(ours_controlling, local_addresses=LOOPBACK)
        theirs = aioice.Connection(ice_controlling=not ours_controlling)
        try:
            await asyncio.gather(ours.gather_candidates(), theirs.gather_candidates())
            for c in theirs.local_candidates:
                await ours.add_remote_candidate(Candidate.from_sdp(c.to_sdp()))
            await ours.add_remote_candidate(None)
            for s in ours.local_candidates:
                await theirs.add_remote_candidate(aioice.Candidate.from_sdp(s.to_sdp()))
            await theirs.add_remote_candidate(None)
            ours.remote_username = theirs.local_username
            ours.remote_password = theirs.local_password
            theirs.remote_username = ours.local_username
            theirs.remote_password = ours.local_password
            await asyncio.wait_for(
                asyncio.gather(ours.connect(), theirs.connect()), GUARD
            )
            for i in range(100):
                await ours.send(payload(i))
                assert await asyncio.wait_for(theirs.recv(), GUARD) == payload(i)
                await theirs.sendto(payload(i)[::-1], 1)
                assert await asyncio.wait_for(ours.recvfrom(), GUARD) == (
                    payload(i)[::-1],
                    1,
                )
        finally:
            await ours.close()
            await theirs.close()

    asyncio.run(main())


@pytest.mark.interop
def test_close_awaits_the_turn_release_without_blocking(coturn: TurnService) -> None:
    """close() waits for coturn's answer to the release while the loop runs."""

    async def main() -> None:
        conn = Connection(
            True,
            local_addresses=LOOPBACK,
            turn_server=(coturn.ip, coturn.port),
            turn_username=coturn.username,
            turn_password=coturn.password,
        )
        await conn.gather_candidates()
        assert [c for c in conn.local_candidates if c.type == "relay"]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        session = conn._conn._session()
        assert session is not None
        assert session.released is not None
        await conn.close()
        assert session.released.done()
        assert ticks > before  # the loop ran while close() waited
        ticking.cancel()

    asyncio.run(main())


# --- examples --------------------------------------------------------------------


def run_example(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_aioice_readme_example() -> None:
    """aioice's README example, with ``import syncice.asyncio as aioice``.

    It gathers on every interface, as aioice's does: here syncice's host
    addresses are restricted to 127.0.0.1 by replacing
    ``syncice._gather.host_addresses`` before it runs (the test suite's way
    for aioice too), so no traffic leaves loopback.
    """
    out = run_example(
        "import runpy, syncice._gather as g\n"
        "g.host_addresses = lambda *, use_ipv4, use_ipv6: ['127.0.0.1']\n"
        "runpy.run_path('examples/aioice_readme.py', run_name='__main__')\n"
    )
    assert out.splitlines() == [
        "remote party received b'1234' on component 1",
        "aioice README example done",
    ]


def test_asyncio_client_server_example() -> None:
    out = run_example(
        "import runpy\n"
        "runpy.run_path('examples/asyncio_client_server.py', run_name='__main__')\n"
    )
    assert out.splitlines() == ["100 of 100 datagrams echoed"]


def test_attributes_are_the_blocking_connections() -> None:
    conn = Connection(
        False,
        stun_server=("127.0.0.1", 3478),
        turn_server=("127.0.0.1", 3479),
        turn_username="user",
        turn_password="secret",
        turn_transport="tcp",
        local_username="ufrag",
        local_password="p" * 22,
        local_addresses=LOOPBACK,
    )
    assert (conn.stun_server, conn.turn_server) == (
        ("127.0.0.1", 3478),
        ("127.0.0.1", 3479),
    )
    assert (conn.turn_username, conn.turn_password) == ("user", "secret")
    assert (conn.turn_transport, conn.turn_ssl) == ("tcp", False)
    assert (conn.local_username, conn.local_password) == ("ufrag", "p" * 22)
    assert (conn.remote_username, conn.remote_password) == (None, None)
    assert conn.remote_candidates == []
    assert conn.local_candidates == []
    assert (conn.send_drops, conn.recv_drops) == (0, 0)
    assert conn.ice_controlling is False
    conn.ice_controlling = True
    assert conn.ice_controlling is True
    conn.remote_is_lite = True
    assert conn._conn.remote_is_lite is True


def test_close_before_gathering() -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        assert await conn.get_stats() == []
        await conn.close()
        assert await asyncio.wait_for(conn.get_event(), GUARD) == (
            shim.ConnectionClosed()
        )
        assert await conn.get_event() is None
        with pytest.raises(ConnectionClosedError):
            await conn.connect()

    asyncio.run(main())
