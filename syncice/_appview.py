"""What an application can see of a connection: its :class:`ConnectionState`,
its selected pair (:class:`SelectedPair`), a readable ``repr``, and the
agent's events, opt-in (:class:`EventBox`), for both facades.

**States.** :class:`ConnectionState` is computed from the facade's phase
(:class:`~syncice._lifecycle.Phase`) and, once connected, whether ICE has
nothing more to do:

=============  ================================================================
state          when
=============  ================================================================
``new``        ``NEW``: built, gathering not started; or ``GATHERED``:
               gathering done, :meth:`~syncice.Connection.connect` not called
``gathering``  ``GATHERING``: gathering under way, no checks yet
``checking``   ``CONNECTING``: checks under way (gathering may still run)
``connected``  ``CONNECTED``: a pair selected on every component, but local
               gathering still runs or the peer has not signalled
               end-of-candidates (more pairs may come)
``completed``  ``CONNECTED``, local gathering done and the peer's
               end-of-candidates received
``failed``     ``FAILED``: ICE failed (the connection is still open)
``closed``     ``CLOSED``: closed locally, consent expired, relay lost
=============  ================================================================

**Events.** By default (``events=None``) a connection's events are
aioice's: :meth:`~syncice.Connection.get_event` returns only
:class:`~syncice.events.ConnectionClosed`. With ``events="all"`` it also
returns every :class:`~syncice.events.IceEvent` the agent emits, in the
order emitted, then :class:`~syncice.events.ConnectionClosed` last:
whatever kinds the agent has (a new kind flows through with no change
here). The queue is bounded (:data:`EVENT_QUEUE_SIZE`), since a peer can
cause events (every pair it makes us check moves through several states):
when it is full, the oldest :class:`~syncice.events.PairStateChanged` goes
to make room, or, when none is queued, the oldest event; each is counted
in :attr:`EventBox.dropped` (``Connection.event_drops``).
:class:`~syncice.events.ConnectionClosed` always gets in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._checklist import PairStats
from ._lifecycle import Phase
from ._mailbox import Mailbox
from .candidate import Candidate
from .events import ConnectionEvent, IceEvent, PairStateChanged
from .exceptions import ComponentError

if TYPE_CHECKING:
    from ._routes import Route

__all__ = [
    "EVENT_QUEUE_SIZE",
    "AnyEvent",
    "ConnectionState",
    "EventBox",
    "SelectedPair",
    "check_events",
    "connection_state",
    "describe",
    "selected_from",
]

#: An event :meth:`syncice.Connection.get_event` may return.
AnyEvent = ConnectionEvent | IceEvent
#: How many events wait at most for ``get_event()`` (see the module).
EVENT_QUEUE_SIZE = 1024


class ConnectionState(str, enum.Enum):
    """What :attr:`syncice.Connection.state` says (the table of
    :mod:`syncice._appview`); compares equal to its string value."""

    NEW = "new"
    GATHERING = "gathering"
    CHECKING = "checking"
    CONNECTED = "connected"
    COMPLETED = "completed"
    FAILED = "failed"
    CLOSED = "closed"

    def __str__(self) -> str:
        return str(self.value)


_BY_PHASE = {
    Phase.NEW: ConnectionState.NEW,
    Phase.GATHERING: ConnectionState.GATHERING,
    Phase.GATHERED: ConnectionState.NEW,
    Phase.CONNECTING: ConnectionState.CHECKING,
    Phase.FAILED: ConnectionState.FAILED,
    Phase.CLOSED: ConnectionState.CLOSED,
}


def connection_state(phase: Phase, settled: bool) -> ConnectionState:
    """The state of a connection in ``phase``; ``settled``: local gathering
    is done and the peer said end-of-candidates."""
    if phase is Phase.CONNECTED:
        return ConnectionState.COMPLETED if settled else ConnectionState.CONNECTED
    # A phase this table does not know yet counts as checking.
    return _BY_PHASE.get(phase, ConnectionState.CHECKING)


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectedPair:
    """The pair that carries a component's data, from
    :meth:`syncice.Connection.selected_pair`.

    :ivar component: the component.
    :ivar local: the local candidate (peer-reflexive when the peer saw us
        at another address than any we gathered).
    :ivar remote: the remote candidate.
    :ivar stats: the pair's counters when asked (:meth:`get_stats`'s entry).
    """

    component: int
    local: Candidate
    remote: Candidate
    stats: PairStats


def selected_from(stats: list[PairStats], component: int) -> SelectedPair | None:
    """The selected pair of ``component`` in ``stats``, or ``None``."""
    for entry in stats:
        if entry.component == component and entry.selected:
            return SelectedPair(
                component=component, local=entry.local, remote=entry.remote, stats=entry
            )
    return None


def check_component(component: object, components: int) -> int:
    """``component``, checked.

    :raises TypeError: not an ``int``.
    :raises ComponentError: not one of ``1..components``.
    """
    if isinstance(component, bool) or not isinstance(component, int):
        raise TypeError(f"component must be an int, not {type(component).__name__}")
    if not 1 <= component <= components:
        raise ComponentError(f"component must be 1 to {components}, not {component}")
    return component


def check_events(events: object) -> bool:
    """Whether ``events=`` asks for every event (``"all"``) or aioice's
    (``None``).

    :raises TypeError: neither ``None`` nor a ``str``.
    :raises ValueError: a ``str`` other than ``"all"``.
    """
    if events is None:
        return False
    if not isinstance(events, str):
        raise TypeError(f'events must be None or "all", not {type(events).__name__}')
    if events != "all":
        raise ValueError(f'events must be None or "all", not {events!r}')
    return True


def _where(candidate: Candidate) -> str:
    return f"{candidate.type} {candidate.host}:{candidate.port}"


def describe(
    name: str,
    controlling: bool,
    state: ConnectionState,
    components: int,
    routes: dict[int, Route],
) -> str:
    """A connection's ``repr``: its name (as its log lines start), role,
    state, component count and the selected pair of component 1, as in
    ``Connection(3) controlling completed components=1 selected=host
    192.0.2.1:5000 -> srflx 198.51.100.7:6000``."""
    role = "controlling" if controlling else "controlled"
    text = f"{name} {role} {state.value} components={components}"
    route = routes.get(1)
    key = None if route is None else route.key
    if key is not None:
        text += f" selected={_where(key[1])} -> {_where(key[2])}"
    return text


class EventBox(Mailbox[ConnectionEvent | IceEvent | None]):
    """The events of a connection for ``get_event()`` (see the module).

    :param everything: deliver every agent event (``events="all"``), not
        only :class:`~syncice.events.ConnectionClosed`.
    :param maxlen: at most this many events wait.
    """

    __slots__ = ("everything",)

    def __init__(self, everything: bool, maxlen: int = EVENT_QUEUE_SIZE) -> None:
        super().__init__(maxlen)
        #: Whether agent events are delivered (read by the worker).
        self.everything = everything

    def _queue(self, item: AnyEvent | None) -> None:
        items = self._items
        if self._maxlen is not None and len(items) >= self._maxlen:
            victim = next(
                (i for i, e in enumerate(items) if isinstance(e, PairStateChanged)), 0
            )
            del items[victim]
            self.dropped += 1
        super()._queue(item)
