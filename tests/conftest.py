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

import concurrent.futures
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from syncice import Connection, IceConfig

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
    pytest.skip(f"{reason} (skipped outside CI only: under CI this fails)")


def requires(available: bool, reason: str) -> pytest.MarkDecorator:
    """Mark a test that needs a host component (IPv6 loopback, /proc, fork).

    Without it the test skips, or fails under CI (:func:`missing_service`),
    when :func:`pytest_runtest_setup` sees the mark.
    """
    return pytest.mark.requires(available, reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        available, reason = mark.args
        if not available:
            missing_service(reason)


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


@pytest.fixture
def aioice_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers on 127.0.0.1 only (its host addresses are patched), so
    that none of its traffic leaves loopback."""
    import aioice.ice

    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    )


# --- Connection pairs on loopback (layer 2: test_connection.py) ----------------

#: Hang guard of the blocking calls that build a pair.
PAIR_TIMEOUT = 10.0


def has_ipv6_loopback() -> bool:
    """Whether a UDP socket can be bound to ``::1`` here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def exchange_candidates(
    a: Connection, b: Connection, *, credentials: bool = True
) -> None:
    """Gather both, then give each the other's candidates, end-of-candidates
    and (unless ``credentials`` is false) credentials: the signalling channel."""
    a.gather_candidates(timeout=PAIR_TIMEOUT)
    b.gather_candidates(timeout=PAIR_TIMEOUT)
    for local, remote in ((a, b), (b, a)):
        for candidate in remote.local_candidates:
            local.add_remote_candidate(candidate)
        local.add_remote_candidate(None)
        if credentials:
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password


#: The APIs the scenario tests run against: the blocking :class:`Connection`,
#: and :class:`syncice.asyncio.Connection` through ``tests/shim_adapter.py``.
CONNECTION_KINDS = ["blocking", "asyncio"]
#: The modules whose tests of ``connection_pairs`` (and ``connected_pair``)
#: run once per kind; elsewhere the fixture gives blocking connections.
SCENARIO_MODULES = {"tests.test_connection", "tests.test_turn_coturn"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the scenario tests of :data:`SCENARIO_MODULES` for every kind in
    :data:`CONNECTION_KINDS`, unless a test chose its own with
    ``@pytest.mark.parametrize("connection_pairs", [...], indirect=True)``."""
    if "connection_pairs" not in metafunc.fixturenames:
        return
    if metafunc.module.__name__ not in SCENARIO_MODULES:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "connection_pairs" in names:
            return
    metafunc.parametrize("connection_pairs", CONNECTION_KINDS, indirect=True)


@dataclass
class ConnectionPairs:
    """Builds connections on one loopback address; :meth:`close_all` closes
    every one it built.

    With ``kind="asyncio"`` each is a :class:`tests.shim_adapter.ShimAdapter`:
    the blocking API over a shim connection on an event loop of its own thread.
    """

    address: str = "127.0.0.1"
    opened: list[Connection] = field(default_factory=list)
    kind: str = "blocking"
    runner: Any = None

    def make(self, controlling: bool, **kwargs: Any) -> Connection:
        """A new connection of :attr:`kind` with exactly these arguments."""
        if self.kind == "asyncio":
            from tests.shim_adapter import LoopThread, ShimAdapter

            if self.runner is None:
                self.runner = LoopThread()
            conn: Connection = ShimAdapter(  # type: ignore[assignment]
                self.runner, controlling, **kwargs
            )
        else:
            conn = Connection(controlling, **kwargs)
        self.opened.append(conn)
        return conn

    def connection(self, controlling: bool, **kwargs: Any) -> Connection:
        """A new connection gathering on :attr:`address` (or ``address=``)."""
        address = kwargs.pop("address", self.address)
        return self.make(controlling, local_addresses=[address], **kwargs)

    def pair(
        self,
        *,
        components: int = 1,
        address: str | None = None,
        connect: bool = True,
        credentials: bool = True,
        a_controlling: bool = True,
        b_controlling: bool = False,
        config: IceConfig | None = None,
    ) -> tuple[Connection, Connection]:
        """Two connections with candidates exchanged, connected unless
        ``connect`` is false: ``a.connect()`` then ``b.connect()``, which works
        in one thread because the controlled side answers checks before its
        own ``connect()``."""
        address = address or self.address
        kwargs = {"components": components, "address": address, "config": config}
        a = self.connection(a_controlling, **kwargs)
        b = self.connection(b_controlling, **kwargs)
        exchange_candidates(a, b, credentials=credentials)
        if connect:
            a.connect(timeout=PAIR_TIMEOUT)
            b.connect(timeout=PAIR_TIMEOUT)
        return a, b

    def close_all(self) -> None:
        for conn in self.opened:
            conn.close()
        self.opened.clear()
        if self.runner is not None:
            self.runner.stop()
            self.runner = None


@pytest.fixture
def connection_pairs(request: pytest.FixtureRequest) -> Iterator[ConnectionPairs]:
    """Builds connections and pairs on ``127.0.0.1``; closes them at teardown.

    In :data:`SCENARIO_MODULES`, parameterised over :data:`CONNECTION_KINDS`
    (:func:`pytest_generate_tests`); a test of the blocking internals there
    keeps to one with ``@pytest.mark.parametrize("connection_pairs",
    ["blocking"], indirect=True)``. Elsewhere: blocking.
    """
    pairs = ConnectionPairs(kind=getattr(request, "param", "blocking"))
    yield pairs
    pairs.close_all()


@pytest.fixture
def connected_pair(
    connection_pairs: ConnectionPairs,
) -> tuple[Connection, Connection]:
    """A connected pair on ``127.0.0.1``: ``a`` controlling, ``b`` controlled."""
    return connection_pairs.pair()


T = TypeVar("T")


def spawn(
    fn: Callable[[], T], name: str = "test-caller"
) -> concurrent.futures.Future[T]:
    """Run ``fn()`` on a new daemon thread; its result or exception comes back
    in the future (so a failure in the thread fails the test, not a warning)."""
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


def watch_recv(conn: Connection) -> threading.Event:
    """An event set once a ``recv()`` on ``conn`` waits for a datagram.

    From then on the caller is past every check and only waits: a datagram
    or a close must wake it.
    """
    event = threading.Event()
    conn._core.inbox.watch = event
    return event
