"""The TCP connections of ICE-TCP (RFC 6544), driven by the worker's
selector: :class:`TcpLinks`, one per connection, owned by its session.

Rules of this module:

- Everything but :meth:`TcpLinks.writer`'s function runs on the worker
  thread and never blocks: accepts, connects,
  reads and writes are non-blocking, resumed when the selector says so.
- One connection per pair, keyed as the agent keys pairs: ``(endpoint,
  remote address)``. A passive endpoint's connections are accepted on its
  listening socket; an active endpoint's are opened, bound to its host
  address, when the agent first queues something for a remote address; a
  simultaneous-open (S-O) endpoint's likewise, but from its own port
  (``SO_REUSEPORT``: one socket holds it, one more per connection), so
  that its SYN and the peer's cross and make one connection (RFC 6544
  §7.1). An S-O connection refused while it opens is not reported: the
  peer's SYN may not have been out yet, and the check's next transmission
  opens it again.
- Every frame is RFC 4571 (:mod:`syncice._ice_tcp`): what the agent queues
  goes out framed (and what callers ``send()``, written from their own
  thread by :meth:`TcpLinks.writer` under the connection's lock, behind
  whatever the worker has still to write); what arrives is cut into frames
  and handed on, one ``deliver(endpoint, frames, addr)`` per read. An
  empty datagram cannot be framed (a zero length is an error): it is
  dropped and counted.
- **Untrusted bytes.** An accepted connection is *pending* until its peer
  authenticates itself (a check that passed MESSAGE-INTEGRITY, or a signed
  answer: the agent's :meth:`~syncice.ice.IceAgent.is_authenticated`). At
  most :data:`MAX_PENDING` connections per listening socket are pending; one
  more is accepted and closed at once. A pending connection that has not
  authenticated within :data:`PENDING_TIMEOUT` seconds is closed. A frame of
  length zero, or a frame that is not STUN from a peer that has not
  authenticated, closes that connection; never the ICE connection. Each
  connection holds at most one unfinished frame (65,537 bytes) and
  :data:`MAX_BUFFER` bytes to write; beyond, writes are dropped and counted.
- A connection that ends (refused, reset, closed by the peer, or by the
  rules above) is reported once with ``lost(endpoint, addr, reason)``, but
  not when :meth:`TcpLinks.close` ends them all.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import socket
import threading
from collections.abc import Callable

from ._bind import BindOptions, bind_socket
from ._demux import is_stun
from ._ice_tcp import FrameDecoder, FramingError, frame
from ._worker import TimerHandle, Worker

__all__ = [
    "MAX_BUFFER",
    "MAX_PENDING",
    "PENDING_TIMEOUT",
    "TcpLinks",
    "bind_so",
    "listen_tcp",
]

logger = logging.getLogger("syncice.connection")

Address = tuple[str, int]

#: Accepted connections not yet authenticated, per listening socket.
MAX_PENDING = 8
#: Seconds an accepted connection has to authenticate itself.
PENDING_TIMEOUT = 10.0
#: The most bytes a connection holds for writing.
MAX_BUFFER = 1 << 20
#: Connections accepted per wake-up of a listening socket.
_ACCEPT_BATCH = 16


def listen_tcp(address: str, options: BindOptions | None = None) -> socket.socket:
    """A non-blocking TCP socket listening on ``address``, on a port of
    ``options.port_range`` if it has one (:func:`syncice._bind.bind_socket`).

    :raises OSError: the socket could not be made or bound (it is closed).
    """
    sock = bind_socket(address, options, stream=True)
    try:
        sock.listen(MAX_PENDING)
    except OSError:
        sock.close()
        raise
    return sock


def bind_so(address: str, options: BindOptions | None = None) -> socket.socket:
    """A TCP socket bound to ``address`` (neither listening nor connecting)
    that holds the port of a simultaneous-open candidate, on a port of
    ``options.port_range`` if it has one; ``SO_REUSEPORT``, so that the
    candidate's connections bind that port too.

    :raises OSError: the socket could not be made or bound (it is closed).
    """
    return bind_socket(address, options, stream=True, reuse_port=True)


class _Link:
    """One TCP connection of a pair."""

    __slots__ = (
        "closed",
        "connecting",
        "decoder",
        "endpoint",
        "key",
        "lock",
        "out",
        "pending",
        "sock",
        "timer",
    )

    def __init__(
        self, sock: socket.socket, key: tuple[int, Address], *, connecting: bool
    ) -> None:
        self.sock = sock
        self.key = key
        self.endpoint = key[0]
        self.connecting = connecting
        self.decoder = FrameDecoder()
        self.out = bytearray()
        #: Guards ``out``, ``closed`` and writes to ``sock``: the worker and
        #: the callers of ``send()`` both write the stream.
        self.lock = threading.Lock()
        self.closed = False
        #: The listening endpoint it counts against while unauthenticated.
        self.pending: int | None = None
        self.timer: TimerHandle | None = None

    def is_pending(self) -> bool:
        """Whether its peer has yet to authenticate itself."""
        return self.pending is not None


class TcpLinks:
    """The listening sockets and TCP connections of one connection.

    :param worker: the worker whose selector drives them.
    :param deliver: called with ``(endpoint, frames, addr)`` for the frames
        of each read.
    :param lost: called with ``(endpoint, addr, reason)`` when a connection
        ends by any cause but :meth:`close`.
    :param authenticated: whether ``(endpoint, addr)`` has authenticated
        itself (the agent's).
    """

    def __init__(
        self,
        worker: Worker,
        *,
        deliver: Callable[[int, list[bytes], Address], None],
        lost: Callable[[int, Address, str], None],
        authenticated: Callable[[int, Address], bool],
        bind: BindOptions | None = None,
    ) -> None:
        self._worker = worker
        # The port range (and buffer sizes) of outgoing connections' sockets.
        self._bind = bind
        self._deliver = deliver
        self._lost = lost
        self._authenticated = authenticated
        # passive endpoint -> listening socket; active endpoint -> host.
        self._listeners: dict[int, socket.socket] = {}
        self._active: dict[int, str] = {}
        # S-O endpoint -> the socket holding its port, and how to bind there.
        self._simultaneous: dict[int, tuple[socket.socket, BindOptions]] = {}
        self._pending: dict[int, int] = {}
        self._links: dict[tuple[int, Address], _Link] = {}
        #: Accepted connections closed at once: too many pending.
        self.refused = 0
        #: Connections closed for bad framing or unauthenticated data.
        self.garbage = 0
        #: Bytes dropped because a write buffer was full or closed (an empty
        #: datagram counts 1), under ``_count_lock``: callers count too.
        self.dropped = 0
        self._count_lock = threading.Lock()

    def owns(self, endpoint: int) -> bool:
        """Whether ``endpoint`` is one of these TCP endpoints."""
        return endpoint in self._listeners or endpoint in self._active

    def simultaneous(self, endpoint: int, sock: socket.socket) -> None:
        """Open the connections of S-O ``endpoint`` from the address and port
        of ``sock`` (:func:`bind_so`), which stays bound until :meth:`close`."""
        host, port = sock.getsockname()[:2]
        options = dataclasses.replace(
            self._bind or BindOptions(), port_range=(port, port)
        )
        self._simultaneous[endpoint] = (sock, options)
        self._active[endpoint] = host

    def listen(self, passive: int, active: int, sock: socket.socket) -> None:
        """Serve a listening socket as ``passive``; open the connections of
        ``active`` from its host address."""
        self._listeners[passive] = sock
        self._pending[passive] = 0
        self._active[active] = sock.getsockname()[0]
        self._worker.add_reader(sock, lambda: self._accept(passive, sock))

    def connections(self) -> list[tuple[int, Address]]:
        """The ``(endpoint, remote address)`` of each open connection."""
        return list(self._links)

    def writer(self, endpoint: int, addr: Address) -> Callable[[bytes], bool]:
        """A function that writes one datagram, framed, on the connection of
        ``(endpoint, addr)`` from any thread, and says whether it did (not
        while it connects, nor once it is gone: then the caller hands the
        datagram to the worker, whose :meth:`send` takes it)."""
        key = (endpoint, addr)
        links = self._links
        worker = self._worker

        def write(data: bytes) -> bool:
            link = links.get(key)  # one dict read: no lock needed
            if link is None or link.connecting:
                return False
            if not data:
                self._count_drop(1)
                return True
            framed = frame(data)
            with link.lock:
                if link.closed:
                    return False
                out = link.out
                if out:  # the worker writes the rest: queue behind it
                    if len(out) + len(framed) > MAX_BUFFER:
                        self._count_drop(len(data))
                    else:
                        out += framed
                    return True
                try:
                    sent = link.sock.send(framed)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    return True  # the worker's read will meet the error
                if sent == len(framed):
                    return True
                out += framed[sent:]
            # The rest waits for the socket to be writable: tell the worker.
            worker.call_soon(lambda: self._rewatch(link))
            return True

        return write

    def _count_drop(self, size: int) -> None:
        with self._count_lock:
            self.dropped += size

    def _rewatch(self, link: _Link) -> None:
        if self._links.get(link.key) is link:
            self._watch(link)

    def send(self, endpoint: int, data: bytes, addr: Address) -> None:
        """Send ``data`` framed over the connection of ``(endpoint, addr)``,
        opened first on an active endpoint; dropped without one."""
        key = (endpoint, addr)
        link = self._links.get(key)
        if link is None:
            host = self._active.get(endpoint)
            if host is None:
                self._count_drop(len(data))
                return
            link = self._open(key, host)
            if link is None:
                return
        try:
            framed = frame(data)
        except ValueError:
            self._count_drop(len(data) or 1)
            return
        with link.lock:
            if len(link.out) + len(framed) > MAX_BUFFER:
                self._count_drop(len(data))
                return
            link.out += framed
        if not link.connecting:
            self._flush(link)
        self._watch(link)

    def close(self) -> None:
        """Close every socket, without calling ``lost``; no connection is
        opened after."""
        self._active.clear()
        for link in list(self._links.values()):
            self._drop(link)
        for sock, _ in self._simultaneous.values():
            sock.close()
        self._simultaneous.clear()
        for sock in self._listeners.values():
            self._worker.remove_reader(sock)
            sock.close()
        self._listeners.clear()

    def forget_after_fork(self) -> None:
        """In a child after ``fork()``: close the child's descriptors only."""
        for link in self._links.values():
            link.sock.close()
        for sock in self._listeners.values():
            sock.close()
        for sock, _ in self._simultaneous.values():
            sock.close()
        self._links.clear()
        self._listeners.clear()
        self._simultaneous.clear()

    # --- worker callbacks ----------------------------------------------------

    def _open(self, key: tuple[int, Address], host: str) -> _Link | None:
        addr = key[1]
        so = self._simultaneous.get(key[0])
        try:
            if so is None:
                sock = bind_socket(host, self._bind, stream=True)
            else:
                sock = bind_socket(host, so[1], stream=True, reuse_port=True)
        except OSError as exc:  # the port range is used up, say
            reason = f"bind: {exc}"
            self._worker.call_soon(lambda: self._lost(key[0], addr, reason))
            return None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(addr)
        except OSError as exc:
            code = exc.errno or errno.EINVAL
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            if so is not None:  # the check's next transmission tries again
                return None
            reason = f"connect: {errno.errorcode.get(code, code)}"
            # Later, not inside the caller's send (the session's transmit).
            self._worker.call_soon(lambda: self._lost(key[0], addr, reason))
            return None
        link = self._links[key] = _Link(sock, key, connecting=True)
        return link

    def _accept(self, passive: int, listener: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED and the like: try the next one
                continue
            addr = (peer[0], peer[1])
            key = (passive, addr)
            if self._pending[passive] >= MAX_PENDING or key in self._links:
                self.refused += 1
                sock.close()
                continue
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # reset already
                sock.close()
                continue
            link = self._links[key] = _Link(sock, key, connecting=False)
            link.pending = passive
            self._pending[passive] += 1
            worker = self._worker
            link.timer = worker.call_at(
                worker.clock.now() + PENDING_TIMEOUT,
                functools.partial(self._expire, link),
            )
            self._watch(link)

    def _expire(self, link: _Link) -> None:
        link.timer = None
        if self._links.get(link.key) is link and link.pending is not None:
            self._end(link, "not authenticated in time")

    def _on_ready(self, link: _Link) -> None:
        if self._links.get(link.key) is not link:
            return
        try:
            if link.connecting:
                code = link.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == errno.EINPROGRESS:  # pragma: no cover - spurious
                    return
                if code:
                    raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
                link.connecting = False
            self._read(link)
            if self._links.get(link.key) is link:
                self._flush(link)
                self._watch(link)
        except FramingError as exc:
            self.garbage += 1
            self._end(link, str(exc))
        except OSError as exc:
            if link.connecting and link.endpoint in self._simultaneous:
                # Refused before the peer's SYN was out: not an end, the
                # check's next transmission opens it again.
                self._drop(link)
                return
            self._end(link, exc.strerror or str(exc))

    def _read(self, link: _Link) -> None:
        key = link.key
        endpoint, addr = key
        while self._links.get(key) is link:
            try:
                data = link.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self._end(link, "closed by the peer")
                return
            frames = link.decoder.feed(data)
            if not frames and link.decoder.error is None:
                continue
            if link.pending is not None:
                # Until it authenticates, one frame at a time, STUN only.
                for message in frames:
                    pending = link.is_pending()
                    if pending and not is_stun(message):
                        raise FramingError("data before authentication")
                    self._deliver(endpoint, [message], addr)
                    if pending and self._authenticated(endpoint, addr):
                        self._trusted(link)
                    if self._links.get(key) is not link:
                        return  # closed meanwhile (the connection closed)
            else:
                self._deliver(endpoint, frames, addr)
            if link.decoder.error is not None and self._links.get(key) is link:
                raise FramingError(link.decoder.error)

    def _trusted(self, link: _Link) -> None:
        if link.pending is not None:
            self._pending[link.pending] -= 1
            link.pending = None
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None

    def _flush(self, link: _Link) -> None:
        with link.lock:
            out = link.out
            while out:
                try:
                    sent = link.sock.send(out)
                except (BlockingIOError, InterruptedError):
                    return
                del out[:sent]

    def _watch(self, link: _Link) -> None:
        with link.lock:
            writable = link.connecting or bool(link.out)
        self._worker.add_reader(
            link.sock, lambda: self._on_ready(link), writable=writable
        )

    def _drop(self, link: _Link) -> None:
        if self._links.get(link.key) is link:
            del self._links[link.key]
        self._trusted(link)  # no longer pending either
        self._worker.remove_reader(link.sock)
        with link.lock:
            link.closed = True
            link.out.clear()
            link.sock.close()

    def _end(self, link: _Link, reason: str) -> None:
        if self._links.get(link.key) is not link:
            return
        self._drop(link)
        endpoint, addr = link.key
        logger.debug("TCP connection %d %s:%d ended: %s", endpoint, *addr, reason)
        self._lost(endpoint, addr, reason)
