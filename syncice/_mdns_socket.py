"""The mDNS socket of a worker, shared by its connections.

The I/O half of :mod:`syncice.mdns`: one UDP socket per worker (so one per
process), bound to port 5353 and joined to 224.0.0.251, that drives one
:class:`~syncice.mdns.MdnsProtocol` for every connection. IPv4 only.

- It exists only while a connection needs it (a remote ``.local`` candidate
  to resolve, or names of ours to answer for): :func:`acquire_mdns` opens it
  on first use, :meth:`MdnsService.release` closes it with the last user.
- A host without multicast (no route to the group, no interface, a port it
  may not bind) gives no exception: the service is then unavailable, one
  warning is logged per process (logger ``syncice._mdns_socket``), names to
  resolve are reported unresolved at once, and ours are not answered. A send
  that fails later makes it unavailable the same way.
- Everything here runs on the worker thread.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from ._worker import Deadline, Worker
from .mdns import MDNS_ADDRESS, MDNS_PORT, MdnsProtocol, NameResolved

__all__ = ["MdnsService", "acquire_mdns"]

logger = logging.getLogger(__name__)

#: Datagrams read per readable event, so that a flood cannot starve the loop.
_READ_BATCH = 32

#: Called with the addresses of a name, or ``None`` when it did not resolve.
ResolveCallback = Callable[[tuple[str, ...] | None], None]

_services: dict[int, MdnsService] = {}  # by id(worker); worker thread only
_warned = False  # the one warning of a host without multicast was logged


def _unavailable(what: str, exc: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "mDNS is not available (%s: %s): .local candidates will not be"
            " resolved, and our .local names will not be answered",
            what,
            exc,
        )
    else:
        logger.debug("mDNS is not available (%s: %s)", what, exc)


def _open_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Shared with other mDNS stacks on the host (aioice's, avahi's).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # pragma: no branch
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", MDNS_PORT))
        sock.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(MDNS_ADDRESS) + socket.inet_aton("0.0.0.0"),
        )
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MdnsService:
    """A worker's mDNS socket and protocol; get it with :func:`acquire_mdns`.

    :ivar available: whether the socket is open and working.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.protocol = MdnsProtocol()
        self.users = 0
        self.sock: socket.socket | None = None
        self.waiters: dict[str, list[ResolveCallback]] = {}
        self.timer = Deadline(worker, self._on_timer)
        try:
            self.sock = _open_socket()
        except OSError as exc:
            _unavailable("cannot open the multicast socket", exc)
        else:
            worker.add_reader(self.sock, self._on_readable)

    @property
    def available(self) -> bool:
        return self.sock is not None

    def publish(self, name: str, address: str) -> None:
        """Answer queries for ``name`` with ``address``."""
        self.protocol.publish(name, address)

    def unpublish(self, name: str) -> None:
        """Stop answering for ``name``."""
        self.protocol.unpublish(name)

    def resolve(self, name: str, callback: ResolveCallback) -> None:
        """Resolve ``name``; ``callback`` gets the result on the worker
        thread, later or (when unavailable or cached) at once."""
        if self.sock is None:
            callback(None)
            return
        self.waiters.setdefault(name.lower(), []).append(callback)
        self.protocol.resolve(name, self.worker.clock.now())
        self._flush()

    def release(self) -> None:
        """Give back a use; the last closes the socket."""
        self.users -= 1
        if self.users > 0:
            return
        if _services.get(id(self.worker)) is self:
            del _services[id(self.worker)]
        self._close()
        self.protocol.fail_pending()
        self._dispatch()

    # --- internals -------------------------------------------------------------

    def _close(self) -> None:
        self.timer.set(None)
        sock, self.sock = self.sock, None
        if sock is not None:
            self.worker.remove_reader(sock)
            sock.close()

    def _fail(self, what: str, exc: OSError) -> None:
        _unavailable(what, exc)
        self._close()
        self.protocol.fail_pending()

    def _on_readable(self) -> None:
        sock = self.sock
        if sock is None:  # pragma: no cover - the reader is removed first
            return
        now = self.worker.clock.now()
        for _ in range(_READ_BATCH):
            try:
                data, addr = sock.recvfrom(9216)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail("cannot receive", exc)
                break
            self.protocol.receive_datagram(data, (addr[0], addr[1]), now)
        self._flush()

    def _on_timer(self) -> None:
        self.protocol.handle_timer(self.worker.clock.now())
        self._flush()

    def _flush(self) -> None:
        protocol = self.protocol
        for data, addr in protocol.datagrams_to_send(self.worker.clock.now()):
            if self.sock is None:
                break
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                pass  # a full buffer: the query is sent again, the peer asks again
            except OSError as exc:
                self._fail("cannot send to the multicast group", exc)
        self._dispatch()
        self.timer.set(protocol.get_timer() if self.sock is not None else None)

    def _dispatch(self) -> None:
        while (event := self.protocol.next_event()) is not None:
            result = event.addresses if isinstance(event, NameResolved) else None
            for callback in self.waiters.pop(event.name, []):
                try:
                    callback(result)
                except Exception:
                    logger.exception("mDNS callback %r raised", callback)


def acquire_mdns(worker: Worker) -> MdnsService:
    """The worker's mDNS service, opened on first use; pair each call with one
    :meth:`MdnsService.release`. Call it on the worker thread.

    :returns: the service, which may be unavailable (:attr:`MdnsService.available`).
    """
    service = _services.get(id(worker))
    if service is None or service.worker is not worker:
        service = _services[id(worker)] = MdnsService(worker)
    service.users += 1
    return service


def _after_fork_in_child() -> None:
    # The worker threads are gone in the child (see _worker.py): close the
    # descriptors it inherited, so that the port is not held by a copy.
    services = list(_services.values())
    _services.clear()
    for service in services:
        if service.sock is not None:
            service.sock.close()
            service.sock = None


if hasattr(os, "register_at_fork"):  # pragma: no branch (not on Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _reset_warning() -> None:
    """For tests: let the next failure warn again."""
    global _warned
    _warned = False
