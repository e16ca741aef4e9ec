"""Chromium as an ICE peer (issue 19), in a network namespace of the test's own.

Each test makes a namespace ``si-browser-<pid>-<n>`` with ``lo`` and a veth
pair (both ends inside, 10.77.0.1 and 10.77.0.2: Chromium gathers nothing on
``lo`` alone), runs ``tests/interop/chromium.py`` in it with ``ip netns
exec`` (Chromium, syncice and a capture of the STUN traffic), and checks what
it prints. Nothing leaves the namespace. The ``mdns`` regime uses two
namespaces instead (below): there Chromium runs in the other one.

Candidate regimes:

- ``none``: no media permission. Chromium signals no candidates at all and
  is reached through the peer-reflexive candidate of its first check, which
  must work whether that check comes before our connect() or after it (the
  controlling side used to fail at once: tests/test_ice_patience.py). No
  ``.local`` name either: without a media permission Chromium signals only
  its *default* local address, behind an mDNS name, and it finds that
  address by connecting a UDP socket to 8.8.8.8:53 (no packet is sent;
  services/network/p2p/socket_manager.cc); the namespace has no default
  route, so the connect fails, the candidate keeps the address 0.0.0.0 and
  is not signalled (its name is announced for 0.0.0.0).
- ``host``: a fake microphone granted (getUserMedia on ``http://localhost``):
  Chromium signals its host candidates.
- ``mdns``: no media permission, Chromium in a namespace of its own
  (``si-mdnschrome-<pid>-<n>-chromium``, 10.78.0.1) whose default route goes
  over a veth to syncice's (``...-syncice``, 10.78.0.2; no route onwards, so
  nothing leaves the two). Chromium then signals one host candidate,
  ``<uuid>.local``, and answers queries for it on 224.0.0.251; syncice
  resolves the name over the veth and checks Chromium's host candidate
  (``host/host``, not peer-reflexive: the test waits for the name to be
  resolved before Chromium gets what it needs to check us).

Times are printed (``-s``), never asserted.
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

from syncice.mdns import is_mdns_hostname
from tests.conftest import missing_service
from tests.interop import chromium
from tests.interop.matrix import append_record

ROOT = Path(__file__).resolve().parent.parent.parent
#: Bound of one run (hang guard): its steps are bounded by 20 s each.
RUN_TIMEOUT = 240.0
_names = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _requirements() -> None:
    ok, why = chromium.available()
    if not ok:
        missing_service(why)
    if shutil.which("ip") is None or os.geteuid() != 0:
        missing_service("the Chromium tests need root and iproute2 (ip netns)")


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace with ``lo`` and a veth pair inside it, removed after."""
    _requirements()
    name = f"si-browser-{os.getpid()}-{next(_names)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip(
            "-n",
            name,
            "link",
            "add",
            "si-browser-a",
            "type",
            "veth",
            "peer",
            "si-browser-b",
        )
        for dev, addr in (
            ("si-browser-a", "10.77.0.1/24"),
            ("si-browser-b", "10.77.0.2/24"),
        ):
            _ip("-n", name, "addr", "add", addr, "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "si-browser-a")
        yield name
    finally:
        _ip("netns", "delete", name)


#: Chromium's address and syncice's in the mDNS regime's namespaces.
MDNS_CHROMIUM, MDNS_SYNCICE = "10.78.0.1", "10.78.0.2"


@pytest.fixture
def mdns_namespaces() -> Iterator[dict[str, str]]:
    """Chromium's namespace and syncice's, joined by a veth: in Chromium's,
    a default route to syncice's end (Chromium names only its default local
    address); in both, the multicast route to the veth. Syncice's has no
    route beyond the veth and does not forward. The environment of a run in
    syncice's namespace (:func:`run`), with ``"namespace"``; removed after."""
    _requirements()
    base = f"si-mdnschrome-{os.getpid()}-{next(_names)}"
    ours, theirs = f"{base}-syncice", f"{base}-chromium"
    made = []
    try:
        for name in (ours, theirs):
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip(
            "-n",
            theirs,
            "link",
            "add",
            "veth-chromium",
            "type",
            "veth",
            "peer",
            "veth-syncice",
            "netns",
            ours,
        )
        for name, dev, addr in (
            (theirs, "veth-chromium", MDNS_CHROMIUM),
            (ours, "veth-syncice", MDNS_SYNCICE),
        ):
            _ip("-n", name, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
            _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", dev)
        _ip("-n", theirs, "route", "add", "default", "via", MDNS_SYNCICE)
        subprocess.run(
            ["ip", "netns", "exec", ours, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield {
            "namespace": ours,
            "SI_ADDRESSES": MDNS_SYNCICE,
            "SI_CHROMIUM_NETNS": theirs,
            "SI_CAPTURE_DEV": "veth-syncice",
        }
    finally:
        for name in made:
            _ip("netns", "delete", name)


def run_module(
    namespace: str, module: str, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """Run ``python -m module args`` in ``namespace``: its JSON result
    (printed), or ``None`` if it failed (its stderr printed). ``env`` adds
    to (or overrides) the run's environment."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SI_ADDRESSES": "10.77.0.1",
        **(env or {}),
    }
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=ROOT,
        env=env,
    )
    if proc.returncode != 0:
        sys.stdout.write(proc.stderr[-4000:] + "\n")
        return None
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return result


def run(
    namespace: str,
    role: str,
    regime: str,
    order: str,
    *args: str,
    label: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One Chromium run; its result, also recorded for docs/interop.rst
    (suite ``browser``) under ``label`` (default: ``order``)."""
    result = run_module(
        namespace, "tests.interop.chromium", role, regime, order, *args, env=env
    )
    ok = result is not None and result.get("ok") is True
    got = result or {}
    append_record(
        {
            "suite": "browser",
            "peer": "chromium",
            "ours": "syncice",
            "role": "controlled" if role == "offerer" else "controlling",
            "scenario": regime,
            "order": label or order,
            "run": int(os.environ.get("SYNCICE_INTEROP_RUN", "1")),
            "outcome": "connected" if ok else "failed",
            "seconds": got.get("syncice_connect_s", 0.0),
            "peer_seconds": got.get("chromium_connected_s"),
            "selected": got.get("selected"),
            "noticed": got.get("noticed"),
            "noticed_after": got.get("noticed_after_s"),
        }
    )
    assert result is not None, "the run failed: its stderr is above"
    return result


def check_answered(summary: dict[str, Any]) -> None:
    """Chromium's checks reached syncice, and syncice answered them (the
    capture may miss the answer to a check still in flight)."""
    assert summary["checks"] >= 1
    assert summary["answered"] >= summary["checks"] - 1


@pytest.mark.parametrize("order", ["connect-first", "check-first"])
@pytest.mark.parametrize("regime", ["none", "host"])
@pytest.mark.parametrize("role", ["offerer", "answerer"])
def test_chromium_connects(namespace: str, role: str, regime: str, order: str) -> None:
    result = run(namespace, role, regime, order)
    assert result["ok"]
    if regime == "none":
        assert result["chromium_candidates"] == []
        assert result["selected"] == "host/prflx"
    else:
        hosts = {c.split()[4] for c in result["chromium_candidates"]}
        assert "10.77.0.1" in hosts
        assert result["selected"] == "host/host"
    assert result["chromium_states"][-1] == "connected"
    check_answered(result["checks_at_connect"])
    attributes = result["checks_at_connect"]["attributes"]
    # The controlling Chromium nominates with USE-CANDIDATE.
    assert ("USE-CANDIDATE" in attributes) == (role == "offerer")
    # Closing syncice: Chromium's checks go unanswered, it notices.
    assert result["noticed"] in ("disconnected", "failed")


@pytest.mark.parametrize("role", ["offerer", "answerer"])
def test_syncice_notices_chromium_closing(namespace: str, role: str) -> None:
    # Our consent checks go unanswered once Chromium closed: consent expires
    # (here after 3 s) and the connection closes.
    result = run(
        namespace,
        role,
        "host",
        "connect-first",
        "--close",
        "chromium",
        "--consent-timeout",
        "3",
        label="Chromium closes",
    )
    assert result["ok"]
    assert "ConnectionClosed" in result["noticed"]


def test_consent_holds_for_60_seconds(namespace: str) -> None:
    # The one long test: Chromium's consent checks keep the pair up, syncice
    # answers every one, its own consent never expires, Chromium never says
    # disconnected. Then syncice closes and Chromium notices.
    result = run(
        namespace,
        "offerer",
        "none",
        "connect-first",
        "--hold",
        "60",
        label="consent 60 s",
    )
    assert result["ok"]
    assert result["events_while_held"] == []
    assert "disconnected" not in result["chromium_states"]
    assert "failed" not in result["chromium_states"]
    check_answered(result["checks"])
    assert result["checks"]["checks"] > result["checks_at_connect"]["checks"]
    assert result["noticed"] in ("disconnected", "failed")


@pytest.mark.parametrize("stack", ["swap", "aioice"])
def test_aiortc_data_channel_to_chromium(namespace: str, stack: str) -> None:
    # aiortc on syncice.asyncio (sys.modules["aioice"] swapped), then on the
    # real aioice as the baseline: 1,000 messages echoed byte for byte.
    try:
        import aiortc
    except ImportError:
        missing_service("no aiortc: pip install aiortc==1.16.0")
    assert aiortc.__version__ == "1.16.0"
    result = run_module(namespace, "tests.interop.chromium_aiortc", stack)
    got = result or {}
    append_record(
        {
            "suite": "browser",
            "peer": "aiortc",
            "ours": "syncice.asyncio" if stack == "swap" else "aioice",
            "role": "controlling",
            "scenario": "host",
            "run": int(os.environ.get("SYNCICE_INTEROP_RUN", "1")),
            "outcome": "connected" if got.get("ok") else "failed",
            "seconds": got.get("connect_to_open_s", 0.0),
            "messages": got.get("messages", 0),
        }
    )
    assert result is not None, "the run failed: its stderr is above"
    assert result["ok"]
    assert result["aioice"] == ("syncice.asyncio" if stack == "swap" else "aioice")
    assert result["messages"] == 1000


def test_renomination_offered_to_a_controlling_chromium(namespace: str) -> None:
    # Our answer says a=ice-options:renomination; whatever Chromium then puts
    # in its checks (a NOMINATION attribute, where it negotiates
    # renomination: the printed attributes say), syncice answers each one
    # and connects.
    result = run(
        namespace,
        "offerer",
        "host",
        "connect-first",
        "--renomination",
        "--hold",
        "3",
        label="renomination offered",
    )
    assert result["ok"]
    assert result["events_while_held"] == []
    check_answered(result["checks"])
    assert "ICE-CONTROLLING" in result["checks"]["attributes"]


@pytest.mark.parametrize("role", ["offerer", "answerer"])
def test_chromium_mdns_candidates_resolved(
    mdns_namespaces: dict[str, str], role: str
) -> None:
    # No media permission, a default route: Chromium signals its host
    # candidate as a .local name only; syncice resolves it over the veth
    # (Chromium's answers carry an NSEC record with a compressed name) and
    # the pair checked and selected is that host candidate.
    env = dict(mdns_namespaces)
    namespace = env.pop("namespace")
    result = run(namespace, role, "mdns", "connect-first", env=env)
    assert result["ok"]
    hosts = [c.split()[4] for c in result["chromium_candidates"]]
    assert hosts
    assert all(is_mdns_hostname(h) for h in hosts), hosts
    assert result["resolved"] == [MDNS_CHROMIUM]
    assert result["remote_candidates"] == [f"host {MDNS_CHROMIUM}"]
    assert result["selected"] == "host/host"
    assert result["chromium_states"][-1] == "connected"
    check_answered(result["checks_at_connect"])
    assert result["noticed"] in ("disconnected", "failed")
