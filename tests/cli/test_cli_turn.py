"""``syncice turn`` against the coturn of ``tests/run-all.sh``: every step of
an allocation over UDP, TCP and TLS, and the failures a user meets."""

from __future__ import annotations

import json

import pytest

from syncice.cli.turn import parse_url
from tests.cli.servers import cli, report
from tests.conftest import TurnService

pytestmark = pytest.mark.interop


def turn_args(coturn: TurnService, transport: str) -> list[str]:
    port = coturn.tls_port if transport == "tls" else coturn.port
    return [
        "turn",
        f"{coturn.ip}:{port}",
        "--transport",
        transport,
        "--ca",
        str(coturn.cert),
        "--stun-port",
        str(coturn.port),
        "--user",
        coturn.username,
        "--password",
        coturn.password,
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_every_step(coturn: TurnService, transport: str) -> None:
    text = cli(turn_args(coturn, transport))
    report(f"--- syncice turn over {transport}\n{text.stdout}")
    assert text.returncode == 0, text.stderr
    assert "released     yes" in text.stdout
    result = cli([*turn_args(coturn, transport), "--json", "--count", "3"])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["transport"] == transport
    assert data["relayed"].startswith(f"{coturn.ip}:")
    assert data["mapped"].startswith("127.0.0.1:")
    assert data["peer"].startswith("127.0.0.1:")
    assert data["round_trips"] == 3
    assert data["release_answered"] is True
    assert data["lifetime"] > 0
    assert data["refreshed_lifetime"] > 0
    expected = {"resolve", "allocate", "permission", "channel", "refresh", "release"}
    if transport != "udp":
        expected.add("connect")
    assert set(data["steps_ms"]) == expected
    for step in ("allocating", "round trip 3 of 3", "refreshing", "releasing"):
        assert step in result.stderr


def test_wrong_password_exit_1(coturn: TurnService) -> None:
    args = turn_args(coturn, "udp")
    args[args.index("--password") + 1] = "not-the-password"
    result = cli(args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        "error: allocate: allocation failed: wrong credentials (401)" in result.stderr
    ), result.stderr


def test_tls_without_the_ca_exit_1(coturn: TurnService) -> None:
    args = turn_args(coturn, "tls")
    del args[args.index("--ca") : args.index("--ca") + 2]
    result = cli([*args, "--timeout", "5"])
    assert result.returncode == 1
    assert "error: TLS handshake with 127.0.0.1" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


@pytest.mark.parametrize(
    ("url", "transport", "expected"),
    [
        ("turn:example.org", None, ("example.org", 3478, "udp")),
        ("turn:example.org:3479?transport=tcp", None, ("example.org", 3479, "tcp")),
        ("turns:example.org", None, ("example.org", 5349, "tls")),
        ("turns:[::1]:443?transport=tcp", None, ("::1", 443, "tls")),
        ("127.0.0.1", "tls", ("127.0.0.1", 5349, "tls")),
        ("127.0.0.1:9", None, ("127.0.0.1", 9, "udp")),
    ],
)
def test_url_forms(
    url: str, transport: str | None, expected: tuple[str, int, str]
) -> None:
    server = parse_url(url, transport)
    assert (server.host, server.port, server.transport) == expected


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("turns:example.org?transport=udp", None),
        ("turn:example.org?transport=sctp", None),
        ("turn:example.org?transport=tcp", "udp"),
        ("turn:example.org:0", None),
    ],
)
def test_bad_urls(url: str, transport: str | None) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_url(url, transport)
    args = ["turn", url, "--user", "u", "--password", "p"]
    assert cli(args + (["--transport", transport] if transport else [])).returncode == 2
