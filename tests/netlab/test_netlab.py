"""ICE through NATs: syncice in the NAT lab of network namespaces (layer 3).

``netlab.sh`` builds, per test, a lab that the test removes again (also on
failure): coturn on a public segment, hosts ``a`` and ``b`` behind
endpoint-independent ("cone") NATs, ``c`` behind a symmetric NAT, WAN links
with settable loss, delay and jitter. Peers (``peer.py``: syncice or aioice;
``tests/interop/nice_peer.py``: libnice) run in the hosts' namespaces and
signal through the test over JSON lines. Each scenario connects, echoes
datagrams both ways, closes, and checks the outcome and the selected
candidate types; results go to ``$SYNCICE_INTEROP_RESULTS`` (suite
``netlab``).

The two expected failures (no STUN/TURN; STUN only through the symmetric
NAT) last ~39.5 s each by RFC timing, so they start in their own lab when the
module starts and are collected by the last tests, while the others run.

Needs root, iproute2, nftables, coturn and /dev/net/tun: without them the
tests skip (printing why), and fail under ``CI=true``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_service
from tests.netlab.lab import (
    LOSSY_IMPAIRMENT,
    Lab,
    PairResult,
    PairRun,
    PeerSpec,
    SideResult,
    finish_all,
    libnice_missing,
    lossy_runs,
    missing_components,
    record,
)

pytestmark = pytest.mark.interop

#: Datagrams each side sends and expects back.
PINGS = 20
#: syncice's bound on a failed negotiation with one candidate pair: RFC 8489
#: IceConfig's defaults send a check at 0, 0.5, 1.5, 3.5 s, then every
#: 2 s (``rto_max``) until 31.5 s (Rc = 18), and wait Rm = 16 RTOs after the
#: last send: the check fails at 39.5 s, the bound of RFC 8489's own schedule.
FAILURE_BOUND = 40.0
#: Scenario 6: runs, how many must connect, and within how many seconds.
LOSSY_RUNS, LOSSY_NEEDED, LOSSY_WITHIN = 20, 19, 30.0
_labs = itertools.count(1)


def _require_lab() -> None:
    missing = missing_components()
    if missing:
        missing_service("NAT lab needs " + ", ".join(missing))


def _require_libnice() -> None:
    reason = libnice_missing()
    if reason:
        missing_service(reason)


def _new_lab() -> Lab:
    return Lab.up(f"nl{os.getpid()}-{next(_labs)}")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab for one test, removed afterwards."""
    _require_lab()
    lab = _new_lab()
    try:
        yield lab
    finally:
        lab.down()


def _selected_types(side: SideResult) -> set[str]:
    assert side.selected is not None, side
    return set(side.selected.split("/"))


def _assert_connected(result: PairResult) -> None:
    assert result.connected, result.describe()
    for side in (result.controlling, result.controlled):
        if side.impl != "libnice":
            assert side.echoed == PINGS, result.describe()


def _ours(result: PairResult) -> list[SideResult]:
    """The syncice sides (both when both are syncice), else the aioice ones."""
    sides = [result.controlling, result.controlled]
    mine = [s for s in sides if s.impl == "syncice"]
    return mine or [s for s in sides if s.impl == "aioice"]


def _peer_name(result: PairResult, ours: SideResult) -> str:
    other = result.controlled if ours is result.controlling else result.controlling
    return "libnice-regular" if other.impl == "libnice" else other.impl


def _record(
    result: PairResult,
    scenario: str,
    *,
    turn: str | None = None,
    impairment: str | None = None,
    run: int = 0,
) -> None:
    for side in _ours(result):
        record(
            scenario=scenario,
            peer=_peer_name(result, side),
            ours=side,
            turn_transport=turn,
            impairment=impairment,
            run=run,
            datagrams=side.echoed,
        )


def _run(
    lab: Lab,
    controlling: PeerSpec,
    controlled: PeerSpec,
    tmp_path: Path,
    *,
    connect_timeout: float = 30.0,
    name: str = "pair",
) -> PairResult:
    run = PairRun(
        lab,
        controlling,
        controlled,
        connect_timeout=connect_timeout,
        pings=PINGS,
        logdir=tmp_path,
        name=name,
    )
    run.exchange()
    return run.finish()


# --- the expected failures, run in the background -----------------------------


class SlowFailures:
    """The two pairs that must fail, started together in their own lab."""

    def __init__(self, logdir: Path) -> None:
        self.lab = _new_lab()
        self.runs: dict[str, PairRun] = {}
        self.results: dict[str, PairResult] = {}
        try:
            self.runs["host-only"] = PairRun(
                self.lab,
                PeerSpec("a"),
                PeerSpec("b"),
                connect_timeout=60.0,
                pings=PINGS,
                logdir=logdir,
                name="host-only",
            )
            self.runs["stun-symmetric"] = PairRun(
                self.lab,
                PeerSpec("a", stun=True),
                PeerSpec("c", stun=True),
                connect_timeout=60.0,
                pings=PINGS,
                logdir=logdir,
                name="stun-symmetric",
            )
            for run in self.runs.values():
                run.exchange()
        except BaseException:
            self.close()
            raise

    def result(self, name: str) -> PairResult:
        if name not in self.results:
            self.results[name] = self.runs.pop(name).finish()
        return self.results[name]

    def close(self) -> None:
        try:
            for run in self.runs.values():
                run.finish()
        finally:
            self.lab.down()


@pytest.fixture(scope="module")
def slow_failures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlowFailures | None]:
    """Starts the expected failures at the module's start, when selected."""
    wanted = any(item.name.startswith("test_fails_") for item in request.session.items)
    if not wanted or missing_components():
        yield None
        return
    failures = SlowFailures(tmp_path_factory.mktemp("slow"))
    try:
        yield failures
    finally:
        failures.close()


@pytest.fixture(autouse=True)
def _start_slow_failures(slow_failures: SlowFailures | None) -> None:
    """Every test of the module pulls the fixture, so the slow runs start first."""


# --- the wire ----------------------------------------------------------------------

#: Sends one STUN Binding request to coturn from inside a namespace and prints
#: whether an answer came back within a second.
_STUN_PING = """
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
host, port = sys.argv[1].rsplit(":", 1)
s.sendto(bytes.fromhex("000100002112a442") + os.urandom(12), (host, int(port)))
try:
    s.recv(2048)
    print("answered")
except socket.timeout:
    print("silent")
"""


def _stun_answers(lab: Lab, node: str) -> bool:
    out = subprocess.run(
        [*lab.exec_args(node), sys.executable, "-c", _STUN_PING, lab.stun],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()
    assert out in ("answered", "silent"), out
    return out == "answered"


def _neighbour(lab: Lab, node: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", lab.namespace(node), "neigh", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_wire_loses_ip_packets_but_never_arp(lab: Lab) -> None:
    """With every frame of nat1's WAN link lost, nothing of IP gets through,
    yet nat1 resolves the public segment's address: ARP frames are never
    impaired (``wire.ETHERTYPE_ARP`` says why)."""
    pub = lab.env["NETLAB_PUB_IP"]
    assert _stun_answers(lab, "nat1")
    lab.impair("nat1", "both", 100, 0)
    _neighbour(lab, "nat1", "flush", "all")
    assert "lladdr" not in _neighbour(lab, "nat1", "show", pub)
    assert not _stun_answers(lab, "nat1")  # the request itself started ARP
    deadline = time.monotonic() + 5.0
    while "lladdr" not in (entry := _neighbour(lab, "nat1", "show", pub)):
        assert time.monotonic() < deadline, entry
        time.sleep(0.05)
    assert "FAILED" not in entry, entry
    assert "INCOMPLETE" not in entry, entry
    # The other NATs' links are not impaired.
    assert _stun_answers(lab, "nat2")
    lab.impair("nat1", "both", 0, 0)
    assert _stun_answers(lab, "nat1")


# --- NAT behaviour --------------------------------------------------------------


PROBE_PORTS = ["4000", "4001"]


def test_nat_mappings_cone_and_symmetric(lab: Lab) -> None:
    """A reflector on two ports in pub sees one public port for a and b (cone,
    endpoint-independent mapping) and two for c (symmetric NAT)."""
    import json
    import subprocess
    import sys

    reflector = [sys.executable, str(Path(__file__).with_name("probe.py"))]
    pub_ip = lab.env["NETLAB_PUB_IP"]
    server = subprocess.Popen(
        [*lab.exec_args("pub"), *reflector, "serve", pub_ip, *PROBE_PORTS, "30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        seen = {}
        for host in ("a", "b", "c"):
            out = subprocess.run(
                [*lab.exec_args(host), *reflector, "probe", pub_ip, *PROBE_PORTS],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            seen[host] = json.loads(out)
    finally:
        server.kill()
        server.wait(10)
        assert server.stdout is not None
        server.stdout.close()
    assert seen["a"]["mapping"] == "endpoint-independent", seen
    assert seen["a"]["mapped1"].startswith(lab.env["NETLAB_NAT1_IP"] + ":"), seen
    assert seen["b"]["mapping"] == "endpoint-independent", seen
    assert seen["c"]["mapping"] == "address-and-port-dependent", seen
    assert seen["c"]["mapped1"].startswith(lab.env["NETLAB_NAT3_IP"] + ":"), seen


# --- scenario 2: srflx through two cone NATs -------------------------------------

PEERS = ["syncice", "aioice", "libnice"]


def _check_peer(impl: str) -> None:
    if impl == "libnice":
        _require_libnice()


@pytest.mark.parametrize(
    ("peer", "ours_controlling"),
    [
        pytest.param(
            peer, controlling, id=f"{peer}-{'ctrl' if controlling else 'ctld'}"
        )
        for peer in PEERS
        for controlling in (True, False)
        # syncice on both sides: one role order covers it.
        if peer != "syncice" or controlling
    ],
)
def test_srflx_through_cone_nats(
    lab: Lab, tmp_path: Path, peer: str, ours_controlling: bool
) -> None:
    """With STUN on both sides, a and b connect through their cone NATs with
    server-reflexive (or peer-reflexive) candidates, never a relay."""
    _check_peer(peer)
    ours, theirs = PeerSpec("a", stun=True), PeerSpec("b", impl=peer, stun=True)
    pair = (ours, theirs) if ours_controlling else (theirs, ours)
    result = _run(lab, *pair, tmp_path)
    _record(result, "srflx")
    _assert_connected(result)
    for side in (result.controlling, result.controlled):
        types = _selected_types(side)
        assert "relay" not in types, result.describe()
        assert types & {"srflx", "prflx"}, result.describe()


# --- scenario 3: relay through the symmetric NAT ---------------------------------


@pytest.mark.parametrize("turn", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("behind_cone", "behind_symmetric"),
    [
        ("syncice", "syncice"),
        ("aioice", "syncice"),
        ("syncice", "aioice"),
        ("libnice", "syncice"),
        ("syncice", "libnice"),
    ],
)
def test_relay_through_symmetric_nat(
    lab: Lab, tmp_path: Path, turn: str, behind_cone: str, behind_symmetric: str
) -> None:
    """c, behind the symmetric NAT, needs its TURN relay (UDP or TCP to the
    server) to reach a, which has a server-reflexive candidate; both sides
    select a pair with c's relay candidate."""
    _check_peer(behind_cone)
    _check_peer(behind_symmetric)
    cone = PeerSpec("a", impl=behind_cone, stun=True)
    symmetric = PeerSpec("c", impl=behind_symmetric, stun=True, turn=turn)
    result = _run(lab, cone, symmetric, tmp_path)
    _record(result, "relay-symmetric", turn=turn)
    _assert_connected(result)
    assert "relay" in _selected_types(result.controlling), result.describe()
    assert _selected_types(result.controlled) & {"relay"}, result.describe()
    assert result.controlled.local is not None
    assert result.controlled.local.startswith("relay "), result.describe()


def test_relay_over_tls(lab: Lab, tmp_path: Path) -> None:
    """The same through TURN over TLS (syncice on both sides)."""
    cone = PeerSpec("a", stun=True)
    symmetric = PeerSpec("c", stun=True, turn="tls")
    result = _run(lab, cone, symmetric, tmp_path)
    _record(result, "relay-symmetric", turn="tls")
    _assert_connected(result)
    assert result.controlled.local is not None
    assert result.controlled.local.startswith("relay "), result.describe()


# --- scenario 4: relay only on both sides ----------------------------------------


@pytest.mark.parametrize("peer", PEERS)
def test_relay_only_both_sides(lab: Lab, tmp_path: Path, peer: str) -> None:
    """With the relay policy on both sides, the only pair is relay/relay."""
    _check_peer(peer)
    ours = PeerSpec("a", turn="udp", relay_only=True)
    theirs = PeerSpec("b", impl=peer, turn="udp", relay_only=True)
    result = _run(lab, ours, theirs, tmp_path)
    _record(result, "relay-only", turn="udp")
    _assert_connected(result)
    for side in (result.controlling, result.controlled):
        assert side.selected == "relay/relay", result.describe()
        assert all(" typ relay " in c for c in side.candidates), result.describe()


# --- scenario 5: 20 % loss and 50 ms on every hop ---------------------------------

IMPAIRED = "loss 20% delay 50ms"


def test_loss_and_delay_on_every_hop(lab: Lab, tmp_path: Path) -> None:
    """20 % loss and 50 ms delay (+-5 ms jitter) on the uplink of every WAN
    link, so every packet between peers, and to the servers, crosses one
    impaired hop: srflx a<->b and relayed a<->c still connect and echo."""
    lab.impair("all", "up", 20, 50, 5)
    srflx = PairRun(
        lab,
        PeerSpec("a", stun=True),
        PeerSpec("b", stun=True),
        connect_timeout=60.0,
        pings=PINGS,
        logdir=tmp_path,
        name="srflx",
    )
    relay = PairRun(
        lab,
        PeerSpec("a", stun=True),
        PeerSpec("c", stun=True, turn="udp"),
        connect_timeout=60.0,
        pings=PINGS,
        logdir=tmp_path,
        name="relay",
    )
    srflx.exchange()
    relay.exchange()
    done = finish_all([srflx, relay])
    results = {"srflx": done[0], "relay-symmetric": done[1]}
    for scenario, result in results.items():
        _record(
            result,
            scenario,
            impairment=IMPAIRED,
            turn="udp" if "relay" in scenario else None,
        )
    for result in results.values():
        _assert_connected(result)
    assert "relay" not in _selected_types(results["srflx"].controlling)
    assert "relay" in _selected_types(results["relay-symmetric"].controlling)


# --- scenario 6: ~36 % loss each way, 20 runs at once -------------------------------


def test_heavy_loss_twenty_runs(lab: Lab, tmp_path: Path) -> None:
    """20 % loss and 50 ms on both directions of every WAN link: ~36 % loss and
    100 ms each way between a and b. 20 syncice pairs at once; at least 19
    connect within 30 s and echo every datagram."""
    results = lossy_runs(lab, "syncice", LOSSY_RUNS, LOSSY_WITHIN, tmp_path)
    for i, result in enumerate(results):
        _record(result, "lossy-36", impairment=LOSSY_IMPAIRMENT, run=i)
    good = [
        r
        for r in results
        if r.connected and r.controlling.echoed == r.controlled.echoed == PINGS
    ]
    detail = "\n".join(r.describe() for r in results if r not in good)
    assert len(good) >= LOSSY_NEEDED, detail
    for result in good:
        assert "relay" not in _selected_types(result.controlling)


# --- scenario 1 (and STUN through the symmetric NAT): expected failures -------------


def _assert_failed(result: PairResult) -> None:
    for side in (result.controlling, result.controlled):
        assert side.outcome == "failed", result.describe()
        assert side.error is not None
        assert "NegotiationFailedError" in side.error, result.describe()
        assert side.seconds is not None
        assert side.seconds < FAILURE_BOUND, result.describe()


def test_fails_host_only(slow_failures: SlowFailures | None) -> None:
    """Without STUN or TURN, a and b (behind different NATs) cannot connect:
    connect() raises NegotiationFailedError on both sides, within 40 s."""
    _require_lab()
    assert slow_failures is not None
    result = slow_failures.result("host-only")
    _record(result, "host-only")
    _assert_failed(result)


def test_fails_stun_only_through_symmetric_nat(
    slow_failures: SlowFailures | None,
) -> None:
    """STUN alone does not get through the symmetric NAT: a relay is needed."""
    _require_lab()
    assert slow_failures is not None
    result = slow_failures.result("stun-symmetric")
    _record(result, "stun-symmetric")
    _assert_failed(result)
