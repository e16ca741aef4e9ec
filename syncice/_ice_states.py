"""The agent's life cycle as data: :class:`IceState` and its transition table.

In the manner of h11's ``_state.py``: the states are an :class:`enum.Enum`
(with :class:`str` values, so ``agent.state == "new"`` still holds), the
allowed moves are one table, :data:`ICE_TRANSITIONS`, and every change of
state goes through :meth:`StateMachine.to`, which checks the table. A move the
table does not allow is a bug in syncice, not a fault of the peer or the
caller: it raises :class:`IllegalTransitionError`, a :class:`RuntimeError`.

The check-list states of pairs (:class:`~syncice._checklist.PairState`) have
their own table in ``_checklist.py``, checked the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["ICE_TRANSITIONS", "IceState", "IllegalTransitionError", "StateMachine"]


class IceState(str, enum.Enum):
    """The agent's life cycle (compares equal to its string value)."""

    NEW = "new"
    CHECKING = "checking"
    COMPLETED = "completed"
    FAILED = "failed"
    CLOSED = "closed"

    def __str__(self) -> str:
        return str(self.value)


class IllegalTransitionError(RuntimeError):
    """A state machine was told to make a move its table does not allow: an
    internal error of syncice (never caused by network input)."""


#: Allowed moves of :class:`IceState`: ``connect()`` starts the checks; a pair
#: chosen by hand (``set_selected_pair``) completes at once; checks complete
#: or fail; an ICE restart (``restart()``, RFC 8445 §9) starts a new
#: generation, back in ``NEW``, from any state but ``NEW`` and ``CLOSED``;
#: ``close()`` (or a lost consent or relay) ends every state.
ICE_TRANSITIONS: Mapping[IceState, frozenset[IceState]] = {
    IceState.NEW: frozenset({IceState.CHECKING, IceState.COMPLETED, IceState.CLOSED}),
    IceState.CHECKING: frozenset(
        {IceState.NEW, IceState.COMPLETED, IceState.FAILED, IceState.CLOSED}
    ),
    IceState.COMPLETED: frozenset({IceState.NEW, IceState.CLOSED}),
    IceState.FAILED: frozenset({IceState.NEW, IceState.CLOSED}),
    IceState.CLOSED: frozenset(),
}

S = TypeVar("S", bound=enum.Enum)


class StateMachine(Generic[S]):
    """A current state and the table of the moves allowed from each state.

    :param initial: the state to start in.
    :param table: for each state, the set of states it may move to.
    """

    __slots__ = ("state", "table")

    def __init__(self, initial: S, table: Mapping[S, frozenset[S]]) -> None:
        self.state = initial
        self.table = table

    def to(self, new: S) -> S:
        """Move to ``new``; return the state it left.

        :raises IllegalTransitionError: if the table allows no such move
            (staying in the same state is not a move either).
        """
        old = self.state
        if new not in self.table[old]:
            raise IllegalTransitionError(f"{old.value} -> {new.value} is not allowed")
        self.state = new
        return old
