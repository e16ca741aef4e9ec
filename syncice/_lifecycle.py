"""The life cycle of a connection, as a table (h11's ``_state.py``).

A connection is in one :class:`Phase` at a time, and moves only along
:data:`TRANSITIONS`, through :meth:`Lifecycle.advance`, the one place that
changes it:

- ``NEW``: built; the agent is still the caller's.
- ``GATHERING``: a caller binds the sockets and resolves the servers
  (:mod:`syncice._sockets`), then hands the agent to the worker; back to
  ``NEW`` if that failed (the next ``gather_candidates()`` tries again).
- ``GATHERED``: the worker saw ``GatheringCompleted``.
- ``CONNECTING``: ``connect()`` started the checks, perhaps while
  gathering still runs (RFC 8838: from ``GATHERING``; ``GatheringCompleted``
  then leaves the phase as it is).
- ``CONNECTED``: the worker saw ``IceCompleted``, or ``set_selected_pair()``
  forced a pair.
- ``FAILED``: the worker saw ``IceFailed`` (the connection stays open:
  ``close()`` still releases it); also from ``CONNECTED``, when the checks
  of an ICE restart failed. An ICE restart leaves the phase as it is until
  the new checks succeed (``CONNECTED``) or fail.
- ``CLOSED``: ``close()``, a consent expiry, a lost relay or an internal
  error. It is final: an outcome the worker reports after it (computed
  before it saw the close) is ignored, which :meth:`Lifecycle.advance`
  says by returning ``False``.

Any other move is a bug of ours: :meth:`Lifecycle.advance` raises
:exc:`LifecycleError`, which on the worker closes the connection with
reason ``"internal error"``.
"""

from __future__ import annotations

import enum
import threading

__all__ = ["TRANSITIONS", "Lifecycle", "LifecycleError", "Phase"]


class Phase(enum.Enum):
    """Where a connection is in its life (see the module's docstring)."""

    NEW = "new"
    GATHERING = "gathering"
    GATHERED = "gathered"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


_ = Phase
#: Every move allowed, from each phase. ``GATHERED`` may see the agent's
#: outcome before ``connect()`` moved it (a controlled side nominated early).
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    _.NEW: frozenset({_.GATHERING, _.CLOSED}),
    _.GATHERING: frozenset({_.NEW, _.GATHERED, _.CONNECTING, _.CLOSED}),
    _.GATHERED: frozenset({_.CONNECTING, _.CONNECTED, _.FAILED, _.CLOSED}),
    _.CONNECTING: frozenset({_.CONNECTED, _.FAILED, _.CLOSED}),
    _.CONNECTED: frozenset({_.FAILED, _.CLOSED}),
    _.FAILED: frozenset({_.CONNECTED, _.CLOSED}),
    _.CLOSED: frozenset(),
}
del _


class LifecycleError(RuntimeError):
    """A move that :data:`TRANSITIONS` does not allow: an internal error."""


class Lifecycle:
    """The phase of one connection, changed by any thread under its lock."""

    __slots__ = ("_lock", "phase")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The current phase: read without the lock (one assignment changes it).
        self.phase = Phase.NEW

    def advance(self, to: Phase, *, expect: Phase | None = None) -> bool:
        """Move to ``to``.

        :param expect: move only from this phase (else return ``False``):
            for a move that another thread may have made first.
        :returns: whether the phase changed; ``False`` once ``CLOSED``.
        :raises LifecycleError: if :data:`TRANSITIONS` does not allow it.
        """
        with self._lock:
            if expect is not None and self.phase is not expect:
                return False
            return self._move(to)

    def reach(self, to: Phase) -> bool:
        """:meth:`advance` to ``to`` unless already there: for a move that
        two threads may both make (the worker's ``IceCompleted`` and a
        caller's ``set_selected_pair()``)."""
        with self._lock:
            return self.phase is not to and self._move(to)

    def _move(self, to: Phase) -> bool:
        phase = self.phase
        if phase is Phase.CLOSED:
            return False
        if to not in TRANSITIONS[phase]:
            raise LifecycleError(f"connection life cycle: {phase.name} -> {to.name}")
        self.phase = to
        return True

    def reset_after_fork(self) -> None:
        """In a child after ``fork()``: a new lock, and ``CLOSED``."""
        self._lock = threading.Lock()
        self.phase = Phase.CLOSED
