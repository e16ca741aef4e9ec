"""The programs of the guides (docs/guides/) run, and print what the guides
say they print. Each runs as its own program (``tests/test_examples.py``'s
``run_example``: ``-X dev -W error``, stderr must stay empty)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TurnService, missing_service
from tests.test_examples import ROOT, run_example

NETNS_EXEC = ("ip", "netns", "exec")
STRICT = ("-bb", "-X", "dev", "-W", "error")
MDNS_EXAMPLE = "examples/mdns_candidates.py"
QUIET = ("-q", "-p", "no:cacheprovider")


def test_quickstart() -> None:
    done = run_example("examples/quickstart.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert re.fullmatch(
        r"a candidates: \['\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host'\]", lines[0]
    )
    assert lines[1:] == ["b got: hello", "a got: hi there"]


def test_threads() -> None:
    done = run_example("examples/threads.py")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "timeout: recv timed out",
        "4 readers got: ['datagram 0', 'datagram 1', 'datagram 2', 'datagram 3']",
        "recv() interrupted by SIGINT",
        "after the interrupt: still there",
        "blocked recv() after close(): ConnectionClosedError('Connection closed')",
        "child: Connection closed: inherited across fork()",
    ]


def test_renomination() -> None:
    done = run_example("examples/renomination.py")
    assert (done.returncode, done.stderr) == (0, "")
    printed = done.stdout.splitlines()
    assert printed == [
        "NOMINATION=1 from 10.0.0.2: selected ['10.0.0.2']",
        "NOMINATION=2 from 10.0.1.2: selected ['10.0.1.2']",
        "NOMINATION=1 from 10.0.0.2: selected as before",
        "NOMINATION=3 from 10.0.0.2: selected ['10.0.0.2']",
        "selected now: 10.0.0.2",
    ]
    guide = (Path(ROOT) / "docs" / "guides" / "restart.rst").read_text()
    assert "\n".join(f"   {line}" for line in printed) in guide  # what it says


def test_restart() -> None:
    done = run_example("examples/restart.py")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "before, b got: 10",
        "a restarted, new ufrag: True",
        "during, b got: 10",
        "signalled, b got: 10",
        "after, b got: 10",
    ]
    guide = (Path(ROOT) / "docs" / "guides" / "restart.rst").read_text()
    assert "\n".join(f"   {line}" for line in done.stdout.splitlines()) in guide


#: The texts docs/guides/troubleshooting.rst quotes, as the library gives them.
TROUBLESHOOTING = [
    "wrong password, a: NegotiationFailedError: ICE negotiation failed: the peer "
    "rejected our checks with 401 Unauthenticated (unsigned, 4 times): check "
    "remote_username/remote_password",
    "wrong password, b: NegotiationFailedError: ICE negotiation failed: no "
    "nomination: no check from the controlling peer in the 1.5 s since connect() "
    "(nomination_timeout); we rejected the peer's checks with 401 Unauthenticated "
    "(4 times): check its remote_username/remote_password",
    "firewall: NegotiationFailedError: ICE negotiation failed: no response to 1 "
    "check, sent 4 times (timeout)",
    "no TURN: candidate types ['host']",
]


def test_troubleshooting() -> None:
    done = run_example("examples/troubleshooting.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[:4] == TROUBLESHOOTING
    assert re.fullmatch(
        r"no TURN: log: Connection\(\d+\) TURN allocation failed: timed out "
        r"waiting for the TURN server",
        lines[4],
    )
    assert lines[-2] == (
        "symmetric NAT, no TURN: failed after 10.0 virtual s: no nomination: no "
        "check from the controlling peer in the 10 s since connect() "
        "(nomination_timeout)"
    )
    assert re.fullmatch(
        r"symmetric NAT, with TURN: connected on relay -> (relay|prflx|srflx) "
        r"in [\d.]+ virtual s",
        lines[-1],
    )
    guide = (ROOT / "docs" / "guides" / "troubleshooting.rst").read_text()
    flat = " ".join(guide.split())
    for line in TROUBLESHOOTING[:3]:
        cause = line.split(": ", 2)[2].removeprefix("ICE negotiation failed: ")
        assert cause in flat, line


@pytest.mark.interop
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_turn_relay(coturn: TurnService, transport: str) -> None:
    port = coturn.tls_port if transport == "tls" else coturn.port
    done = run_example(
        "examples/turn_relay.py",
        coturn.ip,
        str(port),
        coturn.username,
        coturn.password,
        "--transport",
        transport,
        "--ca",
        str(coturn.cert),
        "--stun-port",
        str(coturn.port),
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "a candidates: ['relay']",
        "selected: relay -> relay",
        "b got: through the relay",
    ]


@pytest.fixture
def multicast_netns() -> Iterator[str]:
    """A namespace with only ``lo``, multicast looping on it."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing_service("the mDNS example runs in a namespace: needs root and ip")
    name = f"si-clidocs-mdns-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for args in (
            ["link", "set", "lo", "up"],
            ["link", "set", "lo", "multicast", "on"],
            ["route", "add", "224.0.0.0/4", "dev", "lo"],
        ):
            subprocess.run(["ip", "-n", name, *args], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_mdns_candidates(multicast_netns: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SYNCICE_MDNS_EXAMPLE_OK="1")
    done = subprocess.run(
        [*NETNS_EXEC, multicast_netns, sys.executable, *STRICT, MDNS_EXAMPLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"a's candidate: [0-9a-f-]{36}\.local host", lines[0])
    assert lines[1:] == [
        "b reached a at: 127.0.0.1",
        "b got: hello over a hidden address",
    ]


def test_mdns_example_refuses_outside_a_namespace() -> None:
    done = run_example("examples/mdns_candidates.py")
    assert done.returncode == 1
    assert "refusing to send multicast" in done.stderr


def test_own_tests() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/own_tests.py", *QUIET],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b11 passed\b", done.stdout), done.stdout


def test_cli_guide_commands_exist() -> None:
    """Every ``syncice ...`` command the CLI guide shows parses."""
    guide = (Path(ROOT) / "docs" / "guides" / "cli.rst").read_text()
    commands = re.findall(r"^\s+\$ syncice (\w+)", guide, re.MULTILINE)
    assert set(commands) == {"stun", "turn", "pipe"}


def test_ice_lite() -> None:
    done = run_example("examples/ice_lite.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert re.fullmatch(
        r"log: Connection\(\d+\) ICE-lite: host candidates only, STUN/TURN server"
        r" 127\.0\.0\.1:3478 not used \(RFC 8445 §5\.2\)",
        lines[0],
    )
    assert re.fullmatch(
        r"log: Connection\(\d+\) ICE-lite: taking the controlled role"
        r" \(ice_controlling=True ignored: a lite agent is always controlled,"
        r" RFC 8445 §6\.1\.1\)",
        lines[1],
    )
    assert lines[2:] == [
        "server says: a=ice-lite",
        "client controlling: True",
        "server controlling: False",
        "server got: hello",
        "client got: welcome",
        "checks the server sent: 0",
        "lite against lite: both agents are ICE-lite",
    ]


def test_signalling() -> None:
    done = run_example("examples/signalling.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "offer: a=ice-options:trickle",
        "offer: a=ice-ufrag:...",
        "offer: a=ice-pwd:...",
    ]
    assert re.fullmatch(
        r"offer: a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 <port> typ host", lines[3]
    )
    assert lines[4:] == [
        "offer: a=end-of-candidates",
        "answer keys: ['candidates', 'end_of_candidates', 'lite', 'password',"
        " 'trickle', 'username']",
        "b got: hello",
        "bad: line 6 'a=candidate:1 1 udp x 1.2.3.4 9 typ host'",
    ]


def test_ice_tcp() -> None:
    done = run_example("examples/ice_tcp.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"a: tcp passive \d+", lines[0])
    assert lines[0] != "a: tcp passive 9"
    assert lines[1:] == [
        "a: tcp active 9",
        "a's pair: active -> passive",
        "b got: hello over TCP",
        "a got: and back",
    ]


def test_trickle() -> None:
    done = run_example("examples/trickle.py")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "connected while gathering: connected",
        "b got: sent while gathering",
        "after end-of-candidates: completed",
        "one thread: connected while gathering: connected",
        "one thread: after end-of-candidates: completed",
        "asyncio: connected while gathering: connected",
        "asyncio: b got: sent while gathering",
        "asyncio: after end-of-candidates: completed",
    ]
    guide = (ROOT / "docs" / "guides" / "trickle.rst").read_text()
    assert "\n".join(f"   {line}" for line in done.stdout.splitlines()) in guide


def test_events() -> None:
    done = run_example("examples/events.py")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "before: new",
        "after connect: completed",
        "selected: host -> host",
        "sent on it: 1",
        "after the block: closed",
    ]
    events = [line.strip() for line in lines[5:-1]]
    assert events[:2] == ["CandidateGathered", "GatheringCompleted"]
    assert events[-3:] == ["SelectedPairChanged", "IceCompleted", "ConnectionClosed"]
    middle = events[2:-3]
    assert middle
    assert all(re.fullmatch(r"PairStateChanged [a-z-]+ -> [a-z-]+", e) for e in middle)
    assert "PairStateChanged in-progress -> succeeded" in middle
    assert lines[-1] == "b's events: ConnectionClosed() None"
    guide = (ROOT / "docs" / "guides" / "events.rst").read_text()
    for line in lines[:5] + lines[-1:]:
        assert f"   {line}\n" in guide, line
