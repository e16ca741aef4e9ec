"""Two peers with :mod:`syncice.asyncio`, signalling over a loopback TCP socket.

The server (controlled) listens on 127.0.0.1 for the offer of the client
(controlling): one JSON line each way with the candidates (SDP) and the
credentials. Then the client sends ``COUNT`` datagrams over ICE and the server
echoes each back. Both gather on 127.0.0.1 only, so nothing leaves the machine.

Run: ``python examples/asyncio_client_server.py``.
"""

from __future__ import annotations

import asyncio
import json

import syncice.asyncio as aioice

COUNT = 100
LOOPBACK = ["127.0.0.1"]


def describe(connection: aioice.Connection) -> bytes:
    """The signalling message for ``connection``: one JSON line."""
    info = {
        "candidates": [c.to_sdp() for c in connection.local_candidates],
        "username": connection.local_username,
        "password": connection.local_password,
    }
    return json.dumps(info).encode() + b"\n"


async def apply(connection: aioice.Connection, line: bytes) -> None:
    """Give ``connection`` the remote party's candidates and credentials."""
    info = json.loads(line)
    for sdp in info["candidates"]:
        await connection.add_remote_candidate(aioice.Candidate.from_sdp(sdp))
    await connection.add_remote_candidate(None)
    connection.remote_username = info["username"]
    connection.remote_password = info["password"]


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, done: asyncio.Event
) -> None:
    """The server's side: answer, connect, echo ``COUNT`` datagrams."""
    connection = aioice.Connection(ice_controlling=False, local_addresses=LOOPBACK)
    try:
        await connection.gather_candidates()
        await apply(connection, await reader.readline())
        writer.write(describe(connection))
        await writer.drain()
        await connection.connect()
        for _ in range(COUNT):
            data, component = await connection.recvfrom()
            await connection.sendto(data, component)
    finally:
        await connection.close()
        writer.close()
        done.set()


async def client(port: int) -> int:
    """The client's side: offer, connect, send and check ``COUNT`` datagrams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = aioice.Connection(ice_controlling=True, local_addresses=LOOPBACK)
    try:
        await connection.gather_candidates()
        writer.write(describe(connection))
        await writer.drain()
        await apply(connection, await reader.readline())
        await connection.connect()
        echoed = 0
        for i in range(COUNT):
            payload = f"datagram {i}".encode()
            await connection.send(payload)
            if await asyncio.wait_for(connection.recv(), 5.0) == payload:
                echoed += 1
        return echoed
    finally:
        await connection.close()
        writer.close()


async def main() -> None:
    done = asyncio.Event()
    server = await asyncio.start_server(lambda r, w: serve(r, w, done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        echoed = await asyncio.wait_for(client(port), 30.0)
        await asyncio.wait_for(done.wait(), 30.0)
    print(f"{echoed} of {COUNT} datagrams echoed")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
