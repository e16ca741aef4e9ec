"""One selector thread per process, shared by every connection.

The worker is generic: it knows sockets, timers and commands, not ICE. Its
rules:

- Everything it owns (the selector, the timer heap, the readers, and whatever
  the callbacks it runs own) belongs to the worker thread. Other threads talk
  to it only through :meth:`Worker.submit` and :meth:`Worker.post`, which
  append to a command deque and, when the worker may be asleep in ``select``,
  write one byte to a wakeup socketpair (the idea of trio's
  ``_wakeup_socketpair.py``). A burst of commands costs one wakeup, not one
  syscall each.
- Each turn of the loop waits in ``select`` until the earliest timer, then runs
  the ready reader callbacks, then the commands queued when the turn began
  (FIFO; later ones wait for the next turn, so a flood of commands cannot
  starve the sockets), then the timers due at that moment, in deadline order
  and, for equal deadlines, in scheduling order. Timers that a callback
  schedules for the past run on the next turn.
- The worker blocks only in ``select`` and runs no code but the callables it
  is handed. One that raises is logged (logger ``syncice._worker``) and the
  loop goes on with the next: a fault in one connection must not end the
  worker. A command run through :meth:`Worker.submit` hands its exception to
  its future instead.
- With a :class:`~syncice._clock.FakeClock`, time moves only when a test moves
  it, so the worker waits for commands, readers or the clock (which wakes it)
  rather than a real timeout. If the clock has an ``autojump_threshold`` and a
  timer is pending, the worker waits that many real seconds, and if nothing at
  all happened meanwhile, jumps the clock to the earliest deadline (trio's
  ``MockClock`` rule): protocol timers then fire in milliseconds, but never
  ahead of a datagram in flight.
- Cancelled timers stay in the heap until they come to the top, unless they
  become the majority, when the heap is rebuilt without them.
- :func:`acquire_worker` and :func:`release_worker` share one worker among
  connections by reference count. After ``fork()`` the child forgets it (its
  thread does not exist there) and closes the file descriptors it inherited.
- Tests may lend a worker of their own, on a fake clock, to every connection
  that starts while a :func:`lend_worker` block runs: :func:`acquire_worker`
  then hands out that worker instead of the shared one (this is what
  :func:`syncice.testing.virtual_time` builds on). Only the facade's
  ``acquire_worker()`` call changes; nothing else needs to know. Connections
  started before the block keep the shared worker and real time.

Time on the worker is :attr:`Worker.clock`'s and nothing else: every timer,
hence every protocol timer, is measured against it. The callers' own waits
(``recv(timeout=)``, ``connect(timeout=)``) are in real seconds and stay so
under a fake clock: they bound how long a thread blocks, not protocol time.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._clock import Clock, FakeClock, MonotonicClock

__all__ = [
    "TimerHandle",
    "Worker",
    "acquire_worker",
    "active_worker_threads",
    "lend_worker",
    "release_worker",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A queued command: the function, and the future of :meth:`Worker.submit`
#: (``None`` for :meth:`Worker.post`).
_Command = tuple[Callable[[], Any], "concurrent.futures.Future[Any] | None"]
#: A heap entry: deadline, scheduling order (for ties), handle.
_TimerEntry = tuple[float, int, "TimerHandle"]

#: The longest select: longer ones overflow epoll's milliseconds (asyncio's cap).
_MAX_TIMEOUT = 24 * 3600.0

#: The heap is rebuilt when more than this many cancelled timers make up more
#: than half of it (asyncio's rule).
_PURGE_MIN_CANCELLED = 64


def _settle(fut: concurrent.futures.Future[Any], fn: Callable[[], Any]) -> None:
    """Run ``fn`` and put its result, or whatever it raised, in ``fut``."""
    try:
        result = fn()
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class TimerHandle:
    """A timer scheduled by :meth:`Worker.call_at`.

    :ivar when: the absolute clock time at which the callback is due.
    """

    __slots__ = ("_callback", "_worker", "when")

    def __init__(
        self, when: float, callback: Callable[[], None], worker: Worker
    ) -> None:
        self.when = when
        # None once the timer has fired or was cancelled.
        self._callback: Callable[[], None] | None = callback
        # Set while the entry sits in the worker's heap, for the count of
        # cancelled entries there.
        self._worker: Worker | None = worker

    def __repr__(self) -> str:
        state = "pending" if self._callback is not None else "done"
        return f"<TimerHandle when={self.when!r} {state}>"

    def cancel(self) -> None:
        """Make sure the callback does not run.

        Idempotent, and a no-op once the timer has fired. Call it on the worker
        thread.
        """
        if self._callback is None:
            return
        self._callback = None
        worker = self._worker
        if worker is not None:
            self._worker = None
            worker._timer_cancelled()


class Deadline:
    """A worker timer that follows a deadline which moves.

    Sans-IO machines give their next deadline (``get_timer()``) after every
    input; :meth:`set` it each time, and the callback runs once the worker's
    clock reaches the latest one. Only a changed deadline touches the timer
    heap. Use it on the worker thread.

    :param worker: the worker whose clock and timers it uses.
    :param callback: called with no arguments when the deadline is reached.
    """

    __slots__ = ("_callback", "_handle", "_worker")

    def __init__(self, worker: Worker, callback: Callable[[], None]) -> None:
        self._worker = worker
        self._callback = callback
        self._handle: TimerHandle | None = None

    @property
    def at(self) -> float | None:
        """The deadline now set, or ``None``."""
        return None if self._handle is None else self._handle.when

    def set(self, at: float | None) -> None:
        """Move the deadline to ``at`` (absolute clock time), or clear it with
        ``None``."""
        handle = self._handle
        if handle is not None:
            if handle.when == at:
                return
            handle.cancel()
        self._handle = None if at is None else self._worker.call_at(at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._callback()


class Worker:
    """A selector loop on its own daemon thread.

    The thread starts at once. Most code shares one worker through
    :func:`acquire_worker`; tests may build their own, on a
    :class:`~syncice._clock.FakeClock`, and must :meth:`stop` it.

    :param clock: where the worker reads time; :class:`MonotonicClock` by
        default.
    :param name: the thread's name.

    :ivar clock: the clock that timers are measured against.
    """

    __slots__ = (
        "_cancelled",
        "_closed",
        "_due",
        "_fake",
        "_forgotten",
        "_ident",
        "_keys",
        "_queue",
        "_retired",
        "_rsock",
        "_selector",
        "_seq",
        "_sleeping",
        "_stopping",
        "_thread",
        "_timers",
        "_wake_lock",
        "_wsock",
        "clock",
    )

    def __init__(
        self, clock: Clock | None = None, *, name: str = "syncice-worker"
    ) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._fake = clock if isinstance(clock, FakeClock) else None
        self._selector = selectors.DefaultSelector()
        try:
            self._rsock, self._wsock = socket.socketpair()
        except BaseException:
            self._selector.close()
            raise
        for sock in (self._rsock, self._wsock):
            sock.setblocking(False)
        # Small buffers: a few pending bytes are as good a wakeup as many.
        self._rsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self._wsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        key = self._selector.register(
            self._rsock, selectors.EVENT_READ, self._drain_wakeup
        )
        # The current key of every registered socket, by fd: a ready event
        # whose key is no longer here was unregistered or replaced by a callback
        # that ran earlier in the same turn, and is skipped.
        self._keys: dict[int, selectors.SelectorKey] = {key.fd: key}
        self._queue: collections.deque[_Command] = collections.deque()
        self._timers: list[_TimerEntry] = []
        self._due: list[TimerHandle] = []  # reused by every turn
        self._cancelled = 0  # cancelled entries still in _timers
        self._seq = itertools.count()
        # True from the top of a turn until select returns or someone wakes
        # the worker: a command or a clock move must then write to the wakeup
        # socket. The worker sets it before it looks at the queue and the
        # clock, so that no command slips between that look and the select;
        # the first waker clears it, so that a burst of commands, which may
        # all come before the worker gets the GIL back, costs one write.
        self._sleeping = False
        self._stopping = False  # stop() was called: refuse new commands
        self._closed = False  # the loop has ended and closed its sockets
        self._forgotten = False  # a fork() left this worker without its thread
        self._retired = False  # lent by lend_worker(), and the loan has ended
        # Orders _wake() against closing. Reentrant: a finalizer that
        # call_soon()s may run inside _wake() of its own thread (a collection).
        self._wake_lock = threading.RLock()
        self._ident: int | None = None
        if self._fake is not None:
            self._fake._add_listener(self._on_clock_moved)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        with _registry_lock:
            for worker in [w for w in _workers if not w._thread.is_alive()]:
                _workers.discard(worker)
            _workers.add(self)
        self._thread.start()

    def __repr__(self) -> str:
        state = "stopped" if self._stopping else "running"
        return f"<Worker {self._thread.name!r} {state} clock={self.clock!r}>"

    # --- any thread ------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn()`` on the worker thread, after every command submitted or
        posted before it.

        Called on the worker thread itself, ``fn`` runs at once. A future
        cancelled before its turn comes keeps ``fn`` from running.

        :param fn: the command.
        :returns: a future that receives ``fn``'s result or exception, or a
            :exc:`RuntimeError` if the worker stops before running it.
        :raises RuntimeError: the worker is stopped.
        """
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if threading.get_ident() == self._ident:
            fut.set_running_or_notify_cancel()
            _settle(fut, fn)
        else:
            self._enqueue((fn, fut))
        return fut

    def post(self, fn: Callable[[], None]) -> None:
        """Like :meth:`submit`, without a future: an exception ``fn`` raises
        is logged.

        :param fn: the command.
        :raises RuntimeError: the worker is stopped.
        """
        if threading.get_ident() == self._ident:
            try:
                fn()
            except Exception:
                logger.exception("posted function %r raised", fn)
        else:
            self._enqueue((fn, None))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` for a later turn of the loop, from any thread, the
        worker's own included (where :meth:`post` would run it at once).

        For code that may run at any point of another's, such as a
        finalizer that a garbage collection calls: it appends to the queue
        and takes no lock but the reentrant one of the wakeup socket.

        :param fn: the command; an exception it raises is logged.
        :raises RuntimeError: the worker is stopped.
        """
        self._enqueue((fn, None))

    def in_worker_thread(self) -> bool:
        """:returns: whether the caller runs on this worker's thread."""
        return threading.get_ident() == self._ident

    def stop(self) -> None:
        """End the loop and close its sockets; idempotent.

        From another thread, returns once the thread has ended. From the worker
        thread, the loop ends after the current turn. Commands still queued
        then get :exc:`RuntimeError` in their futures; timers are dropped.
        """
        self._stopping = True
        self._wake()
        if threading.get_ident() != self._ident:
            self._thread.join()

    # --- worker thread only ----------------------------------------------------

    def add_reader(
        self,
        sock: socket.socket,
        callback: Callable[[], None],
        *,
        writable: bool = False,
    ) -> None:
        """Call ``callback()`` whenever ``sock`` is readable, until
        :meth:`remove_reader`; replaces an earlier callback for ``sock``.

        The callback reads the socket itself, which should be non-blocking.

        :param sock: the socket to watch.
        :param callback: called with no arguments.
        :param writable: call it also when ``sock`` is writable (a stream
            with bytes waiting to go out, or a connect in progress); call
            again without it once nothing waits.
        :raises RuntimeError: not called on the worker thread.
        """
        self._check_thread()
        events = selectors.EVENT_READ
        if writable:
            events |= selectors.EVENT_WRITE
        try:
            key = self._selector.modify(sock, events, callback)
        except KeyError:
            key = self._selector.register(sock, events, callback)
        self._keys[key.fd] = key

    def remove_reader(self, sock: socket.socket) -> None:
        """Stop watching ``sock``; no error if it was not watched.

        :param sock: the socket, which may already be closed.
        :raises RuntimeError: not called on the worker thread.
        """
        self._check_thread()
        try:
            key = self._selector.unregister(sock)
        except (KeyError, ValueError):
            return
        del self._keys[key.fd]

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback()`` once :attr:`clock` reaches ``when``.

        :param when: absolute clock time, in seconds.
        :param callback: called with no arguments.
        :returns: a handle to cancel the timer with.
        :raises ValueError: ``when`` is not finite.
        :raises RuntimeError: not called on the worker thread.
        """
        self._check_thread()
        if not math.isfinite(when):
            raise ValueError(f"call_at(): when must be finite, not {when!r}")
        handle = TimerHandle(when, callback, self)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    # --- internals -------------------------------------------------------------

    def _check_thread(self) -> None:
        if threading.get_ident() != self._ident:
            raise RuntimeError(f"{self!r}: call this on the worker thread")

    def _enqueue(self, command: _Command) -> None:
        if self._stopping:
            raise RuntimeError(f"{self!r} is stopped")
        self._queue.append(command)
        if self._sleeping:
            self._sleeping = False
            self._wake()
        # The loop may have ended between the check above and the append:
        # its final sweep of the queue may have missed this command.
        if self._closed:
            self._fail_pending()

    def _wake(self) -> None:
        with self._wake_lock:
            if self._closed:
                return
            # BlockingIOError: the buffer is full of wakeups already.
            with contextlib.suppress(BlockingIOError):
                self._wsock.send(b"\0")

    def _on_clock_moved(self) -> None:
        if self._sleeping:
            self._sleeping = False
            self._wake()

    def _drain_wakeup(self) -> None:
        # Pending bytes number at most the socket's small buffer; any left
        # keep the socket readable for the next turn.
        self._rsock.recv(4096)

    def _timer_cancelled(self) -> None:
        self._cancelled += 1
        if self._cancelled > _PURGE_MIN_CANCELLED and self._cancelled * 2 > len(
            self._timers
        ):
            # In place: the loop holds a reference to the list.
            timers = self._timers
            timers[:] = [entry for entry in timers if entry[2]._callback is not None]
            heapq.heapify(timers)
            self._cancelled = 0

    def _fail_pending(self) -> None:
        queue = self._queue
        while True:
            try:
                fn, fut = queue.popleft()
            except IndexError:
                return
            if fut is None:
                logger.debug("worker stopped: dropped posted function %r", fn)
            elif fut.set_running_or_notify_cancel():
                fut.set_exception(
                    RuntimeError("the worker stopped before running this")
                )

    def _run(self) -> None:
        self._ident = threading.get_ident()
        try:
            self._loop()
        except BaseException:
            # Only a fault of the worker itself (or of its clock) gets here.
            logger.exception("%r: the loop failed", self)
        finally:
            self._shutdown()

    def _loop(self) -> None:
        # Locals, for speed: this runs for every datagram.
        select = self._selector.select
        keys_get = self._keys.get
        queue = self._queue
        popleft = queue.popleft
        timers = self._timers
        due = self._due
        heappop = heapq.heappop
        clock_now = (
            time.monotonic if type(self.clock) is MonotonicClock else self.clock.now
        )
        fake = self._fake
        timeout: float | None
        epoch = 0
        while not self._stopping:
            self._sleeping = True
            jump_to: float | None = None
            if queue:
                timeout = 0.0
            else:
                while timers and timers[0][2]._callback is None:
                    heappop(timers)
                    self._cancelled -= 1
                if not timers:
                    timeout = None
                else:
                    when = timers[0][0]
                    delay = when - clock_now()
                    if delay <= 0:
                        timeout = 0.0
                    elif fake is None:
                        timeout = delay if delay < _MAX_TIMEOUT else _MAX_TIMEOUT
                    else:
                        # Fake time does not pass while we wait: wait for a
                        # wakeup, or for the autojump threshold in real time.
                        timeout, epoch = fake._autojump_plan()
                        if timeout is not None:
                            jump_to = when
            events = select(timeout)
            self._sleeping = False

            for key, _ in events:
                if keys_get(key.fd) is key:
                    try:
                        key.data()
                    except Exception:
                        logger.exception("reader callback %r raised", key.data)

            ran = len(queue)
            for _ in range(ran):
                fn, fut = popleft()
                if fut is None:
                    try:
                        fn()
                    except Exception:
                        logger.exception("posted function %r raised", fn)
                elif fut.set_running_or_notify_cancel():
                    _settle(fut, fn)

            if (
                jump_to is not None
                and not events
                and not ran
                and not queue
                and fake is not None
            ):
                # Idle for the whole threshold (no socket was ready, no command
                # came, not even one that slipped in after select returned),
                # and nothing ran that could have changed the heap: the
                # earliest deadline is still jump_to. The clock refuses if
                # the threshold changed meanwhile (a test paused it).
                fake._autojump(jump_to, epoch)

            if timers:
                now = clock_now()
                while timers and timers[0][0] <= now:
                    handle = heappop(timers)[2]
                    if handle._callback is None:
                        self._cancelled -= 1
                    else:
                        handle._worker = None
                        due.append(handle)
                for handle in due:
                    callback = handle._callback
                    if callback is None:
                        continue  # cancelled by an earlier timer of this batch
                    handle._callback = None
                    try:
                        callback()
                    except Exception:
                        logger.exception("timer callback %r raised", callback)
                due.clear()

    def _shutdown(self) -> None:
        self._stopping = True
        with self._wake_lock:
            self._closed = True
            self._wsock.close()
        self._rsock.close()
        self._selector.close()
        if self._fake is not None:
            self._fake._remove_listener(self._on_clock_moved)
        self._keys.clear()
        self._timers.clear()
        self._due.clear()
        self._fail_pending()

    def _forget(self) -> None:
        """In a child after ``fork()``: the thread is gone. Close what it owned
        and refuse commands."""
        self._forgotten = True
        self._stopping = True
        self._closed = True
        # Locks may have been held by threads that the child does not have.
        self._wake_lock = threading.RLock()
        self._wsock.close()
        self._rsock.close()
        self._selector.close()
        self._queue.clear()


# --- the shared worker -------------------------------------------------------------

_lock = threading.Lock()  # guards _shared, _refcount, _lent and _lent_count
_shared: Worker | None = None
_refcount = 0
#: The worker that lend_worker() hands out instead of the shared one, and how
#: many of its acquisitions are not released yet.
_lent: Worker | None = None
_lent_count = 0
#: Notified (with _lock held) whenever _lent_count drops.
_lent_released = threading.Condition(_lock)
_registry_lock = threading.Lock()  # guards _workers
_workers: set[Worker] = set()  # every Worker whose thread may be alive


def acquire_worker() -> Worker:
    """The process-wide shared worker, started on first use; inside a
    :func:`lend_worker` block, the lent worker instead.

    Each call must be paired with one :func:`release_worker`.

    :returns: the running shared worker, or the lent one.
    """
    global _shared, _refcount, _lent_count
    with _lock:
        if _lent is not None:
            _lent_count += 1
            return _lent
        if _shared is None:
            _shared = Worker()
        _refcount += 1
        return _shared


def release_worker(worker: Worker) -> None:
    """Give back a worker from :func:`acquire_worker`.

    The last release of the shared worker stops it: from another thread it
    returns once the thread has ended, from the worker thread the loop ends
    after the current turn. The next :func:`acquire_worker` starts a new one.
    A lent worker is never stopped here: its lender stops it. Releasing a
    worker that a ``fork()`` left behind, or one whose loan has ended, does
    nothing.

    :param worker: the worker that :func:`acquire_worker` returned.
    :raises RuntimeError: ``worker`` is neither the shared worker nor the lent
        one: released more times than acquired.
    """
    global _shared, _refcount, _lent_count
    with _lock:
        if worker is _lent and _lent_count:
            _lent_count -= 1
            _lent_released.notify_all()
            return
        if worker is not _shared:
            if worker._forgotten or worker._retired:
                return
            raise RuntimeError(
                "release_worker() called more times than acquire_worker()"
            )
        _refcount -= 1
        if _refcount:
            return
        _shared = None
    worker.stop()  # outside the lock: the join may take a turn of the loop


@contextlib.contextmanager
def lend_worker(worker: Worker, *, release_wait: float = 5.0) -> Iterator[Worker]:
    """Make :func:`acquire_worker` hand out ``worker`` while the block runs.

    The hook for tests that run whole connections on a worker of their own,
    typically on a :class:`~syncice._clock.FakeClock`
    (:func:`syncice.testing.virtual_time` is the public face of it). Every
    connection that starts inside the block (its first ``gather_candidates()``
    or ``connect()`` acquires a worker) runs on ``worker``; connections
    started before keep the shared worker, and those started after the block
    get the shared one again. Blocks do not nest: there is one lent worker at
    most, process-wide.

    At the end of the block the loan ends; then, if the block raised nothing,
    every acquisition of ``worker`` must have been released: the block waits
    up to ``release_wait`` real seconds for closings still under way (an
    asyncio ``close()``, a finalizer, a TURN allocation being released on the
    worker) and raises if some connection is still open. Later releases of
    ``worker`` (a connection closed after its block) do nothing. The lender
    keeps ``worker``: it is neither stopped nor joined here.

    :param worker: a running worker that is not the shared one.
    :param release_wait: how long to wait at the end, in real seconds, for
        acquisitions still being released; a hang guard, not a timing.
    :returns: a context manager giving ``worker``.
    :raises RuntimeError: on entry, if another worker is already lent, or
        ``worker`` is stopped or is the shared worker; on exit, if
        connections started in the block are still open (the message says
        how many).
    :raises ValueError: ``release_wait`` is negative or not finite.
    """
    global _lent, _lent_count
    if not (release_wait >= 0 and math.isfinite(release_wait)):
        raise ValueError(f"release_wait must be >= 0 and finite, not {release_wait!r}")
    with _lock:
        if _lent is not None:
            raise RuntimeError(
                f"{_lent!r} is already lent: lend_worker() blocks do not nest"
            )
        if worker._stopping or worker is _shared:
            raise RuntimeError(f"cannot lend {worker!r}: stopped or shared")
        _lent, _lent_count = worker, 0
    raised = True
    try:
        yield worker
        raised = False
    finally:
        with _lock:
            # After a fork() in the block, the child's state is reset: its
            # loan is over already.
            if _lent is worker:
                if not raised:
                    _lent_released.wait_for(lambda: not _lent_count, release_wait)
                leaked = _lent_count
                _lent, _lent_count = None, 0
                worker._retired = True
            else:
                leaked = 0
    if leaked:
        raise RuntimeError(
            f"{leaked} connection(s) started on {worker!r} inside lend_worker() "
            "(or virtual_time()) are still open at its end: close them in the block"
        )


def active_worker_threads() -> int:
    """For tests.

    :returns: how many worker threads (shared or not) are alive.
    """
    with _registry_lock:
        alive = [w for w in _workers if w._thread.is_alive()]
        _workers.intersection_update(alive)
        return len(alive)


def _after_fork_in_child() -> None:
    global _lock, _registry_lock, _shared, _refcount, _lent, _lent_count
    global _lent_released
    _lock = threading.Lock()
    _lent_released = threading.Condition(_lock)
    _registry_lock = threading.Lock()
    _shared = None
    _refcount = 0
    _lent = None
    _lent_count = 0
    workers = list(_workers)
    _workers.clear()
    for worker in workers:
        worker._forget()


if hasattr(os, "register_at_fork"):  # pragma: no branch (not on Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)
