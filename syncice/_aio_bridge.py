"""The bridge from the worker's completions to asyncio event loops, for
:mod:`syncice.asyncio`.

- :func:`bridge`: an asyncio future that follows a
  :class:`concurrent.futures.Future` (a shared one: cancelling it leaves the
  source alone), held by the source until it is done.
- :class:`AsyncWaiter`: a coroutine's place in a mailbox
  (:mod:`syncice._inbox`), the asyncio kind of waiter; a cancelled wait
  gives back what the worker handed it.
- :class:`LoopBridge`: hands items to one loop in batches (one
  ``call_soon_threadsafe`` per batch), holding the loop weakly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import weakref
from collections import deque
from typing import Any, Generic, TypeVar

from ._mailbox import Mailbox

__all__ = ["AsyncWaiter", "LoopBridge", "bridge", "bridges"]

T = TypeVar("T")


def _copy(source: concurrent.futures.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def bridge(source: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """An asyncio future of the running loop that follows ``source``.

    Cancelling it leaves ``source`` alone (unlike :func:`asyncio.wrap_future`):
    the core's futures are shared by every caller. ``source`` holds it
    strongly while it is pending: asyncio holds tasks weakly, so a task
    nobody keeps (``asyncio.ensure_future(conn.connect())``, as aiortc does)
    lives on through the future it awaits. Once it is done (resolved or
    cancelled: ``asyncio.run`` cancels what is left at its end) ``source``
    drops it, so a loop that is gone is not kept alive by a ``source`` that
    is never resolved; a loop closed before ``source`` is done is skipped
    without a word. Awaiting it always yields to the loop at least once.
    """
    loop = asyncio.get_running_loop()
    target: asyncio.Future[T] = loop.create_future()
    if source.done():
        # Resolved on the loop's next turn, not now: awaiting it yields once,
        # as an aioice coroutine that waits for anything does, even when the
        # worker was done before the coroutine looked (aiortc gathers its
        # transports with asyncio.gather, and each must start before any ends).
        loop.call_soon(_copy, source, target)
        return target
    held: list[asyncio.Future[T]] = [target]
    target.add_done_callback(lambda _: held.clear())

    def done(source: concurrent.futures.Future[T]) -> None:
        for target in held[:1]:  # a copy: the loop may clear it meanwhile
            with contextlib.suppress(RuntimeError):  # the loop is closed
                target.get_loop().call_soon_threadsafe(_copy, source, target)

    source.add_done_callback(done)
    return target


class LoopBridge:
    """Hands items from the worker to one event loop, in batches.

    The worker appends to :attr:`pending`; only the first append after the
    loop last drained it costs a ``call_soon_threadsafe`` (a wakeup write).
    No lock: :meth:`run` clears :attr:`scheduled` before it drains, and
    :meth:`post` appends before it looks at it, so an item is either drained
    by the run in flight or schedules one. It holds its loop weakly
    (``bridges`` must not keep a loop alive) and the waiters handed to it
    strongly, until the loop's next turn delivers them: a waiter's task may
    be held by nothing else (asyncio holds tasks weakly), and a garbage
    collection in between would lose the item with it. A loop found closed
    drops them at once.
    """

    __slots__ = ("__weakref__", "loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.pending: deque[AsyncWaiter[Any]] = deque()
        self.scheduled = False

    def post(self, waiter: AsyncWaiter[Any]) -> None:
        """Queue ``waiter.deliver()`` on the loop (any thread)."""
        self.pending.append(waiter)
        if self.scheduled:
            return
        self.scheduled = True
        loop = self.loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self.run)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self.pending.clear()
            self.scheduled = False

    def run(self) -> None:
        self.scheduled = False
        pending = self.pending
        while pending:
            pending.popleft().deliver()


bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBridge] = (
    weakref.WeakKeyDictionary()
)


class AsyncWaiter(Generic[T]):
    """A coroutine waiting in a mailbox, as a future would (the
    :class:`syncice._inbox.Waiter` protocol).

    The worker calls :meth:`set_running_or_notify_cancel` then
    :meth:`set_result` or :meth:`set_exception` under the mailbox's lock;
    the rest runs on the loop.
    """

    __slots__ = (
        "__weakref__",
        "bridge",
        "cancelled",
        "error",
        "future",
        "item",
        "loop",
        "mailbox",
    )

    def __init__(self, mailbox: Mailbox[T]) -> None:
        loop = self.loop = asyncio.get_running_loop()
        bridge = bridges.get(loop)
        if bridge is None:  # only this loop's thread adds this loop's key
            bridge = bridges.setdefault(loop, LoopBridge(loop))
        self.bridge = bridge
        self.future: asyncio.Future[T] = loop.create_future()
        self.mailbox = mailbox
        self.cancelled = False
        self.item: tuple[T] | None = None
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return not self.cancelled and not self.loop.is_closed()

    def set_result(self, item: T) -> None:
        self.item = (item,)
        self.bridge.post(self)

    def set_exception(self, error: BaseException | None) -> None:
        self.error = error
        self.bridge.post(self)

    def deliver(self) -> None:
        if self.future.done():
            return  # cancelled: wait() gives the item back
        if self.error is not None:
            self.future.set_exception(self.error)
        elif self.item is not None:
            self.future.set_result(self.item[0])

    async def wait(self) -> T:
        """Enlisted already: the item, or the mailbox's end."""
        try:
            return await self.future
        except asyncio.CancelledError:
            self.cancelled = True
            if not self.mailbox.withdraw(self) and self.item is not None:
                self.mailbox.put_back(self.item[0])
            raise
