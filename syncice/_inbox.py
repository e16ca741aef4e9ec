"""Delivery to callers: the one receive implementation of both facades,
an :class:`Inbox` (a :class:`~syncice._mailbox.Mailbox` of datagrams, bounded
by :data:`INBOX_SIZE`) whose blocking callers may read the sockets.

Direct reads. A blocking ``recv()`` that finds the queue empty
(:meth:`Inbox.get`) may read the connection's sockets itself, which saves
the two thread switches of a hop through the worker (bench/ice.py's round
trip: 25 us against 60 us, raw UDP 18 us). Each connection's sockets have
exactly one owner at a time, recorded in :attr:`Lease.owner` under the
inbox's lock, and only the owner reads them:

- ``WORKER``: the sockets are in the worker's selector and only the worker
  reads them. A caller that starts waiting asks for them (one command,
  :attr:`Lease.asked`): the worker takes them out of its selector
  (``remove_reader``), then makes the owner ``LENT``.
- ``LENT``: out of the selector; read only by :attr:`Lease.reader`, the one
  waiting caller that holds the *token*. A caller that starts waiting takes
  the token if nobody holds it, else waits like any other waiter; one that
  leaves passes it to the next blocking waiter, or to nobody: the sockets
  stay lent between two ``recv()`` calls, so a caller that calls again
  reads again without asking. The reader hands what it reads to the
  waiters in order, as the worker would (itself included), and sends
  everything it does not accept to the worker (below).
- ``RETURNING``: a reader gave the sockets back (they are busy, below); a
  command is on its way for the worker to put them back in its selector
  (``add_reader``), which makes the owner ``WORKER``. Nobody reads meanwhile.
- The worker takes lent sockets back by itself, under the lock, when no
  caller holds the token: when no caller came for a sweep period
  (:data:`SWEEP`, idle), and at close (``CLOSED``). A close while a reader
  holds the token leaves the closing of the sockets to that reader, as it
  leaves (it was woken by :meth:`Mailbox.end`); whoever closes them runs the
  close's callbacks (:meth:`Lease.when_closed`), so ``close()`` returns
  with the sockets closed and no caller left on them.

What a reader reads: application data (not STUN, RFC 7983) from an
authenticated peer (:attr:`Lease.peers`, the agent's
``authenticated_peers()`` as the worker last published it) is the
caller's, and counted in :attr:`Lease.counts` under the lock; the worker
credits the counts to their pairs (``IceAgent.count_received``) when it
reports stats, sweeps or closes, never woken for them. Everything else,
STUN above all, goes to the worker in batches (:attr:`Lease.forwarded`:
one command per batch, bounded by :data:`FORWARD_MAX`), whose agent decides
(``receive_datagram``: checks, consent, and data of peers not yet
published).

Read ahead: a reader that finds more datagrams waiting behind the one it
read (it looks every :data:`READ_PROBE` reads, and after every read while
it finds some) reads up to :data:`READ_AHEAD` more at once, outside the lock,
and queues them in order: a caller behind a fast sender then takes them
from the queue without a poll() each (bench/ice.py: throughput from 0.82-0.95x
to 1.06-1.12x aioice at 100 B), while a ping-pong pays one empty read in
:data:`READ_PROBE`.

Busy sockets go back to the worker: a reader that forwards more than
:data:`BUSY` datagrams within :data:`BUSY_WINDOW` (a STUN flood) gives the
sockets back at once, and callers ask for them again only after
:data:`HOLD`. The worker reads a busy socket in batches, and never loses
more data to a flood than it would alone (bench/stun_flood.py: a reader
that kept them lost up to 3 % of the data under 20,000 requests/s, the
worker none); direct reads serve quiet sockets, where latency counts.

Who is woken how: a blocking caller polls its thread's pipe (:class:`_Wake`)
and, holding the token, the sockets; the worker, handing it an item or the
end, and a leaving reader, passing it the token, write one byte to that
pipe. Each thread has one waiter (:class:`_Reader`) and one pipe, reused by
all its calls, one after the other; a call made by a signal handler while
another of the thread waits gets a waiter and a pipe of its own. The
asyncio shim's waiters are never readers: its connections get no lease
(its callers must never block), nor do connections with a TURN server (the
worker unwraps relayed data). Lent sockets that nobody waits on hold what
arrives in the kernel's buffer until the next caller or the sweep, where
the worker would have queued it.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._batch import MAX_SEGMENTS, GroSwitch, receive
from ._demux import is_stun
from ._mailbox import Mailbox, Waiter

__all__ = ["INBOX_SIZE", "Inbox", "Lease", "Mailbox", "Owner", "Waiter"]

Address = tuple[str, int]
Item = tuple[bytes, int]

#: Bound of the receive queue of a connection, in datagrams.
INBOX_SIZE = 8192
#: Seconds between the worker's looks at lent sockets (idle ones go back).
SWEEP = 0.05
#: A reader that forwards more than this many datagrams to the worker
#: within :data:`BUSY_WINDOW` seconds gives the sockets back...
BUSY = 16
BUSY_WINDOW = 0.1
#: ... and callers ask for them again only this many seconds later.
HOLD = 0.5
#: At most this many datagrams read by callers wait for the worker.
FORWARD_MAX = 1024
#: A reader that finds more datagrams waiting after its own reads up to this
#: many more at once, without a poll() each, and queues them in order.
READ_AHEAD = 32
#: ... and, when the last look found none, looks again every this many reads.
READ_PROBE = 16


class Owner(enum.Enum):
    """Who may read a connection's sockets (see the module)."""

    #: In the worker's selector: the worker.
    WORKER = "worker"
    #: Out of it: the caller that holds the token (:attr:`Lease.reader`).
    LENT = "lent"
    #: On their way back into the worker's selector: nobody.
    RETURNING = "returning"
    #: Closed, or to be closed by the reader as it leaves: nobody.
    CLOSED = "closed"


Sockets = tuple[tuple[socket.socket, int], ...]
Forwarded = tuple[int, bytes, Address]


class _Wake:
    """A pipe that a blocking caller polls, with the sockets it reads, so
    that the worker or another caller can interrupt its ``poll()``.

    One per thread (:func:`_thread_wake`), reused by every call the thread
    makes, with a poller of the sockets it read last; its two descriptors
    close with the thread.
    """

    __slots__ = (
        "burst",
        "by_fd",
        "pipe_poll",
        "read_fd",
        "reads",
        "sockets",
        "sockets_poll",
        "write_fd",
    )

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.pipe_poll = select.poll()
        self.pipe_poll.register(self.read_fd, select.POLLIN)
        self.sockets_poll = self.pipe_poll
        self.sockets: Sockets = ()
        #: The socket and endpoint of each descriptor of :attr:`sockets_poll`
        #: but the pipe's.
        self.by_fd: dict[int, tuple[socket.socket, int]] = {}
        #: Whether the last read found more datagrams waiting (read ahead),
        #: and how many reads this thread made (every READ_PROBE-th one
        #: looks for more, so a burst is noticed).
        self.burst = False
        self.reads = 0

    def set(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            os.write(self.write_fd, b"\0")

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.read_fd, 512)

    def poller(self, sockets: Sockets) -> Any:
        """A poller of ``sockets`` and the pipe, kept for the next call."""
        if sockets is not self.sockets:
            poll = select.poll()
            poll.register(self.read_fd, select.POLLIN)
            for sock, _ in sockets:
                poll.register(sock, select.POLLIN)
            self.by_fd = {sock.fileno(): (sock, endpoint) for sock, endpoint in sockets}
            self.sockets_poll, self.sockets = poll, sockets
        return self.sockets_poll

    def __del__(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


_local = threading.local()
_monotonic = time.monotonic


def _thread_wake() -> _Wake:
    try:
        wake: _Wake = _local.wake
    except AttributeError:
        wake = _local.wake = _Wake()
    return wake


def _after_fork_in_child() -> None:
    # The pipes are shared with the parent, whose callers they wake: the
    # child's threads make new ones (the old descriptors close with _local).
    global _local
    _local = threading.local()


if hasattr(os, "register_at_fork"):  # pragma: no branch (not on Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)

_WAITING, _DONE, _LEFT = 0, 1, 2
_LENT, _CLOSED = Owner.LENT, Owner.CLOSED


class _Reader:
    """The waiter of a blocking :meth:`Inbox.get`, woken through its
    thread's pipe. Its state moves under the inbox's lock: waiting, then
    done (handed an item or the end; out of the waiters) or left (timed
    out; still among them until it withdraws)."""

    __slots__ = ("error", "item", "state", "wake")

    def __init__(self, wake: _Wake) -> None:
        self.wake = wake
        self.state = _WAITING
        self.item: Item | None = None
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return self.state == _WAITING

    def set_result(self, result: Item) -> None:
        self.item = result
        self.state = _DONE
        self.wake.set()

    def set_exception(self, exception: BaseException | None) -> None:
        self.error = exception
        self.state = _DONE
        self.wake.set()

    def result(self) -> Item:
        if self.error is not None:
            raise self.error
        assert self.item is not None
        return self.item


class Lease:
    """Who reads a connection's sockets, and what reading callers leave for
    the worker (see the module). Every field is guarded by the inbox's lock.

    Made by the worker's session once connected and given to
    :meth:`Inbox.offer`. The methods under "the worker" run on the worker
    thread; the session's commands call them.

    :param sockets: the sockets that callers may read, each with its endpoint.
    :param post: queues a command for the worker (``Worker.post``).
    :param lend: the worker's command that takes the sockets out of its
        selector, then calls :meth:`lent`.
    :param reclaim: the worker's command that calls :meth:`reclaim` and, if
        it says so, puts the sockets back in its selector.
    :param take: the worker's command that hands what :meth:`take` returns
        to the agent.
    :param gro: the session's :class:`~syncice._batch.GroSwitch`.
    """

    __slots__ = (
        "_inbox",
        "_lend",
        "_post",
        "_reclaim",
        "_take",
        "asked",
        "closed",
        "counts",
        "dropped",
        "entries",
        "forwarded",
        "given_back",
        "gro",
        "hold_until",
        "kept_taken",
        "owner",
        "peers",
        "reader",
        "seen",
        "sockets",
        "window_at",
        "window_count",
    )

    def __init__(
        self,
        sockets: Sockets,
        *,
        post: Callable[[Callable[[], None]], None],
        lend: Callable[[], None],
        reclaim: Callable[[], None],
        take: Callable[[], None],
        gro: GroSwitch | None = None,
    ) -> None:
        self._inbox: Inbox | None = None
        self._post = post
        self._lend = lend
        self._reclaim = reclaim
        self._take = take
        self.sockets = sockets
        self.owner = Owner.WORKER
        #: The caller that holds the token: the only one that reads, and
        #: only while the owner is ``LENT``.
        self.reader: _Reader | None = None
        #: A lend command is on its way to the worker.
        self.asked = False
        #: Callers ask for the sockets only from this time on (monotonic).
        self.hold_until = 0.0
        #: Authenticated peers: the component of each ``(endpoint, address)``
        #: whose data a reader keeps (replaced by the worker, never changed).
        self.peers: dict[tuple[int, Address], int] = {}
        #: Datagrams readers read and did not keep, for the worker's agent.
        self.forwarded: list[Forwarded] = []
        #: Datagrams readers kept, ``[count, bytes]`` by ``(endpoint, address)``.
        self.counts: dict[tuple[int, Address], list[int]] = {}
        #: Datagrams readers dropped because :attr:`forwarded` was full.
        self.dropped = 0
        #: Data datagrams readers kept that :meth:`take` handed on, and times
        #: readers gave the sockets back, ever (figures for benchmarks and
        #: tests; see :attr:`kept`).
        self.kept_taken = 0
        self.given_back = 0
        #: Whether the kernel is to glue datagrams on these sockets (GRO):
        #: the session's switch; each reading caller turns it on for a
        #: socket before it reads it (:meth:`GroSwitch.reads_glued`).
        self.gro = gro or GroSwitch()
        #: Calls that started waiting, and their number at the last sweep.
        self.entries = 0
        self.seen = 0
        self.window_at = 0.0
        self.window_count = 0
        #: Callbacks for once the sockets are closed (``None``: they are).
        self.closed: list[Callable[[], None]] | None = []

    def _send(self, command: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the worker stopped: closing
            self._post(command)

    # --- callers (under the inbox's lock) --------------------------------------

    def _enter(self) -> bool:
        """A reader starts waiting, the sockets not lent (:meth:`Inbox.get`
        took the token itself if they are). :returns: whether to ask for
        them."""
        if self.owner is Owner.WORKER and not self.asked:
            if self.hold_until and time.monotonic() < self.hold_until:
                return False  # busy not long ago: the worker reads them
            self.asked = True
            return True
        return False

    def _forward(
        self, reader: _Reader, items: list[Forwarded], now: float
    ) -> tuple[bool, bool]:
        """Keep ``items`` for the worker. :returns: whether to post the take
        command (the first of a batch), and whether ``reader`` gave the
        sockets back (busy)."""
        forwarded = self.forwarded
        take = not forwarded
        room = FORWARD_MAX - len(forwarded)
        forwarded += items[:room]
        self.dropped += max(0, len(items) - room)
        take = take and bool(forwarded)
        if now - self.window_at > BUSY_WINDOW:
            self.window_at, self.window_count = now, 0
        self.window_count += len(items)
        if self.window_count > BUSY and self.reader is reader:
            self.reader = None
            self.owner = Owner.RETURNING
            self.hold_until = now + HOLD
            self.given_back += 1
            return take, True
        return take, False

    def _release(self, waiters: Iterable[Waiter[Item]]) -> bool:
        """The reader leaves: the token goes to the next blocking waiter.
        :returns: whether the reader is to close the sockets (a close came
        while it read them: :meth:`_closed_now`)."""
        self.reader = None
        if self.owner is Owner.CLOSED:
            return True
        if self.owner is Owner.LENT:
            for waiter in waiters:
                if isinstance(waiter, _Reader) and waiter.state == _WAITING:
                    self.reader = waiter
                    waiter.wake.set()
                    break
        return False

    # --- the worker ------------------------------------------------------------

    def lent(self) -> None:
        """The worker took the sockets out of its selector: they are lent,
        and the first blocking waiter gets the token."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            self.asked = False
            if self.owner is not Owner.WORKER:  # pragma: no cover - closed first
                return
            self.owner = Owner.LENT
            self.seen = self.entries
            self._release(inbox._waiters)

    def reclaim(self) -> bool:
        """Take the sockets back if nobody reads them: :returns: whether the
        worker is to put them back in its selector."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            if self.owner is Owner.RETURNING or (
                self.owner is Owner.LENT and self.reader is None
            ):
                self.owner = Owner.WORKER
                return True
            return False

    def sweep(self) -> bool | None:
        """The worker's look at lent sockets: take them back if no caller
        came since the last look and nobody holds the token.

        :returns: ``None`` if they came back (into the selector with them)
            or are not lent; else whether callers came since the last look.
        """
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            if self.owner is not Owner.LENT:
                return None
            came = self.entries != self.seen
            if self.reader is None and not came:
                self.owner = Owner.WORKER
                return None
            self.seen = self.entries
            return came

    def take(self) -> tuple[list[Forwarded], dict[tuple[int, Address], list[int]]]:
        """What readers left for the worker: the datagrams to hand to the
        agent, and the counts of those they kept."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            forwarded, self.forwarded = self.forwarded, []
            counts, self.counts = self.counts, {}
            self.kept_taken += sum(count for count, _ in counts.values())
        return forwarded, counts

    @property
    def kept(self) -> int:
        """Data datagrams readers kept, ever."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            waiting = sum(count for count, _ in self.counts.values())
            return self.kept_taken + waiting

    def close(self) -> None:
        """Nobody reads the sockets from now on: close them now, or leave
        them to the caller reading them, which closes them as it leaves
        (out of the selector already, either way)."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            self.owner = Owner.CLOSED
            if self.reader is not None:
                return
        self._closed_now()

    def _closed_now(self) -> None:
        """Close the sockets, then run the close's callbacks: by the one
        that closes them (nobody reads them, nor will)."""
        inbox = self._inbox
        assert inbox is not None
        for sock, _ in self.sockets:
            sock.close()
        with inbox._lock:
            callbacks, self.closed = self.closed, None
        for callback in callbacks or ():
            callback()

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the sockets are closed: at once if they
        are, else in the thread that closes them."""
        inbox = self._inbox
        assert inbox is not None
        with inbox._lock:
            closed = self.closed
            if closed is not None:
                closed.append(callback)
                return
        callback()


class Inbox(Mailbox[Item]):
    """The mailbox of a connection's datagrams, ``(data, component)``, with
    the blocking receive that may read the sockets itself (see the module).

    :param maxlen: as :class:`Mailbox`'s.
    """

    __slots__ = ("lease",)

    def __init__(self, maxlen: int | None = None) -> None:
        super().__init__(maxlen)
        #: The hand-over of the sockets, once the worker offered it.
        self.lease: Lease | None = None

    def offer(self, lease: Lease) -> None:
        """The worker lets blocking callers read ``lease``'s sockets."""
        with self._lock:
            lease._inbox = self
            if not self._ended:
                self.lease = lease

    def get(
        self, timeout: float | None, ahead: int = 0, extra: list[Item] | None = None
    ) -> Item:
        """The next datagram, waited for in the calling thread at most
        ``timeout`` seconds (``None``: without bound). While it holds the
        lease's token, the caller reads the sockets itself.

        :param ahead: read up to this many more that are waiting behind the
            first one, into the queue (:meth:`get_many`'s)...
        :param extra: ... or into this list, if the queue is empty.

        :raises TimeoutError: ``timeout`` ran out; nothing was taken.
        :raises BaseException: the end's exception, once ended and empty.
        """
        # The thread's reader (None while a call of this thread uses it: this
        # one is made by a signal handler during that one).
        local = _local
        try:
            spare: _Reader | None = local.reader
        except AttributeError:  # the thread's first call
            spare = local.reader = _Reader(_thread_wake())
        lock = self._lock
        with lock:
            if self._items:
                return self._take()
            if self._ended:
                outcome = self._end
                assert isinstance(outcome, BaseException)
                raise outcome
            if spare is None:  # with a pipe and poller of its own
                reader = _Reader(_Wake())
            else:
                reader = spare
                local.reader = None
                reader.state = _WAITING
                reader.item = reader.error = None  # the last call's
            self._waiters.append(reader)
            lease = self.lease
            if lease is None:
                ask = False
            else:
                lease.entries += 1
                if lease.owner is _LENT:  # the token is free or held
                    ask = False
                    if lease.reader is None:
                        lease.reader = reader
                else:
                    ask = lease._enter()
        wake = reader.wake
        if self.watch is not None:
            self.watch.set()
        if lease is not None and ask:
            lease._send(lease._lend)
        if timeout is None:
            deadline = None
            wait = -1
        else:
            deadline = _monotonic() + timeout
            # Rounded up: poll() never wakes before the deadline; the first
            # look at the sockets is made even with a timeout of 0.
            wait = int(timeout * 1000 + 0.999) if timeout > 0 else 0
        polled = False
        # Whether this caller is to close the sockets (a close came).
        closes = False
        try:
            while True:
                if reader.state != _WAITING:
                    return reader.result()
                if polled and deadline is not None:
                    wait = int((deadline - _monotonic()) * 1000 + 0.999)
                    if wait <= 0:
                        with lock:
                            if reader.state == _WAITING:
                                reader.state = _LEFT
                                raise TimeoutError("timed out")
                        return reader.result()
                polled = True
                if lease is None or lease.reader is not reader:
                    if wake.pipe_poll.poll(wait):
                        wake.clear()
                    continue
                sockets_poll = wake.sockets_poll
                if wake.sockets is not lease.sockets:
                    sockets_poll = wake.poller(lease.sockets)
                for fd, _ in sockets_poll.poll(wait):
                    entry = wake.by_fd.get(fd)
                    if entry is None:
                        wake.clear()
                        continue
                    if lease.reader is not reader:
                        break  # given back meanwhile
                    # One datagram (the latency path is this one), and,
                    # when a sender is ahead of us, those waiting behind it.
                    sock, endpoint = entry
                    switch = lease.gro
                    gro = switch.wanted and switch.reads_glued(sock, endpoint)
                    glued: list[tuple[bytes, Address]] = []
                    try:
                        if gro:  # maybe several, glued by the kernel
                            if not receive(sock, glued, 1):
                                continue
                            data, addr = glued.pop(0)
                        else:
                            data, source = sock.recvfrom(65536)
                            addr = source if len(source) == 2 else source[:2]
                    except OSError:  # taken already, or an ICMP error
                        continue
                    key = (endpoint, addr)
                    peers = lease.peers
                    component = None if is_stun(data) else peers.get(key)
                    more: list[Item] = []
                    tally: dict[tuple[int, Address], list[int]] = {}
                    forwarded = (
                        self._sort(endpoint, peers, glued, more, tally) if glued else []
                    )
                    if component is None:
                        forwarded.insert(0, (endpoint, data, addr))
                        self._forward(lease, reader, forwarded)
                        self._hand_more(lease, more, tally)
                        continue
                    wake.reads += 1
                    if ahead or wake.burst or not wake.reads % READ_PROBE:
                        # More may be waiting (a sender ahead of us): read
                        # them now, outside the lock, and queue them in order.
                        room = max(ahead, READ_AHEAD) - len(more)
                        if self._maxlen is not None:  # never past the bound
                            bound = self._maxlen - len(self._items) - len(more) - 1
                            if gro:  # one read may bring a whole GSO send
                                bound -= MAX_SEGMENTS
                            room = min(room, bound)
                        if room > 0:
                            read = self._read_ahead(sock, gro, room)
                            forwarded += self._sort(endpoint, peers, read, more, tally)
                            wake.burst = bool(read)
                    if forwarded:
                        self._forward(lease, reader, forwarded)
                    item = (data, component)
                    with lock:
                        count = lease.counts.get(key)
                        if count is None:
                            lease.counts[key] = [1, len(data)]
                        else:
                            count[0] += 1
                            count[1] += len(data)
                        if tally:
                            self._count_kept(lease, tally)
                        if self._discarded:
                            continue  # closed: dropped
                        waiters = self._waiters
                        if reader.state == _WAITING and waiters[0] is reader:
                            waiters.pop(0)
                            reader.state = _DONE
                            if more:
                                if extra is not None and not self._items:
                                    extra += more  # the caller's, in order
                                else:
                                    self._hand_kept(more)
                            if waiters:
                                closes = lease._release(waiters)
                            else:  # nobody to pass the token to
                                lease.reader = None
                                closes = lease.owner is _CLOSED
                            return item
                        if not self._hand(item):
                            self._queue(item)
                        if more:
                            self._hand_kept(more)
        finally:
            if reader.state != _DONE or (lease is not None and lease.reader is reader):
                closes = self._leave(reader, lease)
            if closes:
                # A close came while this caller read the sockets: it left
                # them to us, the last one to touch them.
                assert lease is not None
                lease._closed_now()
            if reader is spare:
                # Out of every list and the token now: the thread's next
                # call may use it again.
                local.reader = reader

    def get_many(self, most: int, timeout: float | None) -> list[Item]:
        """The next datagram, as :meth:`get`, and up to ``most - 1`` more
        that are queued or waiting on the sockets at that moment, in order.

        :raises: as :meth:`get`.
        """
        if most == 1:
            return [self.get(timeout)]
        extra: list[Item] = []
        items = [self.get(timeout, most - 1, extra)]
        items += extra
        if len(items) < most and self._items:
            with self._lock:
                for _ in range(min(most - len(items), len(self._items))):
                    items.append(self._take())
        return items

    @staticmethod
    def _read_ahead(
        sock: socket.socket, gro: bool, room: int
    ) -> list[tuple[bytes, Address]]:
        """Read up to ``room`` more datagrams that are waiting on ``sock``
        (it is non-blocking; with GRO, reads of glued ones split), in order."""
        got: list[tuple[bytes, Address]] = []
        if gro:
            while len(got) < room and receive(sock, got, 1):
                pass
            return got
        for _ in range(room):
            try:
                data, addr = sock.recvfrom(65536)
            except OSError:  # nothing more waiting (or an ICMP error)
                break
            got.append((data, addr if len(addr) == 2 else (addr[0], addr[1])))
        return got

    @staticmethod
    def _sort(
        endpoint: int,
        peers: dict[tuple[int, Address], int],
        got: list[tuple[bytes, Address]],
        kept: list[Item],
        tally: dict[tuple[int, Address], list[int]],
    ) -> list[Forwarded]:
        """The caller's datagrams of ``got`` to ``kept``, counted in
        ``tally`` by source; the others, for the worker, returned."""
        forwarded: list[Forwarded] = []
        for data, addr in got:
            key = (endpoint, addr)
            component = None if is_stun(data) else peers.get(key)
            if component is None:
                forwarded.append((endpoint, data, addr))
                continue
            kept.append((data, component))
            count = tally.get(key)
            if count is None:
                tally[key] = [1, len(data)]
            else:
                count[0] += 1
                count[1] += len(data)
        return forwarded

    def _hand_more(
        self,
        lease: Lease,
        more: list[Item],
        tally: dict[tuple[int, Address], list[int]],
    ) -> None:
        """Count and hand on the caller's datagrams read behind one that
        was not (glued to a datagram for the worker)."""
        if more:
            with self._lock:
                self._count_kept(lease, tally)
                if not self._discarded:
                    self._hand_kept(more)

    @staticmethod
    def _count_kept(lease: Lease, tally: dict[tuple[int, Address], list[int]]) -> None:
        """Add datagrams kept, counted by source, to what the worker is to
        credit (lock held)."""
        counts = lease.counts
        for key, (number, size) in tally.items():
            count = counts.get(key)
            if count is None:
                counts[key] = [number, size]
            else:
                count[0] += number
                count[1] += size

    def _hand_kept(self, kept: list[Item]) -> None:
        """Hand datagrams read ahead to the waiters, or queue them, in order
        (lock held)."""
        for item in kept:
            if not self._waiters or not self._hand(item):
                self._queue(item)

    def _forward(self, lease: Lease, reader: _Reader, items: list[Forwarded]) -> None:
        """Hand ``items``, read by ``reader``, to the worker."""
        now = time.monotonic()
        with self._lock:
            take, busy = lease._forward(reader, items, now)
        if take:
            lease._send(lease._take)
        if busy:
            lease._send(lease._reclaim)

    def _leave(self, reader: _Reader, lease: Lease | None) -> bool:
        """``reader`` leaves the waiters, and gives up the token if it holds
        it. :returns: whether it is to close the sockets."""
        with self._lock:
            if reader.state != _DONE:  # still among the waiters
                reader.state = _LEFT
                with contextlib.suppress(ValueError):
                    self._waiters.remove(reader)
            if lease is not None and lease.reader is reader:
                return lease._release(self._waiters)
        return False

    def reset_after_fork(self, outcome: BaseException | Item) -> None:
        super().reset_after_fork(outcome)
        self.lease = None
