"""The interop matrix: its cells, how one is run, and the results file.

A cell is (peer, role of ours, scenario, TURN transport). Running it builds
the peer and "ours" (syncice, or aioice for the baseline), exchanges
descriptions, times ``connect`` on our side, sends :data:`DATAGRAMS`
binary datagrams and checks that each comes back intact, then closes both.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.conftest import TurnService
from tests.interop.peers import (
    AioiceOurs,
    AioiceTheirs,
    Description,
    NiceTheirs,
    Ours,
    Servers,
    SynciceOurs,
    Theirs,
    WeriftTheirs,
)

#: Datagrams sent by ours and echoed by the peer, in each cell.
DATAGRAMS = 100
#: Bound on each echo (hang guard).
ECHO_TIMEOUT = 5.0

PEERS = ("aioice", "libnice-regular", "libnice-aggressive", "werift")
ROLES = ("controlling", "controlled")
#: Cells where our side is ICE-lite (always controlled), the peer a full
#: agent created controlling or controlled: it is told ``a=ice-lite``
#: where it has a way to hear it (aioice's ``remote_is_lite``; libnice has
#: none), and a controlled one takes the controlling role on our 487.
LITE_PEERS = ("aioice", "libnice-regular", "libnice-aggressive")
LITE_ROLES = ("lite-vs-controlling", "lite-vs-controlled")
TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class Scenario:
    """Which servers each side uses."""

    name: str
    ours: Servers
    theirs: Servers
    relayed: bool


def scenario(name: str, transport: str | None) -> Scenario:
    """The scenario ``name`` with TURN over ``transport`` (relay scenarios)."""
    relay = Servers(turn_transport=transport, relay_only=True)
    stun = Servers(stun=True)
    table = {
        "host": (Servers(), Servers()),
        "srflx": (stun, stun),
        # The unrelayed side gathers with STUN too: on loopback its srflx
        # equals its host candidate and must not be signalled.
        "relay-ours": (relay, stun),
        "relay-peer": (stun, relay),
        "relay-both": (relay, relay),
        # ICE-TCP (RFC 6544): TCP host candidates only, on both sides.
        "ice-tcp": (Servers(transports=("tcp",)), Servers(transports=("tcp",))),
    }
    ours, theirs = table[name]
    return Scenario(name, ours, theirs, transport is not None)


@dataclass(frozen=True)
class Cell:
    peer: str
    role: str
    scenario: str
    transport: str | None

    @property
    def id(self) -> str:
        parts = [self.peer, self.role, self.scenario]
        if self.transport is not None:
            parts.append(self.transport)
        return "-".join(parts)


def all_cells() -> list[Cell]:
    cells = []
    for peer in PEERS:
        for role in ROLES:
            for name in ("host", "srflx"):
                cells.append(Cell(peer, role, name, None))
            for name in ("relay-ours", "relay-peer", "relay-both"):
                for transport in TRANSPORTS:
                    cells.append(Cell(peer, role, name, transport))
            if peer.startswith("libnice"):  # libnice has ICE-TCP
                cells.append(Cell(peer, role, "ice-tcp", None))
    return cells


def lite_cells() -> list[Cell]:
    """The cells with our side ICE-lite (host candidates only): the peer
    with host candidates, or relay-only over TURN/UDP (a client that only
    a relay lets out, against a lite server)."""
    cells = []
    for peer in LITE_PEERS:
        for role in LITE_ROLES:
            cells.append(Cell(peer, role, "host", None))
            cells.append(Cell(peer, role, "relay-peer", "udp"))
    return cells


def peer_controlling(role: str) -> bool:
    """Whether the peer is created controlling in a cell of ``role``."""
    return role in ("controlled", "lite-vs-controlling")


@dataclass
class Result:
    """One run of a cell with ``ours`` on our side."""

    cell: Cell
    ours: str
    outcome: str = "failed"
    seconds: float = 0.0
    selected: str | None = None
    #: Connectivity and consent checks syncice sent (``None``: not syncice).
    checks_sent: int | None = None
    datagrams: int = 0
    error: str | None = None
    offered: Description | None = None
    peer_events: list[dict[str, object]] = field(default_factory=list)

    def record(self) -> dict[str, object]:
        """The shared results format (suite ``interop``)."""
        return {
            "suite": "interop",
            "scenario": self.cell.scenario,
            "peer": self.cell.peer,
            "ours": self.ours,
            "role": self.cell.role,
            "turn_transport": self.cell.transport,
            "impairment": None,
            "run": int(os.environ.get("SYNCICE_INTEROP_RUN", "1")),
            "outcome": self.outcome,
            "seconds": round(self.seconds, 4),
            "selected": self.selected,
            "datagrams": self.datagrams,
            "error": self.error,
        }


def append_record(record: dict[str, object]) -> None:
    """Append ``record`` as one line to ``$SYNCICE_INTEROP_RESULTS``, if set,
    with a single ``write`` in append mode (concurrent writers don't mix)."""
    path = os.environ.get("SYNCICE_INTEROP_RESULTS")
    if not path:
        return
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def payload(i: int) -> bytes:
    """Datagram ``i``: 1 to 1200 random bytes (zeros included) after an
    RTP-range first byte (RFC 7983), so no side takes it for STUN."""
    rng = random.Random(i)
    return bytes([0x80 | (i & 0x3F)]) + rng.randbytes(rng.randrange(0, 1200))


def make_theirs(cell: Cell, turn: TurnService, servers: Servers) -> Theirs:
    controlling = peer_controlling(cell.role)
    if cell.peer == "aioice":
        return AioiceTheirs(controlling, turn, servers)
    if cell.peer == "werift":
        return WeriftTheirs(controlling, turn, servers)
    return NiceTheirs(controlling, turn, servers, cell.peer.removeprefix("libnice-"))


OURS: dict[str, Callable[[bool, TurnService, Servers], Ours]] = {
    "syncice": SynciceOurs,
    "aioice": AioiceOurs,
}


def run_cell(cell: Cell, ours_name: str, turn: TurnService) -> Result:
    """Run ``cell`` with ``ours_name`` on our side; never raises."""
    result = Result(cell, ours_name)
    spec = scenario(cell.scenario, cell.transport)
    theirs: Theirs | None = None
    ours: Ours | None = None
    start = time.monotonic()
    try:
        theirs = make_theirs(cell, turn, spec.theirs)
        if cell.role in LITE_ROLES:  # syncice only: aioice has no lite mode
            ours = SynciceOurs(False, turn, Servers(), lite=True)
        else:
            ours = OURS[ours_name](cell.role == "controlling", turn, spec.ours)
        mine = ours.gather()
        result.offered = mine
        their = theirs.gather()
        theirs.start(mine)
        start = time.monotonic()
        result.seconds = ours.connect(their)
        result.selected = ours.selected()
        for i in range(DATAGRAMS):
            data = payload(i)
            ours.send(data)
            echoed = ours.recv(ECHO_TIMEOUT)
            if echoed != data:
                raise AssertionError(
                    f"datagram {i} came back altered: {len(echoed)} bytes "
                    f"for {len(data)}"
                )
            result.datagrams += 1
        if isinstance(ours, SynciceOurs):
            result.checks_sent = ours.checks_sent()
        result.outcome = "connected"
    except Exception as exc:
        if result.seconds == 0.0:
            result.seconds = time.monotonic() - start
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for side in (ours, theirs):
            if side is not None:
                try:
                    side.close()
                except Exception as exc:
                    result.error = result.error or f"close: {exc!r}"
                    result.outcome = "failed"
        if isinstance(theirs, NiceTheirs):
            result.peer_events = list(theirs.seen)
            if result.error is not None:
                result.error += (
                    f"\n{theirs.name}: {theirs.seen}\n{''.join(theirs.stderr)}"
                )
    append_record(result.record())
    return result
