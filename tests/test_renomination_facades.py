"""Renomination (libwebrtc's ``NOMINATION``, 0xC001) through both facades, on
loopback: a controlled connection against a peer played with two plain UDP
sockets, which answers the connection's checks and then nominates with
values, as Chrome and pion do. The connection selects the pair of the
highest value it has seen, even one of lower priority (issue 15, point 4;
the agent's rules are tested in tests/test_ice_restart.py).
"""

from __future__ import annotations

import asyncio
import itertools
import select
import socket
import threading
from collections.abc import Iterator

import pytest

import syncice
import syncice.asyncio
from syncice.candidate import Candidate, candidate_priority
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from tests.conftest import spawn

GUARD = 10.0
#: Looks at the stats (each a round trip to the worker) before giving up.
POLLS = 100_000
PEER_UFRAG, PEER_PWD = "peer", "peerpassword22charslong"


class Peer:
    """Two candidates of a controlling peer, each a UDP socket on loopback."""

    def __init__(self) -> None:
        self.socks = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.socks.append(sock)
        self._ids = itertools.count(1)
        self.ports = [s.getsockname()[1] for s in self.socks]
        # The first of higher priority than the second.
        self.candidates = [
            Candidate(
                str(i + 1),
                1,
                "udp",
                candidate_priority(1, "host", 65535 - 1000 * i),
                "127.0.0.1",
                port,
                "host",
            )
            for i, port in enumerate(self.ports)
        ]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def start(self) -> None:
        """Answer the connection's checks, in a thread, until closed."""
        self._waiting: dict[bytes, threading.Event] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(GUARD)

    def _serve(self) -> None:
        while not self._stop:
            ready, _, _ = select.select(self.socks, [], [], 0.05)
            for sock in ready:
                data, addr = sock.recvfrom(2048)
                message = parse_message(data)
                if message.message_class is Class.REQUEST:
                    response = Message(
                        Method.BINDING,
                        Class.SUCCESS,
                        message.transaction_id,
                        {"XOR-MAPPED-ADDRESS": addr},
                    )
                    key = short_term_key(PEER_PWD)
                    sock.sendto(response.encode(key=key, fingerprint=True), addr)
                elif message.transaction_id in self._waiting:
                    assert message.message_class is Class.SUCCESS
                    self._waiting[message.transaction_id].set()

    def nominate(
        self, index: int, value: int, to: tuple[str, int], ufrag: str, password: str
    ) -> None:
        """A check with ``NOMINATION=value`` from candidate ``index``; returns
        once its answer came (so the connection has taken it)."""
        tid = next(self._ids).to_bytes(12, "big")
        answered = self._waiting[tid] = threading.Event()
        request = Message(
            Method.BINDING,
            Class.REQUEST,
            tid,
            {
                "USERNAME": f"{ufrag}:{PEER_UFRAG}",
                "PRIORITY": 1862270975,
                "ICE-CONTROLLING": 1,
                "NOMINATION": value,
            },
        )
        key = short_term_key(password)
        self.socks[index].sendto(request.encode(key=key, fingerprint=True), to)
        assert answered.wait(GUARD)


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    p.start()
    yield p
    p.stop()
    p.close()


def test_blocking_connection_follows_the_highest_nomination(peer: Peer) -> None:
    conn = syncice.Connection(False, local_addresses=["127.0.0.1"])
    try:
        conn.gather_candidates(timeout=GUARD)
        conn.remote_username, conn.remote_password = PEER_UFRAG, PEER_PWD
        for candidate in [*peer.candidates, None]:
            conn.add_remote_candidate(candidate)
        ours = (conn.local_candidates[0].host, conn.local_candidates[0].port)
        connecting = spawn(lambda: conn.connect(timeout=GUARD))
        # Both pairs valid (each check answered): the stats say so soon.
        for _ in range(POLLS):
            if all(s.responses_received for s in conn.get_stats()):
                break
        else:
            pytest.fail("the connection's checks were not answered")
        seen = []
        for index, value in ((0, 1), (1, 2), (0, 1), (0, 3)):
            peer.nominate(index, value, ours, conn.local_username, conn.local_password)
            connecting.result(GUARD)
            pair = conn.selected_pair()
            assert pair is not None
            seen.append(pair.remote.port)
        first, second = peer.ports
        assert seen == [first, second, second, first]
    finally:
        conn.close()


def test_asyncio_connection_follows_the_highest_nomination(peer: Peer) -> None:
    async def main() -> list[int]:
        conn = syncice.asyncio.Connection(False, local_addresses=["127.0.0.1"])
        loop = asyncio.get_running_loop()
        try:
            await conn.gather_candidates()
            conn.remote_username, conn.remote_password = PEER_UFRAG, PEER_PWD
            for candidate in [*peer.candidates, None]:
                await conn.add_remote_candidate(candidate)
            ours = (conn.local_candidates[0].host, conn.local_candidates[0].port)

            async def watch() -> None:
                for _ in range(POLLS):
                    if all(s.responses_received for s in await conn.get_stats()):
                        return
                pytest.fail("the connection's checks were not answered")

            connecting = asyncio.ensure_future(conn.connect())
            await asyncio.wait_for(watch(), GUARD)
            seen = []
            for index, value in ((0, 1), (1, 2), (0, 1), (0, 3)):
                await loop.run_in_executor(
                    None,
                    peer.nominate,
                    index,
                    value,
                    ours,
                    conn.local_username,
                    conn.local_password,
                )
                await asyncio.wait_for(connecting, GUARD)
                pair = await conn.selected_pair()
                assert pair is not None
                seen.append(pair.remote.port)
            return seen
        finally:
            await conn.close()

    first, second = peer.ports
    assert asyncio.run(main()) == [first, second, second, first]
