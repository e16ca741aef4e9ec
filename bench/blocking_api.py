"""Figures of the blocking API's promises, on loopback.

Usage::

    python bench/blocking_api.py [--quick]

The tests (``tests/test_promises.py``) assert the behaviour; this measures it:

- timeout: ``recv(timeout=T)`` and ``recvfrom(timeout=T)`` on a connected pair
  whose peer sends consent checks every ~50 ms, for T in 0.5, 2 and 10 s and
  components 1 and 2, each call in a thread of its own and all at once: how
  late each call ends after T (median and max, ms).
- close: N threads (1 to 8) blocked in ``recv()`` or ``recvfrom()``, the peer
  sending or silent, components 1 and 2: how long after ``close()`` is called
  the last of them has raised ``ConnectionClosedError``, and how long
  ``close()`` itself took (max over the runs, ms).

Nothing here is a target: the figures go in the closing notes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable

from _common import syncice_connect, syncice_signal

from syncice import Connection, ConnectionClosedError, IceConfig, IceTimeoutError

LOOPBACK = ["127.0.0.1"]
GUARD = 60.0
CHATTY = IceConfig(consent_interval=0.05, consent_timeout=5.0)


def pair(
    components: int, config: IceConfig | None = None
) -> tuple[Connection, Connection]:
    a = Connection(True, components=components, local_addresses=LOOPBACK, config=config)
    b = Connection(
        False, components=components, local_addresses=LOOPBACK, config=config
    )
    a.gather_candidates(timeout=GUARD)
    b.gather_candidates(timeout=GUARD)
    syncice_signal(a, b)
    syncice_connect(a, b)
    return a, b


def late_by(conn: Connection, method: str, timeout: float, repeats: int) -> list[float]:
    call: Callable[..., object] = getattr(conn, method)
    late = []
    for _ in range(repeats):
        start = time.monotonic()
        try:
            call(timeout=timeout)
        except IceTimeoutError:
            late.append(time.monotonic() - start - timeout)
        else:
            raise SystemExit(f"{method}(timeout={timeout}) returned data")
    return late


def concurrent_timeouts(
    conn: Connection, plan: list[tuple[float, int]]
) -> dict[tuple[float, str], list[float]]:
    """Every ``(T, repeats)`` of ``plan``, for recv and recvfrom, all at once."""
    results: dict[tuple[float, str], list[float]] = {}

    def run(timeout: float, method: str, repeats: int) -> None:
        results[timeout, method] = late_by(conn, method, timeout, repeats)

    threads = [
        threading.Thread(target=run, args=(timeout, method, repeats))
        for timeout, repeats in plan
        for method in ("recv", "recvfrom")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD * 2)
    return results


def bench_timeouts(quick: bool) -> None:
    plan = [(0.5, 3 if quick else 10), (2.0, 1 if quick else 3)]
    if not quick:
        plan.append((10.0, 1))
    print(
        "timeout: late by (ms) after T, consent checks every ~50 ms, all calls at once"
    )
    header = ("components", "T (s)", "method", "calls", "median", "max")
    print("  {:>10} {:>6} {:>9} {:>6} {:>8} {:>8}".format(*header))
    for components in (1, 2):
        a, b = pair(components, CHATTY)
        try:
            results = concurrent_timeouts(b, plan)
            for (timeout, method), late in sorted(results.items()):
                print(
                    f"  {components:>10} {timeout:>6} {method:>9} {len(late):>6}"
                    f" {statistics.median(late) * 1000:>8.2f} {max(late) * 1000:>8.2f}"
                )
        finally:
            a.close()
            b.close()


def wake_times(components: int, callers: int, sending: bool) -> tuple[float, float]:
    """(last caller woken, close() duration) after close() is called, seconds."""
    a, b = pair(components)
    woken: list[float] = []
    lock = threading.Lock()
    started = threading.Barrier(callers + 1)
    stop = threading.Event()

    def reader(method: str) -> None:
        call: Callable[..., object] = getattr(b, method)
        started.wait(GUARD)
        while True:
            try:
                call(timeout=GUARD)
            except ConnectionClosedError:
                with lock:
                    woken.append(time.monotonic())
                return

    def sender() -> None:
        count = 0
        while not stop.wait(0.0005):
            count += 1
            try:
                a.sendto(count.to_bytes(8, "big"), 1 + count % components)
            except ConnectionClosedError:
                return

    threads = [
        threading.Thread(target=reader, args=("recv" if i % 2 else "recvfrom",))
        for i in range(callers)
    ]
    if sending:
        threads.append(threading.Thread(target=sender))
    for thread in threads:
        thread.start()
    started.wait(GUARD)
    time.sleep(0.05)  # let every reader get into its wait: a measurement only
    begin = time.monotonic()
    b.close()
    closed = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(GUARD)
    a.close()
    if len(woken) != callers:
        raise SystemExit(f"{callers - len(woken)} of {callers} readers not woken")
    return max(woken) - begin, closed - begin


def bench_close(quick: bool) -> None:
    print("close: the last of N blocked readers raised, and close() returned (ms)")
    print(
        f"  {'components':>10} {'peer':>8} {'N':>3} {'last woken':>11} {'close()':>8}"
    )
    counts = (1, 4, 8) if quick else range(1, 9)
    for components in (1, 2):
        for sending in (False, True):
            for callers in counts:
                last, duration = wake_times(components, callers, sending)
                print(
                    f"  {components:>10} {'sending' if sending else 'silent':>8}"
                    f" {callers:>3} {last * 1000:>11.2f} {duration * 1000:>8.2f}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    print(f"syncice blocking API, Python {sys.version.split()[0]}, on 127.0.0.1")
    bench_timeouts(args.quick)
    bench_close(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
