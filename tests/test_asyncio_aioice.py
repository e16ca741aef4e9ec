"""The asyncio shim as a drop-in for aioice: what aioice's and aiortc's own
test suites found (:doc:`docs/migrating`), each reproduced here.

Every test runs its loop under :mod:`tests.loopguard` (``run``), on
127.0.0.1; times are virtual or not looked at.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

import syncice.asyncio as shim
from syncice._aio_bridge import AsyncWaiter
from syncice._mailbox import Mailbox
from syncice._transaction import ClientTransaction, Poll
from syncice.asyncio import Candidate, Connection
from syncice.ice import IceConfig
from tests.test_asyncio import GUARD, LOOPBACK, ROOT, exchange, run

T = TypeVar("T")


def test_a_task_nobody_holds_still_sees_connect_return() -> None:
    """aiortc starts its connect() as ``asyncio.ensure_future(...)`` and
    keeps no reference to the task: asyncio holds tasks weakly, so the
    future the task awaits must be held by the shim until it is resolved,
    or a garbage collection destroys the task ("Task was destroyed but it
    is pending!") and connect() never returns to anyone."""

    async def main() -> None:
        a = Connection(True, local_addresses=LOOPBACK)
        b = Connection(False, local_addresses=LOOPBACK)
        try:
            await exchange(a, b)
            connected = asyncio.Event()

            async def connect() -> None:
                await b.connect()
                connected.set()

            # The controlled side completes only once a's checks nominate a
            # pair, and a has not started them: b.connect() is pending.
            asyncio.ensure_future(connect())  # noqa: RUF006 - aiortc's way
            await asyncio.sleep(0)
            gc.collect()
            await asyncio.wait_for(a.connect(), GUARD)
            await asyncio.wait_for(connected.wait(), GUARD)
        finally:
            await a.close()
            await b.close()

    run(main())


# --- aioice's module surface: the one-line swap ---------------------------------

SWAP = """
import sys
import syncice.asyncio
sys.modules["aioice"] = syncice.asyncio
import aioice.ice
import aioice.stun
from aioice import Candidate, Connection, ConnectionClosed, TransportPolicy
from aioice.ice import ConnectionEvent
assert aioice.ice is syncice.asyncio.ice, aioice.ice
assert aioice.stun is syncice.asyncio.stun, aioice.stun
assert Connection is syncice.asyncio.Connection
assert ConnectionEvent is syncice.asyncio.ConnectionEvent
aioice.stun.RETRY_MAX = 1
assert syncice.asyncio.stun.RETRY_MAX == 1
aioice.ice.CONSENT_FAILURES = 2
assert syncice.asyncio.ice.CONSENT_FAILURES == 2
try:
    import aioice.turn
except ImportError:
    pass
else:
    raise AssertionError("aioice.turn is not offered")
"""


def test_a_plain_sys_modules_swap_imports_the_submodules() -> None:
    """``sys.modules["aioice"] = syncice.asyncio`` and nothing more: ``import
    aioice.ice`` gets the package's own submodule (not a second copy run
    under the alias, whose tunables no connection would read)."""
    subprocess.run([sys.executable, "-c", SWAP], check=True, timeout=60, cwd=ROOT)


def test_aioice_names_of_the_submodules() -> None:
    assert (shim.stun.RETRY_MAX, shim.stun.RETRY_RTO) == (6, 0.5)
    assert (shim.ice.CONSENT_FAILURES, shim.ice.CONSENT_INTERVAL) == (6, 5)
    for name in ("Candidate", "Connection", "ConnectionClosed", "ConnectionEvent"):
        assert getattr(shim.ice, name) is getattr(shim, name)
    assert shim.ice.TransportPolicy is shim.TransportPolicy


def test_the_tunables_at_aioices_values_leave_syncices_defaults() -> None:
    assert shim.ice.default_config() == IceConfig()


def test_tuned_the_aioice_way_the_values_reach_a_new_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiortc's tests set these (RETRY_MAX 1, RETRY_RTO 0.1, CONSENT_FAILURES
    1, CONSENT_INTERVAL 1): a connection made afterwards runs on them."""
    monkeypatch.setattr(shim.stun, "RETRY_MAX", 1)
    monkeypatch.setattr(shim.stun, "RETRY_RTO", 0.1)
    monkeypatch.setattr(shim.ice, "CONSENT_FAILURES", 1)
    monkeypatch.setattr(shim.ice, "CONSENT_INTERVAL", 1)
    expected = IceConfig(
        rto=0.1,
        max_sends=2,
        final_wait=2,
        rto_max=None,
        consent_interval=1.0,
        consent_timeout=1.25,
    )
    assert shim.ice.default_config() == expected
    conn = Connection(True, local_addresses=LOOPBACK)
    assert conn._core.agent.config == expected
    given = IceConfig(rto=0.25)
    assert Connection(True, config=given)._core.agent.config is given


def schedule(config: IceConfig) -> tuple[list[float], float]:
    """When a check made with ``config`` is sent, and when it gives up, in
    virtual time (the sans-IO transaction, never answered)."""
    transaction = ClientTransaction(
        transaction_id=bytes(12),
        data=b"",
        endpoint=0,
        addr=("127.0.0.1", 9),
        now=0.0,
        rto=config.rto,
        max_sends=config.max_sends,
        final_wait=config.final_wait,
        rto_max=config.rto_max,
    )
    sends = [0.0]
    while True:
        now = transaction.timer_at
        outcome = transaction.poll(now)
        if outcome is Poll.SEND:
            sends.append(now)
        elif outcome is Poll.TIMEOUT:
            return sends, now


@pytest.mark.parametrize(("retry_max", "retry_rto"), [(1, 0.1), (0, 0.1), (3, 0.05)])
def test_tuned_retries_give_aioices_schedule(
    monkeypatch: pytest.MonkeyPatch, retry_max: int, retry_rto: float
) -> None:
    """aioice's transaction sends at 0, RTO, 3 RTO, 7 RTO... (RETRY_MAX
    retransmissions, the interval doubling) and gives up one doubled interval
    after the last: with RETRY_MAX 1 and RETRY_RTO 0.1 (aiortc's tests), at
    0.3 s. A connection tuned the aioice way does the same."""
    monkeypatch.setattr(shim.stun, "RETRY_MAX", retry_max)
    monkeypatch.setattr(shim.stun, "RETRY_RTO", retry_rto)
    sends, gives_up = schedule(shim.ice.default_config())
    aioice_sends = [retry_rto * (2**k - 1) for k in range(retry_max + 1)]
    assert sends == pytest.approx(aioice_sends)
    assert gives_up == pytest.approx(retry_rto * (2 ** (retry_max + 1) - 1))


def test_untuned_retries_keep_syncices_schedule() -> None:
    sends, gives_up = schedule(shim.ice.default_config())
    assert len(sends) == 18
    assert gives_up == pytest.approx(39.5)


# --- remote_candidates: what aioice leaves out ------------------------------------


def candidate(**fields: Any) -> Candidate:
    base: dict[str, Any] = {
        "foundation": "some-foundation",
        "component": 1,
        "transport": "udp",
        "priority": 2130706431,
        "host": "1.2.3.4",
        "port": 1234,
        "type": "host",
    }
    return Candidate(**{**base, **fields})


def test_remote_candidates_leave_out_what_aioice_leaves_out() -> None:
    """aioice's add_remote_candidate tests: a candidate of an unknown type, and
    one with the transport address of one listed already (the same, an equal
    one, a srflx there, the address spelled differently, the transport in
    capitals), are not listed. aiortc's getRemoteCandidates() is this list."""

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            await conn.gather_candidates()
            first = candidate()
            ipv6 = candidate(foundation="ipv6-foundation", host="2001:db8::1")
            await conn.add_remote_candidate(first)
            await conn.add_remote_candidate(ipv6)
            await conn.add_remote_candidate(first)
            await conn.add_remote_candidate(candidate())
            await conn.add_remote_candidate(
                candidate(foundation="other", transport="UDP", type="srflx")
            )
            await conn.add_remote_candidate(
                candidate(foundation="v6", host="2001:db8:0::1")
            )
            await conn.add_remote_candidate(candidate(type="bogus", port=9))
            assert conn.remote_candidates == [first, ipv6]
            # Another port, component or transport is another address.
            other = [candidate(port=9), candidate(transport="tcp")]
            for c in other:
                await conn.add_remote_candidate(c)
            assert conn.remote_candidates == [first, ipv6, *other]
        finally:
            await conn.close()

    run(main())


# --- coroutines yield as aioice's do ----------------------------------------------


async def steps_of(coro: Awaitable[T]) -> tuple[T, int]:
    """``coro``'s outcome, and how many times another task ran meanwhile."""
    ticks = 0
    stop = asyncio.Event()

    async def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count())
    await asyncio.sleep(0)  # the counter runs once first
    start = ticks
    try:
        result = await coro
    finally:
        stop.set()
        await counter
    return result, ticks - start


def test_gather_candidates_yields_to_the_loop() -> None:
    """aiortc gathers its transports with ``asyncio.gather`` and reads an
    aggregate iceGatheringState: a gather_candidates() that returned without
    ever yielding showed it new, gathering, new, gathering, complete. The
    first call yields (the sockets are bound in the executor), even when the
    worker has nothing left to wait for."""

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        try:
            _, steps = await steps_of(conn.gather_candidates())
            assert steps >= 1
        finally:
            await conn.close()

    run(main())


class GatherAtOnce(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs the gathering job at once, in the calling
    (loop) thread, and returns only once the worker has finished gathering:
    the worst case of a loaded machine, where the loop thread is descheduled
    while the executor and the worker do it all."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(max_workers=1)  # asyncio takes a ThreadPoolExecutor
        self.conn = conn

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        done.set_result(fn(*args, **kwargs))
        # The gathering already started: its outcome, waited for here.
        self.conn._core.gather(lambda job: None).result(GUARD)
        return done


def test_gather_candidates_yields_even_when_gathering_is_done_at_once() -> None:
    """The race behind aiortc's new, gathering, new, gathering, complete: when
    the gathering is complete before the coroutine looks at it, it must
    still yield once, as aioice's always does. (No loop guard: the executor
    here binds the sockets on the loop thread, on purpose.)"""

    async def main() -> None:
        conn = Connection(True, local_addresses=LOOPBACK)
        asyncio.get_running_loop().set_default_executor(GatherAtOnce(conn))
        try:
            _, steps = await steps_of(conn.gather_candidates())
            assert conn.local_candidates
            assert steps >= 1
        finally:
            await conn.close()

    asyncio.run(main())


def test_aiortcs_gathering_state_goes_new_gathering_complete() -> None:
    """Three transports gathered together, aiortc's way: each gathering
    starts before any of them finishes."""

    async def main() -> None:
        conns = [Connection(True, local_addresses=LOOPBACK) for _ in range(3)]
        events: list[str] = []

        async def gather(i: int, conn: Connection) -> None:
            events.append(f"start {i}")
            await conn.gather_candidates()
            events.append(f"end {i}")

        try:
            await asyncio.gather(*(gather(i, c) for i, c in enumerate(conns)))
            assert events[:3] == ["start 0", "start 1", "start 2"]
        finally:
            for conn in conns:
                await conn.close()

    run(main())


def test_connect_yields_to_the_loop() -> None:
    async def main() -> None:
        a = Connection(True, local_addresses=LOOPBACK)
        b = Connection(False, local_addresses=LOOPBACK)
        try:
            await exchange(a, b)
            (_, _), steps = await steps_of(asyncio.gather(a.connect(), b.connect()))
            assert steps >= 1
        finally:
            await a.close()
            await b.close()

    run(main())


# --- name resolution off the loop -------------------------------------------------


def test_server_names_resolve_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A STUN and a TURN server given by name: the loop guard fails the test
    if the loop thread makes the lookup, and the recorder shows the lookup
    was made, in another thread."""
    lookups: list[tuple[str, int]] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "localhost":
            lookups.append((host, threading.get_ident()))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        conn = Connection(
            True,
            stun_server=("localhost", port),
            local_addresses=LOOPBACK,
            use_ipv6=False,
            config=IceConfig(gather_timeout=0.05, gather_rto_max=0.5),
        )
        try:
            await conn.gather_candidates()
            assert [c.type for c in conn.local_candidates] == ["host"]
        finally:
            await conn.close()

    try:
        run(main())
    finally:
        silent.close()
    assert lookups, "the server name was never looked up"
    assert all(ident != loop_thread[0] for _, ident in lookups)


def test_an_item_handed_to_a_task_nobody_holds_is_not_lost() -> None:
    """The same for a receive: between the worker handing a datagram to a
    waiting ``recv()`` and the loop delivering it, the waiter is held (a
    garbage collection then must not take the task, and the datagram with
    it)."""

    async def main() -> None:
        mailbox: Mailbox[str] = Mailbox()
        got: list[str] = []

        async def take() -> None:
            waiter: AsyncWaiter[str] = AsyncWaiter(mailbox)
            mailbox.wait(waiter)
            got.append(await waiter.wait())

        asyncio.ensure_future(take())  # noqa: RUF006 - nobody holds it
        await asyncio.sleep(0)  # take() waits in the mailbox
        mailbox.put("datagram")  # the worker's hand-over, then a collection
        gc.collect()
        for _ in range(3):
            await asyncio.sleep(0)
        assert got == ["datagram"]

    run(main())


@pytest.mark.parametrize(("retry_max", "sends"), [(500, 100), (-1, 1)])
def test_retry_max_out_of_range_is_clamped(
    monkeypatch: pytest.MonkeyPatch, retry_max: int, sends: int
) -> None:
    monkeypatch.setattr(shim.stun, "RETRY_MAX", retry_max)
    assert shim.ice.default_config().max_sends == sends
    Connection(True, local_addresses=LOOPBACK)  # no ValueError
