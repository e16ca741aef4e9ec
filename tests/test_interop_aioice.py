"""syncice against aioice 0.13 on loopback, in both roles (layer 3).

aioice gathers on every interface; its host-address function is patched to
return 127.0.0.1 so that no traffic leaves loopback. aioice runs on an asyncio
loop in the test's thread and syncice's blocking calls run in a helper thread
(``asyncio.to_thread``), as a real mixed program would.
"""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import pytest

import syncice

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("aioice_on_loopback")]


async def _exchange(ours: syncice.Connection, theirs: aioice.Connection) -> None:
    await asyncio.gather(
        asyncio.to_thread(ours.gather_candidates), theirs.gather_candidates()
    )
    for c in theirs.local_candidates:
        ours.add_remote_candidate(syncice.Candidate.from_sdp(c.to_sdp()))
    ours.add_remote_candidate(None)
    for s in ours.local_candidates:
        await theirs.add_remote_candidate(aioice.Candidate.from_sdp(s.to_sdp()))
    await theirs.add_remote_candidate(None)
    ours.remote_username, ours.remote_password = (
        theirs.local_username,
        theirs.local_password,
    )
    theirs.remote_username, theirs.remote_password = (
        ours.local_username,
        ours.local_password,
    )


async def _run(syncice_controlling: bool, count: int = 50) -> None:
    ours = syncice.Connection(
        ice_controlling=syncice_controlling, local_addresses=["127.0.0.1"]
    )
    theirs = aioice.Connection(ice_controlling=not syncice_controlling)
    try:
        await _exchange(ours, theirs)
        await asyncio.wait_for(
            asyncio.gather(
                asyncio.to_thread(ours.connect, timeout=10.0), theirs.connect()
            ),
            15.0,
        )
        for i in range(count):
            payload = i.to_bytes(4, "big") + bytes(range(256))
            ours.send(payload)
            assert await asyncio.wait_for(theirs.recv(), 5.0) == payload
            await theirs.send(payload[::-1])
            got = await asyncio.to_thread(ours.recv, timeout=5.0)
            assert got == payload[::-1]
        # aioice picked the same pair as syncice.
        [stats] = [s for s in ours.get_stats() if s.selected]
        nominated = theirs._nominated[1]
        assert (stats.remote.host, stats.remote.port) == nominated.local_addr
        assert stats.local.port == nominated.remote_addr[1]
    finally:
        await asyncio.to_thread(ours.close)
        await theirs.close()


@pytest.mark.parametrize(
    "syncice_controlling", [True, False], ids=["controlling", "controlled"]
)
def test_syncice_and_aioice_connect_and_exchange(syncice_controlling: bool) -> None:
    asyncio.run(_run(syncice_controlling))
