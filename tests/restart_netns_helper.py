"""Run inside a network namespace of the test's own (see
``tests/test_restart_netns.py``): two connections, each with host candidates
on 127.0.0.1 and 127.0.0.2, connect; then the selected pair's path is
blackholed with nftables (its two UDP 4-tuples dropped, every other pair's
path left open), and an ICE restart, made before consent expires, moves the
connection to another pair. ``blocking`` drives :class:`syncice.Connection`,
``asyncio`` :class:`syncice.asyncio.Connection`; the facts are printed as
one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import syncice
import syncice.asyncio

GUARD = 10.0
ADDRESSES = ["127.0.0.1", "127.0.0.2"]
TABLE = "si_restart"


def blackhole(path: tuple[str, int, str, int]) -> None:
    """Drop UDP both ways on one path, and only on it."""
    here, here_port, there, there_port = path
    rules = [
        f"add table inet {TABLE}",
        f"add chain inet {TABLE} out {{ type filter hook output priority 0; }}",
    ]
    for src, sport, dst, dport in (path, (there, there_port, here, here_port)):
        rules.append(
            f"add rule inet {TABLE} out ip saddr {src} udp sport {sport}"
            f" ip daddr {dst} udp dport {dport} counter drop"
        )
    subprocess.run(["nft", "; ".join(rules)], check=True)


def dropped() -> int:
    listing = subprocess.run(
        ["nft", "list", "table", "inet", TABLE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(part.split()[0]) for part in listing.split("packets ")[1:])


def signal(a: Any, b: Any) -> None:
    for ours, theirs in ((a, b), (b, a)):
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password


def path_of(conn: syncice.Connection) -> tuple[str, int, str, int]:
    pair = conn.selected_pair()
    assert pair is not None
    return (pair.local.host, pair.local.port, pair.remote.host, pair.remote.port)


def run_blocking() -> dict[str, object]:
    a = syncice.Connection(True, local_addresses=ADDRESSES)
    b = syncice.Connection(False, local_addresses=ADDRESSES)
    try:
        for conn in (a, b):
            conn.gather_candidates(timeout=GUARD)

        def exchange() -> None:
            signal(a, b)
            for ours, theirs in ((a, b), (b, a)):
                for candidate in ours.local_candidates:
                    theirs.add_remote_candidate(candidate)
                theirs.add_remote_candidate(None)

        def connect() -> None:
            other = threading.Thread(target=b.connect, kwargs={"timeout": GUARD})
            other.start()
            a.connect(timeout=GUARD)
            other.join()

        exchange()
        connect()
        old = path_of(a)
        blackhole(old)
        a.send(b"lost")  # into the hole: the old path carries nothing now
        a.restart()
        b.restart()
        exchange()
        connect()
        new = path_of(a)
        a.send(b"ping")
        got = [b.recv(timeout=GUARD)]
        b.send(b"pong")
        got.append(a.recv(timeout=GUARD))
        return {"old": old, "new": new, "got": got, "states": [a.state, b.state]}
    finally:
        a.close()
        b.close()


async def run_asyncio() -> dict[str, object]:
    a = syncice.asyncio.Connection(True, local_addresses=ADDRESSES)
    b = syncice.asyncio.Connection(False, local_addresses=ADDRESSES)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())

        async def exchange() -> None:
            signal(a, b)
            for ours, theirs in ((a, b), (b, a)):
                for candidate in ours.local_candidates:
                    await theirs.add_remote_candidate(candidate)
                await theirs.add_remote_candidate(None)

        async def path(conn: syncice.asyncio.Connection) -> tuple[str, int, str, int]:
            pair = await conn.selected_pair()
            assert pair is not None
            return (
                pair.local.host,
                pair.local.port,
                pair.remote.host,
                pair.remote.port,
            )

        await exchange()
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
        old = await path(a)
        blackhole(old)
        await a.send(b"lost")
        await a.restart()
        await b.restart()
        await exchange()
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
        new = await path(a)
        await a.send(b"ping")
        got = [await asyncio.wait_for(b.recv(), GUARD)]
        await b.send(b"pong")
        got.append(await asyncio.wait_for(a.recv(), GUARD))
        return {"old": old, "new": new, "got": got, "states": [a.state, b.state]}
    finally:
        await a.close()
        await b.close()


def main() -> None:
    kind = sys.argv[1]
    facts = run_blocking() if kind == "blocking" else asyncio.run(run_asyncio())
    facts["dropped"] = dropped()
    facts["got"] = [data.decode() for data in facts["got"]]  # type: ignore[attr-defined]
    facts["states"] = [str(getattr(s, "value", s)) for s in facts["states"]]  # type: ignore[attr-defined]
    print(json.dumps(facts))  # noqa: T201


if __name__ == "__main__":
    main()
