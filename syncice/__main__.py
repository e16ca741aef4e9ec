"""``python -m syncice``: the ``syncice`` command line (:mod:`syncice.cli`),
and ``demo``: two ICE peers connect on loopback and exchange data.

Both peers live in this process and gather host candidates on 127.0.0.1 only,
so no traffic leaves the machine and no outside server is needed. The demo
prints each peer's candidates, the selected pair, the time ``connect()`` took,
the round-trip time of a ping-pong, and the throughput of a windowed transfer
in which every datagram must arrive.

Exit status: 0 on success, 1 when something failed (the reason on stderr),
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence

from .candidate import Candidate
from .cli import build_parser, dispatch
from .connection import Connection
from .exceptions import IceError

#: Hang guard of every blocking call of the demo, in seconds.
TIMEOUT = 10.0
_LOOPBACK = "127.0.0.1"


def _exchange(a: Connection, b: Connection) -> None:
    """Signalling, done by hand: candidates and credentials go both ways."""
    for ours, theirs in ((a, b), (b, a)):
        for candidate in ours.local_candidates:
            theirs.add_remote_candidate(candidate)
        theirs.add_remote_candidate(None)
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password


def _describe(candidate: Candidate) -> str:
    return f"{candidate.type} {candidate.host}:{candidate.port}"


def _ping_pong(a: Connection, b: Connection, count: int) -> list[float]:
    def echo() -> None:
        for _ in range(count):
            b.send(b.recv(timeout=TIMEOUT))

    thread = threading.Thread(target=echo, name="demo-echo")
    thread.start()
    rtts = []
    try:
        for i in range(count):
            payload = i.to_bytes(4, "big")
            start = time.perf_counter()
            a.send(payload)
            if a.recv(timeout=TIMEOUT) != payload:
                raise RuntimeError(f"ping {i} came back altered")
            rtts.append(time.perf_counter() - start)
    finally:
        thread.join()
    return rtts


def _transfer(a: Connection, b: Connection, count: int, size: int) -> float:
    """Send ``count`` datagrams of ``size`` bytes, at most ``window`` unacknowledged."""
    window = 128
    received = 0
    failure: list[BaseException] = []

    def receive() -> None:
        nonlocal received
        try:
            while received < count:
                data = b.recv(timeout=TIMEOUT)
                if int.from_bytes(data[:4], "big") != received or len(data) != size:
                    raise RuntimeError(f"datagram {received} lost or altered")
                received += 1
                if received % (window // 4) == 0 or received == count:
                    b.send(received.to_bytes(4, "big"))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=receive, name="demo-receiver")
    thread.start()
    start = time.perf_counter()
    padding = bytes(size - 4)
    acked = 0
    try:
        for i in range(count):
            while i - acked >= window:
                acked = int.from_bytes(a.recv(timeout=TIMEOUT), "big")
            a.send(i.to_bytes(4, "big") + padding)
        while acked < count:
            acked = int.from_bytes(a.recv(timeout=TIMEOUT), "big")
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return time.perf_counter() - start


def demo(count: int, size: int) -> None:
    """Run the demo, printing as it goes."""
    a = Connection(ice_controlling=True, local_addresses=[_LOOPBACK])
    b = Connection(ice_controlling=False, local_addresses=[_LOOPBACK])
    try:
        a.gather_candidates(timeout=TIMEOUT)
        b.gather_candidates(timeout=TIMEOUT)
        for name, peer in (("a", a), ("b", b)):
            for candidate in peer.local_candidates:
                print(f"peer {name} candidate  {candidate.to_sdp()}")
        _exchange(a, b)

        start = time.perf_counter()
        other = threading.Thread(target=b.connect, kwargs={"timeout": TIMEOUT})
        other.start()
        a.connect(timeout=TIMEOUT)
        other.join()
        elapsed = time.perf_counter() - start
        [pair] = [s for s in a.get_stats() if s.selected]
        print(f"selected pair     {_describe(pair.local)} -> {_describe(pair.remote)}")
        print(f"connect           {elapsed * 1e3:.2f} ms (both peers)")

        rtts = _ping_pong(a, b, 1000)
        print(f"ping-pong rtt     {statistics.median(rtts) * 1e6:.0f} us median")
        seconds = _transfer(a, b, count, size)
        print(
            f"throughput        {count / seconds:,.0f} datagrams/s, "
            f"{count * size / seconds / 1e6:.1f} MB/s "
            f"({count} x {size} B, none lost)"
        )
    finally:
        a.close()
        b.close()
    print("closed")


def _run_demo(args: argparse.Namespace, out: object) -> int:
    try:
        demo(args.count, args.size)
    except (IceError, OSError, RuntimeError) as exc:
        print(f"demo failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``syncice`` program: the commands of :mod:`syncice.cli`, and ``demo``."""
    parser, commands = build_parser()
    run = commands.add_parser(  # type: ignore[attr-defined]
        "demo", help="two peers connect on loopback (no server needed)"
    )
    run.add_argument("--count", type=int, default=20000, help="datagrams to transfer")
    run.add_argument("--size", type=int, default=1200, help="bytes per datagram")
    run.set_defaults(handler=_run_demo)
    args = parser.parse_args(argv)
    if args.command == "demo" and (args.count < 1 or not 4 <= args.size <= 65000):
        parser.error("--count must be at least 1 and --size 4 to 65000")
    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
