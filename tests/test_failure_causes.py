"""What a user of the blocking API sees when ICE fails, and what it logs.

The agent's rules are tested in virtual time in ``test_ice_failures.py``;
these tests run two real connections on loopback and check that the cause
reaches the caller of connect(), that a failed side goes silent so that its
peer's consent expires, and that a connect logs one line per event with the
connection's name, and nothing at WARNING.
"""

from __future__ import annotations

import logging
import re

import pytest

from syncice import (
    Connection,
    ConnectionClosedError,
    IceConfig,
    NegotiationFailedError,
)

from .conftest import exchange_candidates, spawn

#: Short enough to fail in a few seconds, far above loopback round trips.
FAST = IceConfig(
    rto=0.05,
    rto_max=0.1,
    max_sends=12,
    nomination_timeout=2.0,
    consent_interval=0.2,
    consent_timeout=1.5,
)
WRONG = "w" * 22


def pair(config: IceConfig = FAST) -> tuple[Connection, Connection]:
    a = Connection(ice_controlling=True, local_addresses=["127.0.0.1"], config=config)
    b = Connection(ice_controlling=False, local_addresses=["127.0.0.1"], config=config)
    exchange_candidates(a, b)
    return a, b


def test_controlled_side_with_a_wrong_password_lets_its_peers_consent_expire() -> None:
    a, b = pair()
    try:
        b.remote_password = WRONG
        controlled = spawn(b.connect)
        # a's checks reach b, which answers them while it checks: a connects.
        a.connect()
        # b's own checks get only unsigned 401s, discarded until they time
        # out: b fails, naming them, and answers nothing from then on.
        with pytest.raises(NegotiationFailedError) as failed:
            controlled.result(timeout=30)
        assert "the peer rejected our checks with 401" in str(failed.value)
        assert "remote_username/remote_password" in str(failed.value)
        # So a's consent expires, and a blocked reader learns why.
        a.send(b"into nothing")
        with pytest.raises(ConnectionClosedError) as closed:
            a.recv()
        assert closed.value.reason == "consent expired"
    finally:
        a.close()
        b.close()


def test_controlling_side_with_a_wrong_password_times_the_controlled_one_out() -> None:
    a, b = pair()
    try:
        a.remote_password = WRONG
        controlled = spawn(b.connect)
        with pytest.raises(NegotiationFailedError) as controlling:
            a.connect()
        assert "the peer rejected our checks with 401" in str(controlling.value)
        assert "unsigned" in str(controlling.value)
        with pytest.raises(NegotiationFailedError) as waited:
            controlled.result(timeout=30)
        assert "no nomination" in str(waited.value)
        assert "2 s" in str(waited.value)
    finally:
        a.close()
        b.close()


LINES = [
    ("local candidate", r"local candidate \S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host"),
    ("gathering completed", r"gathering completed"),
    ("remote candidate", r"remote candidate \S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host"),
    ("end-of-candidates", r"remote end-of-candidates"),
    ("connect", r"connect: (controlling|controlled), 1 pair, \d+ early checks?"),
    ("pair", r"pair host \S+ -> host \S+ \(component 1\): [a-z-]+ -> [a-z-]+"),
    ("nominating", r"nominating pair .* \(USE-CANDIDATE\)"),
    ("nominated", r"pair .* nominated by the peer \(USE-CANDIDATE\)"),
    ("selected", r"selected pair host \S+ -> host \S+ \(component 1\)"),
    ("completed", r"ICE completed"),
    ("closed", r"closed"),
]


def kinds(records: list[logging.LogRecord], name: str) -> list[str]:
    out = []
    for record in records:
        message = record.getMessage()
        if not message.startswith(name + " "):
            continue
        text = message[len(name) + 1 :]
        for kind, pattern in LINES:
            if re.fullmatch(pattern, text):
                out.append(kind)
                break
        else:
            raise AssertionError(f"unexpected line {message!r}")
    return out


def test_a_connect_logs_one_line_per_event_with_the_connections_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncice")
    a, b = pair(IceConfig())
    controlled = spawn(b.connect)
    a.connect()
    controlled.result(timeout=30)
    a.send(b"ping")
    assert b.recv(timeout=10) == b"ping"
    a.close()
    b.close()
    records = [r for r in caplog.records if r.name.startswith("syncice")]
    # Every line names its connection.
    names = {a._core.name, b._core.name}
    for record in records:
        assert record.getMessage().split(" ", 1)[0] in names, record.getMessage()
    pairs_of = {"controlling": a._core.name, "controlled": b._core.name}
    for role, name in pairs_of.items():
        lines = kinds(records, name)
        assert lines[:4] == [
            "local candidate",
            "gathering completed",
            "remote candidate",
            "end-of-candidates",
        ]
        assert lines[4] == "connect"
        assert lines[-3:] == ["selected", "completed", "closed"]
        assert ("nominating" if role == "controlling" else "nominated") in lines
        # frozen -> waiting -> in-progress -> succeeded at least.
        assert lines.count("pair") >= 3
    # Quiet by default: nothing at WARNING in a normal connect.
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    text = "\n".join(r.getMessage() for r in records)
    for conn in (a, b):
        assert conn.local_password not in text
