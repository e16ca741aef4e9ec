"""bench/ice.py's bulk case: ``send_many()``/``recv_many()`` against raw
sockets, one ``sendto`` per datagram and with GSO/GRO done by hand.

Each run moves ``count`` datagrams of ``size`` bytes one way with at most
``window`` unacknowledged, as the throughput case does; the receiver checks
every sequence number and acks every ``window // 4``. Senders hand the
library as many datagrams at once as the window allows; the receiver takes
what has arrived with one call. The raw GSO baseline is plain Python: one
``sendmsg`` with a ``UDP_SEGMENT`` control message per run of at most 64
datagrams (and 65,507 bytes), and a receiver with ``UDP_GRO`` that splits
each read by the segment size its control message gives.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable

from _common import (
    TIMEOUT,
    Endpoint,
    Report,
    SynciceConnection,
    best_of,
    lossless_window,
    raw_endpoint,
    raw_pair,
    receive_blocking,
    syncice_connect,
    syncice_endpoint,
    transfer_blocking,
)

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
TARGET = 3.0  # syncice bulk datagrams/s / raw per-datagram sendto's, at least

SendMany = Callable[[list[bytes]], object]
RecvMany = Callable[[], list[bytes]]


def transfer(
    tx: Endpoint,
    send_many: SendMany,
    rx: Endpoint,
    recv_many: RecvMany,
    count: int,
    size: int,
    window: int,
) -> float:
    """``count`` datagrams from ``tx`` to ``rx``, checked, in bulk."""
    receive = functools.partial(
        receive_blocking, rx, count, size, window // 4, recv_many
    )
    return transfer_blocking(tx, receive, count, size, window, send_many)


def bulk_syncice(
    pair: Callable[[], tuple[SynciceConnection, SynciceConnection]],
    count: int,
    size: int,
    window: int,
) -> float:
    a, b = pair()
    try:
        syncice_connect(a, b)
        return transfer(
            syncice_endpoint(a),
            a.send_many,
            syncice_endpoint(b),
            functools.partial(b.recv_many, window, timeout=TIMEOUT),
            count,
            size,
            window,
        )
    finally:
        a.close()
        b.close()


def bulk_raw(count: int, size: int, window: int, *, gso: bool) -> float:
    """Raw sockets: one ``sendto`` and one ``recv`` per datagram, or GSO
    sends and GRO receives done by hand."""
    a, b = raw_pair()
    with a, b:
        tx, rx = raw_endpoint(a), raw_endpoint(b)
        if not gso:
            return transfer(
                tx,
                lambda run: [a.send(d) for d in run],
                rx,
                lambda: [rx.recv()],
                count,
                size,
                window,
            )
        b.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
        segment = struct.pack("=H", size)
        per_call = max(1, min(64, 65_507 // size))
        space = socket.CMSG_SPACE(4)

        def send_gso(datagrams: list[bytes]) -> None:
            for i in range(0, len(datagrams), per_call):
                run = datagrams[i : i + per_call]
                if len(run) == 1:
                    a.send(run[0])
                else:
                    a.sendmsg(
                        [b"".join(run)], [(socket.IPPROTO_UDP, UDP_SEGMENT, segment)]
                    )

        def recv_gro() -> list[bytes]:
            data, ancillary, _, _ = b.recvmsg(65_535, space)
            glued = 0
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_UDP and kind == UDP_GRO:
                    glued = struct.unpack("=i", value[:4])[0]
            if not glued or len(data) <= glued:
                return [data]
            return [data[i : i + glued] for i in range(0, len(data), glued)]

        return transfer(tx, send_gso, rx, recv_gro, count, size, window)


def case_bulk(
    report: Report,
    pair: Callable[[], tuple[SynciceConnection, SynciceConnection]] | None,
    count: int,
    size: int,
    window: int,
    repeat: int,
) -> None:
    effective, held = lossless_window(size, window)
    report.header(
        f"bulk: {count:,} datagrams of {size} B, one way, window {effective} "
        f"(an unread default buffer holds {held}), ack every {effective // 4}, "
        f"best of {repeat}; syncice: send_many()/recv_many(); raw: one sendto "
        "each, then GSO/GRO by hand"
    )
    runs: dict[str, Callable[[], float]] = {
        "raw": lambda: bulk_raw(count, size, effective, gso=False),
        "raw GSO": lambda: bulk_raw(count, size, effective, gso=True),
    }
    if pair is not None:
        runs["syncice"] = lambda: bulk_syncice(pair, count, size, effective)
    times = best_of(report, "bulk", ("syncice", "raw", "raw GSO"), runs, repeat)
    best = {
        library: None if elapsed is None else max(count / t for t in elapsed)
        for library, elapsed in times.items()
    }
    ours, raw = best["syncice"], best["raw"]
    report.row(
        "datagrams/s",
        {"syncice": ours, "aioice": None, "raw": raw},
        ",.0f",
        f">= {TARGET:.1f}x raw sendto",
        None if ours is None or raw is None else ours >= TARGET * raw,
        "bulk datagrams/s",
    )
    report.row(
        "  vs raw GSO/GRO",
        {"syncice": ours, "aioice": None, "raw": best["raw GSO"]},
        ",.0f",
    )
