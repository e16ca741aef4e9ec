"""Server-reflexive gathering against a real coturn, behind a NAT the test makes.

On plain loopback a STUN server sees the socket's own address, so the
server-reflexive candidate equals its base and is dropped as redundant
(RFC 8445 §5.1.3). To see a real one, the test creates a network namespace
with only its loopback up, where an nftables rule source-NATs datagrams bound
for coturn's port from 127.0.0.1 to 127.0.0.2. coturn and a gathering syncice
process both run inside it (``ip netns exec``), so nothing touches the root
namespace's network. Needs root, ``ip``, ``nft`` and ``turnserver`` (installed
by ``tests/run-all.sh``); it skips without them, and fails under CI.
"""

from __future__ import annotations

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

GATHER = """
import sys
from syncice import Connection
conn = Connection(True, stun_server=("127.0.0.1", int(sys.argv[1])),
                  local_addresses=["127.0.0.1"], use_ipv6=False)
conn.gather_candidates(timeout=10)
for c in conn.local_candidates:
    print(c.to_sdp())
conn.close()
"""


def _run(
    *args: str,
    ns: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=cwd,
        env=env,
        input=input,
    )


@pytest.fixture
def nat_namespace(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    missing = [t for t in ("ip", "nft", "turnserver") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        missing_service(f"needs root and {', '.join(missing) or 'nothing else'}")
    ns = f"syncice-srflx-{os.getpid()}"
    _run("ip", "netns", "add", ns)
    state = tmp_path / "coturn"
    env: dict[str, str] = {}
    try:
        _run("ip", "link", "set", "lo", "up", ns=ns)
        out = _run(
            "bash",
            str(ROOT / "tests" / "coturn.sh"),
            "start",
            str(state),
            ns=ns,
            env={**os.environ, "PYTHON": sys.executable},
        ).stdout
        for line in out.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        rules = (
            "table ip nat {\n chain post {\n"
            "  type nat hook postrouting priority 100;\n"
            f"  ip saddr 127.0.0.1 ip daddr 127.0.0.1 udp dport {env['TURN_PORT']}"
            " snat to 127.0.0.2\n }\n}\n"
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


def test_srflx_candidate_from_coturn(nat_namespace: tuple[str, dict[str, str]]) -> None:
    ns, env = nat_namespace
    out = _run(sys.executable, "-c", GATHER, env["TURN_PORT"], ns=ns, cwd=ROOT).stdout
    candidates = [Candidate.from_sdp(line) for line in out.splitlines()]
    [host] = [c for c in candidates if c.type == "host"]
    [srflx] = [c for c in candidates if c.type == "srflx"]
    assert host.host == "127.0.0.1"
    # The NAT keeps the port (no clash in the namespace) and changes the address.
    assert (srflx.host, srflx.port) == ("127.0.0.2", host.port)
    assert (srflx.related_address, srflx.related_port) == (host.host, host.port)
    assert srflx.priority < host.priority
    assert srflx.component == host.component == 1
