"""ICE-TCP in network namespaces of this test's own (``si-icetcp-<pid>-<n>``,
only ``lo``), each removed in a ``finally``; two syncice connections run
there (``tests/ice_tcp_netns_helper.py``, with ``ip netns exec``):

- where only TCP works (nftables drops every UDP packet), they gather UDP
  and TCP candidates: the UDP checks go nowhere, the TCP pair connects and
  carries the data;
- where TCP resets are dropped, as a firewall that lets no unsolicited SYN
  in does, simultaneous-open candidates, the only ones signalled, connect:
  the first SYN to an S-O port finds no socket and gets no answer, the
  peer's SYN crosses it, and the two make one connection (RFC 6544 §7.1).
  On a plain loopback each such SYN is refused at once instead.

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


DROP_RST = (
    "add table inet si_icetcp; "
    "add chain inet si_icetcp out { type filter hook output priority 0; }; "
    "add rule inet si_icetcp out tcp flags & rst == rst counter drop"
)


def run_helper(namespace: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, str(HELPER), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=HELPER.parent.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    assert result["netns"] != os.readlink("/proc/self/ns/net")
    return result


@pytest.fixture
def udp_dropped() -> Iterator[str]:
    """A namespace with ``lo`` up in which UDP is dropped."""
    with own_namespace(f"si-icetcp-{os.getpid()}-{next(_names)}", DROP_UDP) as name:
        yield name


def test_only_tcp_works(udp_dropped: str) -> None:
    prefix = ["ip", "netns", "exec", udp_dropped]
    result = run_helper(udp_dropped)
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


def test_simultaneous_open_where_resets_are_dropped() -> None:
    name = f"si-icetcp-{os.getpid()}-{next(_names)}"
    with own_namespace(name, DROP_RST) as namespace:
        result = run_helper(namespace, "so")
    assert result["transports"] == ["tcp"]
    assert result["selected"] == {
        "a": [["tcp", "so", "so"]],
        "b": [["tcp", "so", "so"]],
    }
    assert result["got"] == ["ping over tcp", "pong over tcp"]
    sys.stdout.write(f"ICE-TCP simultaneous open: connected in {result['seconds']} s\n")
