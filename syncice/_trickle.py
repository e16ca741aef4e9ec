"""Local trickle (RFC 8838): local candidates reach callers as they are
gathered, and ``connect()`` may start before gathering ends.

- :class:`CandidateFeed` is the log of a connection's local candidates,
  filled by the worker (:mod:`syncice._session`) as the agent gathers them
  (host candidates first, then server-reflexive and relay ones as their
  servers answer) and closed by end-of-candidates when gathering
  completes, or by an error when the connection closes first. It keeps
  every candidate, so any number of readers follow it, each from the
  first candidate at its own pace (:func:`follow`): a
  ``gather_candidates(on_candidate=...)`` or ``gather_candidates_iter()``
  of the blocking API, an ``async for`` of the asyncio shim, one started
  after gathering ended.
  It holds at most what the agent gathered, which our own sockets and
  servers bound (a peer cannot add to it).
- :class:`PendingConnect` is a ``connect()`` made while the gathering job
  still binds the sockets (in another thread, or the shim's executor):
  the job starts it once it has handed the agent to the worker, after the
  host candidates, so the checks start with what is there and later local
  candidates join the check list as they arrive (the agent pairs them,
  RFC 8838 §12). If the job fails, so does the connect.

The feed's lock guards its list, end and waiters, held for a few
statements by the worker (adding) or a caller (waiting, withdrawing),
never across a call out: waiters are resolved with the
``set_running_or_notify_cancel`` protocol of :mod:`syncice._mailbox`, so
that a reader that timed out loses nothing (it reads the same index
again).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING

from ._lifecycle import Lifecycle, Phase
from .candidate import Candidate
from .exceptions import ConnectionClosedError, NotConnectedError

if TYPE_CHECKING:
    from ._session import Session
    from ._worker import Worker

__all__ = ["CandidateFeed", "PendingConnect", "follow", "gathering_ended"]

Item = Candidate | None
Waiter = concurrent.futures.Future[Item]


class CandidateFeed:
    """Every local candidate gathered so far, then the end (see the module)."""

    __slots__ = ("_candidates", "_end", "_ended", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._candidates: list[Candidate] = []
        self._ended = False
        # None: end-of-candidates; an exception: closed before the end.
        self._end: BaseException | None = None
        self._waiters: list[tuple[int, Waiter]] = []

    # --- the worker -------------------------------------------------------------

    def add(self, candidate: Candidate) -> None:
        """A candidate was gathered: hand it to the readers waiting for it."""
        with self._lock:
            if self._ended:
                return
            index = len(self._candidates)
            self._candidates.append(candidate)
            waiters = self._waiters
            if waiters:
                self._waiters = [w for w in waiters if w[0] != index]
                for at, waiter in waiters:
                    if at == index and waiter.set_running_or_notify_cancel():
                        waiter.set_result(candidate)

    def finish(self, error: BaseException | None = None) -> None:
        """End-of-candidates (``error`` ``None``), or the error readers get
        past the last candidate; the first call counts."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._end = error
            waiters, self._waiters = self._waiters, []
            for _, waiter in waiters:
                self._resolve(waiter)

    def _resolve(self, waiter: Waiter) -> None:
        if waiter.set_running_or_notify_cancel():
            if self._end is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(self._end)

    # --- callers ----------------------------------------------------------------

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The candidates gathered so far."""
        with self._lock:
            return tuple(self._candidates)

    @property
    def ended(self) -> bool:
        """Whether end-of-candidates (or an error) came."""
        return self._ended

    def wait(self, index: int, waiter: Waiter) -> None:
        """Hand ``waiter`` the candidate at ``index``, or ``None`` past the
        last one once gathering is done (the end's error if it closed
        first): at once if there, else when it comes."""
        with self._lock:
            if index < len(self._candidates):
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(self._candidates[index])
            elif self._ended:
                self._resolve(waiter)
            else:
                self._waiters.append((index, waiter))

    def withdraw(self, waiter: Waiter) -> bool:
        """Take ``waiter`` out before it is handed anything: ``True`` if it
        was still waiting (nothing is lost either way: the candidate stays
        in the feed)."""
        with self._lock:
            for entry in self._waiters:
                if entry[1] is waiter:
                    self._waiters.remove(entry)
                    return True
            return False

    def reset_after_fork(self, error: BaseException) -> None:
        """In a child after ``fork()``: a new lock, nobody waiting, ended
        with ``error``."""
        self._lock = threading.Lock()
        self._waiters = []
        self._ended = True
        self._end = error


def follow(
    feed: CandidateFeed, index: int, gathered: concurrent.futures.Future[None]
) -> Waiter:
    """The candidate at ``index`` of ``feed`` (``None`` at the end), as a
    future; failed with the gathering's error if gathering (the job that
    binds the sockets) fails first. Withdraw it with
    :meth:`CandidateFeed.withdraw` when giving up on it."""
    waiter: Waiter = concurrent.futures.Future()
    feed.wait(index, waiter)

    def gathering_failed(done: concurrent.futures.Future[None]) -> None:
        error = None if done.cancelled() else done.exception()
        if error is not None and feed.withdraw(waiter):
            waiter.set_running_or_notify_cancel()
            waiter.set_exception(error)

    if not waiter.done():
        gathered.add_done_callback(gathering_failed)
    return waiter


class PendingConnect:
    """A ``connect()`` waiting for the gathering job to hand the agent to
    the worker (see the module).

    :param username: the peer's ``ice-ufrag``.
    :param password: the peer's ``ice-pwd``.
    :param lite: whether the peer is ICE-lite.
    """

    __slots__ = ("done", "lite", "password", "username")

    def __init__(self, username: str, password: str, lite: bool) -> None:
        self.username = username
        self.password = password
        self.lite = lite
        #: The connect's outcome: the session's, once started.
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self, session: Session, worker: Worker, lifecycle: Lifecycle) -> None:
        """Post the checks after the gathering's start (commands run in
        order), and follow their outcome. Under the core's lock."""
        lifecycle.advance(Phase.CONNECTING, expect=Phase.GATHERING)
        username, password, lite = self.username, self.password, self.lite
        worker.post(lambda: session.connect(username, password, lite))
        done = self.done

        def copy(source: concurrent.futures.Future[None]) -> None:
            if not done.set_running_or_notify_cancel():
                return
            error = source.exception()
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        session.connected.add_done_callback(copy)

    def fail(self, error: BaseException) -> None:
        """The gathering job failed with ``error`` (a
        :exc:`~syncice.exceptions.NotConnectedError` naming it), or the
        connection closed meanwhile (``error`` a
        :exc:`~syncice.exceptions.ConnectionClosedError`)."""
        if not isinstance(error, ConnectionClosedError):
            cause = error
            error = NotConnectedError(f"Local candidates gathering failed: {cause!r}")
            error.__cause__ = cause
        if self.done.set_running_or_notify_cancel():
            self.done.set_exception(error)


def gathering_ended(lifecycle: Lifecycle) -> None:
    """The worker saw ``GatheringCompleted``: ``GATHERING`` moves to
    ``GATHERED``, unless ``connect()`` (or what followed it) moved the
    phase on already; from ``NEW`` or ``GATHERED`` it is a bug, raised.

    :raises ~syncice._lifecycle.LifecycleError: for a move from ``NEW``
        or ``GATHERED`` (a second completion).
    """
    moved = lifecycle.advance(Phase.GATHERED, expect=Phase.GATHERING)
    if not moved and lifecycle.phase in (Phase.NEW, Phase.GATHERED):
        lifecycle.advance(Phase.GATHERED)
