"""Data loss under a STUN flood, per receive path (loopback only).

A connected pair with consent running (a short ``consent_interval``); four
sockets on other ports send unauthenticated Binding requests at ``b``'s
socket at ``--rate`` per second while ``a`` sends ``--count`` data
datagrams to ``b`` at ``--data-rate`` per second and a thread of ``b``
receives them. Reported: datagrams lost, and the flood actually sent.

Receive paths (``--path``, both by default, alternating for ``--runs``):

- ``worker``: direct reads off (``ConnectionCore.direct_reads``): the
  worker reads every socket and queues data for the caller.
- ``direct``: as a blocking ``Connection`` comes: the caller may read the
  sockets itself while it waits (:mod:`syncice._inbox`), and gives them
  back to the worker when they are busy. The line says how many datagrams
  the caller read itself and how often it gave the sockets back.
- ``direct-kept`` (not in ``both``): direct reads without giving busy
  sockets back (``syncice._inbox.BUSY`` set out of reach), to measure what
  that rule saves: the caller reads everything, STUN included, and hands
  the STUN to the worker.

    .venv/bin/python bench/stun_flood.py [--rate 20000] [--count 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
import time

from syncice import Connection, IceConfig, IceTimeoutError, _inbox
from syncice.stun import Class, Message, Method

LOOPBACK = ["127.0.0.1"]


def connected_pair(direct: bool) -> tuple[Connection, Connection]:
    """A connected pair; ``b`` with direct reads on or off."""
    config = IceConfig(consent_interval=0.5)
    a = Connection(True, local_addresses=LOOPBACK, config=config)
    b = Connection(False, local_addresses=LOOPBACK, config=config)
    b._core.direct_reads = direct
    a.gather_candidates(timeout=10)
    b.gather_candidates(timeout=10)
    for x, y in ((a, b), (b, a)):
        for c in y.local_candidates:
            x.add_remote_candidate(c)
        x.add_remote_candidate(None)
        x.remote_username, x.remote_password = y.local_username, y.local_password
    done = threading.Thread(target=lambda: b.connect(timeout=10))
    done.start()
    a.connect(timeout=10)
    done.join()
    return a, b


def flood(target: tuple[str, int], rate: int, stop: threading.Event) -> int:
    """Unauthenticated Binding requests from four other ports; how many."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    sent = 0
    start = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                request = Message(Method.BINDING, Class.REQUEST, os.urandom(12))
                with contextlib.suppress(BlockingIOError):  # full: dropped
                    socks[sent % 4].sendto(bytes(request), target)
                sent += 1
            time.sleep(0.001)
    finally:
        for sock in socks:
            sock.close()
    return sent


def run(path: str, rate: int, count: int, data_rate: int) -> float:
    """One run; the share of data lost, in %."""
    busy = _inbox.BUSY
    if path == "direct-kept":
        _inbox.BUSY = 1 << 62
    try:
        return flooded_run(path, rate, count, data_rate)
    finally:
        _inbox.BUSY = busy


def flooded_run(path: str, rate: int, count: int, data_rate: int) -> float:
    a, b = connected_pair(path != "worker")
    target = (b.local_candidates[0].host, b.local_candidates[0].port)
    stop = threading.Event()
    flooded: list[int] = []
    flooder = threading.Thread(target=lambda: flooded.append(flood(target, rate, stop)))
    got = 0

    def receive() -> None:
        nonlocal got
        while True:
            try:
                b.recv(timeout=1.0)
            except IceTimeoutError:
                return
            got += 1

    receiver = threading.Thread(target=receive)
    flooder.start()
    receiver.start()
    start = time.monotonic()
    for n in range(count):
        while time.monotonic() - start < n / data_rate:
            time.sleep(0.0005)
        a.send(b"%08d" % n)
    receiver.join()
    stop.set()
    flooder.join()
    elapsed = time.monotonic() - start
    lost = count - got
    print(
        f"flood: {flooded[0]:,} requests in {elapsed:.1f} s"
        f" ({flooded[0] / elapsed:,.0f}/s)"
    )
    lease = b._core.inbox.lease
    how = (
        ""
        if lease is None
        else f"; {lease.kept:,} read by the caller, sockets given back"
        f" {lease.given_back} times"
    )
    print(
        f"path {path}: {count:,} sent, {got:,} received,"
        f" lost {lost} ({100 * lost / count:.2f} %){how}"
    )
    a.close()
    b.close()
    return 100 * lost / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20000, help="flood requests/s")
    parser.add_argument("--count", type=int, default=20000, help="data datagrams")
    parser.add_argument("--data-rate", type=int, default=5000, help="data/s")
    parser.add_argument(
        "--path", choices=("worker", "direct", "direct-kept", "both"), default="both"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per path")
    args = parser.parse_args()
    paths = ("worker", "direct") if args.path == "both" else (args.path,)
    losses: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(args.runs):
        for path in paths:
            losses[path].append(run(path, args.rate, args.count, args.data_rate))
    for path, lost in losses.items():
        print(
            f"{path}: lost {min(lost):.2f} to {max(lost):.2f} %,"
            f" mean {sum(lost) / len(lost):.2f} % over {len(lost)} runs"
        )


if __name__ == "__main__":
    main()
