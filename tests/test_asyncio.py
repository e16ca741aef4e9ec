"""The asyncio shim, :mod:`syncice.asyncio` (layer 2, and aioice interop).

The scenario tests of the blocking API run against the shim too: the
``connection_pairs`` fixture of ``tests/conftest.py`` is parameterised over
``blocking`` and ``asyncio`` (``tests/shim_adapter.py``, whose loop runs under
``tests/loopguard.py``). This file holds what is the shim's own: the event
loop never blocks (every test here runs its loop under the guard, and the
guard's own tests show what it catches), cancellation loses nothing, several
loops share the worker and none is kept alive, aioice's API and examples.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import inspect
import logging
import os
import queue
import random
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aioice
import aioice.ice
import pytest

import syncice
import syncice._aio_bridge as _aio_bridge
import syncice._gather as _gather
import syncice.asyncio as shim
from syncice import ConnectionClosedError, NotConnectedError
from syncice._lifecycle import Phase
from syncice.asyncio import Connection
from syncice.candidate import Candidate, candidate_priority
from tests.conftest import TurnService, requires
from tests.descriptors import open_descriptors, opened_since
from tests.loopguard import SHIM, Allowance, LoopBlocked, LoopGuard, guarded_run

T = TypeVar("T")
GUARD = 10.0
LOOPBACK = ["127.0.0.1"]
ROOT = Path(__file__).resolve().parent.parent

needs_proc_fd = requires(
    os.path.isdir("/proc/self/fd"), "needs /proc/self/fd to count fds"
)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` under the loop guard: any blocking call made on
    the loop fails the test (:mod:`tests.loopguard`)."""
    result: T = guarded_run(main, allow=SHIM)
    return result


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

    run(main())


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
            inbox = b._core.inbox
            deadline = asyncio.get_running_loop().time() + GUARD
            while not len(inbox):  # the worker queues it: wait, bounded
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.001)
            coro = b.recv()
            with pytest.raises(StopIteration) as stop:
                coro.send(None)  # one step: done, never suspended
            assert stop.value.value == b"queued"

    run(main())


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

    run(main())


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

    run(main())


# --- the event loop never blocks: the guard ------------------------------------
#
# Every test of this file runs its loop under tests/loopguard.py (run() above),
# as the scenario tests of tests/test_connection.py run the shim's loop
# (tests/shim_adapter.py). These show that the guard fails a loop that blocks,
# for each kind of blocking call, and passes one that does not.


async def until(predicate: Callable[[], object], what: str) -> None:
    """Yield to the loop until ``predicate()`` holds (at most GUARD seconds)."""
    deadline = asyncio.get_running_loop().time() + GUARD
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0)


class Holder:
    """A thread that holds a lock until :meth:`release`."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self._release: queue.SimpleQueue[None] = queue.SimpleQueue()
        taken: queue.SimpleQueue[None] = queue.SimpleQueue()

        def hold() -> None:
            with lock:
                taken.put(None)
                self._release.get()

        self.thread = threading.Thread(target=hold, name="lock-holder")
        self.thread.start()
        taken.get(timeout=GUARD)

    def release(self) -> None:
        self._release.put(None)
        self.thread.join(GUARD)


@pytest.fixture
def held() -> Iterator[threading.Lock]:
    """A lock another thread holds for the whole test."""
    holder = Holder(threading.Lock())
    yield holder.lock
    holder.release()


@pytest.fixture
def rheld() -> Iterator[threading.RLock]:
    """An RLock another thread holds for the whole test."""
    holder = Holder(threading.RLock())
    yield holder.lock
    holder.release()


@pytest.fixture
def waiting_thread() -> Iterator[threading.Thread]:
    """A thread that runs until the test ends."""
    stop: queue.SimpleQueue[None] = queue.SimpleQueue()
    thread = threading.Thread(target=stop.get, name="waiting")
    thread.start()
    yield thread
    stop.put(None)
    thread.join(GUARD)


@asynccontextmanager
async def held_elsewhere(lock: Any) -> AsyncIterator[None]:
    """``lock`` held by an executor thread for the block (started and
    released without a wait on the loop)."""
    loop = asyncio.get_running_loop()
    taken: queue.SimpleQueue[None] = queue.SimpleQueue()
    release: queue.SimpleQueue[None] = queue.SimpleQueue()

    def hold() -> None:
        with lock:
            taken.put(None)
            release.get()

    holding = loop.run_in_executor(None, hold)
    await until(lambda: not taken.empty(), "the executor holds the lock")
    try:
        yield
    finally:
        release.put(None)
        await holding


def udp_socket(timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    return sock


BLOCKING: dict[str, Callable[[dict[str, Any]], object]] = {
    "time.sleep": lambda _: time.sleep(0.001),
    "socket.bind": lambda f: f["udp"].bind(("127.0.0.1", 0)),
    "getaddrinfo": lambda _: socket.getaddrinfo("localhost", 80),
    "gethostbyname": lambda _: socket.gethostbyname("localhost"),
    "recvfrom on a blocking socket": lambda f: f["bound"].recvfrom(100),
    "select.select": lambda f: select.select([f["bound"]], [], [], GUARD),
    "a selector of its own": lambda _: selectors.DefaultSelector().select(GUARD),
    "with a held Lock": lambda f: f["held"].__enter__(),
    "with a held Lock (statement)": lambda f: with_lock(f["held"]),
    "acquire of a held Lock": lambda f: f["held"].acquire(timeout=GUARD),
    "acquire of a held RLock": lambda f: f["rheld"].acquire(),
    "with a held RLock (statement)": lambda f: with_lock(f["rheld"]),
    "Lock acquired twice": lambda f: f["own"].acquire(),
    "Condition of a held Lock": lambda f: with_lock(threading.Condition(f["held"])),
    "Event.wait": lambda _: threading.Event().wait(GUARD),
    "Thread.join": lambda f: f["thread"].join(GUARD),
    "Future.result": lambda _: concurrent.futures.Future().result(GUARD),
    "Future.exception": lambda _: concurrent.futures.Future().exception(),
    "Queue.get": lambda _: queue.Queue().get(timeout=GUARD),
    "SimpleQueue.get": lambda _: queue.SimpleQueue().get(timeout=GUARD),
}


def with_lock(lock: Any) -> None:
    with lock:
        pass


@pytest.fixture
def blocking_things(
    held: threading.Lock, rheld: threading.RLock, waiting_thread: threading.Thread
) -> Iterator[dict[str, Any]]:
    own = threading.Lock()
    own.acquire()
    things: dict[str, Any] = {
        "held": held,
        "rheld": rheld,
        "thread": waiting_thread,
        "own": own,
        "udp": udp_socket(None),
        "bound": udp_socket(GUARD),
    }
    things["bound"].bind(("127.0.0.1", 0))
    yield things
    own.release()
    things["udp"].close()
    things["bound"].close()


@pytest.mark.parametrize("name", list(BLOCKING))
def test_guard_fails_a_loop_that_blocks(
    name: str, blocking_things: dict[str, Any]
) -> None:
    """A coroutine that makes the call fails the guard, at the call (which
    does not run: nothing hangs) and again when the guard is left."""
    seen: list[BaseException] = []

    async def main() -> None:
        try:
            BLOCKING[name](blocking_things)
        except LoopBlocked as exc:
            seen.append(exc)
            raise

    with pytest.raises(LoopBlocked, match="blocking call"):
        run(main())
    assert len(seen) == 1


NOT_BLOCKING: dict[str, Callable[[dict[str, Any]], object]] = {
    "time.sleep(0)": lambda _: time.sleep(0),
    "recvfrom on a non-blocking socket": lambda f: f["nonblocking"].recv_into(
        bytearray(1)
    ),
    "sendto on a non-blocking socket": lambda f: f["nonblocking"].sendto(
        b"x", f["nonblocking"].getsockname()
    ),
    "select.select, timeout 0": lambda f: select.select([f["nonblocking"]], [], [], 0),
    "acquire(False) of a held Lock": lambda f: f["held"].acquire(False),
    "acquire(blocking=False) of a held RLock": lambda f: f["rheld"].acquire(
        blocking=False
    ),
    "acquire(timeout=0) of a held Lock": lambda f: f["held"].acquire(timeout=0),
    "with a free Lock": lambda _: with_lock(threading.Lock()),
    "an RLock re-entered": lambda _: with_lock(reentered(threading.RLock())),
    "Event.wait(0)": lambda _: threading.Event().wait(0),
    "result of a done Future": lambda _: done_future().result(),
    "Future.result(timeout=0)": lambda _: pending_result(),
    "SimpleQueue.get(block=False)": lambda _: empty_get(),
}


def reentered(lock: threading.RLock) -> threading.RLock:
    lock.acquire()  # this thread's: entering it again does not wait
    return lock


def done_future() -> concurrent.futures.Future[int]:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_result(1)
    return future


def pending_result() -> None:
    with contextlib.suppress(TimeoutError):
        concurrent.futures.Future().result(timeout=0)


def empty_get() -> None:
    with contextlib.suppress(queue.Empty):
        queue.SimpleQueue().get(block=False)


@pytest.mark.parametrize("name", list(NOT_BLOCKING))
def test_guard_passes_a_call_that_does_not_block(
    name: str, held: threading.Lock, rheld: threading.RLock
) -> None:
    sock = udp_socket(0)
    sock.bind(("127.0.0.1", 0))  # before the loop: bind() is a blocking call
    things = {"held": held, "rheld": rheld, "nonblocking": sock}

    async def main() -> None:
        with contextlib.suppress(BlockingIOError):
            NOT_BLOCKING[name](things)

    with sock:
        run(main())


def test_guard_passes_asyncio_own_waits_and_its_executor() -> None:
    """The loop's selector, run_in_executor (thread start) and its
    getaddrinfo, asyncio.run's teardown: none fails the guard."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        await loop.run_in_executor(None, time.sleep, 0.001)
        await loop.getaddrinfo("localhost", 80)
        with contextlib.suppress(LookupError):
            logging.getLogger("tests.loopguard").debug("logging is fine")

    run(main())


def test_guard_fails_on_leaving_if_the_call_was_swallowed() -> None:
    async def main() -> None:
        with contextlib.suppress(Exception):
            time.sleep(0.001)

    with pytest.raises(LoopBlocked, match=r"time\.sleep"):
        run(main())


def when_blocked_in(function: str, action: Callable[[], object]) -> threading.Thread:
    """A thread that runs ``action()`` once the calling thread waits in
    threading.py, called from ``function`` (it polls: the guard lets the
    call run, and something must end its wait)."""
    ident = threading.get_ident()

    def watch() -> None:
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(ident)
            if frame is not None and frame.f_code.co_filename == threading.__file__:
                while frame is not None and frame.f_code.co_filename == (
                    threading.__file__
                ):
                    frame = frame.f_back
                if frame is not None and frame.f_code.co_name == function:
                    break
            time.sleep(0.001)
        action()

    thread = threading.Thread(target=watch, name="watcher")
    thread.start()
    return thread


def test_guard_allowance_covers_its_code_only(held: threading.Lock) -> None:
    """An allowance lets the code it names enter a held lock's critical
    section (the call runs, and waits); not other code, and not a wait
    unless it says so."""
    enter = (Allowance("tests/test_asyncio.py", "with_lock", reason="a test"),)
    waits = (Allowance("tests/test_asyncio.py", "wait_in", waits=True),)
    lock = threading.Lock()
    lock.acquire()
    watcher = when_blocked_in("with_lock", lock.release)
    with LoopGuard(enter):
        with_lock(threading.Condition(lock))  # Condition.__enter__ waits
    watcher.join(GUARD)
    with pytest.raises(LoopBlocked, match="held"), LoopGuard(enter):
        held.acquire()  # this function is not with_lock
    with pytest.raises(LoopBlocked, match="held"), LoopGuard(enter):
        wait_in(threading.Event())  # nor is it a wait
    event = threading.Event()
    watcher = when_blocked_in("wait_in", event.set)
    with LoopGuard(waits):
        wait_in(event)
    watcher.join(GUARD)
    site = sys._getframe()
    assert not enter[0].covers(site, waits=False)
    assert Allowance("tests/test_asyncio.py").covers(site, waits=False)
    assert not Allowance("tests/test_asyncio.py").covers(site, waits=True)
    assert not enter[0].covers(None, waits=False)


def wait_in(event: threading.Event) -> None:
    event.wait(GUARD)


def test_guard_restores_and_feeds_the_trace_function_before_it() -> None:
    """A trace function installed before the guard (coverage's) is back when
    it is left, and saw the lines run under it, ``with`` sites included."""
    lines: list[int] = []
    code = with_lock.__code__

    def tracer(frame: Any, event: str, arg: object) -> Any:
        if frame.f_code is code and event == "line":
            lines.append(frame.f_lineno)
        return tracer

    before_trace, before_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    try:
        with LoopGuard():
            assert sys.gettrace() is not tracer
            with_lock(threading.Lock())
        assert sys.gettrace() is tracer
        assert sys.getprofile() is before_profile
    finally:
        sys.settrace(before_trace)
    first = code.co_firstlineno
    assert set(lines) == {first + 1, first + 2}  # `with lock:` and `pass`


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_guard_fails_the_blocking_facade_on_the_loop() -> None:
    """What the shim no longer does: the blocking calls it used to make on
    the loop (gathering binds sockets; setting the role and selecting a pair
    wait for the worker's Future) fail the guard."""
    conn = syncice.Connection(True, local_addresses=LOOPBACK)
    try:

        async def gather() -> None:
            conn.gather_candidates(timeout=0)

        with pytest.raises(LoopBlocked, match=r"bind|held"):
            run(gather())
        # The socket whose bind() raised is left to the collector (bind_udp
        # closes it on OSError only): collected here, warning ignored.
        gc.collect()
        conn.gather_candidates(timeout=GUARD)

        worker = conn._core.worker
        assert worker is not None

        def busy_worker() -> queue.SimpleQueue[None]:
            # The worker waits for the test: its futures stay pending.
            release: queue.SimpleQueue[None] = queue.SimpleQueue()
            worker.post(lambda: release.get(timeout=GUARD))
            return release

        async def role() -> None:
            conn.ice_controlling = False

        release = busy_worker()
        with pytest.raises(LoopBlocked, match=r"Future\.result"):
            run(role())
        release.put(None)
        [local] = conn.local_candidates

        async def select() -> None:
            conn.set_selected_pair(1, local.foundation, local.foundation)

        release = busy_worker()
        with pytest.raises(LoopBlocked, match=r"Future\.result"):
            run(select())
        release.put(None)
    finally:
        conn.close()


# --- the event loop never blocks: the shim under the guard ------------------------


def test_moves_10000_datagrams_each_way_without_blocking_the_loop() -> None:
    """10,000 datagrams a->b, then 10,000 b->a, in windows of 100, under the
    guard: each one arrives intact and in order, none is dropped."""
    count, window = 10_000, 100

    async def main() -> None:
        async with shim_pair() as (a, b):
            for sender, receiver in ((a, b), (b, a)):
                expected = 0
                for start in range(0, count, window):
                    for i in range(start, start + window):
                        await sender.send(payload(i))
                        if i % 10 == 9:
                            await asyncio.sleep(0)  # let the receiver's side in
                    for _ in range(window):
                        data = await asyncio.wait_for(receiver.recv(), GUARD)
                        assert data == payload(expected)
                        expected += 1
                assert expected == count
                assert receiver.recv_drops == 0

    run(main())


@pytest.fixture
def slow_bind(monkeypatch: pytest.MonkeyPatch) -> queue.SimpleQueue[None]:
    """Gathering's first bind waits (in the gathering thread, holding the
    blocking connection's lock) until the test puts an item here."""
    release: queue.SimpleQueue[None] = queue.SimpleQueue()
    original = _gather.bind_udp

    def bind_udp(address: str) -> socket.socket:
        release.get(timeout=GUARD)
        release.put(None)  # the next binds go on
        return original(address)

    monkeypatch.setattr(_gather, "bind_udp", bind_udp)
    return release


def loopback_peer(foundation: str) -> tuple[socket.socket, Candidate]:
    """A non-blocking UDP socket on loopback, and a host candidate of it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    candidate = Candidate(
        foundation=foundation,
        component=1,
        transport="udp",
        priority=candidate_priority(1, "host", 1000),
        host=host,
        port=port,
        type="host",
    )
    return sock, candidate


def test_gathering_binds_in_a_thread_and_calls_meanwhile_never_wait(
    slow_bind: queue.SimpleQueue[None],
) -> None:
    """While the gathering thread binds (under no lock),
    nothing waits for it on the loop: the role is taken and applied after,
    the candidates queued for the worker, connect() waits for the bind and
    then starts the checks (trickle ICE), set_selected_pair() raises."""
    peer = Candidate(
        foundation="peer",
        component=1,
        transport="udp",
        priority=candidate_priority(1, "host", 1000),
        host="127.0.0.1",
        port=9,
        type="host",
    )

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            gathering = asyncio.create_task(conn.gather_candidates())
            await until(lambda: conn._core.phase is Phase.GATHERING, "the thread binds")
            conn.ice_controlling = False
            assert conn.ice_controlling is False  # as asked, until applied
            adding = asyncio.create_task(conn.add_remote_candidate(peer))
            conn.remote_username, conn.remote_password = "user", "p" * 22
            connecting = asyncio.create_task(conn.connect())
            with pytest.raises(NotConnectedError, match="gathering"):
                conn.set_selected_pair(1, "x", "peer")
            assert await conn.get_stats() == []
            await asyncio.wait_for(adding, GUARD)  # nothing to wait for
            assert conn.remote_candidates == [peer]
            await asyncio.sleep(0)
            assert not gathering.done()
            assert not connecting.done()  # waits for the bind
            slow_bind.put(None)
            await asyncio.wait_for(gathering, GUARD)
            await asyncio.wait_for(adding, GUARD)
            assert conn.remote_candidates == [peer]
            assert conn._core.phase is Phase.CONNECTING  # started by the job
            assert not connecting.done()  # port 9 does not answer
            assert conn.ice_controlling is False
            await conn.get_stats()  # a turn of the worker: the role is applied
            assert conn._core.agent.controlling is False
            assert conn.ice_controlling is False
        finally:
            await conn.close()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(connecting, GUARD)

    run(main())


def test_close_during_gathering_closes_after_it_without_waiting(
    slow_bind: queue.SimpleQueue[None],
) -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        gathering = asyncio.create_task(conn.gather_candidates())
        await until(lambda: conn._core.phase is Phase.GATHERING, "the thread binds")
        closing = asyncio.create_task(conn.close())
        await asyncio.sleep(0)
        assert not closing.done()
        slow_bind.put(None)
        await asyncio.wait_for(closing, GUARD)
        # Gathering host candidates may have completed before the close.
        with contextlib.suppress(ConnectionClosedError):
            await asyncio.wait_for(gathering, GUARD)
        with pytest.raises(ConnectionClosedError):
            await conn.connect()
        assert await asyncio.wait_for(conn.get_event(), GUARD) == (
            shim.ConnectionClosed()
        )

    run(main())


def test_a_failed_gathering_is_reported_and_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    original = _gather.bind_udp

    def bind_udp(address: str) -> socket.socket:
        calls.append(address)
        if len(calls) == 1:
            raise KeyboardInterrupt  # not an OSError: gathering gives up
        return original(address)

    monkeypatch.setattr(_gather, "bind_udp", bind_udp)

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            with pytest.raises(KeyboardInterrupt):
                await conn.gather_candidates()
            await conn.gather_candidates()
            assert conn.local_candidates
        finally:
            await conn.close()

    run(main())
    assert calls == ["127.0.0.1", "127.0.0.1"]


def test_role_set_after_gathering_shows_at_once_and_the_worker_applies_it() -> None:
    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            await conn.gather_candidates()
            conn.ice_controlling = False
            assert conn.ice_controlling is False
            await conn.get_stats()  # the worker ran the command before this
            assert conn._core.agent.controlling is False
            assert conn.ice_controlling is False
        finally:
            await conn.close()
        conn.ice_controlling = True  # closed: the blocking facade's way
        assert conn.ice_controlling is True

    run(main())


async def sock_recvfrom(sock: socket.socket) -> tuple[bytes, Any]:
    """A datagram from non-blocking ``sock``, read when the loop says it is
    readable."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[tuple[bytes, Any]] = loop.create_future()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            got.set_result(sock.recvfrom(2048))

    loop.add_reader(sock, readable)
    try:
        return await asyncio.wait_for(got, GUARD)
    finally:
        loop.remove_reader(sock)


def test_set_selected_pair_returns_at_once_and_send_follows_it() -> None:
    """A peer without ICE: the pair is forced, send() right after it goes
    out on that pair (it waits for the worker's turn), recv() gets the
    answer."""
    # Before the loop: bind() is a blocking call.
    peer, candidate = loopback_peer("plain")

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            with pytest.raises(NotConnectedError, match="gathering"):
                conn.set_selected_pair(1, "x", "plain")
            await conn.gather_candidates()
            await conn.add_remote_candidate(candidate)
            [local] = conn.local_candidates
            with pytest.raises(ValueError, match="no local candidate"):
                conn.set_selected_pair(1, "nope", "plain")
            with pytest.raises(ValueError, match="no local candidate"):
                conn.set_selected_pair(1, local.foundation, "nope")
            with pytest.raises(ValueError, match="no local candidate"):
                conn.set_selected_pair(2, local.foundation, "plain")
            conn.set_selected_pair(1, local.foundation, "plain")
            await conn.send(b"hello")
            data, addr = await sock_recvfrom(peer)
            assert data == b"hello"
            assert addr == (local.host, local.port)
            peer.sendto(b"answer", addr)
            assert await asyncio.wait_for(conn.recv(), GUARD) == b"answer"
            await conn.sendto(b"again", 1)
            data, _ = await sock_recvfrom(peer)
            assert data == b"again"
        finally:
            await conn.close()
        with pytest.raises(ConnectionClosedError):
            conn.set_selected_pair(1, "x", "plain")

    try:
        run(main())
    finally:
        peer.close()


def test_set_selected_pair_the_worker_refuses_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A remote .local candidate is in remote_candidates before mDNS
    resolved it: the worker cannot select it, and says why."""
    name = "0b4e5d2a-1c9f-4c7e-9a53-5d3e2f1b6a70.local"

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            await conn.gather_candidates()
            await conn.add_remote_candidate(
                Candidate(
                    foundation="named",
                    component=1,
                    transport="udp",
                    priority=candidate_priority(1, "host", 1000),
                    host=name,
                    port=9,
                    type="host",
                )
            )
            [local] = conn.local_candidates
            conn.set_selected_pair(1, local.foundation, "named")
            await conn.get_stats()  # after the worker's turn
        finally:
            await conn.close()

    run(main())
    assert any("set_selected_pair" in r.getMessage() for r in caplog.records)


# --- cancellation ----------------------------------------------------------------


class HeldDeliveries:
    """The waiters the worker hands a datagram (or an error) to, held back
    from their loop until :meth:`release`: a test sees the claim and cancels
    before the delivery, without blocking the loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiters: list[_aio_bridge.AsyncWaiter[Any]] = []
        self._monkeypatch = monkeypatch
        self._post = _aio_bridge.LoopBridge.post
        monkeypatch.setattr(_aio_bridge.LoopBridge, "post", self._hold)

    def _hold(self, waiter: _aio_bridge.AsyncWaiter[Any]) -> None:
        # A bound method as the class attribute: bridge.post(w) is _hold(w).
        self.waiters.append(waiter)

    def release(self) -> None:
        """Deliver what was held, and no longer hold (on the loop)."""
        self._monkeypatch.setattr(_aio_bridge.LoopBridge, "post", self._post)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.bridge.post(waiter)


@pytest.fixture
def hold_deliveries(monkeypatch: pytest.MonkeyPatch) -> HeldDeliveries:
    return HeldDeliveries(monkeypatch)


async def waiting_recv(
    conn: Connection,
) -> tuple[asyncio.Task[bytes], _aio_bridge.AsyncWaiter[Any]]:
    """A recv() task that waits in ``conn``'s inbox, and its waiter."""
    task = asyncio.create_task(conn.recv())
    inbox = conn._core.inbox
    await until(lambda: inbox.waiters(), "recv() waits in the inbox")
    [waiter] = inbox.waiters()
    assert isinstance(waiter, _aio_bridge.AsyncWaiter)
    assert state_of(conn, waiter) == WAITING
    return task, waiter


WAITING, CLAIMED, WITHDRAWN, RECLAIMED = "waiting", "claimed", "withdrawn", "reclaimed"


def state_of(conn: Connection, waiter: _aio_bridge.AsyncWaiter[Any]) -> str:
    """Where ``waiter`` is: in the inbox, handed a datagram, withdrawn
    before it was handed one, or cancelled after (its datagram given back)."""
    if waiter in conn._core.inbox.waiters():
        return WAITING
    if waiter.item is None and waiter.error is None:
        return WITHDRAWN
    return RECLAIMED if waiter.cancelled else CLAIMED


def assert_withdrawn(
    conn: Connection, waiter: _aio_bridge.AsyncWaiter[Any], state: str
) -> None:
    """``waiter`` (cancelled) is in ``state``."""
    assert state_of(conn, waiter) == state


def test_recv_cancelled_before_the_worker_came() -> None:
    async def main() -> None:
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_withdrawn(b, waiter, WITHDRAWN)
            await a.send(b"next")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"next"
            assert state_of(b, waiter) == WITHDRAWN
            assert not b._core.inbox.waiters()

    run(main())


def test_recv_cancelled_after_the_worker_claimed_it(
    hold_deliveries: HeldDeliveries,
) -> None:
    """The worker handed the datagram over; the task is cancelled before the
    loop delivers it: it goes back to the front of the inbox, before the one
    that came next."""

    async def main() -> None:
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            await a.send(b"first")
            await until(lambda: hold_deliveries.waiters, "the worker claims it")
            assert state_of(b, waiter) == CLAIMED
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_withdrawn(b, waiter, RECLAIMED)
            hold_deliveries.release()  # too late: nothing to deliver
            await a.send(b"second")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"first"
            assert state_of(b, waiter) == RECLAIMED
            assert await asyncio.wait_for(b.recv(), GUARD) == b"second"

    run(main())


def test_recv_cancelled_after_its_result_was_set(
    hold_deliveries: HeldDeliveries,
) -> None:
    """The loop delivered the datagram, then the task was cancelled before it
    resumed (asyncio then throws CancelledError anyway): it is put back."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with shim_pair() as (a, b):
            task, waiter = await waiting_recv(b)
            await a.send(b"only")
            await until(lambda: hold_deliveries.waiters, "the worker claims it")
            hold_deliveries.release()
            # Runs after the delivery (queued first), before the task resumes.
            loop.call_soon(task.cancel)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_withdrawn(b, waiter, RECLAIMED)
            assert await asyncio.wait_for(b.recv(), GUARD) == b"only"
            assert state_of(b, waiter) == RECLAIMED

    run(main())


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

    got, cancels = run(main())
    assert got == [payload(i) for i in range(count)]
    assert cancels > 100


@needs_proc_fd
def test_cancelled_connect_then_close_leaks_nothing() -> None:
    threads, fds = set(threading.enumerate()), open_descriptors()
    silent, peer = loopback_peer("silent")

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        await conn.gather_candidates()
        conn.remote_username, conn.remote_password = "user", "p" * 22
        await conn.add_remote_candidate(peer)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.connect(), 0.05)
        data, _ = await sock_recvfrom(silent)  # checks go on after the cancel
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
        run(main())
    finally:
        silent.close()
    for thread in worker_threads():
        thread.join(GUARD)
    assert set(threading.enumerate()) <= threads
    assert not opened_since(fds)


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

    run(main())


# --- several loops ---------------------------------------------------------------


def test_event_loops_in_several_threads_share_the_worker() -> None:
    loops, count = 4, 300
    start = threading.Barrier(loops)
    workers: set[int] = set()

    async def run_pair(n: int) -> int:
        async with shim_pair() as (a, b):
            worker = a._core.worker
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
        return run(run_pair(n))

    with concurrent.futures.ThreadPoolExecutor(loops) as pool:
        results = list(pool.map(thread, range(loops)))
    assert results == [2 * count] * loops
    assert len(workers) == 1


def test_no_event_loop_is_kept_alive() -> None:
    """20 ``asyncio.run()`` calls that each receive a datagram (a recv()
    that waited in the inbox, one cancelled, a connect() and a get_event()
    given up) leave no loop alive: the shim keeps its loops weakly."""
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    stuck = Connection(True, local_addresses=LOOPBACK)  # never connects

    async def setup() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await exchange(a, b)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
        await stuck.gather_candidates()
        stuck.remote_username, stuck.remote_password = "user", "p" * 22

    async def receive(i: int) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        cancelled, _ = await waiting_recv(b)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        task, _ = await waiting_recv(b)
        await a.send(payload(i))
        assert await asyncio.wait_for(task, GUARD) == payload(i)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stuck.connect(), 0.001)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(a.get_event(), 0.001)

    async def close() -> None:
        for conn in (a, b, stuck):
            await conn.close()

    run(setup())
    try:
        for i in range(20):
            run(receive(i))
        gc.collect()
        assert [ref for ref in loops if ref() is not None] == []
        assert not _aio_bridge.bridges
    finally:
        run(close())


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
        session = conn._core.session
        assert session is not None
        assert session.released is not None
        await conn.close()
        assert session.released.done()
        assert ticks > before  # the loop ran while close() waited
        ticking.cancel()

    run(main())


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
    assert conn.remote_is_lite is True


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

    run(main())
