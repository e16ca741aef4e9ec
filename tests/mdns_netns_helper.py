"""Scenarios of ``tests/test_mdns_netns.py``, run inside a network namespace.

The test starts this script with ``ip netns exec NS python mdns_netns_helper.py
SCENARIO``: it must never run in the root namespace, where the multicast
socket it opens could reach the network. It prints one JSON object on its last
line of stdout, the facts the test asserts on; log records go to stderr.

Scenarios:

- ``syncice_pair``: two syncice connections, the controlling one with
  ``mdns_host_candidates=True``, connect and exchange data.
- ``aioice_publishes``: aioice's ``MDnsProtocol.publish`` announces a name for
  an aioice connection's host candidate; syncice resolves it and connects.
- ``aioice_resolves``: syncice (obfuscating) against aioice, which resolves
  our ``.local`` candidates itself.
- ``no_multicast``: the namespace has no multicast: gathering with
  ``mdns_host_candidates=True`` warns once, and a remote ``.local`` candidate
  is dropped with a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncice import Candidate, Connection

T = TypeVar("T")

#: Bound of every blocking call and wait, in seconds.
WAIT = 10.0


class Recorder(logging.Handler):
    """Keeps every syncice log record; wakes waiters on each."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def messages(self, level: int = logging.WARNING) -> list[str]:
        with self.changed:
            return [r.getMessage() for r in self.records if r.levelno >= level]

    def wait_for(self, text: str) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: any(text in r.getMessage() for r in self.records), WAIT
            )


#: Every syncice log record of the run.
RECORDER = Recorder()


def wait_resolved(name: str) -> None:
    """Wait until syncice has resolved ``name`` (its debug log line), so that
    the peer's checks cannot make its address known as peer-reflexive first."""
    assert RECORDER.wait_for(f"{name} is "), f"{name} was not resolved"


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` until true or :data:`WAIT` seconds; its last value."""
    event = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return True
        event.wait(0.02)
    return condition()


def connect_pair(a: Connection, b: Connection) -> None:
    """Connect both at once, from two threads; raises what either raised."""
    errors: list[BaseException] = []

    def run(conn: Connection) -> None:
        try:
            conn.connect(timeout=WAIT)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def exchange(a: Connection, b: Connection) -> list[str]:
    a.send(b"ping")
    got = [b.recv(timeout=WAIT).decode()]
    b.send(b"pong")
    got.append(a.recv(timeout=WAIT).decode())
    return got


def resolved_pairs(conn: Connection) -> list[list[Any]]:
    """``[type, host, port]`` of each pair's remote candidate."""
    return [[s.remote.type, s.remote.host, s.remote.port] for s in conn.get_stats()]


def mdns_sockets() -> int:
    """How many UDP sockets of this namespace are bound to port 5353."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(line.split()[1].endswith(":14E9") for line in lines)


def syncice_pair() -> dict[str, Any]:
    a = Connection(True, local_addresses=["127.0.0.1"], mdns_host_candidates=True)
    b = Connection(False, local_addresses=["127.0.0.1"])
    sockets = [mdns_sockets()]
    try:
        b.gather_candidates(timeout=WAIT)
        sockets.append(mdns_sockets())  # b needs none
        a.gather_candidates(timeout=WAIT)
        sockets.append(mdns_sockets())
        for candidate in a.local_candidates:
            b.add_remote_candidate(candidate)
        b.add_remote_candidate(None)
        wait_resolved(a.local_candidates[0].host)
        for candidate in b.local_candidates:
            a.add_remote_candidate(candidate)
        a.add_remote_candidate(None)
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        connect_pair(a, b)
        data = exchange(a, b)
        port = a.local_candidates[0].port
        # The pair from the resolved name (not a peer-reflexive one).
        resolved = wait_until(lambda: ["host", "127.0.0.1", port] in resolved_pairs(b))
        return {
            "a_local": [c.to_sdp() for c in a.local_candidates],
            "a_default": a.get_default_candidate(1).to_sdp(),  # type: ignore[union-attr]
            "b_local": [c.to_sdp() for c in b.local_candidates],
            "b_remote": [c.to_sdp() for c in b.remote_candidates],
            "data": data,
            "resolved": resolved,
            "b_pairs": resolved_pairs(b),
            "sockets": sockets,
            # One socket for the process, closed with the last user.
            "closed_after": closed_after(a, b),
        }
    finally:
        a.close()
        b.close()


def closed_after(a: Connection, b: Connection) -> list[int]:
    """Sockets on 5353 after closing ``a``, then after closing ``b`` too."""
    a.close()
    after_a = mdns_sockets()
    b.close()
    wait_until(lambda: mdns_sockets() == 0)
    return [after_a, mdns_sockets()]


class Loop:
    """An asyncio loop on a thread, for aioice."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT * 2)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def _aioice_on_loopback() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


async def _give_aioice(ours: Connection, theirs: Any) -> None:
    """Signal our candidates and end-of-candidates to aioice's ``theirs``."""
    import aioice

    for candidate in ours.local_candidates:
        await theirs.add_remote_candidate(aioice.Candidate.from_sdp(candidate.to_sdp()))
    await theirs.add_remote_candidate(None)


def _connect_and_ping(loop: Loop, ours: Connection, theirs: Any) -> list[str]:
    """Exchange credentials, connect ``ours`` (controlling) and aioice's
    ``theirs``, then a ping from ours and a pong back: what each received."""
    ours.remote_username = theirs.local_username
    ours.remote_password = theirs.local_password
    theirs.remote_username = ours.local_username
    theirs.remote_password = ours.local_password
    future = asyncio.run_coroutine_threadsafe(theirs.connect(), loop.loop)
    ours.connect(timeout=WAIT)
    future.result(WAIT)
    ours.send(b"ping")
    got = [loop.run(theirs.recv()).decode()]
    loop.run(theirs.send(b"pong"))
    got.append(ours.recv(timeout=WAIT).decode())
    return got


def aioice_publishes() -> dict[str, Any]:
    import aioice
    import aioice.mdns

    _aioice_on_loopback()
    loop = Loop()
    theirs = aioice.Connection(ice_controlling=False)
    ours = Connection(True, local_addresses=["127.0.0.1"])
    try:
        protocol = loop.run(aioice.mdns.create_mdns_protocol())
        name = aioice.mdns.create_mdns_hostname()
        loop.run(protocol.publish(name, "127.0.0.1"))
        loop.run(theirs.gather_candidates())
        ours.gather_candidates(timeout=WAIT)
        [host] = theirs.local_candidates
        port = host.port
        line = host.to_sdp().replace(" 127.0.0.1 ", f" {name} ")
        ours.add_remote_candidate(Candidate.from_sdp(line))
        ours.add_remote_candidate(None)
        wait_resolved(name)

        loop.run(_give_aioice(ours, theirs))
        got = _connect_and_ping(loop, ours, theirs)
        pairs = resolved_pairs(ours)
        loop.run(protocol.close())
        return {
            "name": name,
            "port": port,
            "data": got,
            "pairs": pairs,
            "remote": [c.to_sdp() for c in ours.remote_candidates],
        }
    finally:
        ours.close()
        loop.run(theirs.close())
        loop.close()


def aioice_resolves() -> dict[str, Any]:
    import aioice

    _aioice_on_loopback()
    loop = Loop()
    theirs = aioice.Connection(ice_controlling=False)
    ours = Connection(True, local_addresses=["127.0.0.1"], mdns_host_candidates=True)
    try:
        loop.run(theirs.gather_candidates())
        ours.gather_candidates(timeout=WAIT)
        for candidate in theirs.local_candidates:
            ours.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()))
        ours.add_remote_candidate(None)

        loop.run(_give_aioice(ours, theirs))
        # aioice resolves in a task of its own: wait for it before the checks
        # (its private counter; aioice has no public way to tell).
        assert wait_until(lambda: not theirs._remote_candidates_resolving)
        got = _connect_and_ping(loop, ours, theirs)
        # aioice pairs the resolved address with our name's host candidate.
        their_pairs = [
            [p.remote_candidate.type, p.remote_candidate.host, *p.remote_addr]
            for p in theirs._check_list
        ]
        return {
            "ours_local": [c.to_sdp() for c in ours.local_candidates],
            "our_port": ours.get_stats()[0].local.port,
            "data": got,
            "their_pairs": their_pairs,
        }
    finally:
        ours.close()
        loop.run(theirs.close())
        loop.close()


def no_multicast() -> dict[str, Any]:
    recorder = RECORDER
    a = Connection(True, local_addresses=["127.0.0.1"], mdns_host_candidates=True)
    b = Connection(False, local_addresses=["127.0.0.1"])
    try:
        before = len(recorder.messages())
        a.gather_candidates(timeout=WAIT)
        gather_warnings = recorder.messages()[before:]
        b.gather_candidates(timeout=WAIT)
        name = "0b8a2c7e-4f1d-4e5a-9c3b-2d6e8f0a1b2c.local"
        b.add_remote_candidate(Candidate("1", 1, "udp", 100, name, 9, "host"))
        dropped = recorder.wait_for(f"{name}: not resolved by mDNS, dropped")
        return {
            "a_local": [c.to_sdp() for c in a.local_candidates],
            "gather_warnings": gather_warnings,
            "dropped": dropped,
            "b_remote": [c.to_sdp() for c in b.remote_candidates],
            "warnings": recorder.messages(),
        }
    finally:
        a.close()
        b.close()


def main() -> None:
    scenario = sys.argv[1]
    logger = logging.getLogger("syncice")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(RECORDER)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    result = {
        "syncice_pair": syncice_pair,
        "aioice_publishes": aioice_publishes,
        "aioice_resolves": aioice_resolves,
        "no_multicast": no_multicast,
    }[scenario]()
    result["netns"] = os.readlink("/proc/self/ns/net")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
