"""ICE-TCP where only TCP works: a network namespace of this test's own
(``si-icetcp-<pid>-<n>``, only ``lo``), whose nftables ruleset drops every
UDP packet. Two syncice connections gather UDP and TCP candidates there
(``tests/ice_tcp_netns_helper.py``, run with ``ip netns exec``); the UDP
checks go nowhere, the TCP pair connects and carries the data. The
namespace is removed in a ``finally``.

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

HELPER = Path(__file__).with_name("ice_tcp_netns_helper.py")
RUN_TIMEOUT = 120.0
_names = itertools.count()

DROP_UDP = (
    "add table inet si_icetcp; "
    "add chain inet si_icetcp out { type filter hook output priority 0; }; "
    "add rule inet si_icetcp out meta l4proto udp counter drop"
)


@pytest.fixture
def udp_dropped() -> Iterator[str]:
    """A namespace with ``lo`` up in which UDP is dropped."""
    with own_namespace(f"si-icetcp-{os.getpid()}-{next(_names)}", DROP_UDP) as name:
        yield name


def test_only_tcp_works(udp_dropped: str) -> None:
    prefix = ["ip", "netns", "exec", udp_dropped]
    proc = subprocess.run(
        [*prefix, sys.executable, str(HELPER)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=HELPER.parent.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["netns"] != os.readlink("/proc/self/ns/net")
    assert result["transports"] == ["tcp", "udp"]
    assert result["selected"] == {
        "a": [["tcp", "active", "passive"]],
        "b": [["tcp", "passive", "active"]],
    }
    assert result["got"] == ["ping over tcp", "pong over tcp"]
    counters = subprocess.run(
        [*prefix, "nft", "list", "ruleset"], capture_output=True, text=True, check=True
    ).stdout
    dropped = int(counters.split("counter packets ")[1].split()[0])
    assert dropped > 0  # the UDP checks were sent, and dropped
    sys.stdout.write(f"ICE-TCP with UDP dropped: connected in {result['seconds']} s\n")
