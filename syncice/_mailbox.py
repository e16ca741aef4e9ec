"""Delivery to callers: the queue and the waiters of both facades.

A :class:`Mailbox` is a queue that the worker fills and callers empty, with
the callers waiting for an item kept as *waiters*. The blocking facade's
waiter is a :class:`concurrent.futures.Future` (it waits on ``result(timeout)``),
the asyncio shim's one that resolves an :class:`asyncio.Future` on its loop;
both follow the same protocol (``set_running_or_notify_cancel``,
``set_result``, ``set_exception``), so there is one way to receive. A
connection has two mailboxes: its datagrams (an
:class:`~syncice._inbox.Inbox`, bounded by
:data:`~syncice._inbox.INBOX_SIZE`) and its events.

The rules:

- Every waiter is in :attr:`Mailbox._waiters` until it is handed an item or an
  outcome, or withdraws: :meth:`Mailbox.end` resolves every one, so no caller
  stays blocked after a close.
- A waiter is handed an item only if ``set_running_or_notify_cancel()``
  says it still waits, so an item is never lost to a timed-out or cancelled
  caller; one that withdraws after it was handed an item gives it back
  (:meth:`Mailbox.put_back`), first in the queue.
- The lock is held for a few statements by whoever holds it (the worker
  putting a batch of items, a caller taking one or withdrawing), never across
  a wait, nor I/O but the one-byte non-blocking write that wakes a blocked
  caller (:class:`syncice._inbox._Wake`): so the asyncio shim may take it
  on its loop.
- Once :meth:`Mailbox.end` has run, with ``discard=True``, nothing more is
  handed out: no call returns a datagram after close() has returned.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Mailbox", "Waiter"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class _NoItems(deque[Any]):
    """The queue of every mailbox that has queued nothing yet: shared,
    always empty (adding to it is an error)."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        raise RuntimeError("the shared empty queue takes no item")

    appendleft = append


_NO_ITEMS: deque[Any] = _NoItems()


class Waiter(Protocol[T_contra]):
    """What a mailbox hands items to (a :class:`concurrent.futures.Future`
    is one)."""

    def set_running_or_notify_cancel(self) -> bool: ...  # pragma: no cover

    def set_result(self, result: T_contra) -> None: ...  # pragma: no cover

    def set_exception(
        self, exception: BaseException | None
    ) -> None: ...  # pragma: no cover


class Mailbox(Generic[T]):
    """A queue of items for callers, and the callers waiting for one.

    :param maxlen: at most this many items wait; more are dropped and
        counted in :attr:`dropped` (``None``: no bound).
    """

    __slots__ = (
        "_discarded",
        "_end",
        "_ended",
        "_items",
        "_lock",
        "_maxlen",
        "_waiters",
        "dropped",
        "queued_watch",
        "watch",
    )

    def __init__(self, maxlen: int | None = None) -> None:
        self._lock = threading.Lock()
        # Made by the first item queued (an idle mailbox costs no deque).
        self._items: deque[T] = _NO_ITEMS
        # A list: rarely more than one waits, and a deque costs 760 bytes.
        self._waiters: list[Waiter[T]] = []
        self._maxlen = maxlen
        self._ended = False
        self._discarded = False
        # The outcome once ended and empty: an exception to raise, or a value.
        self._end: BaseException | T | None = None
        #: Items dropped because the queue was full.
        self.dropped = 0
        #: Set (by tests) when a caller starts waiting.
        self.watch: threading.Event | None = None
        #: Set (by tests) when an item is queued, no caller waiting for it.
        self.queued_watch: threading.Event | None = None

    # --- the worker ------------------------------------------------------------

    def _hand(self, item: T) -> bool:
        waiters = self._waiters
        while waiters:
            waiter = waiters.pop(0)
            if waiter.set_running_or_notify_cancel():
                waiter.set_result(item)
                return True
        return False

    def put(self, item: T) -> None:
        """Hand ``item`` to the first waiter, or queue it (or drop it, if full)."""
        with self._lock:
            if self._discarded:
                return
            if not self._hand(item):
                self._queue(item)

    def put_many(self, items: Iterable[T]) -> None:
        """:meth:`put` each of ``items``, in order, under one lock."""
        with self._lock:
            if self._discarded:
                return
            hand = self._hand
            for item in items:
                if not self._waiters or not hand(item):
                    self._queue(item)

    def _queue(self, item: T) -> None:
        if self._maxlen is not None and len(self._items) >= self._maxlen:
            self.dropped += 1
        else:
            items = self._items
            if items is _NO_ITEMS:
                items = self._items = deque()
            items.append(item)
            if self.queued_watch is not None:
                self.queued_watch.set()

    def end(self, outcome: BaseException | T, *, discard: bool) -> None:
        """No more items come: once the queue is empty, every wait ends with
        ``outcome`` (raised if an exception, else returned). Idempotent: the
        first outcome stays.

        :param discard: drop the queued items too, and whatever comes later.
        """
        with self._lock:
            if not self._ended:
                self._ended = True
                self._end = outcome
            if discard:
                self._discarded = True
                self._items.clear()
            if self._items:
                return  # the waiters are waiting for an empty queue
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                self._resolve(waiter)

    def _resolve(self, waiter: Waiter[T]) -> None:
        """Hand ``waiter`` the end (the queue empty and ended)."""
        if waiter.set_running_or_notify_cancel():
            outcome = self._end
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)  # type: ignore[arg-type]

    # --- callers -----------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` has run."""
        return self._ended

    def get_nowait(self) -> tuple[bool, T | None]:
        """The next item without waiting: ``(True, item)``, or ``(False,
        None)`` if none is queued.

        :raises BaseException: the end's exception, once ended and empty.
        """
        with self._lock:
            if self._items:
                return True, self._take()
            if self._ended:
                outcome = self._end
                if isinstance(outcome, BaseException):
                    raise outcome
                return True, outcome
            return False, None

    def _take(self) -> T:
        item = self._items.popleft()
        if not self._items and self._ended:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                self._resolve(waiter)
        return item

    def wait(self, waiter: Waiter[T]) -> None:
        """Hand ``waiter`` the next item: at once if one is queued (or the
        mailbox ended), else when one comes."""
        with self._lock:
            if self._items:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(self._take())
            elif self._ended:
                self._resolve(waiter)
            else:
                self._waiters.append(waiter)
        if self.watch is not None:
            self.watch.set()

    def waiter(self) -> Any:
        """A :class:`concurrent.futures.Future` given to :meth:`wait`."""
        import concurrent.futures

        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.wait(fut)
        return fut

    def withdraw(self, waiter: Waiter[T]) -> bool:
        """Take ``waiter`` out of the waiters, before it is handed anything.

        :returns: ``True`` if it was still waiting; ``False`` if it was
            handed an item or the end already (a caller that will not use
            it gives an item back with :meth:`put_back`).
        """
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return False
            return True

    def put_back(self, item: T) -> None:
        """Return ``item``, handed to a waiter that does not want it any
        more, to the front: to the next waiter, or first in the queue (even
        if full). Dropped once discarded."""
        with self._lock:
            if self._discarded or self._hand(item):
                return
            if self._items is _NO_ITEMS:
                self._items = deque()
            self._items.appendleft(item)

    def __len__(self) -> int:
        return len(self._items)

    # --- introspection, for white-box tests ----------------------------------

    @property
    def lock(self) -> threading.Lock:
        """The mailbox's lock: a test holds it to provoke a race."""
        return self._lock

    def waiters(self) -> tuple[Waiter[T], ...]:
        """The callers waiting now, oldest first."""
        return tuple(self._waiters)

    def reset_after_fork(self, outcome: BaseException | T) -> None:
        """In a child after ``fork()``: a new lock (the old one may be held
        by a thread the child does not have), nothing queued, nobody
        waiting, ended with ``outcome``."""
        self._lock = threading.Lock()
        self._items.clear()
        self._waiters.clear()
        self._ended = self._discarded = True
        self._end = outcome


# --- direct reads ---------------------------------------------------------------
