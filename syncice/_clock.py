"""Clocks: the only source of time for the worker and, through it, the protocols.

Protocol code never reads time itself: the worker reads :meth:`Clock.now` and
passes ``now`` in (STYLE.md §3). Production uses :class:`MonotonicClock`; tests
use :class:`FakeClock`, whose time moves only when told to, or, with an
``autojump_threshold``, when the worker has been idle for that long in real time
with a timer pending (the rule of trio's ``MockClock``). A 30-second protocol
timer then fires after a few milliseconds of real time, yet never before the
datagrams already in flight have been handled.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "MonotonicClock"]


class Clock(Protocol):
    """What the worker needs from a clock."""

    def now(self) -> float:
        """The current time.

        :returns: monotonic seconds since an arbitrary origin; never decreases.
        """
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    __slots__ = ()

    def now(self) -> float:
        """The current time.

        :returns: :func:`time.monotonic`.
        """
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


def _check_threshold(value: float | None) -> float | None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"autojump_threshold must be >= 0 and finite, not {value!r}")
    return value


class FakeClock:
    """A clock that moves only when told to, for tests.

    It is safe to use from any thread: the worker reads it and jumps it, test
    threads read and advance it. A :class:`~syncice._worker.Worker` built on a
    fake clock is woken whenever the clock moves or the threshold changes, so
    timers that fall due fire at once.

    :param start: the initial time, in seconds.
    :param autojump_threshold: when not ``None``, a worker on this clock that
        has waited that many *real* seconds with nothing to do but a pending
        timer jumps the clock to that timer's deadline. Tests use ``0.05``, or
        ``0`` to jump as soon as the worker is idle.
    :raises ValueError: ``start`` is not finite, or the threshold is negative
        or not finite.
    """

    __slots__ = ("_autojump_threshold", "_epoch", "_listeners", "_lock", "_now")

    def __init__(
        self, start: float = 0.0, *, autojump_threshold: float | None = None
    ) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, not {start!r}")
        self._lock = threading.Lock()
        self._now = float(start)
        self._autojump_threshold = _check_threshold(autojump_threshold)
        # Bumped by every change of the threshold: a worker that saw the old
        # one may not jump on its strength (see _autojump).
        self._epoch = 0
        # Replaced, never mutated, so that readers need no lock.
        self._listeners: tuple[Callable[[], None], ...] = ()

    def __repr__(self) -> str:
        return (
            f"FakeClock(now={self._now!r}, "
            f"autojump_threshold={self._autojump_threshold!r})"
        )

    def now(self) -> float:
        """The current fake time.

        :returns: seconds; changes only through :meth:`advance`,
            :meth:`jump_to` and autojumps.
        """
        return self._now

    @property
    def autojump_threshold(self) -> float | None:
        """Real seconds of worker idleness after which the clock jumps to the
        next deadline, or ``None`` to never jump.

        :raises ValueError: on assignment of a negative or non-finite value.
        """
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, value: float | None) -> None:
        value = _check_threshold(value)
        with self._lock:
            self._autojump_threshold = value
            self._epoch += 1
        # Once this returns, no jump decided under the old threshold happens:
        # with ``None``, the clock stands still from here on.
        self._notify()

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        :param seconds: how far; ``0`` is allowed.
        :raises ValueError: ``seconds`` is negative or not finite.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cannot advance by {seconds!r} seconds")
        with self._lock:
            self._now += seconds
        self._notify()

    def jump_to(self, t: float) -> None:
        """Set the clock to ``t``, which may not be in the past.

        :param t: the new time, in seconds.
        :raises ValueError: ``t`` is earlier than :meth:`now`, or not finite.
        """
        if not math.isfinite(t):
            raise ValueError(f"cannot jump to {t!r}")
        with self._lock:
            if t < self._now:
                raise ValueError(f"cannot jump back from {self._now!r} to {t!r}")
            self._now = float(t)
        self._notify()

    def _autojump_plan(self) -> tuple[float | None, int]:
        """For the worker, before it waits: the threshold, and the epoch to
        hand back to :meth:`_autojump`."""
        with self._lock:
            return self._autojump_threshold, self._epoch

    def _autojump(self, t: float, epoch: int) -> bool:
        """The worker's jump: to ``t`` if that is ahead and the threshold has
        not changed since :meth:`_autojump_plan` gave ``epoch``.

        :returns: whether the clock moved.
        """
        with self._lock:
            if epoch != self._epoch or t <= self._now:
                return False
            self._now = float(t)
        self._notify()
        return True

    def _add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from the moving thread) whenever the clock moves."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def _remove_listener(self, listener: Callable[[], None]) -> None:
        """Undo :meth:`_add_listener`; no error if ``listener`` is not there."""
        with self._lock:
            self._listeners = tuple(f for f in self._listeners if f != listener)

    def _notify(self) -> None:
        # Outside the lock: a listener may read the clock.
        for listener in self._listeners:
            listener()
