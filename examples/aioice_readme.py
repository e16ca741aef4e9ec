"""aioice's README example, run on syncice.asyncio.

The text of aioice's example (its project description) is unchanged but for
the import line, ``import syncice.asyncio as aioice``, and the two signalling
functions it leaves to the reader, filled in below: the remote party is a
blocking :class:`syncice.Connection` in a thread of this process, and the
"signalling channel" is a pair of :class:`queue.Queue`. The remote party
echoes the first datagram it receives.

Like the original, both connections gather on every interface except loopback.
``tests/test_asyncio.py`` runs it with syncice's host addresses restricted to
127.0.0.1 (it replaces ``syncice._gather.host_addresses``, as the tests do for
aioice's ``get_host_addresses``).
"""

# ruff: noqa: T201, E402, I001, RUF059

import queue
import threading

import syncice

# --- the signalling functions (ours) -------------------------------------------

_offers: "queue.Queue[tuple[list[syncice.Candidate], str, str]]" = queue.Queue()
_answers: "queue.Queue[tuple[list[syncice.Candidate], str, str]]" = queue.Queue()


def _remote_party() -> None:
    """The other peer: answers the offer, then echoes one datagram."""
    remote = syncice.Connection(ice_controlling=False)
    try:
        candidates, username, password = _offers.get(timeout=30)
        remote.gather_candidates(timeout=30)
        for candidate in candidates:
            remote.add_remote_candidate(candidate)
        remote.add_remote_candidate(None)
        remote.remote_username, remote.remote_password = username, password
        _answers.put(
            (remote.local_candidates, remote.local_username, remote.local_password)
        )
        remote.connect(timeout=30)
        data, component = remote.recvfrom(timeout=30)
        print(f"remote party received {data!r} on component {component}")
        remote.sendto(data, component)
    finally:
        remote.close()


_remote = threading.Thread(target=_remote_party, daemon=True)
_remote.start()


def send_local_info(candidates, username, password):  # type: ignore[no-untyped-def]
    _offers.put((candidates, username, password))


def get_remote_info():  # type: ignore[no-untyped-def]
    # Blocking, as the README's call is: the remote party is another thread.
    return _answers.get(timeout=30)


# --- aioice's README example ---------------------------------------------------
# fmt: off

import asyncio
import syncice.asyncio as aioice

async def connect_using_ice():
    connection = aioice.Connection(ice_controlling=True)

    # gather local candidates
    await connection.gather_candidates()

    # send your information to the remote party using your signaling method
    send_local_info(
        connection.local_candidates,
        connection.local_username,
        connection.local_password)

    # receive remote information using your signaling method
    remote_candidates, remote_username, remote_password = get_remote_info()

    # perform ICE handshake
    for candidate in remote_candidates:
        await connection.add_remote_candidate(candidate)
    await connection.add_remote_candidate(None)
    connection.remote_username = remote_username
    connection.remote_password = remote_password
    await connection.connect()

    # send and receive data
    await connection.sendto(b'1234', 1)
    data, component = await connection.recvfrom()

    # close connection
    await connection.close()

asyncio.run(connect_using_ice())
# fmt: on

# --- ours: show the outcome ----------------------------------------------------
_remote.join(30)
print("aioice README example done")
