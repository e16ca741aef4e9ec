"""Trickle ICE (RFC 8838): candidates go to the peer as they are gathered,
and connect() runs while gathering still does.

Both peers live in this process on 127.0.0.1. Their STUN server is a UDP
socket of this program that never answers, as a server that is down or
behind a firewall would not: each side's server-reflexive gathering waits
for it until ``gather_timeout`` (1 s here), while the host candidates have
long reached the peer and the connection works. With the blocking API
(a thread per side, then one thread), then with the asyncio shim.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import syncice
import syncice.asyncio

LOCAL = ["127.0.0.1"]
CONFIG = syncice.IceConfig(gather_timeout=1.0)


def trickle(conn: syncice.Connection, peer: syncice.Connection) -> threading.Thread:
    """Gather ``conn`` in a thread of its own; each candidate goes to the
    peer as soon as it is gathered, then ``None``: end-of-candidates.
    Returns once the first one went (gathering has started)."""
    first = threading.Event()

    def on_candidate(candidate: syncice.Candidate | None) -> None:
        # Runs in this thread, not syncice's: anything may be called here.
        peer.add_remote_candidate(candidate)  # your signalling channel
        first.set()

    thread = threading.Thread(
        target=conn.gather_candidates, kwargs={"on_candidate": on_candidate}
    )
    thread.start()
    first.wait(10)
    return thread


def blocking(stun: tuple[str, int]) -> None:
    a = syncice.Connection(True, stun_server=stun, local_addresses=LOCAL, config=CONFIG)
    b = syncice.Connection(
        False, stun_server=stun, local_addresses=LOCAL, config=CONFIG
    )
    with a, b:
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        gathering = [trickle(a, b), trickle(b, a)]
        # connect() at once: the checks start with the candidates there are,
        # and those gathered later join them.
        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()
        a.connect(timeout=10)
        other.join()
        print("connected while gathering:", a.state)  # noqa: T201
        a.send(b"sent while gathering")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
        for thread in gathering:
            thread.join()  # end-of-candidates, after gather_timeout
        print("after end-of-candidates:", a.state)  # noqa: T201


def one_thread(stun: tuple[str, int]) -> None:
    """a in one thread: its first candidate, connect(), then the rest.
    (b, an ordinary peer, runs in a thread of its own.)"""
    a = syncice.Connection(True, stun_server=stun, local_addresses=LOCAL, config=CONFIG)
    b = syncice.Connection(False, local_addresses=LOCAL)
    with a, b:
        b.gather_candidates(timeout=10)
        for theirs in b.local_candidates:
            a.add_remote_candidate(theirs)
        a.add_remote_candidate(None)
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()

        candidates = a.gather_candidates_iter(timeout=10)  # gathering starts
        b.add_remote_candidate(next(candidates))  # the host candidate, at once
        a.connect(timeout=10)
        print("one thread: connected while gathering:", a.state)  # noqa: T201
        for candidate in candidates:  # the rest, then None
            b.add_remote_candidate(candidate)
        print("one thread: after end-of-candidates:", a.state)  # noqa: T201
        other.join()


async def trickle_async(
    conn: syncice.asyncio.Connection, peer: syncice.asyncio.Connection
) -> None:
    """Each candidate of ``conn`` goes to the peer as it is gathered, then
    ``None``."""
    async for candidate in conn.gather_candidates_iter():
        await peer.add_remote_candidate(candidate)


async def with_asyncio(stun: tuple[str, int]) -> None:
    shim = syncice.asyncio
    a = shim.Connection(True, stun_server=stun, local_addresses=LOCAL, config=CONFIG)
    b = shim.Connection(False, stun_server=stun, local_addresses=LOCAL, config=CONFIG)
    async with a, b:
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        gathering = [
            asyncio.create_task(trickle_async(a, b)),
            asyncio.create_task(trickle_async(b, a)),
        ]
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
        print("asyncio: connected while gathering:", a.state)  # noqa: T201
        await a.send(b"sent while gathering")
        got = await asyncio.wait_for(b.recv(), 10)
        print("asyncio: b got:", got.decode())  # noqa: T201
        await asyncio.gather(*gathering)
        print("asyncio: after end-of-candidates:", a.state)  # noqa: T201


def main() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # a STUN server that never answers
        host, port = silent.getsockname()
        blocking((host, port))
        one_thread((host, port))
        asyncio.run(with_asyncio((host, port)))


if __name__ == "__main__":
    main()
