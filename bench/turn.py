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
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from _common import (
    CASE_TIMEOUT,
    LOOPBACK,
    TIMEOUT,
    BenchError,
    Endpoint,
    Factory,
    Report,
    SynciceConnection,
    ack,
    add_arguments,
    aioice_close,
    aioice_signal,
    best_of,
    case_connect,
    chosen_cases,
    connected_aioice,
    connected_syncice,
    load_aioice,
    lossless_window,
    picker,
    report_rate,
    run_aioice,
    sequence,
    steady_malloc,
    syncice_signal,
    transfer_aioice,
    transfer_blocking,
)

LIBRARIES = ("syncice", "aioice")
SIZE = 1200
COTURN_SH = Path(__file__).resolve().parent.parent / "tests" / "coturn.sh"

# Targets of the TURN milestone.
CONNECT_TARGET = 0.5  # syncice median relay connect time / aioice's, at most
THROUGHPUT_TARGET = 1.5  # syncice relayed datagrams/s / aioice's, at least


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

    @property
    def credentials(self) -> dict[str, object]:
        """The server and the long-term credentials, as the keyword arguments
        of syncice's and aioice's ``Connection``."""
        return {
            "turn_server": self.server,
            "turn_username": self.username,
            "turn_password": self.password,
        }


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
        **turn.credentials,
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


async def aioice_pair(aioice: Any, turn: Turn) -> tuple[Any, Any]:
    """A relayed controlling and a plain controlled connection, gathered and
    signalled."""
    import asyncio

    a = aioice.Connection(
        ice_controlling=True,
        **turn.credentials,
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


# ---------------------------------------------------------------- throughput
#
# The senders are in _common; the receivers count what arrives, so that a
# lost datagram is counted rather than stalling the run.


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


def transfer_counted(tx: Endpoint, rx: Endpoint, count: int, window: int) -> Run:
    tally = Tally()
    receive = functools.partial(receive_blocking, rx, count, window // 4, tally)
    elapsed = transfer_blocking(tx, receive, count, SIZE, window)
    return Run(elapsed, count - tally.received, tally.disorder)


async def receive_aioice(rx: Any, count: int, every: int, tally: Tally) -> None:
    send, recv = rx.send, rx.recv
    acked = 0
    while tally.highest < count - 1:
        tally.take(await recv())
        if tally.highest + 1 - acked >= every or tally.highest == count - 1:
            acked = tally.highest + 1
            await send(ack(acked))


async def transfer_counted_aioice(tx: Any, rx: Any, count: int, window: int) -> Run:
    tally = Tally()
    receive = receive_aioice(rx, count, window // 4, tally)
    try:
        elapsed = await transfer_aioice(tx, receive, count, SIZE, window)
    except BenchError as exc:
        raise BenchError(
            f"{exc}; received {tally.received} of {count} (up to {tally.highest})"
        ) from exc
    return Run(elapsed, count - tally.received, tally.disorder)


@dataclass(frozen=True)
class Run:
    """One throughput run."""

    seconds: float
    lost: int
    disorder: int


def throughput_syncice(syncice: Syncice, turn: Turn, count: int, window: int) -> Run:
    return connected_syncice(
        functools.partial(syncice_pair, syncice, turn),
        lambda tx, rx: transfer_counted(tx, rx, count, window),
    )


async def throughput_aioice(aioice: Any, turn: Turn, count: int, window: int) -> Run:
    return await connected_aioice(
        functools.partial(aioice_pair, aioice, turn),
        lambda tx, rx: transfer_counted_aioice(tx, rx, count, window),
        TIMEOUT,
    )


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
    best: dict[str, float | None] = {}
    lost: dict[str, float | None] = {}
    disorder: dict[str, float | None] = {}
    for library, done in best_of(report, case, LIBRARIES, runs, repeat).items():
        if done is None:
            best[library] = lost[library] = disorder[library] = None
            continue
        best[library] = max(count / run.seconds for run in done)
        lost[library] = sum(run.lost for run in done)
        disorder[library] = sum(run.disorder for run in done)
    report.header(
        f"relay throughput: {count:,} datagrams of {SIZE} B, relayed side to "
        f"plain side through coturn over UDP, window {effective} (an unread "
        f"default buffer holds {held}), ack every {effective // 4}, "
        f"best of {repeat}"
    )
    report_rate(report, best, SIZE, THROUGHPUT_TARGET, f"{case} datagrams/s")
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
    add_arguments(parser, ("connect", "throughput"), 15)
    parser.add_argument("--count", type=int, help="throughput: datagrams (50000)")
    parser.add_argument("--repeat", type=int, help="throughput runs, best kept (3)")
    args = parser.parse_args()

    pick = picker(args.quick)
    cases = chosen_cases(parser, args, ("connect", "throughput"))

    syncice, why = load_syncice()
    aioice = load_aioice()
    malloc = steady_malloc()
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
        print(malloc)
        if syncice is None:
            print(f"syncice rows skipped: {why}")
        report = Report(LIBRARIES)
        for case in cases:
            watchdog.arm()
            if case == "connect":
                pairs = pick(args.pairs, 50, 10)
                makers = (
                    None
                    if syncice is None
                    else functools.partial(syncice_pair, syncice, turn),
                    functools.partial(aioice_pair, aioice, turn),
                )
                title = (
                    f"relay connect: {pairs} pairs, both sides at once, one side "
                    "relay-only (TURN over UDP)"
                )
                case = "relay connect"
                case_connect(
                    report, case, title, makers, pairs, CONNECT_TARGET, TIMEOUT
                )
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

    if syncice is None:
        report.error("all cases", "syncice", why)
    report.summary()
    return 0


def terminate(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
