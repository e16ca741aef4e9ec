"""What the coturn of ``tests/coturn.sh`` still holds: allocations and relay sockets.

A TURN client that closes should leave nothing behind on the server. Two views
of the server tell a test whether it did:

- :class:`CoturnLog` reads the server's log (``TURN_LOG``): which allocations
  were created since a :meth:`~CoturnLog.mark`, for which user, and whether
  and why each was deleted. coturn writes each line as the event happens
  and does not buffer (a line is in the file within 1 ms), and every
  allocation gets a new session id, even from the same client port, so the
  log answers "every allocation made since the mark by user U (from client
  port P) is gone".
- :class:`RelaySockets` lists the relay sockets the server process holds
  (``/proc/PID/fd`` against ``/proc/PID/net/udp{,6}``): each allocation holds
  exactly one UDP socket bound to its relayed address, whatever transport the
  client used (a reservation, EVEN-PORT with R bit, would hold a second one:
  no test asks for one), so it answers "is the relayed address R still
  allocated" and "how many allocations are there" without reading any text.

Lines of coturn 4.6 (``verbose``, ``simple-log``), by what happened::

    session 000000000000000005: new, realm=<R>, username=<U>, lifetime=600
    session 000000000000000005: refreshed, realm=<R>, username=<U>, lifetime=0
    session 000000000000000005: closed (2nd stage), user <U> realm <R> origin <>,
        local 127.0.0.1:3478, remote 127.0.0.1:43797, reason: allocation timeout
    session 000000000000000005: delete: realm=<R>, username=<U>

``new`` comes with every successful Allocate (its ``lifetime`` is the one
asked for or the default, not the one granted). ``closed (2nd stage)`` and
``delete`` come with every deletion, in that order; the reason is
``allocation timeout`` both when the lifetime ran out and after a Refresh with
LIFETIME 0, which only sets the lifetime to 0: coturn deletes the allocation
one second later (0.997 to 1.002 s, measured), so a ``refreshed ...
lifetime=0`` line earlier in the same session tells the two apart. When a TCP
or TLS client's connection closes, coturn deletes at once, with reason ``TCP
connection closed by client (callback)``, ``TLS/TCP connection closed by
client (callback)`` or, after a reset, ``TLS/TCP socket buffer operation
error (callback)``. The client's address appears only in the ``closed`` line
(for UDP clients nothing names it before).

coturn closes the relay socket first and logs ``delete`` 0.3 to 1 ms later
(80 of 80 deletions, UDP and TCP, watched by polling /proc): once the log
shows the deletion, the socket is gone. :meth:`CoturnProbe.wait_gone` checks
both all the same, as that order is coturn's and not a promise.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

#: An IP address and port.
Address = tuple[str, int]

#: Between two looks at the log or /proc while waiting.
POLL_INTERVAL = 0.01

_SESSION = r"session (?P<session>\d+): "
_NEW = re.compile(
    _SESSION + r"new, realm=<(?P<realm>[^>]*)>, username=<(?P<username>[^>]*)>, "
    r"lifetime=(?P<lifetime>\d+)"
)
_REFRESHED = re.compile(_SESSION + r"refreshed, .*\blifetime=(?P<lifetime>\d+)")
_CLOSED = re.compile(
    _SESSION + r"closed \(2nd stage\), .*, local (?P<local>\S+), "
    r"remote (?P<remote>\S+), reason: (?P<reason>.*)$"
)
_DELETE = re.compile(_SESSION + r"delete: ")


class Cause(enum.Enum):
    """Why coturn deleted an allocation."""

    #: The client sent a Refresh with LIFETIME 0 (RFC 8656 §7).
    REFRESH = "refresh"
    #: The client's TCP or TLS connection to the server closed or broke.
    CONNECTION_CLOSED = "connection closed"
    #: The lifetime ran out without a refresh.
    TIMEOUT = "timeout"
    #: A reason this module does not know.
    OTHER = "other"


def parse_address(text: str) -> Address:
    """``127.0.0.1:3478`` or ``::1:3478`` (coturn's spelling: no brackets)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Allocation:
    """One allocation, as the log has told of it so far.

    :param session: coturn's session id: new for every allocation.
    :param username: the long-term credential's user name.
    :param realm: the realm.
    :param refreshed_to_zero: a Refresh with LIFETIME 0 was accepted.
    :param client: the client's address, or ``None`` while the allocation
        lives (coturn names it only when it closes the session).
    :param reason: coturn's reason for closing it, or ``None`` while it lives.
    :param deleted: coturn logged the deletion.
    """

    session: str
    username: str
    realm: str
    refreshed_to_zero: bool = False
    client: Address | None = None
    reason: str | None = None
    deleted: bool = False

    @property
    def cause(self) -> Cause | None:
        """Why coturn deleted it, or ``None`` if it did not (yet).

        A TCP or TLS client that sends a Refresh with LIFETIME 0 and then
        closes (as aioice does) gets :attr:`Cause.CONNECTION_CLOSED`, as the
        close wins the race with coturn's one-second tick; whether the client
        asked is :attr:`refreshed_to_zero`.
        """
        if self.reason is None:
            return None
        if "connection closed" in self.reason or "socket" in self.reason:
            return Cause.CONNECTION_CLOSED
        if self.reason == "allocation timeout":
            return Cause.REFRESH if self.refreshed_to_zero else Cause.TIMEOUT
        return Cause.OTHER

    def matches(self, username: str | None, client: Address | None) -> bool:
        """Whether it may belong to ``username`` and ``client`` (``None``:
        any). A live allocation, whose client is not known yet, may belong to
        every client."""
        if username is not None and self.username != username:
            return False
        return client is None or self.client is None or self.client == client


T = TypeVar("T")


def poll(look: Callable[[], T | None], timeout: float) -> T | None:
    """``look()`` until it returns something other than ``None``, for at most
    ``timeout`` seconds; then one last look."""
    deadline = time.monotonic() + timeout
    while True:
        result = look()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(POLL_INTERVAL)


class CoturnLog:
    """coturn's log file, read from a mark on.

    :param path: the log (``TURN_LOG``, :attr:`TurnService.log`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def mark(self) -> int:
        """The log's current end: later calls read only what comes after."""
        return self.path.stat().st_size

    def lines_since(self, mark: int) -> list[str]:
        """The whole lines written after ``mark`` (a line being written is
        left for the next call)."""
        with self.path.open("rb") as log:
            log.seek(mark)
            data = log.read()
        return data[: data.rfind(b"\n") + 1].decode(errors="replace").splitlines()

    def allocations_since(self, mark: int) -> list[Allocation]:
        """Every allocation created after ``mark``, in order of creation, with
        what the log tells of it up to now."""
        found: dict[str, Allocation] = {}
        for line in self.lines_since(mark):
            if match := _NEW.search(line):
                found[match["session"]] = Allocation(
                    match["session"], match["username"], match["realm"]
                )
                continue
            session = re.search(_SESSION, line)
            allocation = found.get(session["session"]) if session else None
            if allocation is None:
                continue
            if (match := _REFRESHED.search(line)) and match["lifetime"] == "0":
                allocation = dataclasses.replace(allocation, refreshed_to_zero=True)
            elif match := _CLOSED.search(line):
                allocation = dataclasses.replace(
                    allocation,
                    client=parse_address(match["remote"]),
                    reason=match["reason"],
                )
            elif _DELETE.search(line):
                allocation = dataclasses.replace(allocation, deleted=True)
            found[allocation.session] = allocation
        return list(found.values())

    def wait_allocated(
        self,
        mark: int,
        count: int = 1,
        *,
        username: str | None = None,
        timeout: float,
    ) -> list[Allocation]:
        """Wait until at least ``count`` allocations (for ``username``, if
        given) were created after ``mark``; return them all.

        :raises TimeoutError: fewer after ``timeout`` seconds.
        """

        def look() -> list[Allocation] | None:
            found = [
                a for a in self.allocations_since(mark) if a.matches(username, None)
            ]
            return found if len(found) >= count else None

        found = poll(look, timeout)
        if found is None:
            raise TimeoutError(
                f"fewer than {count} allocations in {self.path} after {timeout} s"
            )
        return found

    def wait_deallocated(
        self,
        mark: int,
        count: int = 1,
        *,
        username: str | None = None,
        client: Address | None = None,
        timeout: float,
    ) -> bool:
        """Whether, within ``timeout`` seconds, at least ``count`` allocations
        of ``username`` from ``client`` (``None``: any) were created after
        ``mark`` and every one is deleted.

        A live allocation counts as the client's, as its client is not known
        until it is deleted: the answer is never a false "all gone".
        """

        def look() -> bool | None:
            found = [
                a for a in self.allocations_since(mark) if a.matches(username, client)
            ]
            done = len(found) >= count and all(a.deleted for a in found)
            return True if done else None

        return poll(look, timeout) is not None


class RelaySockets:
    """The UDP sockets a coturn process holds other than its listeners: one
    per allocation, bound to the relayed address.

    :param pid: the server's process id (``TURN_PID``).
    :param listening_ports: its UDP listening ports (``TURN_PORT``,
        ``TURN_TLS_PORT``), whose sockets are not relays.
    :raises PermissionError: on :meth:`addresses`, when this process may not
        read ``/proc/PID/fd`` (another user's server).
    """

    def __init__(self, pid: int, listening_ports: Iterable[int]) -> None:
        self.pid = pid
        self.listening_ports = frozenset(listening_ports)

    def addresses(self) -> set[Address]:
        """The relayed addresses bound now.

        :raises ProcessLookupError: the server is not running.
        """
        proc = Path(f"/proc/{self.pid}")
        inodes = set()
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except FileNotFoundError:  # closed meanwhile
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except FileNotFoundError:
            raise ProcessLookupError(f"no process {self.pid}") from None
        bound = set()
        for table, family in (("udp", socket.AF_INET), ("udp6", socket.AF_INET6)):
            try:
                text = (proc / "net" / table).read_text()
            except FileNotFoundError:  # no IPv6 in the kernel
                continue
            for row in text.splitlines()[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    address = proc_net_address(fields[1], family)
                    if address[1] not in self.listening_ports:
                        bound.add(address)
        return bound

    def wait_released(self, relays: Collection[Address], *, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, none of ``relays`` is bound."""

        def look() -> bool | None:
            return True if not self.addresses() & set(relays) else None

        return poll(look, timeout) is not None

    def wait_count(self, count: int, *, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, exactly ``count`` are bound."""

        def look() -> bool | None:
            return True if len(self.addresses()) == count else None

        return poll(look, timeout) is not None


def proc_net_address(text: str, family: socket.AddressFamily) -> Address:
    """An address of /proc/net/udp{,6}: ``0100007F:0D96`` is 127.0.0.1:3478
    on a little-endian host (the address in 32-bit words, each printed as a
    number in host byte order; the port as a number)."""
    host, _, port = text.partition(":")
    raw = b"".join(
        int(host[i : i + 8], 16).to_bytes(4, sys.byteorder)
        for i in range(0, len(host), 8)
    )
    return socket.inet_ntop(family, raw), int(port, 16)


class Service(Protocol):
    """What :class:`CoturnProbe` needs of ``tests.conftest.TurnService``."""

    @property
    def port(self) -> int: ...
    @property
    def tls_port(self) -> int: ...
    @property
    def log(self) -> Path: ...


class CoturnProbe:
    """The log and the relay sockets of one coturn, together.

    :param log: the server's log.
    :param relays: its relay sockets.
    """

    def __init__(self, log: CoturnLog, relays: RelaySockets) -> None:
        self.log = log
        self.relays = relays

    @classmethod
    def from_service(cls, service: Service, pid: int | None = None) -> CoturnProbe:
        """The probe of a server that ``tests/coturn.sh`` started.

        :param service: the ``coturn`` fixture (``tests.conftest.TurnService``).
        :param pid: its process id; by default read from the ``pid`` file
            that ``coturn.sh`` writes next to the log (``TURN_DIR/pid``).
        """
        if pid is None:
            pid = int((service.log.parent / "pid").read_text().strip())
        return cls(
            CoturnLog(service.log), RelaySockets(pid, (service.port, service.tls_port))
        )

    def allocations(self) -> int:
        """How many allocations the server holds now: its relay sockets.

        A snapshot: after a Refresh with LIFETIME 0 over UDP, coturn deletes
        the allocation one second later, so compare with
        :meth:`wait_allocations`, not right after a client closed.
        """
        return len(self.relays.addresses())

    def wait_allocations(self, count: int, *, timeout: float) -> bool:
        """Whether, within ``timeout`` seconds, the server holds exactly
        ``count`` allocations (:meth:`allocations`)."""
        return self.relays.wait_count(count, timeout=timeout)

    def mark(self) -> int:
        """The log's current end (:meth:`CoturnLog.mark`)."""
        return self.log.mark()

    def wait_gone(
        self,
        mark: int,
        count: int = 1,
        *,
        username: str | None = None,
        client: Address | None = None,
        relays: Collection[Address] = (),
        timeout: float,
    ) -> bool:
        """Whether, within ``timeout`` seconds, the log shows at least
        ``count`` allocations created after ``mark`` (of ``username``, from
        ``client``; ``None``: any), every one deleted, and their relay sockets
        closed too: none of ``relays`` bound or, without ``relays``, no more
        relay sockets than the log shows live allocations (exact while no
        other client allocates meanwhile).
        """

        def look() -> bool | None:
            found = [
                a
                for a in self.log.allocations_since(mark)
                if a.matches(username, client)
            ]
            if len(found) < count or not all(a.deleted for a in found):
                return None
            bound = self.relays.addresses()
            if relays:
                return None if bound & set(relays) else True
            live = [a for a in self.log.allocations_since(0) if not a.deleted]
            return True if len(bound) == len(live) else None

        return poll(look, timeout) is not None
