"""An ICE restart recovers a connection whose path went silent (issue 15:
"a restart after the old pair has stopped answering ... recovers the
connection over another pair"), in both facades.

A network namespace of this test's own (``si-restart-<pid>-<n>``, only
``lo``, where 127.0.0.1 and 127.0.0.2 are both local) gives each side two
host candidates. Once connected, the selected pair's path is blackholed with
nftables, both ways, and only it; a restart, made long before consent would
expire, connects over another pair (``tests/restart_netns_helper.py``, run
with ``ip netns exec``). The namespace is removed in a ``finally``.

Needs root, ``ip`` (iproute2) and ``nft`` (nftables): without them the test
skips, under ``CI`` it fails.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import own_namespace

HELPER = Path(__file__).with_name("restart_netns_helper.py")
RUN_TIMEOUT = 120.0
_names = itertools.count()


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace with only ``lo``, up."""
    with own_namespace(f"si-restart-{os.getpid()}-{next(_names)}") as name:
        yield name


@pytest.mark.parametrize("kind", ["blocking", "asyncio"])
def test_restart_moves_off_a_blackholed_pair(namespace: str, kind: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, str(HELPER), kind],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=HELPER.parent.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    facts = json.loads(proc.stdout.splitlines()[-1])
    assert facts["new"] != facts["old"]  # another pair carries the connection
    assert facts["got"] == ["ping", "pong"]
    assert facts["states"] == ["completed", "completed"]
    assert facts["dropped"] > 0  # the old path was tried, and went nowhere
