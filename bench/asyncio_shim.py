"""asyncio shim benchmark: ``syncice.asyncio`` against aioice, on loopback.

Usage::

    python bench/asyncio_shim.py [--cases connect,throughput,callbacks] [--quick]

Both libraries run the same asyncio code (``bench/ice.py``'s aioice side and
``bench/_common.py``'s helpers), in the same run, on one event loop each:
the column "syncice" is :class:`syncice.asyncio.Connection` (given
``local_addresses=["127.0.0.1"]``), "aioice" is aioice 0.13 (its
``get_host_addresses`` patched to ``["127.0.0.1"]``). The figures are
printed with the ratio shim/aioice and the targets of issue 5, marked met
or missed. All traffic stays on loopback.

Cases:

- connect: ``--pairs`` fresh pairs (after one warm-up pair), each created,
  gathered and signalled untimed; then ``asyncio.gather(a.connect(),
  b.connect())`` is timed. Median and p90 in ms. Target: the shim's median at
  most 1.0x aioice's.
- throughput, 100 B and 1200 B datagrams, one way, windowed: a sender task
  with at most W datagrams unacknowledged, a receiver task that checks each
  datagram's length and sequence number (so exactly ``count`` arrived, intact
  and in order: a lost or damaged datagram fails the run and is reported as
  an error) and acks every W/4. W as in ``bench/ice.py`` (``--window``,
  clamped to what a default receive buffer holds for sure). Best of
  ``--repeat`` runs, libraries alternating, fresh pair each run. Target: the
  shim at least 1.0x aioice's datagrams/s.
- callbacks: how long the event loop's callbacks run during a throughput
  transfer of 100 B datagrams (``--count-callbacks``, fresh pair, one run
  each): every ``asyncio.Handle`` run (task steps, the shim's deliveries,
  aioice's datagram handlers) is timed, and the count, p99 and max are
  reported. A figure only, with no target: whether the shim blocks the loop
  is checked by the tests (``tests/loopguard.py``), not by a clock; a long
  callback here is the GIL held by the worker thread, a garbage collection,
  or the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import functools
import os
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from _common import (
    CASE_TIMEOUT,
    LOOPBACK,
    Report,
    add_arguments,
    attempt,
    best_of,
    chosen_cases,
    connect_aioice,
    connect_table,
    load_aioice,
    lossless_window,
    percentile,
    picker,
    report_rate,
    run_aioice,
    steady_malloc,
    throughput_header,
)
from ice import SIZES, aioice_pair, throughput_aioice

LIBRARIES = ("syncice", "aioice")
CONNECT_TARGET = 1.0  # shim median connect time / aioice's, at most
THROUGHPUT_TARGET = 1.0  # shim datagrams/s / aioice's, at least


def load_shim() -> Any:
    """``syncice.asyncio`` as the module-like object bench/ice.py's aioice
    code takes: its ``Connection`` gathers on 127.0.0.1."""
    import syncice.asyncio

    return types.SimpleNamespace(
        Connection=functools.partial(
            syncice.asyncio.Connection, local_addresses=[LOOPBACK]
        )
    )


def case_connect(report: Report, modules: dict[str, Any], pairs: int) -> None:
    times: dict[str, list[float] | None] = {}
    for library in LIBRARIES:
        maker = functools.partial(aioice_pair, modules[library])
        times[library] = attempt(
            report,
            "connect",
            library,
            functools.partial(
                run_aioice, functools.partial(connect_aioice, maker, pairs)
            ),
        )
    connect_table(
        report,
        "connect",
        f"connect: {pairs} pairs, both sides at once, host on loopback",
        times,
        CONNECT_TARGET,
    )


def case_throughput(
    report: Report,
    modules: dict[str, Any],
    counts: dict[int, int],
    window: int,
    repeat: int,
) -> None:
    for size in SIZES:
        count = counts[size]
        effective = throughput_header(report, size, count, window, repeat)
        case = f"throughput {size} B"
        runs: dict[str, Callable[[], float]] = {
            library: functools.partial(
                run_aioice,
                functools.partial(
                    throughput_aioice, modules[library], count, size, effective
                ),
            )
            for library in LIBRARIES
        }
        best = {
            library: None
            if times is None
            else max(count / elapsed for elapsed in times)
            for library, times in best_of(report, case, LIBRARIES, runs, repeat).items()
        }
        report_rate(report, best, size, THROUGHPUT_TARGET, f"{case} datagrams/s")


@contextlib.contextmanager
def callback_durations() -> Iterator[list[float]]:
    """The duration of every ``asyncio.Handle`` run (a callback, a task step)
    while the block runs, in seconds."""
    import asyncio.events

    durations: list[float] = []
    original = asyncio.events.Handle._run
    clock = time.perf_counter

    def timed(handle: asyncio.events.Handle) -> None:
        start = clock()
        try:
            original(handle)
        finally:
            durations.append(clock() - start)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    try:
        yield durations
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


def case_callbacks(
    report: Report, modules: dict[str, Any], count: int, window: int
) -> None:
    size = 100
    effective, _ = lossless_window(size, window)
    case = "callbacks"
    found: dict[str, list[float] | None] = {}
    for library in LIBRARIES:
        with callback_durations() as durations:
            done = attempt(
                report,
                case,
                library,
                functools.partial(
                    run_aioice,
                    functools.partial(
                        throughput_aioice, modules[library], count, size, effective
                    ),
                ),
            )
        found[library] = None if done is None else list(durations)
    report.header(
        f"callbacks: each loop callback's duration (ms) while {count:,} datagrams"
        f" of {size} B go one way, window {effective}: a figure, not a target"
    )
    report.row(
        "callbacks run",
        {k: None if v is None else float(len(v)) for k, v in found.items()},
        ",.0f",
    )
    for name, fraction in (("p50 (ms)", 0.5), ("p99 (ms)", 0.99)):
        report.row(
            name,
            {
                k: None if not v else percentile(v, fraction) * 1e3
                for k, v in found.items()
            },
            ".3f",
        )
    report.row(
        "max (ms)",
        {k: None if not v else max(v) * 1e3 for k, v in found.items()},
        ".3f",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, ("connect", "throughput", "callbacks"), 10)
    parser.add_argument("--count-small", type=int, help="100 B datagrams (100000)")
    parser.add_argument("--count-large", type=int, help="1200 B datagrams (50000)")
    parser.add_argument("--repeat", type=int, help="throughput runs, best kept (3)")
    parser.add_argument(
        "--count-callbacks", type=int, help="callbacks: 100 B datagrams (20000)"
    )
    args = parser.parse_args()
    pick = picker(args.quick)
    cases = chosen_cases(parser, args, ("connect", "throughput", "callbacks"))

    modules = {"syncice": load_shim(), "aioice": load_aioice()}
    malloc = steady_malloc()
    print(
        f"syncice.asyncio (column syncice) vs aioice "
        f"{modules['aioice'].__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, on {LOOPBACK}"
    )
    print(malloc)
    report = Report(LIBRARIES)
    for case in cases:
        faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
        if case == "connect":
            case_connect(report, modules, pick(args.pairs, 50, 10))
        elif case == "callbacks":
            count = pick(args.count_callbacks, 20_000, 5_000)
            case_callbacks(report, modules, count, args.window)
        else:
            counts = {
                100: pick(args.count_small, 100_000, 20_000),
                1200: pick(args.count_large, 50_000, 10_000),
            }
            repeat = pick(args.repeat, 3, 2)
            case_throughput(report, modules, counts, args.window, repeat)
        faulthandler.cancel_dump_traceback_later()
    report.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
