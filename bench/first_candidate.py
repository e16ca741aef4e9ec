"""How soon the first host candidate reaches the application, with a STUN
server configured that never answers, on loopback.

Usage::

    python bench/first_candidate.py [--runs N]

Each run makes a connection with ``local_addresses=["127.0.0.1"]`` and a
STUN server that is a silent UDP socket of this program, and measures from
the call (``gather_candidates(on_candidate=...)`` of the blocking API;
``gather_candidates_iter()`` of the asyncio shim) to the first host
candidate in the application's hands: the bind, the hand-over to the
worker, the agent's candidate and the wake-up of the caller, while the
STUN request stays pending. "cold": no other connection is open, so each
run also starts the worker thread (and the close stops it); "warm":
another connection keeps the worker running, as in a program that has
one open already. ``tests/test_trickle.py`` asserts the
behaviour; nothing here is a target: the figures go in the closing notes.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

import syncice
import syncice.asyncio

LOCAL = ["127.0.0.1"]


class Found(Exception):
    """Ends gathering_candidates() once the first candidate is in."""


def blocking(stun: tuple[str, int]) -> float:
    conn = syncice.Connection(True, stun_server=stun, local_addresses=LOCAL)
    got: list[float] = []

    def on_candidate(candidate: syncice.Candidate | None) -> None:
        got.append(time.perf_counter())
        raise Found

    start = time.perf_counter()
    try:
        conn.gather_candidates(on_candidate=on_candidate)
    except Found:
        pass
    finally:
        conn.close()
    return got[0] - start


async def with_asyncio(stun: tuple[str, int]) -> float:
    conn = syncice.asyncio.Connection(True, stun_server=stun, local_addresses=LOCAL)
    try:
        start = time.perf_counter()
        async for _ in conn.gather_candidates_iter():
            return time.perf_counter() - start
        raise AssertionError("no candidate")
    finally:
        await conn.close()


def report(name: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    print(
        f"{name}: median {statistics.median(ms):.2f} ms, p90"
        f" {ms[int(0.9 * (len(ms) - 1))]:.2f} ms, max {ms[-1]:.2f} ms"
        f" over {len(ms)} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        host, port = silent.getsockname()
        stun = (host, port)

        async def runs() -> list[float]:
            return [await with_asyncio(stun) for _ in range(args.runs)]

        report("blocking, cold", [blocking(stun) for _ in range(args.runs)])
        report("asyncio, cold", asyncio.run(runs()))
        with syncice.Connection(True, local_addresses=LOCAL) as keeper:
            keeper.gather_candidates()
            report("blocking, warm", [blocking(stun) for _ in range(args.runs)])
            report("asyncio, warm", asyncio.run(runs()))


if __name__ == "__main__":
    main()
