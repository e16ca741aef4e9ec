"""Fixtures for third-party services the tests talk to, on loopback only.

``tests/run-all.sh`` starts them (``tests/coturn.sh``) and exports where they
listen. Run by hand::

    eval "$(bash tests/coturn.sh start /tmp/coturn)"
    .venv/bin/python -m pytest -m interop
    bash tests/coturn.sh stop /tmp/coturn

Without a service its tests skip, with the reason in pytest's summary; under CI
(``CI`` set and not ``0`` or ``false``) they fail instead, so a broken setup
cannot pass as a green run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

#: The variables ``tests/coturn.sh start`` prints, by :class:`TurnService` field.
TURN_VARIABLES = {
    "ip": "TURN_IP",
    "ip6": "TURN_IP6",
    "port": "TURN_PORT",
    "tls_port": "TURN_TLS_PORT",
    "username": "TURN_USER",
    "password": "TURN_PASSWORD",
    "realm": "TURN_REALM",
    "cert": "TURN_CERT",
    "log": "TURN_LOG",
}


@dataclass(frozen=True)
class TurnService:
    """A running coturn: STUN and TURN over UDP and TCP, TURN over TLS.

    :param ip: the IPv4 listening and relay address (``127.0.0.1``).
    :param ip6: the IPv6 one (``::1``), or ``None`` without IPv6 loopback.
    :param port: the UDP and TCP port, on every address.
    :param tls_port: the TLS port (DTLS on UDP too), on every address.
    :param username: the long-term credential's user name.
    :param password: its password.
    :param realm: the server's realm.
    :param cert: the server's self-signed certificate (PEM), valid for
        ``localhost``, ``127.0.0.1`` and ``::1``: the CA file for TLS clients.
    :param log: the server's log file, for reading when a test fails.
    """

    ip: str
    ip6: str | None
    port: int
    tls_port: int
    username: str
    password: str
    realm: str
    cert: Path
    log: Path


def in_ci() -> bool:
    """Whether ``CI`` is set to something other than empty, ``0`` or ``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def missing_service(reason: str) -> NoReturn:
    """Skip the test for want of a service, or fail it under CI.

    :param reason: what is missing and how to provide it.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def coturn() -> TurnService:
    """The coturn that ``tests/run-all.sh`` started, from the ``TURN_*`` variables.

    Skips the test when they are not set (fails it under CI).
    """
    env = {field: os.environ.get(name, "") for field, name in TURN_VARIABLES.items()}
    missing = [
        TURN_VARIABLES[f] for f, value in env.items() if not value and f != "ip6"
    ]
    if missing:
        missing_service(
            f"no coturn: {', '.join(missing)} not set; run tests/run-all.sh, or "
            'eval "$(bash tests/coturn.sh start DIR)" first (needs turnserver: '
            "apt-get install coturn)"
        )
    try:
        port, tls_port = int(env["port"]), int(env["tls_port"])
    except ValueError as exc:
        pytest.fail(f"bad TURN_PORT or TURN_TLS_PORT: {exc}")
    return TurnService(
        ip=env["ip"],
        ip6=env["ip6"] or None,
        port=port,
        tls_port=tls_port,
        username=env["username"],
        password=env["password"],
        realm=env["realm"],
        cert=Path(env["cert"]),
        log=Path(env["log"]),
    )
