"""Run inside a network namespace of ``tests/test_ice_tcp_netns.py``: two
syncice connections on 127.0.0.1 connect and exchange data; the facts are
printed as one JSON line.

- no argument (UDP is dropped there): ``transports=("udp", "tcp")``, every
  candidate signalled;
- ``so`` (TCP resets are dropped there): TCP with simultaneous-open
  candidates, and only those signalled.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncice import Connection, IceConfig
from tests.conftest import exchange_candidates, spawn

GUARD = 10.0


def signal_so_only(a: Connection, b: Connection) -> None:
    """Gather both; give each the other's S-O candidates and credentials."""
    a.gather_candidates(timeout=GUARD)
    b.gather_candidates(timeout=GUARD)
    for local, remote in ((a, b), (b, a)):
        for candidate in local.local_candidates:
            if candidate.tcptype == "so":
                remote.add_remote_candidate(candidate)
        remote.add_remote_candidate(None)
        remote.remote_username = local.local_username
        remote.remote_password = local.local_password


def main() -> None:
    so = sys.argv[1:] == ["so"]
    kwargs: dict[str, object] = {
        "local_addresses": ["127.0.0.1"],
        "transports": ("udp", "tcp"),
    }
    if so:
        kwargs = {
            "local_addresses": ["127.0.0.1"],
            "transports": ("tcp",),
            "config": IceConfig(tcp_simultaneous_open=True),
        }
    a = Connection(True, **kwargs)  # type: ignore[arg-type]
    b = Connection(False, **kwargs)  # type: ignore[arg-type]
    try:
        if so:
            signal_so_only(a, b)
        else:
            exchange_candidates(a, b)
        started = time.perf_counter()
        other = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        other.result(GUARD)
        seconds = time.perf_counter() - started
        a.send(b"ping over tcp")
        got_b = b.recv(timeout=GUARD)
        b.send(b"pong over tcp")
        got_a = a.recv(timeout=GUARD)
        selected = {
            name: [
                (s.local.transport, s.local.tcptype, s.remote.tcptype)
                for s in conn.get_stats()
                if s.selected
            ]
            for name, conn in (("a", a), ("b", b))
        }
        transports = sorted({c.transport for c in a.local_candidates})
        result = {
            "netns": os.readlink("/proc/self/ns/net"),
            "selected": selected,
            "got": [got_b.decode(), got_a.decode()],
            "transports": transports,
            "seconds": round(seconds, 3),
        }
    finally:
        a.close()
        b.close()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
