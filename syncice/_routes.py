"""Where a connection's data goes: the :class:`Route` of each component,
which callers write on from their own threads (``send()``, ``send_many()``),
replaced by the worker's session when the selected pair changes; and its
relay half, :class:`Relayed`.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable, Sequence

from ._batch import BatchSender
from ._checklist import PairStats
from ._demux import frame_channel_data
from .candidate import Candidate

__all__ = ["Relayed", "Route"]

Address = tuple[str, int]


#: A route's pair: its component, local and remote candidates.
RouteKey = tuple[int, Candidate, Candidate]


class Route:
    """Where data for one component goes; replaced, never changed (but for
    its counters).

    A relayed route (``relay`` set) sends through its TURN allocation: as
    ChannelData straight to the server over UDP once a channel is bound,
    otherwise through the worker, which wraps it. An ICE-TCP route is a
    relayed one without channels whose ``write`` frames the datagram onto
    the pair's TCP connection from the calling thread. :attr:`sent` and
    :attr:`sent_bytes` count what callers wrote on it themselves (the
    worker adds them to the selected pair's stats), under a lock of the
    route's own, so that concurrent senders are all counted.
    """

    __slots__ = (
        "addr",
        "batch",
        "count_lock",
        "key",
        "relay",
        "sent",
        "sent_bytes",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket | None,
        addr: Address,
        relay: Relayed | None = None,
        key: RouteKey | None = None,
        batch: BatchSender | None = None,
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.relay = relay
        #: How :meth:`send_many` writes (the connection's, which remembers
        #: whether GSO works).
        self.batch = batch or BatchSender(gso=False)
        #: ``(component, local, remote)`` of the pair this route is for.
        self.key = key
        self.sent = 0
        self.sent_bytes = 0
        self.count_lock = threading.Lock()

    def counts(self) -> tuple[int, int]:
        """The datagrams and bytes callers sent on this route so far."""
        with self.count_lock:
            return self.sent, self.sent_bytes

    def send(self, data: bytes) -> None:
        """Write ``data`` on this route from the calling thread, or, on a
        relay without a channel bound yet (or over a stream), hand it to the
        worker, which wraps it.

        :raises OSError: as ``sendto`` does.
        :raises ValueError: relayed, if ``data`` is longer than 65,535 bytes.
        """
        relay = self.relay
        if relay is not None:
            if len(data) > 0xFFFF:  # more than ChannelData or a Send can carry
                raise ValueError(f"datagram of {len(data)} bytes is too large")
            channel = relay.channels.get(relay.peer)
            sock = self.sock
            if channel is not None and sock is not None:
                sock.sendto(frame_channel_data(channel, data), self.addr)
            elif relay.write is None or not relay.write(data):
                relay.post(bytes(data))
                return
            size = len(data)
        else:
            size = self.sock.sendto(data, self.addr)  # type: ignore[union-attr]
        with self.count_lock:
            self.sent += 1
            self.sent_bytes += size

    def send_many(self, datagrams: Sequence[bytes]) -> tuple[int, OSError | None]:
        """Write ``datagrams`` in order, in as few system calls as can be
        (:class:`~syncice._batch.BatchSender`; relayed: one by one).

        :returns: how many were written, and the error that stopped the
            batch at the next one (``None``: all were written), as
            :meth:`BatchSender.send <syncice._batch.BatchSender.send>`.
        :raises ValueError: as :meth:`send`.
        """
        if self.relay is not None or self.sock is None:
            for index, data in enumerate(datagrams):
                try:
                    self.send(data)
                except OSError as exc:
                    return index, exc
            return len(datagrams), None
        sent, error = self.batch.send(self.sock, datagrams, self.addr)
        size = sum(map(len, datagrams[:sent] if error else datagrams))
        with self.count_lock:
            self.sent += sent
            self.sent_bytes += size
        return sent, error


class Relayed:
    """The relay half of a route (see :class:`Route`)."""

    __slots__ = ("channels", "peer", "post", "write")

    def __init__(
        self,
        channels: dict[Address, int],
        peer: Address,
        post: Callable[[bytes], None],
        write: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.channels = channels  # the allocation's: read, never written, here
        self.peer = peer
        self.post = post
        #: Writes from the calling thread when it can (an ICE-TCP stream
        #: under its own lock): whether it did; else ``post`` is used.
        self.write = write


def with_sent(
    stats: list[PairStats],
    routes: Sequence[Route],
    earlier: dict[RouteKey, tuple[int, int]],
) -> list[PairStats]:
    """``stats`` with what callers sent on ``routes`` (and on the routes
    folded into ``earlier``) credited to their pairs, once per pair: after
    an ICE restart, a pair of the new generation may have the candidates of
    the old one (the selected pair gets them)."""
    sent = dict(earlier)
    for route in routes:
        if route.key is not None:
            count, size = sent.get(route.key, (0, 0))
            more, more_bytes = route.counts()
            sent[route.key] = (count + more, size + more_bytes)
    if not sent:
        return stats
    first: dict[RouteKey, int] = {}
    for i, s in enumerate(stats):
        key = (s.component, s.local, s.remote)
        if key not in first or s.selected:
            first[key] = i
    out = []
    for i, s in enumerate(stats):
        key = (s.component, s.local, s.remote)
        count, size = sent.get(key, (0, 0)) if first[key] == i else (0, 0)
        if count:
            s = dataclasses.replace(
                s,
                datagrams_sent=s.datagrams_sent + count,
                bytes_sent=s.bytes_sent + size,
            )
        out.append(s)
    return out
