"""Many UDP datagrams per system call, where Linux offers it, and one per
call where it does not: the batch I/O under ``send_many()`` and
``recv_many()``.

- Sending, GSO (``UDP_SEGMENT``, Linux 4.18): a run of datagrams of one
  size to one address (the last of the run may be shorter) goes out in one
  ``sendmsg`` whose control message gives the size; the kernel, or the
  device, cuts it into the datagrams. :func:`plan` groups a batch into
  runs; :class:`BatchSender` sends them, and falls back to one ``sendto``
  per datagram on the first sign that the socket, the kernel or the device
  cannot (no ``sendmsg``, ``ENOPROTOOPT``, ``EINVAL``, ``EOPNOTSUPP``, or
  ``EIO`` from a device without checksum offload). What it found is
  remembered, per sender.
- Receiving, GRO (``UDP_GRO``, Linux 5.0): once :func:`enable_gro` has set
  it, the kernel may hand over consecutive datagrams of one size from one
  source in a single read, with the size in a control message. Every read
  of such a socket must then be a :func:`receive` (``recvmsg``), which
  splits them (:func:`split`): a plain ``recvfrom`` would return them glued.

Each datagram that comes out of :func:`receive` is one the peer sent, and
goes through ICE's demultiplexing like any other: this module never looks
inside. Whoever owns the socket calls these (the worker, or the caller that
holds the socket's token); none of them blocks (the sockets are
non-blocking).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence

Address = tuple[str, int]

__all__ = [
    "MAX_BYTES",
    "MAX_SEGMENTS",
    "BatchSender",
    "GroSwitch",
    "enable_gro",
    "plan",
    "receive",
    "split",
]

#: The socket options (linux/udp.h), where the socket module lacks them.
UDP_SEGMENT: int = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO: int = getattr(socket, "UDP_GRO", 104)

#: At most this many datagrams in one GSO send (the kernel's
#: ``UDP_MAX_SEGMENTS``, 64 before Linux 6.9).
MAX_SEGMENTS = 64
#: At most this many bytes in one GSO send: the payload of one IPv4 UDP
#: datagram of the largest size (65,535 less 20 bytes of IP header and 8 of
#: UDP).
MAX_BYTES = 65_507
#: The most a coalesced read can hold.
READ_SIZE = 65_535

# errno values saying that GSO is not to be had on this socket or path.
_NO_GSO = frozenset(
    {errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP, errno.EIO, errno.ENOSYS}
)
_SEGMENT = struct.Struct("=H")
_GRO_SIZE = struct.Struct("=i")
_CMSG_SPACE = socket.CMSG_SPACE(_GRO_SIZE.size) if hasattr(socket, "CMSG_SPACE") else 0


def plan(
    datagrams: Sequence[bytes],
    *,
    max_segments: int = MAX_SEGMENTS,
    max_bytes: int = MAX_BYTES,
) -> list[tuple[int, int, int]]:
    """Group ``datagrams`` into runs that one GSO send can carry, in order.

    :returns: ``(start, end, size)`` for each run ``datagrams[start:end]``:
        every datagram of it ``size`` bytes long but the last, which may be
        shorter (not empty); at most ``max_segments`` datagrams and
        ``max_bytes`` bytes. A run of one is sent on its own.
    """
    runs: list[tuple[int, int, int]] = []
    count = len(datagrams)
    start = 0
    while start < count:
        size = len(datagrams[start])
        end = start + 1
        if size:
            most = min(start + max_segments, start + max_bytes // size, count)
            while end < most and len(datagrams[end]) == size:
                end += 1
            if end < most and 0 < len(datagrams[end]) < size:
                end += 1  # a shorter one may close the run
        runs.append((start, end, size))
        start = end
    return runs


def split(data: bytes, size: int) -> list[bytes]:
    """The datagrams of a coalesced read: ``size`` bytes each, the last
    what remains (``data`` itself if it is not longer than ``size``)."""
    if size <= 0 or len(data) <= size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


class BatchSender:
    """Sends batches of datagrams on UDP sockets, with GSO while it works.

    :param gso: ``False`` never tries GSO (one ``sendto`` per datagram: the
        fallback, forced); ``None`` tries it once and remembers the outcome.
    """

    __slots__ = ("gso", "syscalls")

    def __init__(self, gso: bool | None = None) -> None:
        #: Whether GSO works (``None``: not tried yet).
        self.gso = gso
        #: System calls made, ever (a figure for tests and benchmarks).
        self.syscalls = 0

    def send(
        self, sock: socket.socket, datagrams: Sequence[bytes], addr: Address
    ) -> tuple[int, OSError | None]:
        """Write ``datagrams`` to ``addr``, in order, in as few calls as can be.

        :returns: how many were written, and the error that stopped the
            batch at the next one (``None``: all were written). The error
            is what ``sendto`` raises for that datagram (a full buffer's
            :class:`BlockingIOError`, ``EMSGSIZE`` ...); with GSO, for the
            first of its run.
        """
        sent = 0
        for start, end, size in plan(datagrams):
            if end - start > 1 and self.gso is not False:
                try:
                    self.syscalls += 1
                    sock.sendmsg(
                        [b"".join(datagrams[start:end])],
                        [(socket.IPPROTO_UDP, UDP_SEGMENT, _SEGMENT.pack(size))],
                        0,
                        addr,
                    )
                except BlockingIOError as exc:
                    return sent, exc
                except OSError as exc:
                    if exc.errno not in _NO_GSO:
                        return sent, exc
                    # This run goes out one by one; and every later one, but
                    # for EINVAL once GSO worked: datagrams too large for the
                    # path's MTU in one segment, not a lack of GSO.
                    if not (exc.errno == errno.EINVAL and self.gso):
                        self.gso = False
                else:
                    self.gso = True
                    sent += end - start
                    continue
            for index in range(start, end):
                try:
                    self.syscalls += 1
                    sock.sendto(datagrams[index], addr)
                except OSError as exc:
                    return sent, exc
                sent += 1
        return sent, None


class GroSwitch:
    """Whether the kernel is to glue what a connection's sockets receive
    (GRO), and on which sockets it does.

    Anyone may ask for it (:attr:`wanted`); each socket's owner (the
    worker, or the reading caller that holds its token) turns it on, in
    :meth:`reads_glued`, just before a read: so no read of a socket ever
    meets glued datagrams with a plain ``recvfrom``.
    """

    __slots__ = ("sockets", "wanted")

    def __init__(self) -> None:
        #: Asked for (``recv_many()``): set once, never cleared.
        self.wanted = False
        #: Whether GRO is on, by socket endpoint, once its owner tried.
        self.sockets: dict[int, bool] = {}

    def reads_glued(self, sock: socket.socket, endpoint: int) -> bool:
        """Whether reads of ``sock`` must be :func:`receive` calls: GRO is
        wanted, and on (turned on now, by its owner, if not tried yet)."""
        on = self.sockets.get(endpoint)
        if on is None:
            on = self.sockets[endpoint] = enable_gro(sock)
        return on


def enable_gro(sock: socket.socket) -> bool:
    """Let the kernel coalesce what ``sock`` receives (every read of it must
    then be a :func:`receive`). :returns: whether it could."""
    if not _CMSG_SPACE:  # pragma: no cover - not on Linux
        return False
    try:
        sock.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def receive(sock: socket.socket, into: list[tuple[bytes, Address]], most: int) -> int:
    """Read what is waiting on ``sock`` (non-blocking), at most ``most``
    reads, each split into the datagrams the kernel coalesced, appended to
    ``into`` with their source in order.

    :returns: the number of reads (0: nothing was waiting).
    :raises OSError: other than "nothing waiting", from the first read.
    """
    reads = 0
    while reads < most:
        try:
            data, ancillary, _, addr = sock.recvmsg(READ_SIZE, _CMSG_SPACE)
        except BlockingIOError:
            break
        except OSError:
            if reads:
                break  # an ICMP error: the next call sees it
            raise
        reads += 1
        if len(addr) != 2:
            addr = (addr[0], addr[1])
        size = 0
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_UDP and kind == UDP_GRO:
                size = _GRO_SIZE.unpack_from(value)[0]
        if size and len(data) > size:
            for part in split(data, size):
                into.append((part, addr))
        else:
            into.append((data, addr))
    return reads
