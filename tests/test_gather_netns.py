"""Gathering in a network namespace the test makes: IPv6 server addresses and
an IPv6 server-reflexive candidate from coturn, an interface that is down,
one excluded, and a blackholed STUN server.

The namespace (``si-gather-<pid>``) has loopback and three veth interfaces:
``d0`` (up: 10.71.0.1 and fd00:71::1), ``d2`` (up: fd00:72::1, the NAT's
address) and ``d1`` (down, 10.73.0.1). coturn runs inside it on 127.0.0.1
and ::1 (``tests/coturn.sh``); an nftables rule source-NATs what fd00:71::1
sends to coturn's port on ::1 to fd00:72::1, so the server sees another
address and the srflx candidate is not redundant; another drops every
datagram to UDP port 9999 (the blackholed server). The gathering program
runs inside the namespace too (``ip netns exec``): nothing touches the root
namespace's network. Needs root, ``ip``, ``nft`` and ``turnserver``
(installed by ``tests/run-all.sh``); it skips without them, and fails under
CI.

The gathering time is printed, not asserted: that one blackholed server
costs one per-server bound however many servers there are is asserted in
virtual time (``tests/test_ice_servers.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncice import Candidate

from .conftest import missing_service

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent
BOUND = 2.0

GATHER = """
import json, os, sys, time
from syncice import Connection, IceConfig
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
options = eval(sys.argv[4])
conn = Connection(
    True,
    config=IceConfig(gather_timeout=BOUND),
    ice_servers=[
        f"stun:[::1]:{port}",
        f"stun:127.0.0.1:{port}",
        "stun:10.71.0.1:9999",
        {"urls": f"turn:[::1]:{port}", "username": user, "credential": password},
    ],
    **options,
)
start = time.monotonic()
conn.gather_candidates(timeout=30)
print(json.dumps({
    "elapsed": time.monotonic() - start,
    "candidates": [c.to_sdp() for c in conn.local_candidates],
}))
conn.close()
""".replace("BOUND", repr(BOUND))


def report(line: str) -> None:
    """A measured figure, for the run's output (``-s``); never asserted."""
    sys.stdout.write(line + "\n")


def _run(
    *args: str, ns: str | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        input=input,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    missing = [t for t in ("ip", "nft", "turnserver") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        missing_service(f"needs root and {', '.join(missing) or 'nothing else'}")
    ns = f"si-gather-{os.getpid()}"
    _run("ip", "netns", "add", ns)
    state = tmp_path / "coturn"
    env: dict[str, str] = {}
    try:
        ip = ("ip", "-n", ns)
        _run(*ip, "link", "set", "lo", "up")
        for name in ("d0", "d1", "d2"):
            _run(*ip, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        for address, dev in (
            ("10.71.0.1/24", "d0"),
            ("fd00:71::1/64", "d0"),
            ("fd00:72::1/64", "d2"),
            ("10.73.0.1/24", "d1"),
        ):
            nodad = ("nodad",) if ":" in address else ()
            _run(*ip, "addr", "add", address, "dev", dev, *nodad)
        for dev in ("d0", "d0p", "d2", "d2p", "d1p"):  # d1 stays down
            _run(*ip, "link", "set", dev, "up")
        out = _run(
            "bash", str(ROOT / "tests" / "coturn.sh"), "start", str(state), ns=ns
        )
        for line in out.stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        rules = (
            "table inet si_gather {\n"
            " chain post {\n  type nat hook postrouting priority 100;\n"
            "  ip6 saddr fd00:71::1 ip6 daddr ::1 udp dport"
            f" {env['TURN_PORT']} snat to fd00:72::1\n }}\n"
            " chain in {\n  type filter hook input priority 0;\n"
            "  udp dport 9999 drop\n }\n}\n"
        )
        _run("nft", "-f", "-", ns=ns, input=rules)
        yield ns, env
    finally:
        if env:
            subprocess.run(
                ["bash", str(ROOT / "tests" / "coturn.sh"), "stop", str(state)],
                check=False,
                timeout=30,
            )
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def gather(
    lab: tuple[str, dict[str, str]], options: str
) -> tuple[float, list[Candidate]]:
    ns, env = lab
    out = _run(
        sys.executable,
        "-c",
        GATHER,
        env["TURN_PORT"],
        env["TURN_USER"],
        env["TURN_PASSWORD"],
        options,
        ns=ns,
    ).stdout
    result = json.loads(out.splitlines()[-1])
    return result["elapsed"], [Candidate.from_sdp(c) for c in result["candidates"]]


def test_ipv6_srflx_and_relay_a_down_interface_and_a_blackholed_server(
    lab: tuple[str, dict[str, str]],
) -> None:
    elapsed, candidates = gather(lab, "{'exclude_interfaces': ['d2']}")
    report(
        f"gathering with a blackholed server and a down interface: {elapsed:.3f} s"
        f" (per-server bound {BOUND} s)"
    )
    hosts = {c.host: c for c in candidates if c.type == "host"}
    # d1 is down, d2 excluded: d0's addresses only.
    assert sorted(hosts) == ["10.71.0.1", "fd00:71::1"]
    # The IPv6 server saw the NAT's address: a srflx candidate of its own.
    [srflx] = [c for c in candidates if c.type == "srflx"]
    base = hosts["fd00:71::1"]
    assert (srflx.host, srflx.port) == ("fd00:72::1", base.port)
    assert (srflx.related_address, srflx.related_port) == (base.host, base.port)
    # An IPv6 relay from the TURN server on ::1, allocated from fd00:71::1.
    [relay] = [c for c in candidates if c.type == "relay"]
    assert relay.host == "::1"
    assert relay.related_address == "fd00:72::1"


@pytest.mark.parametrize(
    "options",
    [
        "{'interfaces': ['d0', 'd1']}",  # d1 is down: left out
        "{'interface_filter': lambda name, address: name == 'd0'}",
    ],
)
def test_interface_options_keep_d0(
    lab: tuple[str, dict[str, str]], options: str
) -> None:
    elapsed, candidates = gather(lab, options)
    report(f"{options}: {elapsed:.3f} s")
    assert sorted(c.host for c in candidates if c.type == "host") == [
        "10.71.0.1",
        "fd00:71::1",
    ]


def test_without_interface_options_every_address_is_used(
    lab: tuple[str, dict[str, str]],
) -> None:
    """As before the options existed: every address listed, also that of a
    down interface; no relay is allocated twice from one address."""
    _, candidates = gather(lab, "{}")
    assert sorted(c.host for c in candidates if c.type == "host") == [
        "10.71.0.1",
        "10.73.0.1",
        "fd00:71::1",
        "fd00:72::1",
    ]
    relays = [c for c in candidates if c.type == "relay"]
    # One allocation per IPv6 local address (the server is on ::1).
    assert sorted(c.related_address or "" for c in relays) == ["fd00:72::1"] * 2
    assert len({c.port for c in relays}) == 2
