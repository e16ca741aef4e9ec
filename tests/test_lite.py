"""Local ICE-lite (RFC 8445 §2.5) in both facades, on loopback
(``tests/test_ice_lite.py`` has the sans-IO agent's rules)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import syncice
import syncice.asyncio as shim
from syncice.exceptions import NegotiationFailedError
from syncice.ice import IceConfig
from syncice.testing import virtual_time
from tests.loopguard import SHIM, guarded_run

LOOPBACK = ["127.0.0.1"]
GUARD = 10.0


def test_blocking_full_against_lite(caplog: pytest.LogCaptureFixture) -> None:
    full = syncice.Connection(ice_controlling=False, local_addresses=LOOPBACK)
    with caplog.at_level(logging.INFO, logger="syncice.ice"):
        lite = syncice.Connection(
            ice_controlling=True,
            local_addresses=LOOPBACK,
            stun_server=("127.0.0.1", 9),
            ice_lite=True,
        )
    try:
        assert "taking the controlled role" in caplog.text
        assert "host candidates only, STUN/TURN server 127.0.0.1:9" in caplog.text
        assert not lite.ice_controlling
        lite.ice_controlling = True  # ignored
        assert not lite.ice_controlling
        for c in (full, lite):
            c.gather_candidates(timeout=GUARD)
        assert [c.type for c in lite.local_candidates] == ["host"]
        assert lite.local_description().lite
        # The full side learns of the lite one from its description.
        full.set_remote_description(lite.local_description().to_sdp())
        lite.set_remote_description(full.local_description().to_json())
        assert full.remote_is_lite
        assert not lite.remote_is_lite
        done = threading.Thread(target=lite.connect, kwargs={"timeout": GUARD})
        done.start()
        full.connect(timeout=GUARD)
        done.join(GUARD)
        assert full.ice_controlling
        assert not lite.ice_controlling
        full.send(b"\x80ping")
        assert lite.recv(timeout=GUARD) == b"\x80ping"
        lite.send(b"\x80pong")
        assert full.recv(timeout=GUARD) == b"\x80pong"
        stats = lite.get_stats()
        assert sum(s.requests_sent for s in stats) == 0
        assert sum(s.requests_received for s in stats) >= 1
    finally:
        full.close()
        lite.close()


def test_blocking_two_lite_connections_fail_clearly() -> None:
    a = syncice.Connection(
        ice_controlling=True, local_addresses=LOOPBACK, ice_lite=True
    )
    b = syncice.Connection(
        ice_controlling=False,
        local_addresses=LOOPBACK,
        config=IceConfig(ice_lite=True),
    )
    try:
        for c in (a, b):
            c.gather_candidates(timeout=GUARD)
        with pytest.raises(NegotiationFailedError, match="both agents are ICE-lite"):
            a.set_remote_description(b.local_description())
        assert a.remote_username is None
        assert a.remote_candidates == []
        # Set by hand, the flag fails connect() with the same words.
        a.remote_username = b.local_username
        a.remote_password = b.local_password
        a.remote_is_lite = True
        with pytest.raises(NegotiationFailedError, match="both agents are ICE-lite"):
            a.connect(timeout=GUARD)
    finally:
        a.close()
        b.close()


def test_lite_refuses_the_relay_policy() -> None:
    with pytest.raises(ValueError, match="ice_lite gathers host candidates only"):
        syncice.Connection(
            ice_controlling=False,
            stun_server=("127.0.0.1", 3478),
            transport_policy=syncice.TransportPolicy.RELAY,
            ice_lite=True,
        )


def test_asyncio_full_against_lite_and_lite_against_lite() -> None:
    async def main() -> None:
        full = shim.Connection(ice_controlling=True, local_addresses=LOOPBACK)
        lite = shim.Connection(
            ice_controlling=True, local_addresses=LOOPBACK, ice_lite=True
        )
        other = shim.Connection(
            ice_controlling=False, local_addresses=LOOPBACK, ice_lite=True
        )
        try:
            assert not lite.ice_controlling
            await asyncio.gather(
                full.gather_candidates(),
                lite.gather_candidates(),
                other.gather_candidates(),
            )
            full.set_remote_description(lite.local_description().to_dict())
            lite.set_remote_description(full.local_description())
            await asyncio.wait_for(
                asyncio.gather(full.connect(), lite.connect()), GUARD
            )
            await full.send(b"\x80ping")
            assert await asyncio.wait_for(lite.recv(), GUARD) == b"\x80ping"
            await lite.send(b"\x80pong")
            assert await asyncio.wait_for(full.recv(), GUARD) == b"\x80pong"
            stats = await lite.get_stats()
            assert sum(s.requests_sent for s in stats) == 0
            with pytest.raises(NegotiationFailedError, match="ICE-lite"):
                other.set_remote_description(lite.local_description().to_sdp())
            other.remote_username = lite.local_username
            other.remote_password = lite.local_password
            other.remote_is_lite = True
            with pytest.raises(NegotiationFailedError, match="ICE-lite"):
                await other.connect()
        finally:
            for c in (full, lite, other):
                await c.close()

    guarded_run(main(), allow=SHIM)


def test_a_lite_connection_keeps_the_full_peers_consent_for_a_virtual_hour() -> None:
    """In virtual time: the full side checks consent every 5 s for an hour
    and the lite side answers every one, sending none of its own."""
    with virtual_time() as vt:
        full = syncice.Connection(ice_controlling=True, local_addresses=LOOPBACK)
        lite = syncice.Connection(
            ice_controlling=False, local_addresses=LOOPBACK, ice_lite=True
        )
        try:
            for c in (full, lite):
                c.gather_candidates(timeout=GUARD)
            full.set_remote_description(lite.local_description())
            lite.set_remote_description(full.local_description())
            with vt.paused():  # both start at one instant
                waiting = threading.Thread(
                    target=lite.connect, kwargs={"timeout": GUARD}
                )
                waiting.start()
                full.connect(timeout=GUARD)
            waiting.join(GUARD)
            start = vt.now()
            vt.wait(3600.0, timeout=GUARD)
            with vt.paused():  # no consent check goes out meanwhile
                full.send(b"\x80still here")
                assert lite.recv(timeout=GUARD) == b"\x80still here"
                lite.send(b"\x80yes")
                assert full.recv(timeout=GUARD) == b"\x80yes"
                stats = full.get_stats()
                lite_sent = sum(s.requests_sent for s in lite.get_stats())
            assert vt.now() - start >= 3600.0
            checks = sum(s.requests_sent for s in stats)
            answered = sum(s.responses_received for s in stats)
            # One consent check every 4 to 6 s (and the connect's checks),
            # each answered (the last perhaps still on its way).
            assert 600 <= checks <= 905
            assert checks - 1 <= answered <= checks
            assert lite_sent == 0
        finally:
            full.close()
            lite.close()
