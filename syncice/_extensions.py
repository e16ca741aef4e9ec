"""What :class:`syncice.Connection` has beyond aioice's API, other than
keyword-only arguments and the data calls: the signalling helpers, ICE
restart, and what an application sees (context manager, state, selected
pair, the candidates as they are gathered); with the waits they share with
``connection.py``.

A mixin, so that ``connection.py`` keeps aioice's API and its size.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ._appview import ConnectionState, SelectedPair, check_component, selected_from
from ._describe import Form, add_remote, local_description, remote_description
from ._facade import check_timeout
from ._trickle import follow
from .candidate import Candidate
from .description import IceDescription
from .exceptions import IceTimeoutError

if TYPE_CHECKING:
    from ._facade import ConnectionCore

T = TypeVar("T")
_Self = TypeVar("_Self", bound="Extensions")


def wait(fut: concurrent.futures.Future[T], timeout: float | None, what: str) -> T:
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        raise IceTimeoutError(f"{what} timed out") from None


def run_here(job: object) -> None:
    job()  # type: ignore[operator]


class Extensions:
    """syncice's additions to aioice's ``Connection``, for
    :class:`syncice.Connection`."""

    if TYPE_CHECKING:
        _core: ConnectionCore
        remote_username: str | None
        remote_password: str | None
        remote_is_lite: bool

        def close(self) -> None: ...

    @staticmethod
    def _result(
        fut: concurrent.futures.Future[T],
        timeout: float | None,
        withdraw: Callable[[concurrent.futures.Future[T]], bool],
        what: str,
    ) -> T:
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if withdraw(fut):  # nothing was handed to it: a clean timeout
                raise IceTimeoutError(f"{what} timed out") from None
            return fut.result()  # handed one meanwhile: keep it

    # --- signalling helpers (syncice.description) ------------------------------

    def local_description(self) -> IceDescription:
        """What the peer needs to know of this side, now
        (:doc:`/guides/signalling`): the local credentials, the candidates
        gathered so far, ``end_of_candidates`` once gathering is done,
        ``lite``, and ``trickle`` (remote candidates are taken while
        :meth:`connect` runs). Send it in any of its forms (``to_json()``,
        ``to_sdp()`` ...)."""
        return local_description(self._core)

    def set_remote_description(self, description: Form) -> None:
        """Take the peer's description: an
        :class:`~syncice.description.IceDescription`, its dict, its JSON
        text or its SDP lines. It is read and checked whole first, then
        sets :attr:`remote_username`, :attr:`remote_password` and
        :attr:`remote_is_lite`, and adds its candidates and its
        end-of-candidates (as :meth:`add_remote_candidate`). Returns at once.

        :raises ValueError: a bad description (naming the field or line), or
            candidates after end-of-candidates; nothing is applied.
        :raises TypeError: not one of those forms.
        :raises NegotiationFailedError: both sides are ICE-lite.
        """
        desc = remote_description(self._core, description)
        self.remote_username = desc.username
        self.remote_password = desc.password
        self.remote_is_lite = desc.lite
        add_remote(self._core, desc)

    def restart(
        self,
        local_username: str | None = None,
        local_password: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Restart ICE (RFC 8445 §9): a syncice extension.

        Gives the connection new local credentials (random ones when not
        given), forgets the remote credentials and candidates, and starts a
        new check list over the same local candidates. Then signal
        :attr:`local_username`, :attr:`local_password` and
        :attr:`local_candidates` to the peer, set its new
        :attr:`remote_username`, :attr:`remote_password` and candidates,
        and call :meth:`connect`: it returns once the new checks nominated a
        pair. Meanwhile :meth:`send` and :meth:`recv` go on over the old
        pair; the switch to the new one is atomic. The peer restarts too
        (RFC 8445 §9: both sides change their credentials): whichever side
        starts, the other calls :meth:`restart` when it learns of it.

        :param timeout: at most this many seconds for the worker to start it.
        :raises NotConnectedError: if the connection has not connected (or
            failed) yet.
        :raises ValueError: a malformed credential, or one that is not new.
        :raises ConnectionClosedError: if the connection is closed.
        """
        timeout = check_timeout(timeout)
        core = self._core
        core.check_thread()
        done = core.restart(local_username, local_password)
        self.remote_username = None
        self.remote_password = None
        wait(done, timeout, "restart")

    # --- what an application sees (syncice extensions) ----------------------

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (:meth:`close`), whatever ended the block."""
        self.close()

    @property
    def state(self) -> ConnectionState:
        """Where the connection is: ``new``, ``gathering``, ``checking``,
        ``connected``, ``completed``, ``failed`` or ``closed``
        (:class:`~syncice.ConnectionState`, :doc:`/guides/events`). Never
        waits."""
        return self._core.state

    @property
    def event_drops(self) -> int:
        """Events dropped because the event queue was full (with
        ``events="all"``: :doc:`/guides/events`)."""
        return self._core.events.dropped

    def selected_pair(self, component: int = 1) -> SelectedPair | None:
        """The selected pair of ``component`` (its local and remote
        candidates and its stats, as :meth:`get_stats` has them), or
        ``None`` while it has none. Asks the worker: a round trip.

        :raises TypeError: if ``component`` is not an ``int``.
        :raises ComponentError: if there is no such component.
        """
        core = self._core
        check_component(component, core.components)
        core.check_thread()
        return selected_from(core.stats().result(), component)

    def gather_candidates_iter(
        self, *, timeout: float | None = None
    ) -> Iterator[Candidate | None]:
        """Start gathering, and iterate over the local candidates as they
        are gathered, then ``None`` (end-of-candidates): the iterator form
        of ``gather_candidates(on_candidate=...)`` (:doc:`/guides/trickle`),
        for one thread that signals, connects and signals again::

            candidates = conn.gather_candidates_iter()
            send_to_peer(next(candidates))  # the first host candidate
            conn.connect()  # over what there is; the rest joins the checks
            for candidate in candidates:
                send_to_peer(candidate)

        Gathering starts at the call (the sockets are bound in this
        thread); each step waits for the next candidate.

        :param timeout: at most this many seconds for each candidate.
        :raises IceTimeoutError: (from a step) if ``timeout`` ran out: the
            iterator ends there, gathering goes on, and a new call starts
            again from the first candidate.
        :raises ConnectionClosedError: if the connection is closed.
        """
        timeout = check_timeout(timeout)
        gathered = self._core.gather(run_here)
        return self._candidates(gathered, timeout)

    def _candidates(
        self, gathered: concurrent.futures.Future[None], timeout: float | None
    ) -> Iterator[Candidate | None]:
        feed = self._core.published.candidates
        index = 0
        while True:
            waiter = follow(feed, index, gathered)
            what = "gather_candidates_iter"
            candidate = self._result(waiter, timeout, feed.withdraw, what)
            yield candidate
            if candidate is None:
                return
            index += 1
