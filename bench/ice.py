"""ICE benchmark: syncice against aioice and raw UDP sockets, on loopback.

Usage::

    python bench/ice.py [--cases connect,throughput,bulk,rtt,scale] [--quick]
                        [--json FILE]

Every case runs syncice, aioice and (where it means something) two plain UDP
sockets in the same run, and prints the figures, the ratios syncice/aioice
and syncice/raw, and the targets of the ICE milestone, marked met or missed.
It ends with "all targets met" or the list of misses, and exits 0 either way
(2 on a usage error). ``--json FILE`` also writes the machine (CPU, kernel,
Python, date) and every row, with its ratios and target, as JSON, so that
runs can be compared. Only host candidates on 127.0.0.1 are used: aioice's
``get_host_addresses`` is patched to return ``["127.0.0.1"]`` and syncice is
given ``local_addresses=["127.0.0.1"]``. All traffic stays on loopback.

Cases:

- connect: ``--pairs`` fresh pairs (after one warm-up pair, not counted), each
  created, gathered and signalled (candidates, end-of-candidates, ufrag and
  pwd) untimed; then the time from both sides calling ``connect()`` to both
  returning. syncice: the controlled side's ``connect()`` runs in a helper
  thread, both threads leave a barrier together and the clock starts in the
  main thread on leaving it; aioice: ``asyncio.gather(a.connect(),
  b.connect())``. Median and p90 in ms.
- throughput, 100 B and 1200 B datagrams, one way, windowed: the sender has at
  most W datagrams unacknowledged and blocks on the reverse direction when the
  window is full; the receiver sends an 8-byte cumulative ack every W/4
  datagrams and after the last one. The clock runs from the first send to the
  sender reading the final ack. The receiver checks every datagram's length
  and the sequence number in its first 8 bytes (so exactly ``count`` arrived,
  intact and in order). W is ``--window`` (256) clamped to 3/4 of what a
  fresh UDP socket's default receive buffer holds at that size, less 8
  (probed at start-up, printed), so that no library can lose a datagram to a
  full kernel buffer: Linux gives back the memory of datagrams read from a UDP
  socket lazily, in steps of a quarter of the buffer, so a socket being read
  holds only 3/4 as many for sure. Best of ``--repeat`` runs, libraries
  alternating, fresh pair each run. syncice and raw: the receiver runs in
  its own thread, blocking in ``recv``; aioice: sender and receiver are two
  tasks on one event loop.
- bulk: 1200 B datagrams as the throughput case moves them (same window,
  acks and checks), with ``send_many()`` and ``recv_many()``: the sender
  hands over as many as the window allows at once, the receiver takes what
  has arrived in one call. Target: 3x the raw sockets' one ``sendto`` per
  datagram; beside it, raw sockets with GSO and GRO done by hand
  (``bench/_bulk.py``).
- rtt: one side echoes, the other sends one 100-byte datagram and waits for
  the echo; ``--rtt-count`` round trips after ``--rtt-warmup``, each timed on
  its own. Median and p99 in microseconds, of the run of lowest median
  among ``--repeat``, libraries alternating. syncice and raw: the echo runs in
  its own thread; aioice: a second task. Measured three times: with every
  thread of the process pinned to one CPU (target 1.5x raw); with the same,
  but the echo thread moved to a second CPU (target 1.1x raw: every round
  trip then wakes a thread on the other CPU, twice, as an unpinned pair of
  threads does when the scheduler spreads them); then unpinned. Unpinned,
  the scheduler puts the two threads on one CPU or on two, which on a small
  VM flips from run to run (raw sockets: 18 or 65 us here), so that row has
  no target: the two pinned rows are its two cases, each measured on
  purpose. aioice runs one thread: its "2 CPUs" row is its one-CPU one.
- scale: for each N in ``--scale``, a fresh ``sys.executable`` subprocess per
  library (so peaks do not mix, and each imports only its own library) opens
  N pairs, gathers each, signals each, connects each pair in turn (syncice:
  ``a.connect()`` then ``b.connect()`` from the main thread; aioice: gathered
  per pair), sends one datagram each way on every pair and checks it, then
  closes everything. It reports the total time, VmHWM (peak RSS) and the
  resident size after imports, and the highest thread count (threading and
  /proc/self/task) and fd count seen between steps, with the peak RSS per
  connection above the resident size after imports, and the time per pair.
  A run that needs more descriptors than the hard limit raises both limits
  (root, up to ``fs.nr_open``) and says so in its "descriptor limit" row.
  Raw: 2N plain sockets, one datagram each way, no connect.

Raw sockets are blocking, with a 10 s ``settimeout`` (each receive polls
first, about 1 us), as syncice's ``recv(timeout=10.0)`` is. For throughput and
scale they are connected. The RTT target is taken against unconnected raw
sockets (``sendto``/``recvfrom``): an ICE socket cannot be connected (it
answers checks from every candidate of the peer, and consent and data share
it), so that is the same work in the kernel. The connected figure is printed
under it, with its ratio, for comparison.
A run that loses or damages a datagram, or stalls for 10 s, is reported as an
error under the table and leaves that library's cell empty.

Every datagram the bench sends starts with a byte of 0x80 (the sequence
number with its top bit set), outside the STUN range of RFC 7983, so that no
library has to guess whether it is STUN.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import functools
import importlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from _bulk import case_bulk
from _common import (
    CASE_TIMEOUT,
    LOOPBACK,
    RECV_SIZE,
    TAG,
    TIMEOUT,
    Background,
    BenchError,
    Endpoint,
    Factory,
    Progress,
    Report,
    SynciceConnection,
    ack,
    add_arguments,
    aioice_close,
    aioice_signal,
    aioice_watch,
    attempt,
    best_of,
    case_connect,
    check_datagram,
    chosen_cases,
    connected_aioice,
    connected_syncice,
    load_aioice,
    percentile,
    picker,
    raw_endpoint,
    raw_pair,
    receive_blocking,
    report_rate,
    run_aioice,
    sequence,
    steady_malloc,
    syncice_signal,
    throughput_header,
    transfer_aioice,
    transfer_blocking,
)

LIBRARIES = ("syncice", "aioice", "raw")
SIZES = (100, 1200)
RTT_SIZE = 100

# Targets of the ICE milestone.
CONNECT_TARGET = 0.1  # syncice median connect time / aioice's, at most
THROUGHPUT_TARGET = 1.5  # syncice datagrams/s / aioice's, at least
CASES = ("connect", "throughput", "bulk", "rtt", "scale")
RTT_TARGET = 1.5  # syncice median round trip / raw sockets', at most
RTT_SPLIT_TARGET = 1.1  # the same, echo and ping threads on two CPUs


def load_syncice() -> tuple[Factory | None, str]:
    """``syncice.Connection``, or None and why it cannot be imported.

    Imported by name at run time, so that the bench type-checks and runs (for
    aioice and raw sockets) before ``Connection`` exists.
    """
    try:
        module = importlib.import_module("syncice")
        factory = cast(Factory, module.Connection)
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return factory, ""


# ---------------------------------------------------------------- pairs


def syncice_pair(factory: Factory) -> tuple[SynciceConnection, SynciceConnection]:
    """A controlling and a controlled connection, gathered and signalled."""
    a = factory(ice_controlling=True, local_addresses=[LOOPBACK])
    b = factory(ice_controlling=False, local_addresses=[LOOPBACK])
    a.gather_candidates(timeout=TIMEOUT)
    b.gather_candidates(timeout=TIMEOUT)
    syncice_signal(a, b)
    return a, b


async def aioice_pair(aioice: Any) -> tuple[Any, Any]:
    """A controlling and a controlled connection, gathered and signalled."""
    import asyncio

    a = aioice.Connection(ice_controlling=True)
    b = aioice.Connection(ice_controlling=False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    await aioice_signal(a, b)
    return a, b


# ---------------------------------------------------------------- throughput
#
# The senders are in _common; the receivers check that exactly ``count``
# datagrams arrive, intact and in order.


def throughput_blocking(
    tx: Endpoint, rx: Endpoint, count: int, size: int, window: int
) -> float:
    receive = functools.partial(receive_blocking, rx, count, size, window // 4)
    return transfer_blocking(tx, receive, count, size, window)


async def receive_aioice(rx: Any, count: int, size: int, every: int) -> None:
    send, recv = rx.send, rx.recv
    expected = 0
    while expected < count:
        check_datagram(await recv(), expected, size)
        expected += 1
        if expected % every == 0 or expected == count:
            await send(ack(expected))


def throughput_syncice(factory: Factory, count: int, size: int, window: int) -> float:
    return connected_syncice(
        functools.partial(syncice_pair, factory),
        lambda tx, rx: throughput_blocking(tx, rx, count, size, window),
    )


async def throughput_aioice(aioice: Any, count: int, size: int, window: int) -> float:
    def run(tx: Any, rx: Any) -> Awaitable[float]:
        receive = receive_aioice(rx, count, size, window // 4)
        return transfer_aioice(tx, receive, count, size, window)

    return await connected_aioice(functools.partial(aioice_pair, aioice), run)


def throughput_raw(count: int, size: int, window: int) -> float:
    a, b = raw_pair()
    with a, b:
        return throughput_blocking(
            raw_endpoint(a), raw_endpoint(b), count, size, window
        )


# ---------------------------------------------------------------- rtt


def ping_blocking(local: Endpoint, rounds: int) -> list[int]:
    """Nanoseconds of each of ``rounds`` round trips."""
    send, recv = local.send, local.recv
    clock = time.perf_counter_ns
    pad = bytes(RTT_SIZE - 8)
    samples = []
    for index in range(rounds):
        data = (TAG | index).to_bytes(8, "big") + pad
        start = clock()
        send(data)
        reply = recv()
        samples.append(clock() - start)
        if reply != data:
            raise BenchError(f"round trip {index}: got {sequence(reply)}")
    return samples


#: The CPU the echo thread moves to first, if any (the "2 CPUs" placement).
ECHO_CPU: int | None = None


def echo_blocking(peer: Endpoint, rounds: int) -> None:
    if ECHO_CPU is not None:
        os.sched_setaffinity(0, {ECHO_CPU})  # 0: this thread
    send, recv = peer.send, peer.recv
    for _ in range(rounds):
        send(recv())


def rtt_blocking(local: Endpoint, peer: Endpoint, rounds: int) -> list[int]:
    echo = Background(functools.partial(echo_blocking, peer, rounds), "echo")
    echo.start()
    samples = ping_blocking(local, rounds)
    echo.join(TIMEOUT)
    return samples


async def ping_aioice(local: Any, rounds: int, progress: Progress) -> list[int]:
    send, recv = local.send, local.recv
    clock = time.perf_counter_ns
    pad = bytes(RTT_SIZE - 8)
    samples = []
    for index in range(rounds):
        data = (TAG | index).to_bytes(8, "big") + pad
        start = clock()
        await send(data)
        reply = await recv()
        samples.append(clock() - start)
        if reply != data:
            raise BenchError(f"round trip {index}: got {sequence(reply)}")
        progress.value = index
    return samples


async def echo_aioice(peer: Any, rounds: int) -> None:
    send, recv = peer.send, peer.recv
    for _ in range(rounds):
        await send(await recv())


async def rtt_tasks(a: Any, b: Any, rounds: int) -> list[int]:
    import asyncio

    progress = Progress()
    echo = asyncio.create_task(echo_aioice(b, rounds))
    ping = asyncio.create_task(ping_aioice(a, rounds, progress))
    await aioice_watch([ping, echo], progress)
    return ping.result()


async def rtt_aioice(aioice: Any, rounds: int) -> list[int]:
    return await connected_aioice(
        functools.partial(aioice_pair, aioice), lambda a, b: rtt_tasks(a, b, rounds)
    )


def rtt_syncice(factory: Factory, rounds: int) -> list[int]:
    return connected_syncice(
        functools.partial(syncice_pair, factory),
        lambda a, b: rtt_blocking(a, b, rounds),
    )


def rtt_raw(rounds: int, *, connected: bool = False) -> list[int]:
    if connected:
        a, b = raw_pair()
        with a, b:
            return rtt_blocking(raw_endpoint(a), raw_endpoint(b), rounds)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        for sock in (a, b):
            sock.bind((LOOPBACK, 0))
            sock.settimeout(TIMEOUT)
        return rtt_blocking(
            unconnected_endpoint(a, b.getsockname()),
            unconnected_endpoint(b, a.getsockname()),
            rounds,
        )


def unconnected_endpoint(sock: socket.socket, peer: tuple[str, int]) -> Endpoint:
    """``sendto``/``recvfrom`` on a socket that takes datagrams from anyone."""

    def send(data: bytes) -> None:
        sock.sendto(data, peer)

    def recv() -> bytes:
        return sock.recvfrom(RECV_SIZE)[0]

    return Endpoint(send, recv)


# ---------------------------------------------------------------- scale


def proc_status(key: str) -> int:
    """A ``kB`` field of /proc/self/status, in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/self/status")


@dataclass
class Peaks:
    """The highest thread and fd counts seen at the sampling points."""

    threads: int = 0  # threading.active_count()
    tasks: int = 0  # entries of /proc/self/task: every OS thread
    fds: int = 0

    def sample(self, fds: bool = False) -> None:
        self.threads = max(self.threads, threading.active_count())
        self.tasks = max(self.tasks, len(os.listdir("/proc/self/task")))
        if fds:  # costly with a thousand fds: only between phases
            self.fds = max(self.fds, len(os.listdir("/proc/self/fd")))


def scale_syncice(factory: Factory, pairs: int, peaks: Peaks) -> float:
    """Seconds spent connecting; the rest as in the module docstring."""
    connections = []
    for _ in range(pairs):
        connections.append(
            (
                factory(ice_controlling=True, local_addresses=[LOOPBACK]),
                factory(ice_controlling=False, local_addresses=[LOOPBACK]),
            )
        )
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        a.gather_candidates(timeout=TIMEOUT)
        b.gather_candidates(timeout=TIMEOUT)
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        syncice_signal(a, b)
    start = time.perf_counter()
    for a, b in connections:
        a.connect(timeout=TIMEOUT)
        b.connect(timeout=TIMEOUT)
        peaks.sample()
    connecting = time.perf_counter() - start
    peaks.sample(fds=True)
    for index, (a, b) in enumerate(connections):
        forth, back = (
            (TAG | index).to_bytes(8, "big"),
            (TAG | (pairs + index)).to_bytes(8, "big"),
        )
        a.send(forth)
        b.send(back)
        if b.recv(timeout=TIMEOUT) != forth or a.recv(timeout=TIMEOUT) != back:
            raise BenchError(f"pair {index}: wrong datagram")
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        a.close()
        b.close()
        peaks.sample()
    peaks.sample(fds=True)
    return connecting


async def scale_aioice(aioice: Any, pairs: int, peaks: Peaks) -> float:
    import asyncio

    connections = []
    for _ in range(pairs):
        connections.append(
            (
                aioice.Connection(ice_controlling=True),
                aioice.Connection(ice_controlling=False),
            )
        )
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        await a.gather_candidates()
        await b.gather_candidates()
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        await aioice_signal(a, b)
    start = time.perf_counter()
    for a, b in connections:
        await asyncio.gather(a.connect(), b.connect())
        peaks.sample()
    connecting = time.perf_counter() - start
    peaks.sample(fds=True)
    for index, (a, b) in enumerate(connections):
        forth, back = (
            (TAG | index).to_bytes(8, "big"),
            (TAG | (pairs + index)).to_bytes(8, "big"),
        )
        await a.send(forth)
        await b.send(back)
        if (
            await asyncio.wait_for(b.recv(), TIMEOUT) != forth
            or await asyncio.wait_for(a.recv(), TIMEOUT) != back
        ):
            raise BenchError(f"pair {index}: wrong datagram")
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in connections:
        await aioice_close(a, b)
        peaks.sample()
    peaks.sample(fds=True)
    return connecting


def scale_raw(pairs: int, peaks: Peaks) -> None:
    sockets = []
    for _ in range(pairs):
        sockets.append(raw_pair())
        peaks.sample()
    peaks.sample(fds=True)
    for index, (a, b) in enumerate(sockets):
        forth, back = (
            (TAG | index).to_bytes(8, "big"),
            (TAG | (pairs + index)).to_bytes(8, "big"),
        )
        a.send(forth)
        b.send(back)
        if b.recv(RECV_SIZE) != forth or a.recv(RECV_SIZE) != back:
            raise BenchError(f"pair {index}: wrong datagram")
        peaks.sample()
    peaks.sample(fds=True)
    for a, b in sockets:
        a.close()
        b.close()
    peaks.sample(fds=True)


#: Descriptors a scale run needs beyond one socket per connection.
FD_SPARE = 256


def raise_fd_limit(need: int) -> int:
    """Raise the soft limit on descriptors to the hard one, and both to
    ``need`` when the hard one is lower and the process may (root, or
    CAP_SYS_RESOURCE; at most ``fs.nr_open``). :returns: the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(OSError, ValueError):
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, ceiling),) * 2)
            return min(need, ceiling)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard if hard != resource.RLIM_INFINITY else soft
    return soft


def scale_child(library: str, pairs: int) -> dict[str, object]:
    """The scale case for one library, in this (fresh) process."""
    report: dict[str, object] = {"library": library, "pairs": pairs}
    need = 2 * pairs + FD_SPARE
    report["fd_limit"] = limit = raise_fd_limit(need)
    if limit < need:
        report["error"] = (
            f"needs about {need} descriptors, and the limit is {limit}"
            " (raising the hard limit takes root with CAP_SYS_RESOURCE)"
        )
        return report
    peaks = Peaks()
    try:
        if library == "syncice":
            factory, why = load_syncice()
            if factory is None:
                raise BenchError(why)
            base = proc_status("VmRSS")
            start = time.perf_counter()
            connecting = scale_syncice(factory, pairs, peaks)
        elif library == "aioice":
            import asyncio

            aioice = load_aioice()
            base = proc_status("VmRSS")
            start = time.perf_counter()
            connecting = asyncio.run(scale_aioice(aioice, pairs, peaks))
        else:
            base = proc_status("VmRSS")
            start = time.perf_counter()
            scale_raw(pairs, peaks)
            connecting = None
        report["seconds"] = time.perf_counter() - start
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    report.update(
        connect_seconds=connecting,
        base_rss_kb=base,
        peak_rss_kb=proc_status("VmHWM"),
        threads=peaks.threads,
        tasks=peaks.tasks,
        fds=peaks.fds,
    )
    return report


def scale_run(library: str, pairs: int) -> dict[str, object]:
    """``scale_child`` in a fresh interpreter."""
    command = [sys.executable, os.path.abspath(__file__)]
    command += ["--scale-child", library, str(pairs)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CASE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {CASE_TIMEOUT:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {done.returncode}: {tail}"}
    return cast(dict[str, object], json.loads(lines[-1]))


def case_throughput(
    report: Report,
    factory: Factory | None,
    aioice: Any,
    counts: dict[int, int],
    window: int,
    repeat: int,
) -> None:
    for size in SIZES:
        throughput_size(report, factory, aioice, size, counts[size], window, repeat)


def throughput_size(
    report: Report,
    factory: Factory | None,
    aioice: Any,
    size: int,
    count: int,
    window: int,
    repeat: int,
) -> None:
    effective = throughput_header(report, size, count, window, repeat)
    case = f"throughput {size} B"
    runs: dict[str, Callable[[], float]] = {
        "aioice": lambda: run_aioice(
            lambda: throughput_aioice(aioice, count, size, effective)
        ),
        "raw": lambda: throughput_raw(count, size, effective),
    }
    if factory is not None:
        runs["syncice"] = lambda: throughput_syncice(factory, count, size, effective)
    best = {
        library: None if times is None else max(count / elapsed for elapsed in times)
        for library, times in best_of(report, case, LIBRARIES, runs, repeat).items()
    }
    report_rate(report, best, size, THROUGHPUT_TARGET, f"{case} datagrams/s")


def case_rtt(
    report: Report,
    factory: Factory | None,
    aioice: Any,
    rounds: int,
    warmup: int,
    repeat: int,
) -> None:
    total = rounds + warmup
    runs: dict[str, Callable[[], list[int]]] = {
        "aioice": lambda: run_aioice(lambda: rtt_aioice(aioice, total)),
        "raw": lambda: rtt_raw(total),
        "raw connected": lambda: rtt_raw(total, connected=True),
    }
    if factory is not None:
        runs["syncice"] = lambda: rtt_syncice(factory, total)
    usable = sorted(os.sched_getaffinity(0))
    cpu = usable[0]
    other = usable[1] if len(usable) > 1 else None
    placements: list[tuple[str, set[int] | None, int | None, float | None]] = [
        ("1 CPU", {cpu}, None, RTT_TARGET)
    ]
    if other is not None:
        placements.append(("2 CPUs", {cpu}, other, RTT_SPLIT_TARGET))
    placements.append(("free", None, None, None))
    report.header(
        f"rtt: {rounds:,} round trips of {RTT_SIZE} B after {warmup:,}, echo in its "
        f"own thread (aioice: task); every thread on CPU {cpu}"
        + ("" if other is None else f", then the echo thread on CPU {other}")
        + ", then unpinned"
    )
    global ECHO_CPU
    for label, cpus, echo_cpu, target in placements:
        # ``repeat`` runs of each, libraries alternating so that a change in
        # the machine's load meets them all; the run of lowest median kept.
        samples: dict[str, list[int] | None] = dict.fromkeys(LIBRARIES)
        failed: set[str] = set()
        for _ in range(repeat):
            for library in (*LIBRARIES, "raw connected"):
                if library not in runs or library in failed:
                    continue
                ECHO_CPU = echo_cpu
                try:
                    with pinned(cpus):
                        result = attempt(report, f"rtt {label}", library, runs[library])
                finally:
                    ECHO_CPU = None
                if result is None:
                    failed.add(library)
                    samples[library] = None
                    continue
                kept = samples.get(library)
                run = result[warmup:]
                if kept is None or statistics.median(run) < statistics.median(kept):
                    samples[library] = run
        medians = {
            k: None if v is None else statistics.median(v) / 1e3
            for k, v in samples.items()
        }
        p99s = {
            k: None if v is None else percentile(v, 0.99) / 1e3
            for k, v in samples.items()
        }
        ours, raw = medians["syncice"], medians["raw"]
        if target is None:  # bimodal from run to run on some machines: no target
            report.row(f"median, {label} (us)", medians, ".1f")
        else:
            report.row(
                f"median, {label} (us)",
                medians,
                ".1f",
                f"<= {target:.1f}x raw",
                None if ours is None or raw is None else ours <= target * raw,
                f"rtt median ({label})",
            )
        report.row(f"p99, {label} (us)", p99s, ".1f")
        connected = medians.pop("raw connected", None)
        if connected is not None:
            report.row(
                f"  vs raw connected, {label}",
                {"syncice": ours, "aioice": None, "raw": connected},
                ".1f",
            )


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Every thread of the process on ``cpus`` (threads started meanwhile
    inherit it), then every thread back where the calling one was."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    set_affinity(cpus)
    try:
        yield
    finally:
        set_affinity(before)


def set_affinity(cpus: set[int]) -> None:
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # the thread ended
            os.sched_setaffinity(int(task), cpus)


def case_scale(report: Report, sizes: list[int], syncice_ok: bool) -> None:
    for pairs in sizes:
        scale_pairs(report, pairs, syncice_ok)


def scale_pairs(report: Report, pairs: int, syncice_ok: bool) -> None:
    results: dict[str, dict[str, object] | None] = dict.fromkeys(LIBRARIES)
    for library in LIBRARIES:
        if library == "syncice" and not syncice_ok:
            continue
        result = scale_run(library, pairs)
        if "error" in result:
            report.error(f"scale {pairs}", library, str(result["error"]))
            continue
        results[library] = result

    def column(key: str, scale: float = 1.0) -> dict[str, float | None]:
        return {
            k: None
            if v is None or v.get(key) is None
            else float(cast(float, v[key])) * scale
            for k, v in results.items()
        }

    report.header(
        f"scale: {pairs} pairs in one process (fresh subprocess per library; "
        "raw: 2N sockets, no ICE)"
    )
    report.row("total time (s)", column("seconds"), ".2f")
    report.row("  of which connect (s)", column("connect_seconds"), ".2f")
    rss = column("peak_rss_kb", 1 / 1024)
    ours, theirs = rss["syncice"], rss["aioice"]
    report.row(
        "peak RSS, VmHWM (MiB)",
        rss,
        ".1f",
        "< aioice",
        None if ours is None or theirs is None else ours < theirs,
        f"scale {pairs} peak RSS",
    )
    report.row("  RSS after imports (MiB)", column("base_rss_kb", 1 / 1024), ".1f")
    peak, base = column("peak_rss_kb"), column("base_rss_kb")
    per_connection: dict[str, float | None] = {}
    for k, top in peak.items():
        bottom = base[k]
        per_connection[k] = (
            None if top is None or bottom is None else (top - bottom) / (2 * pairs)
        )
    report.row("  per connection (KiB)", per_connection, ".1f")
    seconds = column("seconds")
    per_pair = {k: None if v is None else v * 1e3 / pairs for k, v in seconds.items()}
    report.row("  time per pair (ms)", per_pair, ".2f")
    report.row("  descriptor limit, raised", column("fd_limit"), ".0f")
    tasks, threads = column("tasks"), column("threads")
    report.row(
        "threads, /proc/self/task",
        tasks,
        ".0f",
        "syncice == 2",
        None
        if tasks["syncice"] is None
        else tasks["syncice"] == 2 and threads["syncice"] == 2,
        f"scale {pairs} threads",
    )
    report.row("threads, active_count()", threads, ".0f")
    report.row("fds", column("fds"), ".0f")


def parse_counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, CASES, 10)
    parser.add_argument("--count-small", type=int, help="100 B datagrams (100000)")
    parser.add_argument("--count-large", type=int, help="1200 B datagrams (50000)")
    parser.add_argument("--repeat", type=int, help="runs per case, best kept (3)")
    parser.add_argument("--rtt-count", type=int, help="round trips timed (20000)")
    parser.add_argument("--rtt-warmup", type=int, help="round trips first (1000)")
    parser.add_argument("--scale", help="pairs per scale run (200,500)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--scale-child", nargs=2, metavar=("LIBRARY", "PAIRS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.scale_child:
        library, pairs = args.scale_child
        print(json.dumps(scale_child(library, int(pairs))))
        return 0

    quick = args.quick
    pick = picker(quick)
    cases = chosen_cases(parser, args, CASES)

    factory, why = load_syncice()
    aioice = load_aioice()
    malloc = steady_malloc()
    print(
        f"syncice vs aioice {aioice.__version__} vs raw UDP sockets, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, on {LOOPBACK}"
    )
    print(malloc)
    if factory is None:
        print(f"syncice rows skipped: cannot import syncice.Connection ({why})")
    report = Report(LIBRARIES)
    for case in cases:
        faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
        if case == "connect":
            pairs = pick(args.pairs, 50, 10)
            makers = (
                None if factory is None else functools.partial(syncice_pair, factory),
                functools.partial(aioice_pair, aioice),
            )
            title = f"connect: {pairs} pairs, both sides at once, host on loopback"
            case_connect(report, "connect", title, makers, pairs, CONNECT_TARGET)
        elif case == "throughput":
            counts = {
                100: pick(args.count_small, 100_000, 20_000),
                1200: pick(args.count_large, 50_000, 10_000),
            }
            repeat = pick(args.repeat, 3, 2)
            case_throughput(report, factory, aioice, counts, args.window, repeat)
        elif case == "rtt":
            case_rtt(
                report,
                factory,
                aioice,
                pick(args.rtt_count, 20_000, 2_000),
                pick(args.rtt_warmup, 1_000, 200),
                pick(args.repeat, 3, 2),
            )
        elif case == "bulk":
            case_bulk(
                report,
                None if factory is None else functools.partial(syncice_pair, factory),
                pick(args.count_large, 50_000, 10_000),
                1200,
                args.window,
                pick(args.repeat, 3, 2),
            )
        else:
            text = args.scale or ("20,50" if quick else "200,500")
            case_scale(report, parse_counts(text), factory is not None)
        faulthandler.cancel_dump_traceback_later()

    report.summary()
    if args.json:
        report.write_json(args.json, machine(aioice.__version__, malloc))
    return 0


def machine(aioice_version: str, malloc: str) -> dict[str, object]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "aioice": aioice_version,
        "malloc": malloc,
    }


if __name__ == "__main__":
    sys.exit(main())
