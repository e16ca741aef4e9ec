"""Whole connections in virtual time: :func:`virtual_time`.

A ``with virtual_time() as vt:`` block starts a worker thread on a
:class:`~syncice._clock.FakeClock` and lends it (:func:`syncice._worker.lend_worker`)
to every :class:`syncice.Connection` and :class:`syncice.asyncio.Connection`
that starts inside the block, on real sockets (loopback, in tests). Their
protocol timers (Ta pacing, retransmissions, nomination, consent, TURN
refreshes, mDNS) then run on the fake clock, which jumps from deadline to
deadline whenever the worker is idle: a 30-second consent expiry takes
milliseconds of real time. The rules:

- **When the clock jumps.** The clock moves to the worker's earliest timer
  only when the worker has been idle for ``autojump_threshold`` real seconds:
  no socket it watches was readable, no command was queued, nothing ran
  (trio's ``MockClock`` rule). A datagram sent on loopback is readable at once,
  so traffic between sockets of the same worker never loses a race with the
  clock, even with a threshold of ``0``. What the worker cannot see can be
  overtaken: a server on another thread, a datagram a ``recv()`` caller reads
  from the socket itself (while it waits, the worker leaves that socket
  alone), or a test thread that is computing between two calls. Serve test
  servers from :attr:`VirtualTime.worker`
  (:meth:`~syncice._worker.Worker.add_reader`), assert on virtual times taken
  on the worker, and raise the threshold if another thread must keep up.
- **The test thread is not seen.** While it computes between two calls,
  virtual time may run on for as long as it takes: make calls that must
  happen at one virtual instant inside :meth:`VirtualTime.paused` (both
  sides' ``connect()`` as polls with ``timeout=0``, a peer's ``close()``
  right after reading the time), and recv() there too when datagrams the
  caller reads itself must not be overtaken.
- **What stays real.** The ``timeout=`` of blocking calls (``connect()``,
  ``recv()``, ``get_event()``...) is in real seconds: it bounds how long the
  calling thread waits, never protocol time. Use it as a hang guard.
- **The end of the block.** Every connection started in the block must be
  closed in it; the block waits a little for closings under way, then stops
  and joins the worker, and raises :exc:`RuntimeError` if some connection is
  still open (unless the block raised already). Blocks do not nest.

Example: consent expires 30 s (virtual) after the peer falls silent::

    with virtual_time() as vt:
        a, b = connected_pair()
        with vt.paused():
            silent_from = vt.now()
            b.close()
        with pytest.raises(ConnectionClosedError, match="consent expired"):
            a.recv(timeout=10)
        assert vt.now() >= silent_from + 24
        a.close()
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
from collections.abc import Iterator

from syncice._clock import FakeClock
from syncice._worker import Worker, lend_worker

__all__ = ["VirtualTime", "virtual_time"]


class VirtualTime:
    """The worker and fake clock of a :func:`virtual_time` block.

    :param clock: the fake clock.
    :param worker: the worker running on it, lent to the block's connections.

    :ivar clock: the :class:`~syncice._clock.FakeClock`; set its
        ``autojump_threshold``, or :meth:`~syncice._clock.FakeClock.advance`
        it by hand with the threshold at ``None``.
    :ivar worker: the :class:`~syncice._worker.Worker`; tests may serve
        their own sockets from it (``worker.submit(lambda:
        worker.add_reader(sock, callback))``) so that autojump waits for them.
    """

    __slots__ = ("clock", "worker")

    def __init__(self, clock: FakeClock, worker: Worker) -> None:
        self.clock = clock
        self.worker = worker

    def __repr__(self) -> str:
        return f"<VirtualTime now={self.clock.now()!r}>"

    def now(self) -> float:
        """The virtual time.

        Read on the worker thread (in a reader callback, a timer, a log
        handler called by the protocol code) it is the exact time of what the
        worker is doing; read on another thread, the clock may have moved on
        since that thread last looked.

        :returns: seconds on the fake clock.
        """
        return self.clock.now()

    def at(self, when: float) -> concurrent.futures.Future[float]:
        """A future resolved once the virtual clock reaches ``when``.

        It is a timer on the worker, so an autojumping clock jumps to it even
        when nothing else is pending. For asyncio code:
        ``await asyncio.wrap_future(vt.at(when))``.

        :param when: absolute virtual time, in seconds; a past one resolves on
            the worker's next turn.
        :returns: a future whose result is the clock's time when it fired.
        :raises ValueError: ``when`` is not finite.
        :raises RuntimeError: the worker is stopped (the block has ended).
        """
        if not math.isfinite(when):
            raise ValueError(f"when must be finite, not {when!r}")
        fut: concurrent.futures.Future[float] = concurrent.futures.Future()
        clock, worker = self.clock, self.worker

        def fire() -> None:
            if fut.set_running_or_notify_cancel():
                fut.set_result(clock.now())

        def schedule() -> None:  # on the worker
            handle = worker.call_at(when, fire)

            def forget(done: concurrent.futures.Future[float]) -> None:
                # A cancelled wait leaves no deadline for the clock to jump to.
                if done.cancelled():
                    with contextlib.suppress(RuntimeError):  # the worker stopped
                        worker.call_soon(handle.cancel)

            fut.add_done_callback(forget)

        worker.post(schedule)
        return fut

    def wait_until(self, when: float, *, timeout: float | None = None) -> float:
        """Block the calling thread until the virtual clock reaches ``when``.

        :param when: absolute virtual time, in seconds.
        :param timeout: at most this many *real* seconds (a hang guard);
            ``None`` waits as long as it takes.
        :returns: the virtual time at which the wait ended (``>= when``).
        :raises TimeoutError: ``timeout`` ran out first, as when the clock does
            not autojump and nobody advances it.
        :raises ValueError: ``when`` is not finite.
        :raises RuntimeError: the worker is stopped.
        """
        fut = self.at(when)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(
                f"virtual time {when!r} not reached in {timeout!r} real seconds "
                f"(now {self.clock.now()!r})"
            ) from None

    def wait(self, seconds: float, *, timeout: float | None = None) -> float:
        """Block the calling thread for ``seconds`` of virtual time.

        :param seconds: how long, from :meth:`now`; not negative.
        :param timeout: at most this many *real* seconds (a hang guard).
        :returns: the virtual time at which the wait ended.
        :raises ValueError: ``seconds`` is negative or not finite.
        :raises TimeoutError: ``timeout`` ran out first.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cannot wait {seconds!r} seconds")
        return self.wait_until(self.clock.now() + seconds, timeout=timeout)

    @contextlib.contextmanager
    def paused(self) -> Iterator[float]:
        """Stop autojumps while the block runs, then restore the threshold.

        The clock then stands still (unless advanced by hand): a test thread
        can make several calls at one virtual instant, such as closing a peer
        right after reading the time. Timers already due still fire, and
        calls that need no timer (``close()`` without TURN, a ``connect()``
        poll with ``timeout=0``) complete; a call that waits for a timer
        waits until the block ends (or its real ``timeout=`` runs out).

        :returns: a context manager giving the virtual time at its start.
        """
        clock = self.clock
        threshold = clock.autojump_threshold
        clock.autojump_threshold = None
        try:
            yield clock.now()
        finally:
            clock.autojump_threshold = threshold


@contextlib.contextmanager
def virtual_time(
    *,
    autojump_threshold: float | None = 0.0,
    start: float = 0.0,
    release_wait: float = 5.0,
) -> Iterator[VirtualTime]:
    """Run the connections started in the block on a fake-clock worker.

    See the module's documentation for the rules. The worker thread is named
    ``syncice-virtual-worker``; it is stopped and joined when the block ends,
    whether or not the block raised.

    :param autojump_threshold: real seconds of worker idleness after which the
        clock jumps to the next timer; ``0`` jumps as soon as the worker is
        idle, ``None`` never (advance :attr:`VirtualTime.clock` by hand).
    :param start: the clock's initial time, in seconds.
    :param release_wait: at the end, how many real seconds to wait for
        connections still closing (a hang guard).
    :returns: a context manager giving the block's :class:`VirtualTime`.
    :raises RuntimeError: on entry, inside another ``virtual_time()`` (or
        :func:`~syncice._worker.lend_worker`) block; on exit, if a
        connection started in the block is still open.
    :raises ValueError: a negative or non-finite threshold, ``start`` or
        ``release_wait``.
    """
    clock = FakeClock(start, autojump_threshold=autojump_threshold)
    worker = Worker(clock, name="syncice-virtual-worker")
    try:
        with lend_worker(worker, release_wait=release_wait):
            yield VirtualTime(clock, worker)
    finally:
        worker.stop()
