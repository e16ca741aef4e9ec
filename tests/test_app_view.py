"""What an application can see of a connection (issue 15, point 5), in both
facades: ``with`` / ``async with``, :attr:`state`, ``repr``,
:meth:`selected_pair`, and the agent's events with ``events="all"``
(bounded: the oldest pair-state events go first, counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

import syncice.asyncio as shim
from syncice import (
    Candidate,
    ComponentError,
    Connection,
    ConnectionClosed,
    IceConfig,
    IceTimeoutError,
    NegotiationFailedError,
)
from syncice._appview import (
    EVENT_QUEUE_SIZE,
    ConnectionState,
    EventBox,
    SelectedPair,
    check_events,
    connection_state,
)
from syncice._lifecycle import Phase
from syncice.candidate import candidate_priority
from syncice.events import (
    CandidateGathered,
    GatheringCompleted,
    IceCompleted,
    IceEvent,
    PairStateChanged,
    RoleChanged,
    SelectedPairChanged,
)
from tests.conftest import exchange_candidates, spawn

GUARD = 10.0
LOOPBACK = ["127.0.0.1"]


def state_of(conn: Connection | shim.Connection) -> ConnectionState:
    """``conn.state``, read anew (a call: a type checker does not narrow it)."""
    return conn.state


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def connected(a: Connection, b: Connection) -> None:
    controlled = spawn(lambda: b.connect(timeout=GUARD))
    a.connect(timeout=GUARD)
    controlled.result(GUARD)


# --- states ------------------------------------------------------------------


def test_every_phase_has_a_state() -> None:
    table = {
        phase: (connection_state(phase, False), connection_state(phase, True))
        for phase in Phase
    }
    S = ConnectionState
    assert table == {
        Phase.NEW: (S.NEW, S.NEW),
        Phase.GATHERING: (S.GATHERING, S.GATHERING),
        Phase.GATHERED: (S.NEW, S.NEW),
        Phase.CONNECTING: (S.CHECKING, S.CHECKING),
        Phase.CONNECTED: (S.CONNECTED, S.COMPLETED),
        Phase.FAILED: (S.FAILED, S.FAILED),
        Phase.CLOSED: (S.CLOSED, S.CLOSED),
    }
    assert {s.value for s in S} == {
        "new",
        "gathering",
        "checking",
        "connected",
        "completed",
        "failed",
        "closed",
    }
    assert str(S.CLOSED) == "closed"
    assert S.CHECKING.value == "checking"


def test_a_connection_walks_its_states() -> None:
    # a's STUN server never answers (nothing listens at port 9): gathering
    # runs for gather_timeout, which the first candidate does not wait for.
    config = IceConfig(gather_timeout=2.0)
    a = Connection(
        True, local_addresses=LOOPBACK, stun_server=("127.0.0.1", 9), config=config
    )
    b = Connection(False, local_addresses=LOOPBACK)
    seen: list[ConnectionState] = []
    with a, b:
        assert state_of(a) is ConnectionState.NEW
        a.gather_candidates(on_candidate=lambda _: seen.append(a.state))
        assert seen[0] is ConnectionState.GATHERING  # the host candidate
        assert state_of(a) is ConnectionState.NEW  # gathered, not connecting
        b.gather_candidates(timeout=GUARD)
        for x, y in ((a, b), (b, a)):
            for candidate in y.local_candidates:
                x.add_remote_candidate(candidate)
            x.remote_username, x.remote_password = y.local_username, y.local_password
        with pytest.raises(IceTimeoutError):
            b.connect(timeout=0)  # the checks start, and go on
        assert state_of(b) is ConnectionState.CHECKING
        controlled = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        controlled.result(GUARD)
        # No end-of-candidates from the peer yet: more pairs may come.
        assert state_of(a) is ConnectionState.CONNECTED
        a.add_remote_candidate(None)
        assert state_of(a) is ConnectionState.COMPLETED
    assert state_of(a) is ConnectionState.CLOSED
    assert state_of(b) is ConnectionState.CLOSED


def test_a_failed_connection_says_failed() -> None:
    config = IceConfig(rto=0.05, max_sends=2, final_wait=1)
    with Connection(True, local_addresses=LOOPBACK, config=config) as conn:
        conn.gather_candidates(timeout=GUARD)
        conn.add_remote_candidate(
            Candidate(
                foundation="x",
                component=1,
                transport="udp",
                priority=candidate_priority(1, "host", 65535),
                host="127.0.0.1",
                port=9,  # discard: nothing answers
                type="host",
            )
        )
        conn.add_remote_candidate(None)
        conn.remote_username, conn.remote_password = "peer", "p" * 22
        with pytest.raises(NegotiationFailedError):
            conn.connect(timeout=GUARD)
        assert state_of(conn) is ConnectionState.FAILED
        assert "failed" in repr(conn)


# --- repr, context managers, selected_pair -----------------------------------


def test_repr_shows_role_state_components_and_the_selected_pair() -> None:
    a = Connection(True, components=2, local_addresses=LOOPBACK)
    b = Connection(False, components=2, local_addresses=LOOPBACK)
    with a, b:
        name = a._core.name
        assert repr(a) == f"{name} controlling new components=2"
        exchange_candidates(a, b)
        connected(a, b)
        pair = a.selected_pair()
        assert pair is not None
        local, remote = pair.local, pair.remote
        assert repr(a) == (
            f"{name} controlling completed components=2 selected="
            f"{local.type} {local.host}:{local.port} -> "
            f"{remote.type} {remote.host}:{remote.port}"
        )
        assert repr(b).startswith(f"{b._core.name} controlled completed")
    assert repr(a) == f"{name} controlling closed components=2"


def test_repr_works_when_the_constructor_raised() -> None:
    with pytest.raises(ValueError, match="events"):
        Connection(True, events="some")
    conn = Connection.__new__(Connection)
    conn._name = "Connection(?)"
    assert repr(conn) == "Connection(?)"


def test_selected_pair_has_the_candidates_and_the_stats() -> None:
    a = Connection(True, components=2, local_addresses=LOOPBACK)
    b = Connection(False, components=2, local_addresses=LOOPBACK)
    with a, b:
        assert a.selected_pair() is None  # before gathering
        exchange_candidates(a, b)
        assert a.selected_pair(2) is None
        connected(a, b)
        a.sendto(b"two", 2)
        assert b.recvfrom(timeout=GUARD) == (b"two", 2)
        pair = a.selected_pair(2)
        assert isinstance(pair, SelectedPair)
        [stats] = [s for s in a.get_stats() if s.component == 2 and s.selected]
        assert pair.component == 2
        assert (pair.local, pair.remote) == (stats.local, stats.remote)
        assert pair.stats.selected
        assert pair.stats.datagrams_sent == 1
        assert pair.remote in b.local_candidates or pair.remote.type == "prflx"
        with pytest.raises(dataclasses.FrozenInstanceError):
            pair.component = 1  # type: ignore[misc]
        with pytest.raises(ComponentError):
            a.selected_pair(3)
        with pytest.raises(TypeError):
            a.selected_pair("1")  # type: ignore[arg-type]
    assert a.selected_pair() is None  # closed: no pair any more


def test_with_closes_on_an_exception_too() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)

    def use() -> None:
        with conn as same:
            assert same is conn
            conn.gather_candidates(timeout=GUARD)
            raise KeyError("out")

    with pytest.raises(KeyError):
        use()
    assert state_of(conn) is ConnectionState.CLOSED
    assert conn.get_event(timeout=GUARD) == ConnectionClosed()


# --- events ------------------------------------------------------------------


def test_check_events() -> None:
    assert check_events(None) is False
    assert check_events("all") is True
    with pytest.raises(ValueError, match="'everything'"):
        check_events("everything")
    with pytest.raises(TypeError):
        check_events(True)
    with pytest.raises(TypeError):
        shim.Connection(True, events=1)  # type: ignore[arg-type]


def test_by_default_only_connection_closed_comes() -> None:
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    with a, b:
        exchange_candidates(a, b)
        connected(a, b)
    assert a.get_event(timeout=GUARD) == ConnectionClosed()
    assert a.get_event(timeout=GUARD) is None


def kinds(events: Sequence[object]) -> list[type]:
    """The types of ``events``, runs of one type counted once."""
    out: list[type] = []
    for event in events:
        if not out or out[-1] is not type(event):
            out.append(type(event))
    return out


def drain(conn: Connection) -> list[object]:
    events: list[object] = []
    while (event := conn.get_event(timeout=GUARD)) is not None:
        events.append(event)
    return events


def test_events_all_gives_every_agent_event_in_order_then_closed() -> None:
    a = Connection(True, local_addresses=LOOPBACK, events="all")
    b = Connection(False, local_addresses=LOOPBACK, events="all")
    with a, b:
        exchange_candidates(a, b)
        connected(a, b)
    events = drain(a)
    assert kinds(events)[:2] == [CandidateGathered, GatheringCompleted]
    assert events[0] == CandidateGathered(candidate=a.local_candidates[0])
    assert isinstance(events[-1], ConnectionClosed)
    middle = events[2:-1]
    assert {type(e) for e in middle} == {
        PairStateChanged,
        SelectedPairChanged,
        IceCompleted,
    }
    selected = [e for e in middle if isinstance(e, SelectedPairChanged)]
    assert len(selected) == 1
    done = middle.index(next(e for e in middle if isinstance(e, IceCompleted)))
    assert middle.index(selected[0]) < done
    states = [
        (e.old_state, e.new_state) for e in middle if isinstance(e, PairStateChanged)
    ]
    assert ("in-progress", "succeeded") in states
    assert a.event_drops == 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Invented(IceEvent):
    """An event kind this module knows nothing of (a restart's, say)."""

    what: str


def test_any_agent_event_flows_through() -> None:
    with Connection(True, local_addresses=LOOPBACK, events="all") as conn:
        conn.gather_candidates(timeout=GUARD)
        session, worker = conn._core.session, conn._core.worker
        assert session is not None
        assert worker is not None
        worker.submit(lambda: session._dispatch(Invented(what="new"))).result(GUARD)
    events = drain(conn)
    assert events[-2:] == [Invented(what="new"), ConnectionClosed()]


def test_a_role_change_is_an_event() -> None:
    with Connection(True, local_addresses=LOOPBACK, events="all") as conn:
        conn.gather_candidates(timeout=GUARD)
        conn.ice_controlling = False  # applied by the worker: an event
    assert RoleChanged(controlling=False) in drain(conn)


def pair_event(n: int) -> PairStateChanged:
    c = Candidate("f", 1, "udp", 1, "192.0.2.1", n, "host")
    return PairStateChanged(
        component=1, local=c, remote=c, old_state="waiting", new_state="in-progress"
    )


def test_a_full_event_queue_drops_the_oldest_pair_state_events_first() -> None:
    box = EventBox(True, maxlen=3)
    done = IceCompleted()
    box.put(pair_event(1))
    box.put(done)
    box.put(pair_event(2))
    box.put(pair_event(3))  # full: pair_event(1) goes
    assert box.dropped == 1
    box.put(ConnectionClosed())  # pair_event(2) goes: the end always gets in
    assert box.dropped == 2
    got = [box.get_nowait()[1] for _ in range(3)]
    assert got == [done, pair_event(3), ConnectionClosed()]
    # With no pair-state event queued, the oldest goes.
    box = EventBox(True, maxlen=2)
    for event in (GatheringCompleted(), done, ConnectionClosed()):
        box.put(event)
    assert box.dropped == 1
    assert [box.get_nowait()[1] for _ in range(2)] == [done, ConnectionClosed()]
    assert EventBox(False)._maxlen == EVENT_QUEUE_SIZE


def test_an_untaken_flood_of_events_stays_bounded() -> None:
    box = EventBox(True)
    for n in range(3 * EVENT_QUEUE_SIZE):
        box.put(pair_event(n % 65536))
    box.put(IceCompleted())
    assert len(box) == EVENT_QUEUE_SIZE
    assert box.dropped == 2 * EVENT_QUEUE_SIZE + 1
    items = [box.get_nowait()[1] for _ in range(EVENT_QUEUE_SIZE)]
    assert items[-1] == IceCompleted()
    assert items[0] == pair_event(2 * EVENT_QUEUE_SIZE + 1)  # the newest kept


# --- the asyncio shim --------------------------------------------------------


def test_the_shim_shows_the_same() -> None:
    async def main() -> None:
        a = shim.Connection(True, local_addresses=LOOPBACK, events="all")
        b = shim.Connection(False, local_addresses=LOOPBACK)
        async with a, b:
            assert state_of(a) is ConnectionState.NEW
            assert repr(a) == f"{a._core.name} controlling new components=1"
            assert await a.selected_pair() is None
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            for x, y in ((a, b), (b, a)):
                for candidate in y.local_candidates:
                    await x.add_remote_candidate(candidate)
                await x.add_remote_candidate(None)
                x.remote_username = y.local_username
                x.remote_password = y.local_password
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            assert state_of(a) is ConnectionState.COMPLETED
            pair = await a.selected_pair()
            assert pair is not None
            assert pair.stats.selected
            assert "selected=host 127.0.0.1:" in repr(a)
            with pytest.raises(ComponentError):
                await a.selected_pair(2)
        assert state_of(a) is ConnectionState.CLOSED
        events = []
        while (event := await asyncio.wait_for(a.get_event(), GUARD)) is not None:
            events.append(event)
        assert kinds(events)[:2] == [CandidateGathered, GatheringCompleted]
        assert isinstance(events[-1], ConnectionClosed)
        assert any(isinstance(e, SelectedPairChanged) for e in events)
        assert a.event_drops == 0
        # b kept aioice's events.
        assert await asyncio.wait_for(b.get_event(), GUARD) == ConnectionClosed()
        assert await asyncio.wait_for(b.get_event(), GUARD) is None

    run(main())
