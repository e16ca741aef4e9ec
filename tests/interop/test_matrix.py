"""The interop matrix: syncice against aioice 0.13, libnice 0.1.21 and werift-ice
0.2.3 (layer 3).

Every cell (peer x role of syncice x scenario x TURN transport) connects
syncice to the peer on 127.0.0.1, with coturn as STUN and TURN server, and
checks that :data:`~tests.interop.matrix.DATAGRAMS` binary datagrams come back
intact from the peer's echo. The same cell also runs with aioice in syncice's
place: its connect time is recorded next to syncice's (in
``$SYNCICE_INTEROP_RESULTS``, for ``docs/gen_interop.py``), never asserted.

Scenarios, for "ours" (syncice or the aioice baseline) and the peer:
``host`` (no server), ``srflx`` (both with STUN), ``relay-ours`` (ours
relay-only, the peer with STUN), ``relay-peer`` (the reverse) and
``relay-both`` (both relay-only), TURN over UDP, TCP or TLS; and, with
libnice, ``ice-tcp`` (TCP host candidates only on both sides, RFC 6544).

The lite cells (:func:`~tests.interop.matrix.lite_cells`) put syncice as an
ICE-lite agent against aioice and libnice created controlling or
controlled, with host candidates or the peer relay-only; they have no
aioice baseline (aioice has no lite mode).
"""

from __future__ import annotations

import pytest

import syncice
from tests.conftest import TurnService
from tests.interop.conftest import MatrixRunner
from tests.interop.matrix import DATAGRAMS, Cell, all_cells, lite_cells
from tests.interop.peers import (
    STEP_TIMEOUT,
    AioiceOurs,
    Servers,
    candidate_type,
    without_redundant,
)

pytestmark = pytest.mark.interop


def _expected_types(cell: Cell) -> set[str]:
    """The candidate types the selected pair may have, as ours sees it."""
    relay_ours = cell.scenario in ("relay-ours", "relay-both")
    relay_peer = cell.scenario in ("relay-peer", "relay-both")
    local = {"relay"} if relay_ours else {"host"}
    remote = {"relay"} if relay_peer else {"host", "prflx"}
    if relay_ours and not relay_peer:
        # Through our relay, the peer's host candidate answers from its own
        # address: host, or a prflx if the peer's check came first.
        remote = {"host", "prflx"}
    return {f"{a}/{b}" for a in local for b in remote}


@pytest.mark.parametrize("cell", all_cells(), ids=lambda c: c.id)
def test_cell(cell: Cell, matrix: MatrixRunner, request: pytest.FixtureRequest) -> None:
    if cell.peer.startswith("libnice"):
        request.getfixturevalue("libnice")
    if cell.peer == "werift":
        request.getfixturevalue("werift")
    ours, baseline = matrix.results(cell)
    assert ours.outcome == "connected", ours.error
    assert ours.datagrams == DATAGRAMS
    assert ours.selected in _expected_types(cell)
    # Our side never signals a srflx candidate equal to a host candidate.
    assert ours.offered is not None
    assert without_redundant(ours.offered.candidates) == ours.offered.candidates
    if cell.scenario == "ice-tcp":
        # Only TCP candidates on either side: the pair that carried the
        # datagrams was a TCP pair.
        assert {c.split()[2].lower() for c in ours.offered.candidates} == {"tcp"}
        picked = [e for e in ours.peer_events if e.get("event") == "selected-pair"]
        assert picked
        assert all(str(e["local"]).split()[2].upper() == "TCP" for e in picked)
    # The baseline is recorded, not judged (aioice's own interop is not ours
    # to assert), but it must have run.
    assert baseline.ours == "aioice"


@pytest.mark.parametrize("cell", lite_cells(), ids=lambda c: c.id)
def test_lite_cell(
    cell: Cell, matrix: MatrixRunner, request: pytest.FixtureRequest
) -> None:
    """syncice ICE-lite against a full peer, created controlling or
    controlled: the peer nominates, syncice sends no check."""
    if cell.peer.startswith("libnice"):
        request.getfixturevalue("libnice")
    ours = matrix.syncice_result(cell)
    assert ours.outcome == "connected", ours.error
    assert ours.datagrams == DATAGRAMS
    remote = "relay" if cell.scenario == "relay-peer" else "host"
    assert ours.selected in {f"host/{remote}", "host/prflx"}
    assert ours.offered is not None
    assert ours.offered.lite
    assert {candidate_type(c) for c in ours.offered.candidates} == {"host"}
    assert ours.checks_sent == 0


def test_no_redundant_srflx_on_loopback(
    coturn: TurnService, aioice_on_loopback: None
) -> None:
    """With coturn's STUN on loopback the mapped address is the host address:
    aioice offers that srflx, syncice drops it (RFC 8445 §5.1.3)."""
    conn = syncice.Connection(
        True, stun_server=(coturn.ip, coturn.port), local_addresses=["127.0.0.1"]
    )
    baseline = AioiceOurs(True, coturn, Servers(stun=True))
    try:
        conn.gather_candidates(timeout=STEP_TIMEOUT)
        ours = [c.to_sdp() for c in conn.local_candidates]
        aioice_conn = baseline.conn
        baseline.runner.call(aioice_conn.gather_candidates())
        theirs = [c.to_sdp() for c in aioice_conn.local_candidates]
    finally:
        conn.close()
        baseline.close()
    # The STUN server answered (aioice got its srflx, equal to its host) ...
    assert "srflx" in [candidate_type(c) for c in theirs]
    assert without_redundant(theirs) != theirs
    # ... and syncice signals host candidates only.
    assert [candidate_type(c) for c in ours] == ["host"]
    assert without_redundant(ours) == ours


def test_libnice_controlling_relay_only_with_our_candidates(
    matrix: MatrixRunner, libnice: None
) -> None:
    """libnice 0.1.21 aborts (conncheck.c:987 assertion) when controlling and
    relay-only with redundant remote candidates; syncice, gathering with STUN
    on loopback, offers none, and the cell connects."""
    cell = Cell("libnice-regular", "controlled", "relay-peer", "udp")
    ours, _ = matrix.results(cell)
    assert ours.offered is not None
    assert "srflx" not in [candidate_type(c) for c in ours.offered.candidates]
    assert ours.outcome == "connected", ours.error
    assert ours.datagrams == DATAGRAMS
    # libnice, controlling, selected a pair and is still alive to say so.
    assert any(e.get("event") == "selected-pair" for e in ours.peer_events)
    assert ours.peer_events[-1] == {
        "event": "exit",
        "reason": "quit",
        "received": DATAGRAMS,
        "echoed": DATAGRAMS,
    }
