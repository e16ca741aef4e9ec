"""The coturn service itself: it answers STUN, and relays to loopback only.

These check the test setup (``tests/coturn.sh``), not syncice's clients: a
failure here points at the server, before any TURN test fails for it.
"""

from __future__ import annotations

import socket

import pytest

from syncice.stun import (
    Address,
    Attributes,
    Class,
    Message,
    Method,
    long_term_key,
    parse_message,
)
from tests.conftest import TurnService, missing_service

#: A hang guard only: on loopback an answer comes in well under a millisecond.
TIMEOUT = 5.0


def exchange(
    sock: socket.socket, request: Message, server: Address, key: bytes | None = None
) -> Message:
    """Send ``request`` to ``server`` and return the response to it."""
    sock.sendto(request.encode(key=key, fingerprint=True), server)
    data, source = sock.recvfrom(2048)
    assert source[:2] == server
    response = parse_message(data)
    assert response.transaction_id == request.transaction_id
    return response


def family_and_ip(coturn: TurnService, family: str) -> tuple[socket.AddressFamily, str]:
    if family == "ipv4":
        return socket.AF_INET, coturn.ip
    if coturn.ip6 is None:
        missing_service("no IPv6 loopback on this host: coturn listens on IPv4 only")
    return socket.AF_INET6, coturn.ip6


@pytest.mark.interop
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_coturn_answers_a_binding_request(coturn: TurnService, family: str) -> None:
    af, ip = family_and_ip(coturn, family)
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((ip, 0))
        request = Message(Method.BINDING, Class.REQUEST)
        response = exchange(sock, request, (ip, coturn.port))
        ours = sock.getsockname()[:2]
    assert (response.method, response.message_class) == (Method.BINDING, Class.SUCCESS)
    assert response.has_fingerprint
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ours


# What tests/coturn.sh's peer rules promise (coturn 4.6 compares IPv6 ranges
# byte by byte, hence the IPv6 addresses picked byte by byte).
PEERS = {
    "ipv4": (
        ["127.0.0.1", "127.255.255.254"],
        [
            *["0.0.0.0", "10.0.0.1", "126.255.255.255", "128.0.0.0", "192.0.2.1"],
            *["224.0.0.251", "255.255.255.255"],
        ],
    ),
    "ipv6": (
        ["::1"],
        [
            *["::", "::2", "::ff", "::100", "::1:0", "1::", "100::", "2001:db8::1"],
            *["fd00::2", "fe80::1", "ff02::fb", "::ffff:127.0.0.1", "::ffff:192.0.2.1"],
        ],
    ),
}


@pytest.mark.interop
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_coturn_relays_to_loopback_only(coturn: TurnService, family: str) -> None:
    """CreatePermission (which sends nothing to the peer) is refused off loopback."""
    af, ip = family_and_ip(coturn, family)
    key = long_term_key(coturn.username, coturn.realm, coturn.password)
    server = (ip, coturn.port)
    allowed, denied = PEERS[family]
    outcome = {}
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((ip, 0))
        challenge = exchange(
            sock,
            Message(
                Method.ALLOCATE, Class.REQUEST, attributes={"REQUESTED-TRANSPORT": 17}
            ),
            server,
        )
        assert challenge.error_code == 401
        auth: Attributes = {
            "USERNAME": coturn.username,
            "REALM": coturn.realm,
            "NONCE": challenge.attributes["NONCE"],
        }

        def request(method: Method, attributes: Attributes) -> Message:
            message = Message(method, Class.REQUEST, attributes={**attributes, **auth})
            response = exchange(sock, message, server, key)
            assert response.check_integrity(key)
            return response

        allocation = request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17})
        assert allocation.message_class == Class.SUCCESS, allocation.attributes
        assert allocation.attributes["XOR-RELAYED-ADDRESS"][0] == ip
        try:
            for peer in allowed + denied:
                response = request(
                    Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": (peer, 9)}
                )
                outcome[peer] = response.error_code
        finally:
            request(Method.REFRESH, {"LIFETIME": 0})
    assert outcome == dict.fromkeys(allowed, None) | dict.fromkeys(denied, 403)
