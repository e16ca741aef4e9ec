"""Run inside a network namespace whose UDP is dropped (see
``tests/test_ice_tcp_netns.py``): two syncice connections on 127.0.0.1 with
``transports=("udp", "tcp")`` connect and exchange data; the facts are
printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncice import Connection
from tests.conftest import exchange_candidates, spawn

GUARD = 10.0


def main() -> None:
    kwargs = {"local_addresses": ["127.0.0.1"], "transports": ("udp", "tcp")}
    a = Connection(True, **kwargs)  # type: ignore[arg-type]
    b = Connection(False, **kwargs)  # type: ignore[arg-type]
    try:
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
