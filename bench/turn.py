"""TURN relay benchmark: syncice against aioice through coturn, on loopback.

Usage::

    python bench/turn.py [--cases connect,throughput] [--quick]

The bench starts its own coturn with ``tests/coturn.sh start`` in a fresh
temporary directory (so it needs ``turnserver``: ``apt-get install coturn``)
and stops it with ``tests/coturn.sh stop`` when it ends, whatever happens.
Every case runs syncice and aioice in the same run, in this process, and
prints the figures, the ratio syncice/aioice and the targets of the TURN
milestone, marked met or missed. It ends with "all targets met" or the list
of misses, and exits 0 either way (1 when coturn cannot start, 2 on a usage
error). Only loopback is used: coturn listens and relays on 127.0.0.1, aioice's
``get_host_addresses`` is patched to return ``["127.0.0.1"]`` and syncice is
given ``local_addresses=["127.0.0.1"]``.

Every pair is a relayed peer ``a`` (controlling, ``TransportPolicy.RELAY``,
``turn_server`` over UDP with coturn's long-term credentials: it gathers only
a relay candidate) and a plain peer ``b`` (controlled, host candidate only).
So every datagram between them goes through coturn: ``a`` to coturn over
UDP (ChannelData or a Send indication), coturn to ``b`` from the relayed
address, and back the same way.

Cases:

- connect: ``--pairs`` fresh pairs (after one warm-up pair, not counted),
  each created, gathered (``a`` allocates on coturn) and signalled
  (candidates, end-of-candidates, ufrag and pwd) untimed; then the time from
  both sides calling ``connect()`` to both returning. syncice: the controlled
  side's ``connect()`` runs in a helper thread, both threads leave a barrier
  together and the clock starts in the main thread on leaving it; aioice:
  ``asyncio.gather(a.connect(), b.connect())``. Median and p90 in ms.
- throughput: 1200-byte datagrams from ``a`` to ``b`` through coturn,
  windowed: ``a`` has at most W datagrams unacknowledged and blocks on the
  reverse direction when the window is full; ``b`` sends an 8-byte ack every
  W/4 datagrams and after the last one, carrying the highest sequence number
  seen plus one, so that a lost datagram is counted rather than stalling the
  run. The clock runs from the first send to ``a`` reading the final ack.
  ``b`` checks every datagram's length and counts the ones that arrive, so
  the loss is ``count`` less those (it must be 0), and the ones out of order
  or repeated (an error). W is ``--window`` (256) clamped to 3/4 of what a
  fresh UDP socket's default receive buffer holds at that size, less 8 (see
  ``bench/ice.py``: coturn's own sockets have 4 MiB buffers, so the peers'
  are the smallest on the way). Best of ``--repeat`` runs, libraries
  alternating, fresh pair each run. syncice: the receiver runs in its own
  thread, blocking in ``recv``; aioice: sender and receiver are two tasks on
  one event loop.

A run that damages a datagram or stalls for 10 s is reported as an error
under the table and leaves that library's cell empty. Until syncice's TURN
support has landed, its cells stay empty with the reason as the error.

Every datagram the bench sends starts with a byte of 0x80 (the sequence
number with its top bit set), outside the STUN range of RFC 7983 and the
ChannelData range, so that no library has to guess what it is.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import importlib
import inspect
import math
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import asyncio

    from syncice.candidate import Candidate

LOOPBACK = "127.0.0.1"
LIBRARIES = ("syncice", "aioice")
TAG = 1 << 63  # set in every sequence number: the first byte is 0x80
TIMEOUT = 10.0  # seconds a blocking receive may wait before the run fails
CASE_TIMEOUT = 900.0  # then every thread is dumped, coturn stopped, exit 1
SIZE = 1200
RECV_SIZE = 2048
MARGIN = 8  # datagrams of receive buffer left free for STUN (consent checks)
COTURN_SH = Path(__file__).resolve().parent.parent / "tests" / "coturn.sh"

# Targets of the TURN milestone.
CONNECT_TARGET = 0.5  # syncice median relay connect time / aioice's, at most
THROUGHPUT_TARGET = 1.5  # syncice relayed datagrams/s / aioice's, at least


class BenchError(Exception):
    """A run went wrong: a datagram was damaged, or a peer stalled."""


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
    def close(self) -> None: ...


Factory = Callable[..., SynciceConnection]


@dataclass(frozen=True)
class Syncice:
    """``syncice.Connection`` and the relay-only policy to pass it."""

    factory: Factory
    relay_policy: object


def load_syncice() -> tuple[Syncice | None, str]:
    """syncice, or None and why it cannot relay yet.

    Imported by name at run time, so that the bench type-checks and runs (for
    aioice) before syncice's TURN support exists.
    """
    try:
        module = importlib.import_module("syncice")
        factory = cast(Factory, module.Connection)
        policy = module.TransportPolicy.RELAY
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    parameters = inspect.signature(factory).parameters
    missing = [
        name
        for name in ("turn_server", "turn_username", "turn_password")
        if name not in parameters
    ]
    if missing:
        return None, (
            f"syncice.Connection takes no {', '.join(missing)}: its TURN "
            "support has not landed yet"
        )
    return Syncice(factory, policy), ""


def load_aioice() -> Any:
    """aioice, with host gathering limited to 127.0.0.1."""
    import aioice
    import aioice.ice

    aioice.ice.get_host_addresses = loopback_addresses
    return aioice


def loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [LOOPBACK]


# ---------------------------------------------------------------- coturn


@dataclass(frozen=True)
class Turn:
    """A coturn started by ``tests/coturn.sh``, from the lines it printed."""

    directory: Path
    pid: int
    ip: str
    port: int
    username: str
    password: str
    log: Path

    @property
    def server(self) -> tuple[str, int]:
        return self.ip, self.port


def coturn_script(action: str, directory: Path) -> str:
    """``bash tests/coturn.sh ACTION DIRECTORY``; its stdout."""
    done = subprocess.run(
        ["bash", str(COTURN_SH), action, str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if done.returncode:
        raise BenchError(
            f"tests/coturn.sh {action} failed ({done.returncode}): "
            + (done.stderr.strip() or "no output")
        )
    return done.stdout


def start_coturn(directory: Path) -> Turn:
    """Start coturn with its state in ``directory``."""
    env: dict[str, str] = {}
    for line in coturn_script("start", directory).splitlines():
        words = shlex.split(line)  # export TURN_X=value (printf %q)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    try:
        return Turn(
            directory=directory,
            pid=int(env["TURN_PID"]),
            ip=env["TURN_IP"],
            port=int(env["TURN_PORT"]),
            username=env["TURN_USER"],
            password=env["TURN_PASSWORD"],
            log=Path(env["TURN_LOG"]),
        )
    except (KeyError, ValueError) as exc:
        stop_coturn(directory)
        raise BenchError(f"tests/coturn.sh start printed no {exc}") from exc


def stop_coturn(directory: Path) -> None:
    """Stop the coturn whose PID ``tests/coturn.sh`` recorded in ``directory``."""
    coturn_script("stop", directory)


def coturn_version() -> str:
    try:
        done = subprocess.run(
            ["turnserver", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1].strip() if lines else "?"


class Watchdog:
    """After ``CASE_TIMEOUT`` seconds in one case: dump every thread, stop
    coturn and exit 1 (faulthandler's own exit would leave coturn running)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        self.disarm()
        self._timer = threading.Timer(CASE_TIMEOUT, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        print(f"\nstill running after {CASE_TIMEOUT:.0f} s:", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)
        try:
            stop_coturn(self._directory)
        finally:
            os._exit(1)


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


@dataclass
class Tally:
    """What the receiver saw of one throughput run."""

    received: int = 0
    highest: int = -1  # the highest sequence number received
    disorder: int = 0  # datagrams at or below ``highest`` when they came

    def take(self, data: bytes) -> None:
        if len(data) != SIZE:
            raise BenchError(f"a datagram of {len(data)} B, not {SIZE}")
        number = sequence(data)
        if number < 0:
            raise BenchError(f"an untagged datagram: {data[:16].hex()}")
        if number <= self.highest:
            self.disorder += 1
            return
        self.received += 1
        self.highest = number


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def sequence(data: bytes) -> int:
    """The sequence number in the first 8 bytes, or -1 if not tagged."""
    value = int.from_bytes(data[:8], "big")
    return value ^ TAG if len(data) >= 8 and value & TAG else -1


def ack_count(data: bytes, acked: int) -> int:
    value = sequence(data)
    if len(data) != 8 or value < acked:
        raise BenchError(f"bad ack {data[:16].hex()} after {acked}")
    return value


def ack(count: int) -> bytes:
    return (TAG | count).to_bytes(8, "big")


def lossless_window(size: int, limit: int) -> tuple[int, int]:
    """(window, datagrams held): the largest window, at most ``limit`` and a
    multiple of 4, that a fresh UDP socket's default receive buffer holds for
    sure at ``size`` bytes while it is being read, with ``MARGIN`` datagrams
    to spare (as in ``bench/ice.py``).
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


def relay_only(candidates: Sequence[Any], library: str) -> None:
    """The relayed side gathered relay candidates, and only those."""
    types = sorted({candidate.type for candidate in candidates})
    if types != ["relay"]:
        raise BenchError(
            f"{library}'s relay-only side gathered {types or 'no candidates'}, "
            "not one relay candidate"
            + (": is its TURN support in?" if library == "syncice" else "")
        )


# ---------------------------------------------------------------- pairs


def syncice_pair(
    syncice: Syncice, turn: Turn
) -> tuple[SynciceConnection, SynciceConnection]:
    """A relayed controlling and a plain controlled connection, gathered and
    signalled."""
    a = syncice.factory(
        ice_controlling=True,
        turn_server=turn.server,
        turn_username=turn.username,
        turn_password=turn.password,
        transport_policy=syncice.relay_policy,
        local_addresses=[LOOPBACK],
    )
    try:
        b = syncice.factory(ice_controlling=False, local_addresses=[LOOPBACK])
    except BaseException:
        a.close()
        raise
    try:
        a.gather_candidates(timeout=TIMEOUT)
        b.gather_candidates(timeout=TIMEOUT)
        relay_only(a.local_candidates, "syncice")
        syncice_signal(a, b)
    except BaseException:
        a.close()
        b.close()
        raise
    return a, b


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


async def aioice_pair(aioice: Any, turn: Turn) -> tuple[Any, Any]:
    """A relayed controlling and a plain controlled connection, gathered and
    signalled."""
    import asyncio

    a = aioice.Connection(
        ice_controlling=True,
        turn_server=turn.server,
        turn_username=turn.username,
        turn_password=turn.password,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    b = aioice.Connection(ice_controlling=False)
    try:
        await asyncio.wait_for(
            asyncio.gather(a.gather_candidates(), b.gather_candidates()), TIMEOUT
        )
        relay_only(a.local_candidates, "aioice")
        await aioice_signal(a, b)
    except BaseException:
        await aioice_close(a, b)
        raise
    return a, b


async def aioice_signal(a: Any, b: Any) -> None:
    for local, remote in ((a, b), (b, a)):
        for candidate in local.local_candidates:
            await remote.add_remote_candidate(candidate)
        await remote.add_remote_candidate(None)
        remote.remote_username = local.local_username
        remote.remote_password = local.local_password


async def aioice_connect(a: Any, b: Any) -> float:
    import asyncio

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), TIMEOUT)
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


# ---------------------------------------------------------------- connect


def connect_syncice(syncice: Syncice, turn: Turn, pairs: int) -> list[float]:
    times = []
    for index in range(pairs + 1):
        a, b = syncice_pair(syncice, turn)
        try:
            elapsed = syncice_connect(a, b)
        finally:
            a.close()
            b.close()
        if index:  # the first pair warms up
            times.append(elapsed)
    return times


async def connect_aioice(aioice: Any, turn: Turn, pairs: int) -> list[float]:
    times = []
    for index in range(pairs + 1):
        a, b = await aioice_pair(aioice, turn)
        try:
            elapsed = await aioice_connect(a, b)
        finally:
            await aioice_close(a, b)
        if index:
            times.append(elapsed)
    return times


# ---------------------------------------------------------------- throughput
#
# The blocking version (syncice) and the asyncio version (aioice) are the same
# code, line for line, but for ``await``.


def send_blocking(tx: Endpoint, count: int, window: int) -> float:
    """Send ``count`` datagrams with at most ``window`` unacknowledged;
    return the seconds from the first send to the final ack."""
    send, recv = tx.send, tx.recv
    pad = bytes(SIZE - 8)
    sent = acked = 0
    try:
        start = time.perf_counter()
        while sent < count:
            while sent - acked >= window:
                acked = ack_count(recv(), acked)
            send((TAG | sent).to_bytes(8, "big") + pad)
            sent += 1
        while acked < count:
            acked = ack_count(recv(), acked)
        return time.perf_counter() - start
    except TimeoutError as exc:
        raise BenchError(
            f"no ack for {TIMEOUT:.0f} s: sent {sent}, acked {acked}"
        ) from exc


def receive_blocking(rx: Endpoint, count: int, every: int, tally: Tally) -> None:
    """Receive until datagram ``count - 1``, acking every ``every``."""
    send, recv = rx.send, rx.recv
    acked = 0
    try:
        while tally.highest < count - 1:
            tally.take(recv())
            if tally.highest + 1 - acked >= every or tally.highest == count - 1:
                acked = tally.highest + 1
                send(ack(acked))
    except TimeoutError as exc:
        raise BenchError(
            f"received {tally.received} of {count} (up to {tally.highest}), "
            "then nothing"
        ) from exc


def transfer_blocking(tx: Endpoint, rx: Endpoint, count: int, window: int) -> Run:
    tally = Tally()
    receiver = Background(
        functools.partial(receive_blocking, rx, count, window // 4, tally),
        "receiver",
    )
    receiver.start()
    try:
        elapsed = send_blocking(tx, count, window)
    except BenchError as exc:
        try:  # the receiver's error says more: how much arrived
            receiver.join(2 * TIMEOUT)
        except BenchError as reason:
            raise reason from exc
        raise
    receiver.join(TIMEOUT)
    return Run(elapsed, count - tally.received, tally.disorder)


async def send_aioice(tx: Any, count: int, window: int, progress: Progress) -> float:
    send, recv = tx.send, tx.recv
    pad = bytes(SIZE - 8)
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


async def receive_aioice(rx: Any, count: int, every: int, tally: Tally) -> None:
    send, recv = rx.send, rx.recv
    acked = 0
    while tally.highest < count - 1:
        tally.take(await recv())
        if tally.highest + 1 - acked >= every or tally.highest == count - 1:
            acked = tally.highest + 1
            await send(ack(acked))


async def transfer_aioice(tx: Any, rx: Any, count: int, window: int) -> Run:
    import asyncio

    progress = Progress()
    tally = Tally()
    receiver = asyncio.create_task(receive_aioice(rx, count, window // 4, tally))
    sender = asyncio.create_task(send_aioice(tx, count, window, progress))
    try:
        await aioice_watch([sender, receiver], progress)
    except BenchError as exc:
        raise BenchError(
            f"{exc}; received {tally.received} of {count} (up to {tally.highest})"
        ) from exc
    return Run(sender.result(), count - tally.received, tally.disorder)


@dataclass(frozen=True)
class Run:
    """One throughput run."""

    seconds: float
    lost: int
    disorder: int


def throughput_syncice(syncice: Syncice, turn: Turn, count: int, window: int) -> Run:
    a, b = syncice_pair(syncice, turn)
    try:
        syncice_connect(a, b)
        return transfer_blocking(
            syncice_endpoint(a), syncice_endpoint(b), count, window
        )
    finally:
        a.close()
        b.close()


async def throughput_aioice(aioice: Any, turn: Turn, count: int, window: int) -> Run:
    a, b = await aioice_pair(aioice, turn)
    try:
        await aioice_connect(a, b)
        return await transfer_aioice(a, b, count, window)
    finally:
        await aioice_close(a, b)


# ---------------------------------------------------------------- report


@dataclass
class Report:
    """The table, the targets and the notes."""

    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def header(self, title: str) -> None:
        print()
        print(title)
        print(f"  {'':28} {'syncice':>11} {'aioice':>11} {'s/aioice':>9}  target")

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

        ours, theirs = values.get("syncice"), values.get("aioice")
        ratio = "-" if ours is None or not theirs else f"{ours / theirs:.2f}x"
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
        print(
            f"  {case:28} {show(ours):>11} {show(theirs):>11} {ratio:>9}  "
            f"{target}{verdict}"
        )

    def error(self, case: str, library: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.notes.append(f"{case}, {library}: {text}")


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
    report: Report, syncice: Syncice | None, aioice: Any, turn: Turn, pairs: int
) -> None:
    times: dict[str, list[float] | None] = {"syncice": None, "aioice": None}
    if syncice is not None:
        times["syncice"] = attempt(
            report,
            "relay connect",
            "syncice",
            lambda: connect_syncice(syncice, turn, pairs),
        )
    times["aioice"] = attempt(
        report,
        "relay connect",
        "aioice",
        lambda: run_aioice(lambda: connect_aioice(aioice, turn, pairs)),
    )
    report.header(
        f"relay connect: {pairs} pairs, both sides at once, one side relay-only "
        "(TURN over UDP)"
    )
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
        f"<= {CONNECT_TARGET:.2f}x aioice",
        None if ours is None or theirs is None else ours <= CONNECT_TARGET * theirs,
        "relay connect median",
    )
    report.row("p90 (ms)", p90s, ".2f")


def case_throughput(
    report: Report,
    syncice: Syncice | None,
    aioice: Any,
    turn: Turn,
    count: int,
    window: int,
    repeat: int,
) -> None:
    effective, held = lossless_window(SIZE, window)
    case = "relay throughput"
    runs: dict[str, Callable[[], Run]] = {
        "aioice": lambda: run_aioice(
            lambda: throughput_aioice(aioice, turn, count, effective)
        )
    }
    if syncice is not None:
        runs["syncice"] = lambda: throughput_syncice(syncice, turn, count, effective)
    best: dict[str, float | None] = dict.fromkeys(LIBRARIES)
    lost: dict[str, float | None] = dict.fromkeys(LIBRARIES)
    disorder: dict[str, float | None] = dict.fromkeys(LIBRARIES)
    failed: set[str] = set()
    for _ in range(repeat):
        for library in LIBRARIES:
            if library not in runs or library in failed:
                continue
            run = attempt(report, case, library, runs[library])
            if run is None:
                failed.add(library)
                best[library] = lost[library] = disorder[library] = None
                continue
            best[library] = max(best[library] or 0.0, count / run.seconds)
            lost[library] = (lost[library] or 0) + run.lost
            disorder[library] = (disorder[library] or 0) + run.disorder
    report.header(
        f"relay throughput: {count:,} datagrams of {SIZE} B, relayed side to "
        f"plain side through coturn over UDP, window {effective} (an unread "
        f"default buffer holds {held}), ack every {effective // 4}, "
        f"best of {repeat}"
    )
    ours, theirs = best["syncice"], best["aioice"]
    report.row(
        "datagrams/s",
        best,
        ",.0f",
        f">= {THROUGHPUT_TARGET:.1f}x aioice",
        None if ours is None or theirs is None else ours >= THROUGHPUT_TARGET * theirs,
        f"{case} datagrams/s",
    )
    report.row(
        "MB/s",
        {k: None if v is None else v * SIZE / 1e6 for k, v in best.items()},
        ".1f",
    )
    measured = [v for v in lost.values() if v is not None]
    report.row(
        f"lost, all {repeat} runs",
        lost,
        ".0f",
        "0, each library",
        None if lost["syncice"] is None else not any(measured),
        f"{case} loss",
    )
    orderly = [v for v in disorder.values() if v is not None]
    report.row(
        "out of order or repeated",
        disorder,
        ".0f",
        "0, each library",
        None if disorder["syncice"] is None else not any(orderly),
        f"{case} order",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        default="connect,throughput",
        help="comma-separated subset of connect,throughput",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run of ~15 s"
    )
    parser.add_argument("--pairs", type=int, help="connect: pairs (50)")
    parser.add_argument("--window", type=int, default=256, help="throughput: max W")
    parser.add_argument("--count", type=int, help="throughput: datagrams (50000)")
    parser.add_argument("--repeat", type=int, help="throughput runs, best kept (3)")
    args = parser.parse_args()

    quick = args.quick

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else small if quick else full

    cases = [case for case in args.cases.split(",") if case]
    unknown = set(cases) - {"connect", "throughput"}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.window < 4:
        parser.error("--window must be at least 4")

    syncice, why = load_syncice()
    aioice = load_aioice()
    # SIGTERM ends the run through the finally below, which stops coturn.
    signal.signal(signal.SIGTERM, terminate)
    directory = Path(tempfile.mkdtemp(prefix="syncice-bench-coturn."))
    try:
        turn = start_coturn(directory)
    except BenchError as exc:
        print(f"cannot start coturn: {exc}", file=sys.stderr)
        print(f"its state is left in {directory}", file=sys.stderr)
        return 1
    watchdog = Watchdog(directory)
    try:
        print(
            f"syncice vs aioice {aioice.__version__} through coturn "
            f"{coturn_version()} (PID {turn.pid}, TURN over UDP on "
            f"{turn.ip}:{turn.port}), Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs, on {LOOPBACK}"
        )
        if syncice is None:
            print(f"syncice rows skipped: {why}")
        report = Report()
        for case in cases:
            watchdog.arm()
            if case == "connect":
                case_connect(report, syncice, aioice, turn, pick(args.pairs, 50, 10))
            else:
                case_throughput(
                    report,
                    syncice,
                    aioice,
                    turn,
                    pick(args.count, 50_000, 10_000),
                    args.window,
                    pick(args.repeat, 3, 2),
                )
            watchdog.disarm()
    finally:
        watchdog.disarm()
        stop_coturn(directory)
        shutil.rmtree(directory, ignore_errors=True)

    print()
    if syncice is None:
        report.error("all cases", "syncice", why)
    for note in report.notes:
        print(f"error: {note}")
    if report.missed:
        print(f"targets missed: {', '.join(report.missed)}")
    else:
        print("all targets met")
    return 0


def terminate(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
