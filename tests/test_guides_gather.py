"""The programs of docs/guides/servers.rst (``ice_servers=``) and
docs/guides/binding.rst (port range, buffers, interfaces) run, and print
what the guides say they print (``tests/test_examples.py``'s
``run_example``: ``-X dev -W error``, stderr must stay empty)."""

from __future__ import annotations

import pytest

from tests.conftest import TurnService
from tests.test_examples import run_example
from tests.test_gather_options import free_range


def test_port_range() -> None:
    lo, hi = free_range(4)
    done = run_example("examples/port_range.py", str(lo), str(hi))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"a: ['127.0.0.1'] ports [0, 1] above {lo}",
        f"b: ['127.0.0.1'] ports [2, 3] above {lo}",
        "buffer sizes reported for every socket: True",
        "c: EADDRINUSE: port_range LO-LO exhausted: no free UDP port on 127.0.0.1",
    ]


@pytest.mark.interop
def test_ice_servers(coturn: TurnService) -> None:
    done = run_example(
        "examples/ice_servers.py",
        coturn.ip,
        str(coturn.port),
        str(coturn.tls_port),
        coturn.username,
        coturn.password,
        "--ca",
        str(coturn.cert),
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "a relay candidates: 3",
        "selected: relay -> relay",
        "b got: through a relay",
    ]
