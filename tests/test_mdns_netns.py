"""mDNS candidates over a real multicast socket, inside network namespaces.

Each test creates its own namespace (``syncice-mdns-<pid>-<n>``), with only
``lo``, and runs one scenario of ``tests/mdns_netns_helper.py`` in it with
``ip netns exec``: a subprocess, never the pytest process, so no multicast
socket is ever opened in the root namespace and nothing leaves the machine.
The namespace is removed in a ``finally``. The helper prints the facts
asserted here as JSON.

Needs root and ``ip`` (iproute2): without them the tests skip, under ``CI``
they fail.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_service

HELPER = Path(__file__).with_name("mdns_netns_helper.py")
#: Bound of a scenario run; each blocking call in it is bounded by 10 s.
RUN_TIMEOUT = 120.0
_names = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace with ``lo`` up (and multicast off), removed after."""
    if shutil.which("ip") is None:
        missing_service("mDNS namespace tests need iproute2's ip")
    if os.geteuid() != 0:
        missing_service("mDNS namespace tests need root (ip netns add)")
    name = f"syncice-mdns-{os.getpid()}-{next(_names)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        _ip("netns", "delete", name)


def with_multicast(namespace: str) -> str:
    """Let multicast to 224.0.0.0/4 loop on ``lo`` in ``namespace``."""
    _ip("-n", namespace, "link", "set", "lo", "multicast", "on")
    _ip("-n", namespace, "route", "add", "224.0.0.0/4", "dev", "lo")
    return namespace


def run(namespace: str, scenario: str) -> dict[str, Any]:
    """Run a helper scenario in ``namespace``; its JSON result."""
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, str(HELPER), scenario],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=HELPER.parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    result["stderr"] = proc.stderr
    # It ran in the namespace, not in ours.
    assert result["netns"] != os.readlink("/proc/self/ns/net")
    return result


def host_of(sdp: str) -> str:
    return sdp.split()[4]


def is_uuid_local(host: str) -> bool:
    label, dot, domain = host.partition(".")
    return (
        dot == "."
        and domain == "local"
        and len(label) == 36
        and label[14] == "4"  # version 4
        and label.replace("-", "").isalnum()
    )


def test_two_syncice_peers_one_obfuscating(namespace: str) -> None:
    result = run(with_multicast(namespace), "syncice_pair")
    assert result["data"] == ["ping", "pong"]
    # The obfuscating side shows names only, the other its address.
    assert result["a_local"]
    for sdp in result["a_local"] + [result["a_default"]]:
        assert is_uuid_local(host_of(sdp)), sdp
        assert "127.0.0.1" not in sdp
    assert [host_of(sdp) for sdp in result["b_local"]] == ["127.0.0.1"]
    # The user sees the candidate as added; the agent paired the address.
    assert result["b_remote"] == result["a_local"]
    assert result["resolved"], result["b_pairs"]
    # The socket: none before it was needed, one shared, none after.
    assert result["sockets"] == [0, 0, 1]
    assert result["closed_after"] == [0, 0]


def test_syncice_resolves_a_name_aioice_publishes(namespace: str) -> None:
    result = run(with_multicast(namespace), "aioice_publishes")
    assert result["data"] == ["ping", "pong"]
    assert [host_of(sdp) for sdp in result["remote"]] == [result["name"]]
    # Paired as a host candidate at the published address: resolved, not
    # learnt as peer-reflexive.
    assert ["host", "127.0.0.1", result["port"]] in result["pairs"]


def test_aioice_resolves_our_obfuscated_candidate(namespace: str) -> None:
    result = run(with_multicast(namespace), "aioice_resolves")
    assert result["data"] == ["ping", "pong"]
    [sdp] = result["ours_local"]
    name = host_of(sdp)
    assert is_uuid_local(name)
    # aioice keeps our name on the candidate and checks the address it got.
    assert ["host", name, "127.0.0.1", result["our_port"]] in result["their_pairs"]


def test_no_multicast_degrades_to_no_mdns(namespace: str) -> None:
    result = run(namespace, "no_multicast")  # lo without multicast, no route
    [warning] = result["gather_warnings"]
    assert warning.startswith("mDNS is not available")
    # Names are still shown: the user asked for the address to stay hidden.
    assert all(is_uuid_local(host_of(sdp)) for sdp in result["a_local"])
    assert result["dropped"]
    assert len(result["b_remote"]) == 1  # as the user added it
    # One warning for the host, one for the dropped candidate, no traceback.
    assert len(result["warnings"]) == 2, result["warnings"]
    assert "Traceback" not in result["stderr"]
