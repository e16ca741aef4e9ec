"""ICE-TCP against UDP on loopback: connect time and one-way throughput.

For each transport (``("udp",)``, then ``("tcp",)``), two
:class:`syncice.Connection` objects on 127.0.0.1 connect ``--runs`` times
(the median connect time is reported, from both ``connect()`` calls started
to both done), then one sends ``--count`` datagrams of ``--size`` bytes as
fast as it can while the other receives; the rate counts what arrived.
Prints one table. Not part of the test suites.

Run: ``python bench/ice_tcp_vs_udp.py [--runs 20] [--count 50000] [--size 1200]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import syncice
from syncice.exceptions import IceTimeoutError


def pair(
    transports: tuple[str, ...],
) -> tuple[syncice.Connection, syncice.Connection, float]:
    a = syncice.Connection(True, local_addresses=["127.0.0.1"], transports=transports)
    b = syncice.Connection(False, local_addresses=["127.0.0.1"], transports=transports)
    a.gather_candidates(timeout=10)
    b.gather_candidates(timeout=10)
    for ours, theirs in ((a, b), (b, a)):
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        for candidate in ours.local_candidates:
            theirs.add_remote_candidate(candidate)
        theirs.add_remote_candidate(None)
    started = time.perf_counter()
    other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
    other.start()
    a.connect(timeout=10)
    other.join()
    return a, b, time.perf_counter() - started


def throughput(
    a: syncice.Connection, b: syncice.Connection, count: int, size: int
) -> tuple[int, float]:
    data = b"\x80" + bytes(size - 1)

    def send_all() -> None:
        for _ in range(count):
            a.send(data)

    sender = threading.Thread(target=send_all)
    got = 0
    started = time.perf_counter()
    sender.start()
    last = started
    try:
        while got < count:
            b.recv(timeout=0.5)
            got += 1
            last = time.perf_counter()
    except IceTimeoutError:
        pass  # what was lost will not come
    sender.join()
    return got, last - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--count", type=int, default=50000)
    parser.add_argument("--size", type=int, default=1200)
    args = parser.parse_args()
    print(f"{'transport':10} {'connect ms':>11} {'arrived':>13} {'Mbit/s':>8}")
    for transports in (("udp",), ("tcp",)):
        times = []
        for _ in range(args.runs):
            a, b, took = pair(transports)
            times.append(took)
            a.close()
            b.close()
        a, b, _ = pair(transports)
        try:
            got, seconds = throughput(a, b, args.count, args.size)
        finally:
            a.close()
            b.close()
        rate = got * args.size * 8 / seconds / 1e6
        print(
            f"{transports[0]:10} {statistics.median(times) * 1e3:11.2f} "
            f"{got:6}/{args.count:<6} {rate:8.0f}"
        )


if __name__ == "__main__":
    main()
