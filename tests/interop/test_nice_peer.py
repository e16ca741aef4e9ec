"""The libnice peer process itself: it must leave nothing on the server."""

from __future__ import annotations

import pytest

from tests.conftest import TurnService
from tests.interop.peers import NiceTheirs, Servers
from tests.turn_probe import Cause, CoturnProbe

pytestmark = pytest.mark.interop


def test_libnice_peer_releases_its_udp_allocation_when_it_quits(
    coturn: TurnService, libnice: None
) -> None:
    """A UDP allocation left behind lives for its whole lifetime (600 s); a
    later client that the kernel gives the same local port then has its
    Allocate refused with 437, which failed a matrix cell now and then."""
    probe = CoturnProbe.from_service(coturn)
    mark = probe.mark()
    peer = NiceTheirs(
        True, coturn, Servers(turn_transport="udp", relay_only=True), "regular"
    )
    try:
        [relay] = peer.gather().candidates
        fields = relay.split()
        assert fields[7] == "relay", relay
        relayed = (fields[4], int(fields[5]))
        assert relayed in probe.relays.addresses()
    finally:
        peer.close()
    assert probe.relays.wait_released([relayed], timeout=5.0)
    [allocation] = probe.log.allocations_since(mark)
    assert allocation.cause is Cause.REFRESH, allocation
