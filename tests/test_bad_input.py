"""Bad arguments raise at the call, naming what is wrong (layer 2).

Every parameter of :class:`syncice.Connection` gets a value of the wrong type
(``TypeError``) and, where one exists, a value out of range (``ValueError``);
each message names the parameter. The same for the methods' arguments, and
for aioice's errors where aioice programs catch them.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncice import (
    ComponentError,
    Connection,
    NotConnectedError,
    TransportPolicy,
)
from syncice._facade import check_type as _check_type

LOOPBACK = ["127.0.0.1"]

# (parameter, value, error, text the message must hold)
CONSTRUCTOR_CASES: list[tuple[str, object, type[Exception], str]] = [
    ("ice_controlling", "yes", TypeError, "ice_controlling"),
    ("ice_controlling", None, TypeError, "ice_controlling"),
    ("ice_controlling", 1, TypeError, "ice_controlling"),
    ("components", "1", TypeError, "components"),
    ("components", 1.0, TypeError, "components"),
    ("components", None, TypeError, "components"),
    ("components", True, ValueError, "components"),
    ("components", 0, ValueError, "components"),
    ("components", -1, ValueError, "components"),
    ("components", 257, ValueError, "components"),
    ("stun_server", "127.0.0.1:3478", TypeError, "stun_server"),
    ("stun_server", ["127.0.0.1", 3478], TypeError, "stun_server"),
    ("stun_server", ("127.0.0.1",), TypeError, "stun_server"),
    ("stun_server", (1, 2), TypeError, "stun_server"),
    ("stun_server", ("127.0.0.1", "3478"), TypeError, "stun_server"),
    ("stun_server", ("127.0.0.1", True), TypeError, "stun_server"),
    ("stun_server", ("127.0.0.1", 0), ValueError, "stun_server"),
    ("stun_server", ("127.0.0.1", 65536), ValueError, "stun_server"),
    ("stun_server", ("", 3478), ValueError, "stun_server"),
    ("turn_server", "127.0.0.1:3478", TypeError, "turn_server"),
    ("turn_server", ("127.0.0.1", -5), ValueError, "turn_server"),
    ("turn_username", 5, TypeError, "turn_username"),
    ("turn_password", b"secret", TypeError, "turn_password"),
    ("turn_ssl", "yes", TypeError, "turn_ssl"),
    ("turn_transport", None, TypeError, "turn_transport"),
    ("turn_transport", "tls", ValueError, "turn_transport"),
    ("turn_transport", "UDP", ValueError, "turn_transport"),
    ("turn_transport", "", ValueError, "turn_transport"),
    ("use_ipv4", "no", TypeError, "use_ipv4"),
    ("use_ipv4", None, TypeError, "use_ipv4"),
    ("use_ipv6", 0, TypeError, "use_ipv6"),
    ("transport_policy", 1, TypeError, "transport_policy"),
    ("transport_policy", "relay", TypeError, "transport_policy"),
    ("local_username", 1234, TypeError, "username"),
    ("local_username", "abc", ValueError, "username"),
    ("local_username", "a" * 257, ValueError, "username"),
    ("local_username", "user name", ValueError, "username"),
    ("local_password", b"p" * 22, TypeError, "password"),
    ("local_password", "short", ValueError, "password"),
    ("local_password", "p" * 257, ValueError, "password"),
    ("local_addresses", "127.0.0.1", TypeError, "local_addresses"),
    ("local_addresses", {"127.0.0.1"}, TypeError, "local_addresses"),
    ("local_addresses", [0x7F000001], TypeError, "local address"),
    ("local_addresses", [], ValueError, "local_addresses"),
    ("local_addresses", ["not an address"], ValueError, "local address"),
    ("local_addresses", ["0.0.0.0"], ValueError, "local address"),
    ("local_addresses", ["224.0.0.251"], ValueError, "local address"),
    # TEST-NET-1 and -3: addresses no interface of this host has.
    ("local_addresses", ["192.0.2.1"], ValueError, "192.0.2.1 is not an address"),
    (
        "local_addresses",
        ["127.0.0.1", "203.0.113.9"],
        ValueError,
        "203.0.113.9 is not an address of this host",
    ),
    ("config", "fast", TypeError, "config"),
    ("config", {"ta": 0.05}, TypeError, "config"),
    ("mdns_host_candidates", "yes", TypeError, "mdns_host_candidates"),
    ("mdns_host_candidates", None, TypeError, "mdns_host_candidates"),
    ("ice_lite", "yes", TypeError, "ice_lite"),
    ("ice_lite", 1, TypeError, "ice_lite"),
    ("transports", "tcp", TypeError, "transports"),
    ("transports", (), ValueError, "transports"),
    ("transports", ("udp", "UDP"), ValueError, "transports"),
    ("transports", ("tcp", "tcp"), ValueError, "transports"),
    ("transports", (b"tcp",), TypeError, "transports"),
    ("events", True, TypeError, "events"),
    ("events", ["all"], TypeError, "events"),
    ("events", "ALL", ValueError, "events"),
    ("events", "", ValueError, "events"),
    ("ice_servers", "stun:stun.example.org", TypeError, "ice_servers"),
    ("ice_servers", [3478], TypeError, "ice_servers"),
    ("ice_servers", ["stun:stun.example.org:0"], ValueError, "ice_servers: bad URL"),
    ("ice_servers", [{"urls": "turn:t.example"}], ValueError, "ice_servers"),
    ("port_range", 50000, TypeError, "port_range"),
    ("port_range", (50000, 49999), ValueError, "port_range"),
    ("interface_filter", "eth0", TypeError, "interface_filter"),
    ("interfaces", "eth0", TypeError, "interfaces"),
    ("interfaces", [0], ValueError, "interfaces"),
    ("exclude_interfaces", "eth0", TypeError, "exclude_interfaces"),
    ("exclude_interfaces", [""], ValueError, "exclude_interfaces"),
]


@pytest.mark.parametrize(
    ("parameter", "value", "error", "text"),
    CONSTRUCTOR_CASES,
    ids=[f"{c[0]}={c[1]!r}" for c in CONSTRUCTOR_CASES],
)
def test_a_bad_constructor_argument_raises_naming_it(
    parameter: str, value: object, error: type[Exception], text: str
) -> None:
    kwargs: dict[str, Any] = {"ice_controlling": True, parameter: value}
    with pytest.raises(error, match=text):
        Connection(**kwargs)


def test_every_constructor_parameter_has_a_bad_case() -> None:
    import inspect

    parameters = set(inspect.signature(Connection).parameters)
    assert parameters == {case[0] for case in CONSTRUCTOR_CASES}


def test_no_address_family_at_all_raises_at_construction() -> None:
    with pytest.raises(ValueError, match="use_ipv4 and use_ipv6"):
        Connection(True, use_ipv4=False, use_ipv6=False)


def test_a_family_filter_that_leaves_no_address_raises() -> None:
    with pytest.raises(ValueError, match="leaves no address"):
        Connection(True, local_addresses=LOOPBACK, use_ipv4=False)


def test_loopback_addresses_are_this_hosts() -> None:
    # All of 127.0.0.0/8 is bound to the loopback interface.
    Connection(True, local_addresses=["127.0.0.1", "127.0.0.2"]).close()


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_repr_works_on_a_half_built_connection(api: str) -> None:
    import syncice.asyncio

    base: Any = Connection if api == "blocking" else syncice.asyncio.Connection
    seen: list[str] = []

    class Watched(base):  # type: ignore[misc]
        def __init__(self) -> None:
            try:
                super().__init__(True, components=0)
            finally:
                seen.append(repr(self))

    with pytest.raises(ValueError, match="components"):
        Watched()
    # The blocking one has its name already; the shim has no connection yet.
    if api == "asyncio":
        assert seen == ["Connection(?)"]
    else:
        assert len(seen) == 1
        assert seen[0].startswith("Connection(")


@pytest.mark.parametrize("component", ["1", 1.0, None, True])
def test_get_default_candidate_wants_an_int(component: Any) -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        with pytest.raises(TypeError, match="component"):
            conn.get_default_candidate(component)
    finally:
        conn.close()


def test_get_default_candidate_of_an_unknown_component_is_none() -> None:
    # As in aioice: no candidate, no error.
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        conn.gather_candidates(timeout=10.0)
        assert conn.get_default_candidate(1) is not None
        assert conn.get_default_candidate(2) is None
    finally:
        conn.close()


@pytest.mark.parametrize("component", [0, 3, -1, "1", None])
def test_sendto_an_unknown_component_raises_what_aioice_and_syncice_catch(
    component: Any,
) -> None:
    conn = Connection(True, components=2, local_addresses=LOOPBACK)
    try:
        for error in (ComponentError, ConnectionError, ValueError):
            with pytest.raises(error, match="component must be 1 to 2"):
                conn.sendto(b"data", component)
        # A known component before connect() is aioice's ConnectionError.
        with pytest.raises(NotConnectedError):
            conn.sendto(b"data", 2)
    finally:
        conn.close()


def test_check_type_names_every_accepted_kind() -> None:
    with pytest.raises(TypeError, match="x must be str or None, not int"):
        _check_type("x", 1, (str, type(None)))
    with pytest.raises(TypeError, match="x must be bool, not str"):
        _check_type("x", "1", bool)


def test_transport_policy_accepts_the_enum() -> None:
    Connection(True, transport_policy=TransportPolicy.ALL).close()
