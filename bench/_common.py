"""What ``bench/ice.py`` and ``bench/turn.py`` share.

Not a benchmark of its own: the constants, the blocking and asyncio plumbing
(pairs, signalling, connect, the windowed sender, the stall watch), the
statistics and the table both print. Each benchmark imports it as a sibling
module (``python bench/ice.py`` puts ``bench/`` first on ``sys.path``).

asyncio is imported only where it is used, so that a scale child of
``bench/ice.py`` that measures syncice or raw sockets does not load it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import json
import math
import socket
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio

    from syncice.candidate import Candidate

LOOPBACK = "127.0.0.1"
TAG = 1 << 63  # set in every sequence number: the first byte is 0x80
TIMEOUT = 10.0  # seconds a blocking receive may wait before the run fails
CASE_TIMEOUT = 900.0  # seconds one case may take before the bench gives up
RECV_SIZE = 2048
MARGIN = 8  # datagrams of receive buffer left free for STUN (consent checks)

T = TypeVar("T")


class BenchError(Exception):
    """A run went wrong: a datagram was lost or damaged, or a peer stalled."""


class SynciceConnection(Protocol):
    """The part of ``syncice.Connection`` the bench uses (aioice's API, blocking)."""

    remote_username: str | None
    remote_password: str | None

    @property
    def local_candidates(self) -> Sequence[Candidate]: ...
    @property
    def local_username(self) -> str: ...
    @property
    def local_password(self) -> str: ...
    def gather_candidates(self, *, timeout: float | None = None) -> None: ...
    def add_remote_candidate(self, remote_candidate: Candidate | None) -> None: ...
    def connect(self, *, timeout: float | None = None) -> None: ...
    def send(self, data: bytes) -> None: ...
    def recv(self, *, timeout: float | None = None) -> bytes: ...
    def send_many(self, datagrams: Iterable[bytes], component: int = 1) -> None: ...
    def recv_many(
        self, max_count: int = 64, *, timeout: float | None = None
    ) -> list[bytes]: ...
    def close(self) -> None: ...


Factory = Callable[..., SynciceConnection]
SynciceMaker = Callable[[], tuple[SynciceConnection, SynciceConnection]]
AioiceMaker = Callable[[], Awaitable[tuple[Any, Any]]]


#: The glibc mmap threshold every benchmark runs with (see :func:`steady_malloc`).
MMAP_THRESHOLD = 4 << 20


def steady_malloc() -> str:
    """Fix glibc's mmap threshold, so that no library's figures depend on
    what ran before it in the process; returns a line for the header.

    asyncio reads each datagram into a 256 KiB buffer. Above glibc's
    threshold (128 KiB at first) every such buffer is a fresh mmap and
    munmap: aioice then moves about 34k datagrams/s here. glibc raises the
    threshold for good once the process frees a large mapped block, which
    any earlier code may do (a syncice run does), and aioice then moves about
    80k/s. Fixing the threshold high gives every library that faster state,
    whatever the order of the runs.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "malloc: not glibc, left as it is"
    m_mmap_threshold = -3  # glibc's malloc.h
    if not mallopt(m_mmap_threshold, MMAP_THRESHOLD):
        return "malloc: mallopt refused the mmap threshold, left as it is"
    return f"malloc: glibc mmap threshold fixed at {MMAP_THRESHOLD >> 20} MiB"


def load_aioice() -> Any:
    """aioice, with host gathering limited to 127.0.0.1."""
    import aioice
    import aioice.ice

    aioice.ice.get_host_addresses = loopback_addresses
    return aioice


def loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK]


# ---------------------------------------------------------------- helpers


class Background:
    """Runs ``func`` in a daemon thread; ``join`` re-raises what it raised."""

    def __init__(self, func: Callable[[], object], name: str) -> None:
        self._func = func
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._func()
        except BaseException as exc:
            self._error = exc

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise BenchError(f"{self._thread.name} still running after {timeout} s")
        if self._error is not None:
            raise self._error


@dataclass
class Endpoint:
    """One side of a connected pair, as two blocking calls."""

    send: Callable[[bytes], object]
    recv: Callable[[], bytes]


@dataclass
class Progress:
    """Where an aioice run is, so that a stall can be told from a slow run."""

    value: int = 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def sequence(data: bytes) -> int:
    """The sequence number in the first 8 bytes, or -1 if not tagged."""
    value = int.from_bytes(data[:8], "big")
    return value ^ TAG if len(data) >= 8 and value & TAG else -1


def ack(count: int) -> bytes:
    """The 8-byte cumulative ack for ``count`` datagrams."""
    return (TAG | count).to_bytes(8, "big")


def ack_count(data: bytes, acked: int) -> int:
    value = sequence(data)
    if len(data) != 8 or value < acked:
        raise BenchError(f"bad ack {data[:16].hex()} after {acked}")
    return value


def lossless_window(size: int, limit: int) -> tuple[int, int]:
    """(window, datagrams held): the largest window, at most ``limit`` and a
    multiple of 4, that a fresh UDP socket's default receive buffer holds for
    sure at ``size`` bytes while it is being read, with ``MARGIN`` datagrams
    to spare.

    ``held`` is how many an unread socket takes before dropping; a socket
    being read may hold a quarter fewer, as Linux uncharges what was read in
    steps of a quarter of the buffer (``udp_rmem_release``).
    """
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((LOOPBACK, 0))
        buffer = rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        data = bytes(size)
        for _ in range(buffer // 64 + 64):
            tx.sendto(data, rx.getsockname())
        rx.setblocking(False)
        held = 0
        try:
            while True:
                rx.recv(RECV_SIZE)
                held += 1
        except BlockingIOError:
            pass
    return max(4, min(limit, held * 3 // 4 - MARGIN) // 4 * 4), held


def throughput_header(
    report: Report, size: int, count: int, window: int, repeat: int
) -> int:
    """Head the throughput case of ``count`` datagrams of ``size`` bytes and
    return the window it uses (:func:`lossless_window` under ``window``)."""
    effective, held = lossless_window(size, window)
    report.header(
        f"throughput: {count:,} datagrams of {size} B, one way, window "
        f"{effective} (an unread default buffer holds {held}), "
        f"ack every {effective // 4}, best of {repeat}"
    )
    return effective


# ---------------------------------------------------------------- pairs


def syncice_signal(a: SynciceConnection, b: SynciceConnection) -> None:
    for local, remote in ((a, b), (b, a)):
        for candidate in local.local_candidates:
            remote.add_remote_candidate(candidate)
        remote.add_remote_candidate(None)
        remote.remote_username = local.local_username
        remote.remote_password = local.local_password


def syncice_connect(a: SynciceConnection, b: SynciceConnection) -> float:
    """Both sides connect at once, the controlled one in a helper thread."""
    barrier = threading.Barrier(2)

    def controlled() -> None:
        barrier.wait()
        b.connect(timeout=TIMEOUT)

    helper = Background(controlled, "controlled-connect")
    helper.start()
    barrier.wait()
    start = time.perf_counter()
    a.connect(timeout=TIMEOUT)
    helper.join(TIMEOUT)
    return time.perf_counter() - start


def syncice_endpoint(connection: SynciceConnection) -> Endpoint:
    return Endpoint(
        connection.send, functools.partial(connection.recv, timeout=TIMEOUT)
    )


async def aioice_signal(a: Any, b: Any) -> None:
    for local, remote in ((a, b), (b, a)):
        for candidate in local.local_candidates:
            await remote.add_remote_candidate(candidate)
        await remote.add_remote_candidate(None)
        remote.remote_username = local.local_username
        remote.remote_password = local.local_password


async def aioice_connect(a: Any, b: Any, timeout: float | None = None) -> float:
    """``asyncio.gather(a.connect(), b.connect())``, timed; under
    ``asyncio.wait_for`` when a ``timeout`` is given."""
    import asyncio

    start = time.perf_counter()
    if timeout is None:
        await asyncio.gather(a.connect(), b.connect())
    else:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), timeout)
    return time.perf_counter() - start


async def aioice_close(*connections: Any) -> None:
    for connection in connections:
        await connection.close()


async def aioice_watch(tasks: list[asyncio.Task[Any]], progress: Progress) -> None:
    """Wait for ``tasks``; raise the first error, or BenchError when
    ``progress`` has not moved for ``TIMEOUT`` seconds."""
    import asyncio

    pending = set(tasks)
    last = -1
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=TIMEOUT, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            if pending and progress.value == last:
                raise BenchError(f"no progress for {TIMEOUT:.0f} s at {last}")
            last = progress.value
    finally:
        for task in pending:
            task.cancel()


def connected_syncice(pair: SynciceMaker, run: Callable[[Endpoint, Endpoint], T]) -> T:
    """``run`` on the two sides of a fresh pair made by ``pair()``, both
    connected; closed after."""
    a, b = pair()
    try:
        syncice_connect(a, b)
        return run(syncice_endpoint(a), syncice_endpoint(b))
    finally:
        a.close()
        b.close()


async def connected_aioice(
    pair: AioiceMaker,
    run: Callable[[Any, Any], Awaitable[T]],
    timeout: float | None = None,
) -> T:
    """As ``connected_syncice``, for aioice (``timeout`` as in
    ``aioice_connect``)."""
    a, b = await pair()
    try:
        await aioice_connect(a, b, timeout)
        return await run(a, b)
    finally:
        await aioice_close(a, b)


# ---------------------------------------------------------------- connect


def connect_syncice(pair: SynciceMaker, pairs: int) -> list[float]:
    """Connect times of ``pairs`` pairs made by ``pair()``, after one more
    that warms up."""
    times = []
    for index in range(pairs + 1):
        a, b = pair()
        try:
            elapsed = syncice_connect(a, b)
        finally:
            a.close()
            b.close()
        if index:  # the first pair warms up
            times.append(elapsed)
    return times


async def connect_aioice(
    pair: AioiceMaker, pairs: int, timeout: float | None = None
) -> list[float]:
    times = []
    for index in range(pairs + 1):
        a, b = await pair()
        try:
            elapsed = await aioice_connect(a, b, timeout)
        finally:
            await aioice_close(a, b)
        if index:
            times.append(elapsed)
    return times


# ---------------------------------------------------------------- throughput
#
# The blocking version (syncice and raw sockets) and the asyncio version
# (aioice) are the same code, line for line, but for ``await``. The receiving
# side is each benchmark's own: it decides what a wrong datagram is.


def send_blocking(
    tx: Endpoint,
    count: int,
    size: int,
    window: int,
    send_many: Callable[[list[bytes]], object] | None = None,
) -> float:
    """Send ``count`` datagrams with at most ``window`` unacknowledged;
    return the seconds from the first send to the final ack. With
    ``send_many``, as many at once as the window allows."""
    send, recv = tx.send, tx.recv
    pad = bytes(size - 8)
    sent = acked = 0
    try:
        start = time.perf_counter()
        while sent < count:
            while sent - acked >= window:
                acked = ack_count(recv(), acked)
            if send_many is None:
                send((TAG | sent).to_bytes(8, "big") + pad)
                sent += 1
            else:
                stop = min(count, acked + window)
                send_many(
                    [(TAG | i).to_bytes(8, "big") + pad for i in range(sent, stop)]
                )
                sent = stop
        while acked < count:
            acked = ack_count(recv(), acked)
        return time.perf_counter() - start
    except TimeoutError as exc:
        raise BenchError(
            f"no ack for {TIMEOUT:.0f} s: sent {sent}, acked {acked}"
        ) from exc


def check_datagram(data: bytes, expected: int, size: int) -> None:
    """:raises BenchError: unless ``data`` is datagram ``expected`` of
    ``size`` bytes."""
    if len(data) != size or sequence(data) != expected:
        raise BenchError(
            f"expected datagram {expected} of {size} B, "
            f"got {sequence(data)} of {len(data)} B"
        )


def raw_pair() -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on loopback, connected to each other, blocking with a
    timeout (as a careful blocking program would use them)."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind((LOOPBACK, 0))
    b.bind((LOOPBACK, 0))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    return a, b


def raw_endpoint(sock: socket.socket) -> Endpoint:
    return Endpoint(sock.send, functools.partial(sock.recv, RECV_SIZE))


def receive_blocking(
    rx: Endpoint,
    count: int,
    size: int,
    every: int,
    recv_many: Callable[[], list[bytes]] | None = None,
) -> None:
    """Receive and check ``count`` datagrams, acking every ``every``; with
    ``recv_many``, as many at once as have arrived."""
    send, recv = rx.send, rx.recv
    expected = 0
    try:
        while expected < count:
            for data in [recv()] if recv_many is None else recv_many():
                check_datagram(data, expected, size)
                expected += 1
                if expected % every == 0 or expected == count:
                    send(ack(expected))
    except TimeoutError as exc:
        raise BenchError(f"received {expected} of {count}, then nothing") from exc


def transfer_blocking(
    tx: Endpoint,
    receive: Callable[[], object],
    count: int,
    size: int,
    window: int,
    send_many: Callable[[list[bytes]], object] | None = None,
) -> float:
    """``send_blocking`` here while ``receive()`` runs in its own thread."""
    receiver = Background(receive, "receiver")
    receiver.start()
    try:
        elapsed = send_blocking(tx, count, size, window, send_many)
    except BenchError as exc:
        try:  # the receiver's error says more: what arrived, lost or damaged
            receiver.join(2 * TIMEOUT)
        except BenchError as reason:
            raise reason from exc
        raise
    receiver.join(TIMEOUT)
    return elapsed


async def send_aioice(
    tx: Any, count: int, size: int, window: int, progress: Progress
) -> float:
    send, recv = tx.send, tx.recv
    pad = bytes(size - 8)
    sent = acked = 0
    start = time.perf_counter()
    while sent < count:
        while sent - acked >= window:
            acked = progress.value = ack_count(await recv(), acked)
        await send((TAG | sent).to_bytes(8, "big") + pad)
        sent += 1
    while acked < count:
        acked = progress.value = ack_count(await recv(), acked)
    return time.perf_counter() - start


async def transfer_aioice(
    tx: Any,
    receive: Coroutine[Any, Any, None],
    count: int,
    size: int,
    window: int,
) -> float:
    """``send_aioice`` and ``receive`` as two tasks on this event loop."""
    import asyncio

    progress = Progress()
    receiver = asyncio.create_task(receive)
    sender = asyncio.create_task(send_aioice(tx, count, size, window, progress))
    await aioice_watch([sender, receiver], progress)
    return sender.result()


# ---------------------------------------------------------------- report

# The width of each ratio column "s/<library>".
RATIO_WIDTHS = {"aioice": 9, "raw": 7}


@dataclass
class Report:
    """The table, the targets and the notes.

    ``libraries`` are the columns, syncice first; each other one also gets a
    column of syncice's ratio to it.
    """

    libraries: tuple[str, ...]
    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Every row printed, for :meth:`write_json`.
    rows: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""

    def header(self, title: str) -> None:
        self.title = title
        print()
        print(title)
        columns = "".join(f" {library:>11}" for library in self.libraries)
        ratios = "".join(
            f" {'s/' + library:>{RATIO_WIDTHS[library]}}"
            for library in self.libraries[1:]
        )
        print(f"  {'':28}{columns}{ratios}  target")

    def row(
        self,
        case: str,
        values: dict[str, float | None],
        style: str,
        target: str = "",
        met: bool | None = None,
        name: str = "",
    ) -> None:
        """One line; ``met`` None with a target means it could not be checked.
        ``name`` (default ``case``) goes to the list of misses."""

        def show(value: float | None) -> str:
            return "-" if value is None else format(value, style)

        def ratio(a: float | None, b: float | None) -> str:
            return "-" if a is None or not b else f"{a / b:.2f}x"

        ours = values.get("syncice")
        verdict = ""
        if target:
            if met is None:
                verdict = "  NOT MEASURED"
                self.missed.append(f"{name or case} (not measured)")
            elif met:
                verdict = "  met"
            else:
                verdict = "  MISSED"
                self.missed.append(name or case)
        columns = "".join(
            f" {show(values.get(library)):>11}" for library in self.libraries
        )
        ratios = "".join(
            f" {ratio(ours, values.get(library)):>{RATIO_WIDTHS[library]}}"
            for library in self.libraries[1:]
        )
        print(f"  {case:28}{columns}{ratios}  {target}{verdict}")
        self.rows.append(
            {
                "section": self.title,
                "row": case,
                "values": {k: values.get(k) for k in self.libraries},
                "ratios": {
                    k: ours / other
                    for k in self.libraries[1:]
                    if ours is not None and (other := values.get(k))
                },
                "target": target or None,
                "met": met if target else None,
            }
        )

    def write_json(self, path: str, machine: dict[str, object]) -> None:
        """The machine, every row, the errors and the misses, as JSON."""
        document = {
            "machine": machine,
            "rows": self.rows,
            "errors": self.notes,
            "missed": self.missed,
        }
        with open(path, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
            out.write("\n")

    def error(self, case: str, library: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.notes.append(f"{case}, {library}: {text}")

    def summary(self) -> None:
        """The errors, then the targets missed or "all targets met"."""
        print()
        for note in self.notes:
            print(f"error: {note}")
        if self.missed:
            print(f"targets missed: {', '.join(self.missed)}")
        else:
            print("all targets met")


def attempt(
    report: Report, case: str, library: str, func: Callable[[], Any]
) -> Any | None:
    """``func()``, or None after noting why it failed."""
    try:
        return func()
    except Exception as exc:
        report.error(case, library, exc)
        return None


def run_aioice(coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    import asyncio

    return asyncio.run(coroutine())


def case_connect(
    report: Report,
    case: str,
    title: str,
    pair: tuple[SynciceMaker | None, AioiceMaker],
    pairs: int,
    target: float,
    aioice_timeout: float | None = None,
) -> None:
    """The connect case: ``pairs`` pairs of each library, made by ``pair``
    (syncice's maker None when it cannot run), connected, and the table:
    median (against ``target`` times aioice's) and p90."""
    syncice_pair, aioice_pair = pair
    times: dict[str, list[float] | None] = {"syncice": None, "aioice": None}
    if syncice_pair is not None:
        times["syncice"] = attempt(
            report, case, "syncice", lambda: connect_syncice(syncice_pair, pairs)
        )
    times["aioice"] = attempt(
        report,
        case,
        "aioice",
        lambda: run_aioice(lambda: connect_aioice(aioice_pair, pairs, aioice_timeout)),
    )
    connect_table(report, case, title, times, target)


def connect_table(
    report: Report,
    case: str,
    title: str,
    times: dict[str, list[float] | None],
    target: float,
) -> None:
    """The connect table: median of ``times`` (seconds per library, None when
    a library did not run) against ``target`` times aioice's, and p90."""
    report.header(title)
    medians = {
        k: None if v is None else statistics.median(v) * 1e3 for k, v in times.items()
    }
    p90s = {
        k: None if v is None else percentile(v, 0.9) * 1e3 for k, v in times.items()
    }
    ours, theirs = medians["syncice"], medians["aioice"]
    report.row(
        "median (ms)",
        medians,
        ".2f",
        f"<= {target:.2f}x aioice",
        None if ours is None or theirs is None else ours <= target * theirs,
        f"{case} median",
    )
    report.row("p90 (ms)", p90s, ".2f")


def best_of(
    report: Report,
    case: str,
    libraries: Sequence[str],
    runs: dict[str, Callable[[], T]],
    repeat: int,
) -> dict[str, list[T] | None]:
    """``repeat`` rounds of every run, libraries alternating; what each
    returned, or None for a library without a run or whose run failed once
    (it is not run again)."""
    results: dict[str, list[T] | None] = dict.fromkeys(libraries)
    failed: set[str] = set()
    for _ in range(repeat):
        for library in libraries:
            if library not in runs or library in failed:
                continue
            result = attempt(report, case, library, runs[library])
            if result is None:
                failed.add(library)
                results[library] = None
                continue
            results[library] = [*(results[library] or []), result]
    return results


def report_rate(
    report: Report,
    best: dict[str, float | None],
    size: int,
    target: float,
    name: str,
) -> None:
    """Datagrams/s (against ``target`` times aioice's) and MB/s."""
    ours, theirs = best["syncice"], best["aioice"]
    report.row(
        "datagrams/s",
        best,
        ",.0f",
        f">= {target:.1f}x aioice",
        None if ours is None or theirs is None else ours >= target * theirs,
        name,
    )
    report.row(
        "MB/s",
        {k: None if v is None else v * size / 1e6 for k, v in best.items()},
        ".1f",
    )


# ---------------------------------------------------------------- arguments


def add_arguments(
    parser: argparse.ArgumentParser, cases: Sequence[str], seconds: int
) -> None:
    """--cases, --quick (a smoke run of about ``seconds``), --pairs, --window."""
    parser.add_argument(
        "--cases",
        default=",".join(cases),
        help=f"comma-separated subset of {','.join(cases)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small counts: a smoke run of ~{seconds} s",
    )
    parser.add_argument("--pairs", type=int, help="connect: pairs (50)")
    parser.add_argument("--window", type=int, default=256, help="throughput: max W")


def chosen_cases(
    parser: argparse.ArgumentParser, args: argparse.Namespace, cases: Sequence[str]
) -> list[str]:
    """The cases of --cases, in order; a usage error for an unknown one or
    a --window under 4."""
    chosen = [case for case in args.cases.split(",") if case]
    unknown = set(chosen) - set(cases)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.window < 4:
        parser.error("--window must be at least 4")
    return chosen


def picker(quick: bool) -> Callable[[int | None, int, int], int]:
    """``pick(value, full, small)``: the value given, else ``small`` for
    --quick and ``full`` otherwise."""

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else small if quick else full

    return pick
