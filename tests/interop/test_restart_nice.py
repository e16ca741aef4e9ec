"""ICE restart against libnice (``nice_agent_restart``), both roles, a restart
started by either side (layer 3, on 127.0.0.1, no server).

Each cell connects syncice to libnice's ``nice_peer.py``, echoes datagrams,
restarts ICE, keeps echoing over the old pair while the new credentials and
candidates are exchanged, connects again and echoes over the new pair. The
time from ``restart()`` to the new pair echoing is printed, not asserted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TurnService
from tests.interop.matrix import ECHO_TIMEOUT, append_record, payload
from tests.interop.peers import Description, NiceTheirs, Servers, SynciceOurs

pytestmark = pytest.mark.interop

#: Neither side uses a server here: the peers' constructors want one anyway.
NO_SERVER = TurnService("127.0.0.1", None, 0, 0, "", "", "", Path(), Path())

#: Datagrams echoed in each phase: before, during and after the restart.
ECHOES = 20


def echo(ours: SynciceOurs, first: int) -> None:
    for i in range(first, first + ECHOES):
        data = payload(i)
        ours.send(data)
        assert ours.recv(ECHO_TIMEOUT) == data, f"datagram {i} came back altered"


def described(ours: SynciceOurs) -> Description:
    conn = ours.conn
    return Description(
        conn.local_username,
        conn.local_password,
        [c.to_sdp() for c in conn.local_candidates],
    )


@pytest.mark.parametrize("starter", ["syncice", "libnice"])
@pytest.mark.parametrize("role", ["controlling", "controlled"])
def test_restart_with_libnice(role: str, starter: str, libnice: None) -> None:
    theirs = NiceTheirs(role == "controlled", NO_SERVER, Servers(), "regular")
    ours = SynciceOurs(role == "controlling", NO_SERVER, Servers())
    # The matrix's results line (docs/gen_interop.py): seconds from the new
    # descriptions applied to the new pair nominated.
    record: dict[str, object] = {
        "suite": "interop",
        "scenario": f"restart-by-{starter}",
        "peer": "libnice-regular",
        "ours": "syncice",
        "role": role,
        "turn_transport": None,
        "impairment": None,
        "run": int(os.environ.get("SYNCICE_INTEROP_RUN", "1")),
        "outcome": "failed",
        "seconds": 0.0,
        "selected": None,
        "datagrams": 0,
        "error": None,
    }
    try:
        mine = ours.gather()
        their = theirs.gather()
        theirs.start(mine)
        ours.connect(their)
        echo(ours, 0)
        old_ufrag = their.ufrag
        started = time.monotonic()
        if starter == "syncice":
            ours.conn.restart()
            echo(ours, ECHOES)  # the old pair, while libnice has not restarted
            theirs.command(cmd="restart")
        else:
            theirs.command(cmd="restart")
            echo(ours, ECHOES)  # the old pair, while syncice has not restarted
            ours.conn.restart()
        their = theirs.gather()
        assert their.ufrag != old_ufrag
        echo(ours, 2 * ECHOES)  # the old pair, both restarted
        signalled = time.monotonic()
        theirs.start(described(ours))
        ours.connect(their)
        connected = time.monotonic()
        echo(ours, 3 * ECHOES)
        echoed = time.monotonic()
        [pair] = [s for s in ours.conn.get_stats() if s.selected]
        record.update(
            outcome="connected",
            seconds=round(connected - signalled, 4),
            selected=f"{pair.local.type}/{pair.remote.type}",
            datagrams=4 * ECHOES,
        )
        assert pair.state == "succeeded"
        assert pair.datagrams_received >= ECHOES
        sys.stdout.write(
            f"\nlibnice restart ({role}, started by {starter}): new descriptions "
            f"applied to connected {1000 * (connected - signalled):.1f} ms; "
            f"restart() to {ECHOES} echoes on the new pair "
            f"{1000 * (echoed - started):.1f} ms ({2 * ECHOES} echoed on the old "
            "pair meanwhile)\n"
        )
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        ours.close()
        theirs.close()
        append_record(record)
    assert theirs.seen[-1]["event"] == "exit"
    assert theirs.seen[-1]["echoed"] == 4 * ECHOES
    # libnice selected a pair again, in its new generation.
    assert [e["event"] for e in theirs.seen].count("selected-pair") >= 2
