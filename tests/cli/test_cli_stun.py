"""``syncice stun``: mapped addresses, and RFC 5780 NAT behaviour discovery,
against coturn on two loopback addresses and through each NAT of the lab."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.cli.servers import Rfc5780Server, cli, free_port_pair, report
from tests.conftest import TurnService, missing_service
from tests.netlab.lab import Lab, missing_components

pytestmark = pytest.mark.interop

_labs = itertools.count()


@pytest.fixture
def rfc5780() -> Iterator[Rfc5780Server]:
    """coturn on 127.0.0.1 and 127.0.0.2: an RFC 5780 server on loopback."""
    if shutil.which("turnserver") is None:
        missing_service("coturn (apt-get install coturn)")
    server = Rfc5780Server(["127.0.0.1", "127.0.0.2"], free_port_pair())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_mapped_address_on_loopback(rfc5780: Rfc5780Server) -> None:
    result = cli(["stun", rfc5780.primary, "--local", "127.0.0.1", "--json"])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [entry] = data["results"]
    assert entry["mapped"] == entry["local"]  # no NAT on loopback
    assert entry["local"].startswith("127.0.0.1:")
    assert data["other_address"] == f"127.0.0.2:{rfc5780.port + 1}"
    assert "binding request from 127.0.0.1" in result.stderr  # progress


def test_text_output(rfc5780: Rfc5780Server) -> None:
    result = cli(["stun", rfc5780.primary, "--local", "127.0.0.1"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"server {rfc5780.primary} (Coturn-")
    assert lines[1].startswith("local 127.0.0.1:")
    assert lines[-1] == f"RFC 5780: other address 127.0.0.2:{rfc5780.port + 1}"


def test_nat_discovery_on_loopback(rfc5780: Rfc5780Server) -> None:
    result = cli(["stun", rfc5780.primary, "--nat", "--local", "127.0.0.1", "--json"])
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["behind_nat"] is False
    assert found["mapping"] == "endpoint-independent"
    assert found["filtering"] == "endpoint-independent"
    assert found["hairpin"] is None
    assert found["other_address"] == f"127.0.0.2:{rfc5780.port + 1}"
    for step in ("mapping test I", "mapping test II", "filtering test II"):
        assert step in result.stderr


def test_server_without_rfc5780(coturn: TurnService) -> None:
    """The run-all.sh coturn runs with no-rfc5780: no OTHER-ADDRESS."""
    address = f"{coturn.ip}:{coturn.port}"
    result = cli(["stun", address, "--nat", "--local", "127.0.0.1"])
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert (
        f"error: the server {address} does not support RFC 5780: "
        "its answer carries no OTHER-ADDRESS" in result.stderr
    )
    plain = cli(["stun", address, "--local", "127.0.0.1"])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1] == "RFC 5780: not supported (no OTHER-ADDRESS)"


def test_no_server_exit_1() -> None:
    port = free_port_pair()  # nothing listens there
    result = cli(["stun", f"127.0.0.1:{port}", "--nat", "--timeout", "0.3"])
    assert result.returncode == 1
    assert f"error: no answer from 127.0.0.1:{port} in 0.3 s" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["stun"],
        ["stun", "host:notaport"],
        ["stun", "127.0.0.1", "--lifetime", "5"],
        ["stun", "127.0.0.1", "--timeout", "0"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    assert cli(args).returncode == 2


def test_help_has_examples_and_exit_codes() -> None:
    result = cli(["stun", "--help"])
    assert result.returncode == 0
    assert "syncice stun stun.example.org --nat" in result.stdout
    assert "3    the server does not support" in result.stdout


# --- through the NATs of the lab ----------------------------------------------------

#: Where the lab's RFC 5780 server listens: the lab's coturn (no-rfc5780) keeps
#: 203.0.113.1:3478; this one adds 203.0.113.2 and uses ports 3490 and 3491.
_ALT_IP = "203.0.113.2"
_PORT = 3490

#: What ``netlab.sh`` builds (docs/netlab.rst): nft ``masquerade`` keeps the
#: source port for every destination and lets in only what conntrack matches;
#: ``masquerade fully-random`` takes a new port per destination.
EXPECTED = {
    "a": ("endpoint-independent", "address-and-port-dependent"),  # nat1, cone
    "b": ("endpoint-independent", "address-and-port-dependent"),  # nat2, cone
    "c": ("address-and-port-dependent", "address-and-port-dependent"),  # nat3
}


@pytest.fixture(scope="module")
def nat_lab() -> Iterator[tuple[Lab, Rfc5780Server]]:
    missing = missing_components()
    if missing:
        missing_service("NAT lab needs " + ", ".join(missing))
    lab = Lab.up(f"si-clidocs-{os.getpid()}-{next(_labs)}")
    try:
        pub = lab.namespace("pub")
        subprocess.run(
            ["ip", "-n", pub, "addr", "add", f"{_ALT_IP}/24", "dev", "br0"], check=True
        )
        server = Rfc5780Server([lab.env["NETLAB_PUB_IP"], _ALT_IP], _PORT, netns=pub)
        server.start()
        try:
            yield lab, server
        finally:
            server.stop()
    finally:
        lab.down()


@pytest.mark.parametrize("host", ["a", "b", "c"])
def test_nat_verdict_per_lab_nat(nat_lab: tuple[Lab, Rfc5780Server], host: str) -> None:
    lab, server = nat_lab
    args = ["stun", server.primary, "--nat", "--timeout", "1"]
    text = cli(args, prefix=lab.exec_args(host))
    report(f"--- host {host}: syncice {' '.join(args)}\n{text.stdout}{text.stderr}")
    assert text.returncode == 0, text.stderr
    result = cli([*args, "--json"], prefix=lab.exec_args(host))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["local"].startswith(lab.host_ip(host) + ":")
    nat_ip = f"203.0.113.1{'abc'.index(host) + 1}"
    assert found["mapped"].startswith(nat_ip + ":")
    assert found["behind_nat"] is True
    assert (found["mapping"], found["filtering"]) == EXPECTED[host]
    assert found["other_address"] == f"{_ALT_IP}:{_PORT + 1}"
    # Linux NAT (masquerade, no DNAT rule) does not loop a packet to its own
    # public address back inside.
    assert found["hairpin"] is False


def test_binding_lifetime_in_the_lab(nat_lab: tuple[Lab, Rfc5780Server]) -> None:
    """nat1's UDP conntrack timeouts set to 3 s: an idle mapping lives 3 s."""
    lab, server = nat_lab
    nat = lab.exec_args("nat1")
    keys = (
        "net.netfilter.nf_conntrack_udp_timeout",
        "net.netfilter.nf_conntrack_udp_timeout_stream",
    )
    before = [
        subprocess.run(
            [*nat, "sysctl", "-n", key], capture_output=True, text=True, check=True
        ).stdout.strip()
        for key in keys
    ]
    subprocess.run([*nat, "sysctl", "-qw", *(f"{key}=3" for key in keys)], check=True)
    try:
        args = ["stun", server.primary, "--nat", "--lifetime", "8", "--timeout", "1"]
        result = cli([*args, "--json"], prefix=lab.exec_args("a"))
    finally:
        restore = [f"{k}={v}" for k, v in zip(keys, before, strict=True)]
        subprocess.run([*nat, "sysctl", "-qw", *restore], check=True)
    report(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["lifetime"] == {"alive_after": 2, "expired_after": 4}
