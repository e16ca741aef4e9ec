"""Cross-checks with aioice's STUN codec: what one encodes, the other parses.

aioice is a test-only dependency here, used as an independent peer.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from aioice import stun as aioice_stun

from syncice import stun
from tests.vectors import SAMPLE_REQUEST, SHORT_TERM_PASSWORD

pytestmark = pytest.mark.interop

TID = bytes(range(20, 32))
KEY = b"shared-secret-key"

# Attribute values as (syncice value, aioice value), for the attributes both know.
COMMON: dict[str, tuple[Any, Any]] = {
    "MAPPED-ADDRESS": (("198.51.100.1", 1234), ("198.51.100.1", 1234)),
    "USERNAME": ("abcd:efgh", "abcd:efgh"),
    "ERROR-CODE": ((438, "Stale Nonce"), (438, "Stale Nonce")),
    "CHANNEL-NUMBER": (0x4001, 0x4001),
    "LIFETIME": (600, 600),
    "XOR-PEER-ADDRESS": (("2001:db8::7", 40000), ("2001:db8::7", 40000)),
    "DATA": (b"\x01\x02\x03", b"\x01\x02\x03"),
    "REALM": ("example.org", "example.org"),
    "NONCE": (b"0123456789abcdef", b"0123456789abcdef"),
    "XOR-RELAYED-ADDRESS": (("203.0.113.5", 50000), ("203.0.113.5", 50000)),
    # aioice carries the 4 bytes as one number: protocol 17 in the first byte.
    "REQUESTED-TRANSPORT": (17, 0x11000000),
    "XOR-MAPPED-ADDRESS": (("192.0.2.1", 32853), ("192.0.2.1", 32853)),
    "PRIORITY": (1853824767, 1853824767),
    "USE-CANDIDATE": (None, None),
    "SOFTWARE": ("syncice", "syncice"),
    "ICE-CONTROLLED": (0x0123456789ABCDEF, 0x0123456789ABCDEF),
    "ICE-CONTROLLING": (2**64 - 1, 2**64 - 1),
}

SCENARIOS: list[tuple[stun.Method, stun.Class, list[str]]] = [
    (
        stun.Method.BINDING,
        stun.Class.REQUEST,
        ["USERNAME", "PRIORITY", "ICE-CONTROLLING", "USE-CANDIDATE"],
    ),
    (
        stun.Method.BINDING,
        stun.Class.REQUEST,
        ["USERNAME", "PRIORITY", "ICE-CONTROLLED"],
    ),
    (stun.Method.BINDING, stun.Class.SUCCESS, ["XOR-MAPPED-ADDRESS", "SOFTWARE"]),
    (stun.Method.BINDING, stun.Class.ERROR, ["ERROR-CODE"]),
    (
        stun.Method.ALLOCATE,
        stun.Class.REQUEST,
        ["REQUESTED-TRANSPORT", "LIFETIME", "USERNAME", "REALM", "NONCE"],
    ),
    (
        stun.Method.ALLOCATE,
        stun.Class.SUCCESS,
        ["XOR-RELAYED-ADDRESS", "XOR-MAPPED-ADDRESS", "LIFETIME"],
    ),
    (
        stun.Method.CHANNEL_BIND,
        stun.Class.REQUEST,
        ["CHANNEL-NUMBER", "XOR-PEER-ADDRESS"],
    ),
    (stun.Method.SEND, stun.Class.INDICATION, ["XOR-PEER-ADDRESS", "DATA"]),
    (stun.Method.DATA, stun.Class.INDICATION, ["XOR-PEER-ADDRESS", "DATA"]),
    (stun.Method.REFRESH, stun.Class.SUCCESS, ["LIFETIME", "MAPPED-ADDRESS"]),
]

AIOICE_CLASS = {
    stun.Class.REQUEST: aioice_stun.Class.REQUEST,
    stun.Class.INDICATION: aioice_stun.Class.INDICATION,
    stun.Class.SUCCESS: aioice_stun.Class.RESPONSE,
    stun.Class.ERROR: aioice_stun.Class.ERROR,
}


def test_every_common_attribute_is_exercised() -> None:
    used = {name for _, _, names in SCENARIOS for name in names}
    assert used == set(COMMON)


@pytest.mark.parametrize(("method", "message_class", "names"), SCENARIOS)
@pytest.mark.parametrize("protect", [False, True])
def test_syncice_encodes_aioice_parses(
    method: stun.Method, message_class: stun.Class, names: list[str], protect: bool
) -> None:
    attributes = cast(stun.Attributes, {name: COMMON[name][0] for name in names})
    message = stun.Message(method, message_class, TID, attributes)
    data = message.encode(key=KEY, fingerprint=True) if protect else bytes(message)
    theirs = aioice_stun.parse_message(data)
    assert theirs.message_method == method
    assert theirs.message_class == AIOICE_CLASS[message_class]
    assert theirs.transaction_id == TID
    got = {
        k: v
        for k, v in theirs.attributes.items()
        if k not in ("MESSAGE-INTEGRITY", "FINGERPRINT")
    }
    assert got == {name: COMMON[name][1] for name in names}
    if protect:
        assert theirs.check_message_integrity(KEY)
        assert not theirs.check_message_integrity(b"wrong")
        assert list(theirs.attributes)[-2:] == ["MESSAGE-INTEGRITY", "FINGERPRINT"]


@pytest.mark.parametrize(("method", "message_class", "names"), SCENARIOS)
@pytest.mark.parametrize("protect", [False, True])
def test_aioice_encodes_syncice_parses(
    method: stun.Method, message_class: stun.Class, names: list[str], protect: bool
) -> None:
    theirs = aioice_stun.Message(
        aioice_stun.Method(method.value),
        AIOICE_CLASS[message_class],
        TID,
        {name: COMMON[name][1] for name in names},
    )
    if protect:
        theirs.add_message_integrity(KEY)
    data = bytes(theirs)
    ours = stun.parse_message(data)
    assert ours.method is method
    assert ours.message_class is message_class
    assert ours.transaction_id == TID
    assert dict(ours.attributes) == {name: COMMON[name][0] for name in names}
    assert ours.extra_attributes == []
    assert ours.has_fingerprint is protect
    assert ours.check_integrity(KEY) is protect
    assert not ours.check_integrity(b"wrong")


def test_rfc5769_request_parses_the_same_in_both() -> None:
    ours = stun.parse_message(SAMPLE_REQUEST)
    theirs = aioice_stun.parse_message(SAMPLE_REQUEST)
    key = stun.short_term_key(SHORT_TERM_PASSWORD)
    assert ours.check_integrity(key)
    assert theirs.check_message_integrity(key)
    for name, value in ours.attributes.items():
        assert theirs.attributes[name] == value
