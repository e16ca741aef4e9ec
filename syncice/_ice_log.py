"""The agent's events and log lines: :class:`EventLog`.

Every event is queued by :meth:`EventLog.emit`, which also logs it on the
``syncice.ice`` logger (completion, failure, role switches, consent expiry
and relay loss at INFO, the rest at DEBUG), each line prefixed with the
agent's name; :meth:`EventLog.debug` covers what is not an event (remote
candidates, nominations, check failures). Passwords are never logged.

The small formatters here (:func:`status`, :func:`times`, :func:`plural`)
are shared by the log lines and the failure reasons.
"""

from __future__ import annotations

import logging

from .candidate import Candidate
from .events import (
    CandidateGathered,
    ConsentExpired,
    IceCompleted,
    IceEvent,
    IceFailed,
    PairStateChanged,
    RelayLost,
    RestartCompleted,
    RoleChanged,
    SelectedPairChanged,
)

__all__ = ["EventLog", "describe", "plural", "status", "times"]

#: The logger of the agent (and of all its parts).
logger = logging.getLogger("syncice.ice")

#: Reason phrases of the error codes a check may get (RFC 8489 §14.8, RFC 8445
#: §16.2): the peer's own phrase is not repeated, as it could say anything.
ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthenticated",
    420: "Unknown Attribute",
    487: "Role Conflict",
    500: "Server Error",
}

#: Events logged at INFO; the others at DEBUG.
_INFO_EVENTS = (
    IceCompleted,
    IceFailed,
    RoleChanged,
    ConsentExpired,
    RelayLost,
    RestartCompleted,
)


def status(code: int) -> str:
    """An error code with its reason phrase: ``"401 Unauthenticated"``."""
    name = ERROR_NAMES.get(code)
    return str(code) if name is None else f"{code} {name}"


def times(count: int) -> str:
    """``"once"``, or ``"3 times"``."""
    return "once" if count == 1 else f"{count} times"


def plural(count: int, noun: str) -> str:
    """``"1 pair"``, ``"2 pairs"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _where(candidate: Candidate) -> str:
    return f"{candidate.type} {candidate.host}:{candidate.port}"


def describe(event: IceEvent) -> tuple[str, tuple[object, ...]]:
    """The log line of an event: a format and its arguments."""
    if isinstance(event, CandidateGathered):
        return "local candidate %s", (event.candidate.to_sdp(),)
    if isinstance(event, PairStateChanged):
        return "pair %s -> %s (component %d): %s -> %s", (
            _where(event.local),
            _where(event.remote),
            event.component,
            event.old_state,
            event.new_state,
        )
    if isinstance(event, SelectedPairChanged):
        return "selected pair %s -> %s (component %d)", (
            _where(event.local),
            _where(event.remote),
            event.component,
        )
    if isinstance(event, RoleChanged):
        role = "controlling" if event.controlling else "controlled"
        return "role changed: now %s", (role,)
    if isinstance(event, IceFailed):
        return "ICE failed: %s", (event.reason,)
    if isinstance(event, ConsentExpired):
        return "consent expired on component %d", (event.component,)
    if isinstance(event, RelayLost):
        return "TURN relay of component %d lost: %s", (event.component, event.reason)
    if isinstance(event, IceCompleted):
        return "ICE completed", ()
    if isinstance(event, RestartCompleted):
        return "ICE restart completed: generation %d", (event.generation,)
    # The one kind left: GatheringCompleted (a new kind needs a line above).
    return "gathering completed", ()


class EventLog:
    """The queue of an agent's events, and its log lines.

    :param name: the prefix of every log line (the agent's name).
    """

    __slots__ = ("_events", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        # A list: a few at a time, drained at once (a deque costs 760 bytes).
        self._events: list[IceEvent] = []

    def emit(self, event: IceEvent) -> None:
        """Queue an event, and log it: every event goes through here once."""
        self._events.append(event)
        level = logging.INFO if isinstance(event, _INFO_EVENTS) else logging.DEBUG
        if logger.isEnabledFor(level):
            text, args = describe(event)
            logger.log(level, "%s " + text, self.name, *args)

    def pop(self) -> IceEvent | None:
        """The oldest queued event, or ``None``."""
        return self._events.pop(0) if self._events else None

    def debug(self, text: str, *args: object) -> None:
        """A DEBUG line about something that is not an event."""
        logger.debug("%s " + text, self.name, *args)

    def info(self, text: str, *args: object) -> None:
        """An INFO line about something that is not an event."""
        logger.info("%s " + text, self.name, *args)

    def warning(self, text: str, *args: object) -> None:
        """A WARNING line (a TURN allocation ended)."""
        logger.warning("%s " + text, self.name, *args)
