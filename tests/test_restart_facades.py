"""ICE restart through both facades, on loopback: the blocking
:class:`syncice.Connection` and :class:`syncice.asyncio.Connection`.

The figures (time from ``restart()`` to the new pair carrying data, datagrams
lost across a restart at 1,000 datagrams/s) are printed, not asserted as
times; the loss is asserted (none), since on loopback nothing but the
connection's own logic can drop a datagram here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import syncice.asyncio
from syncice import Connection
from syncice.exceptions import (
    IceTimeoutError,
    NegotiationFailedError,
    NotConnectedError,
)
from syncice.testing import VirtualTime, virtual_time

LOOPBACK = ["127.0.0.1"]
GUARD = 30.0


def signal(a: Connection, b: Connection) -> None:
    """What the applications exchange: credentials, candidates, the end."""
    for x, y in ((a, b), (b, a)):
        y.remote_username = x.local_username
        y.remote_password = x.local_password
        for c in x.local_candidates:
            y.add_remote_candidate(c)
        y.add_remote_candidate(None)


def connect_both(a: Connection, b: Connection) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            b.connect(timeout=GUARD)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    a.connect(timeout=GUARD)
    thread.join()
    assert errors == []


@pytest.fixture
def pair() -> Iterator[tuple[Connection, Connection]]:
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    try:
        a.gather_candidates(timeout=GUARD)
        b.gather_candidates(timeout=GUARD)
        signal(a, b)
        connect_both(a, b)
        yield a, b
    finally:
        a.close()
        b.close()


def test_restart_needs_a_connection_and_new_credentials() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        with pytest.raises(NotConnectedError):
            conn.restart()
    finally:
        conn.close()


def test_restart_refuses_the_old_credentials(
    pair: tuple[Connection, Connection],
) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="new username"):
        a.restart(a.local_username, "x" * 22)
    with pytest.raises(ValueError, match="username"):
        a.restart("ab")


@pytest.mark.parametrize("starter", ["controlling", "controlled"])
def test_restart_then_connect_again(
    pair: tuple[Connection, Connection], starter: str
) -> None:
    a, b = pair
    first, second = (a, b) if starter == "controlling" else (b, a)
    old = (a.local_username, b.local_username)
    first.restart()
    [old_pair] = [s for s in first.get_stats() if s.selected]
    # While restarting, data flows on the old pair, both ways.
    a.send(b"during")
    assert b.recv(timeout=GUARD) == b"during"
    b.send(b"back")
    assert a.recv(timeout=GUARD) == b"back"
    second.restart(local_username="sec0nd", local_password="p" * 22)
    assert second.local_username == "sec0nd"
    assert second.remote_username is None
    assert second.remote_candidates == []
    signal(a, b)
    connect_both(a, b)
    assert (a.local_username, b.local_username) != old
    a.send(b"after")
    assert b.recv(timeout=GUARD) == b"after"
    selected = [s for s in a.get_stats() if s.selected]
    assert len(selected) == 1
    assert selected[0].state == "succeeded"
    # After the switch the old pair is no longer listed: one pair of those
    # candidates, the new generation's.
    assert old_pair.selected
    key = (old_pair.local, old_pair.remote)
    same = [s for s in first.get_stats() if (s.local, s.remote) == key]
    assert len(same) == 1
    # connect() once more returns at once.
    a.connect(timeout=GUARD)


def test_connect_after_restart_waits_for_the_new_checks(
    pair: tuple[Connection, Connection],
) -> None:
    a, b = pair
    a.restart()
    b.restart()
    a.remote_username, a.remote_password = b.local_username, b.local_password
    # No candidates yet and no peer checks: the new generation cannot be done.
    with pytest.raises(IceTimeoutError):
        a.connect(timeout=0.2)
    a.send(b"old pair")
    assert b.recv(timeout=GUARD) == b"old pair"
    signal(a, b)
    connect_both(a, b)
    a.send(b"new pair")
    assert b.recv(timeout=GUARD) == b"new pair"


def test_a_restart_of_a_restart_before_connect(
    pair: tuple[Connection, Connection],
) -> None:
    a, b = pair
    a.restart()
    first = a.local_username
    a.restart()
    assert a.local_username != first
    b.restart()
    signal(a, b)
    connect_both(a, b)
    a.send(b"second generation")
    assert b.recv(timeout=GUARD) == b"second generation"


def test_no_datagram_lost_across_a_restart_at_1000_per_second(
    pair: tuple[Connection, Connection],
) -> None:
    a, b = pair
    stop = threading.Event()
    sent: list[int] = []

    def sender() -> None:
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            a.send(n.to_bytes(4, "big"))
            sent.append(n)
            n += 1
            next_at += 0.001
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the sender, not a wait for a result

    got: list[int] = []

    def receiver() -> None:
        while True:
            data = b.recv(timeout=GUARD)
            if data == b"end":
                return
            got.append(int.from_bytes(data, "big"))

    threads = [threading.Thread(target=sender), threading.Thread(target=receiver)]
    for t in threads:
        t.start()
    while len(sent) < 300:  # data flowing before the restart
        time.sleep(0.01)
    started = time.monotonic()
    before = len(sent)
    a.restart()
    b.restart()
    signal(a, b)
    connect_both(a, b)
    switched = time.monotonic()
    switched_at = len(sent)
    while len(sent) < switched_at + 300:  # and after it
        time.sleep(0.01)
    stop.set()
    threads[0].join()
    a.send(b"end")
    threads[1].join()
    lost = len(sent) - len(set(got))
    sys.stdout.write(
        f"\nrestart at 1000 datagrams/s: restart() to the new pair selected on "
        f"both sides {1000 * (switched - started):.1f} ms; "
        f"{len(sent)} sent ({before} before), {lost} lost\n"
    )
    assert sorted(set(got)) == sent
    assert lost == 0


# --- the asyncio shim -----------------------------------------------------------


async def aexchange(
    a: syncice.asyncio.Connection, b: syncice.asyncio.Connection
) -> None:
    for x, y in ((a, b), (b, a)):
        y.remote_username = x.local_username
        y.remote_password = x.local_password
        for c in x.local_candidates:
            await y.add_remote_candidate(c)
        await y.add_remote_candidate(None)


@pytest.mark.parametrize("starter", ["controlling", "controlled"])
def test_asyncio_restart(starter: str) -> None:
    async def main() -> None:
        a = syncice.asyncio.Connection(True, local_addresses=LOOPBACK)
        b = syncice.asyncio.Connection(False, local_addresses=LOOPBACK)
        try:
            with pytest.raises(NotConnectedError):
                await a.restart()
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            await aexchange(a, b)
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            first, second = (a, b) if starter == "controlling" else (b, a)
            await first.restart()
            await a.send(b"during")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"during"
            await second.restart()
            assert second.remote_username is None
            await aexchange(a, b)
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            await b.send(b"after")
            assert await asyncio.wait_for(a.recv(), GUARD) == b"after"
            stats = await a.get_stats()
            assert [s.state for s in stats if s.selected] == ["succeeded"]
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


# --- in virtual time ------------------------------------------------------------
#
# The test thread is not seen by the virtual clock: calls that must happen at
# one virtual instant (both sides' connect(), a restart and its signalling)
# run with the clock paused, connect() started as a poll (syncice.testing).


def start_connect(*conns: Connection) -> None:
    for conn in conns:
        with contextlib.suppress(IceTimeoutError):
            conn.connect(timeout=0)


def vt_connect(vt: VirtualTime, a: Connection, b: Connection) -> None:
    with vt.paused():
        start_connect(a, b)
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)


def vt_pair(vt: VirtualTime) -> tuple[Connection, Connection]:
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    a.gather_candidates(timeout=GUARD)
    b.gather_candidates(timeout=GUARD)
    signal(a, b)
    return a, b


def test_consent_holds_on_the_old_pair_through_a_long_restart() -> None:
    """A minute (virtual) between restart() and the new signalling, twice
    the consent timeout: each side's old generation answers the other's
    consent checks, so the old pair carries data all along."""
    with virtual_time() as vt:
        a, b = vt_pair(vt)
        try:
            vt_connect(vt, a, b)
            with vt.paused() as started:
                a.restart()
                b.restart()
            assert vt.wait(60.0, timeout=GUARD) >= started + 60.0
            # The clock stands while a caller reads: the consent answers it
            # reads itself must not be overtaken by the consent timer.
            with vt.paused():
                a.send(b"a minute later")
                assert b.recv(timeout=GUARD) == b"a minute later"
                signal(a, b)
            vt_connect(vt, a, b)
            with vt.paused():
                b.send(b"new pair")
                assert a.recv(timeout=GUARD) == b"new pair"
        finally:
            a.close()
            b.close()


def test_a_restart_recovers_a_connection_whose_checks_failed() -> None:
    with virtual_time() as vt:
        a, b = vt_pair(vt)
        try:
            a.remote_password = "w" * 22  # a signs its checks wrongly
            with vt.paused():
                start_connect(a, b)
            with pytest.raises(NegotiationFailedError, match="no nomination"):
                b.connect(timeout=GUARD)
            with pytest.raises(NegotiationFailedError, match="rejected our checks"):
                a.connect(timeout=GUARD)
            with vt.paused():
                a.restart()
                b.restart()
                signal(a, b)
            vt_connect(vt, a, b)
            a.send(b"recovered")
            assert b.recv(timeout=GUARD) == b"recovered"
        finally:
            a.close()
            b.close()


def test_a_restart_whose_checks_fail_says_so() -> None:
    with virtual_time() as vt:
        a, b = vt_pair(vt)
        try:
            vt_connect(vt, a, b)
            b.restart()
            b.remote_username, b.remote_password = "nobody", "n" * 22
            b.add_remote_candidate(None)
            # No check from the controlling side: the nomination timeout.
            with pytest.raises(NegotiationFailedError, match="no nomination"):
                b.connect(timeout=GUARD)
        finally:
            a.close()
            b.close()


def test_stats_count_each_datagram_once_across_a_restart(
    pair: tuple[Connection, Connection],
) -> None:
    a, b = pair
    for _ in range(5):
        a.send(b"x")
    a.restart()
    b.restart()
    for _ in range(5):
        a.send(b"y")
    a.remote_username, a.remote_password = b.local_username, b.local_password
    for c in b.local_candidates:
        a.add_remote_candidate(c)  # a's new pair has the old one's candidates
    # The checks start: b answers them without a's new credentials, so a
    # may even have its new pair by the time connect() looks; either way the
    # ten datagrams are counted once, though a pair of each generation now
    # has the same candidates.
    with contextlib.suppress(IceTimeoutError):
        a.connect(timeout=0)
    assert sum(s.datagrams_sent for s in a.get_stats()) == 10
    signal(a, b)
    connect_both(a, b)
    a.send(b"z")
    assert sum(s.datagrams_sent for s in a.get_stats()) == 11
    for _ in range(11):
        b.recv(timeout=GUARD)
