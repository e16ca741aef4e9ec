"""``python -m syncice demo``: STUN over real UDP sockets, on loopback only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from syncice import __main__ as cli
from syncice.stun import (
    Address,
    Attributes,
    Class,
    Message,
    Method,
    parse_message,
    short_term_key,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = short_term_key("a-password-of-twenty-two")
SOURCE = ("127.0.0.1", 40000)


def check_output(text: str, count: int) -> None:
    """Every request's mapped address is the client's own, then a median."""
    client = re.search(r"^client\s+(127\.0\.0\.1:\d+)$", text, re.MULTILINE)
    assert client is not None, text
    mapped = re.findall(
        r"^request \d+: mapped address (\S+), rtt [\d.]+ ms$", text, re.MULTILINE
    )
    assert mapped == [client.group(1)] * count
    assert re.search(
        rf"^median rtt [\d.]+ ms over {count} requests$", text, re.MULTILINE
    )


def test_demo_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncice", "demo", "--count", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_output(result.stdout, 3)


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--count", "2"]) == 0
    check_output(capsys.readouterr().out, 2)


@pytest.mark.parametrize("count", ["0", "-1", "many"])
def test_demo_rejects_a_bad_count(count: str) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--count", count])
    assert info.value.code == 2


def test_demo_fails_cleanly_on_a_tampered_response(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def tampered(data: bytes, source: Address, ufrag: str, key: bytes) -> bytes:
        reply = answer(data, source, ufrag, key)
        assert reply is not None
        return parse_message(reply).encode(key=b"not " + key, fingerprint=True)

    answer = cli.answer
    monkeypatch.setattr(cli, "answer", tampered)
    assert cli.main(["demo"]) == 1
    assert "MESSAGE-INTEGRITY does not check out" in capsys.readouterr().err


def test_demo_fails_cleanly_without_a_response(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "TIMEOUT", 0.1)
    monkeypatch.setattr(cli, "answer", lambda *args: None)
    assert cli.main(["demo"]) == 1
    assert "no response within 0.1 s" in capsys.readouterr().err


def request(attributes: Attributes | None = None) -> Message:
    if attributes is None:
        attributes = {"USERNAME": "demo:client", "PRIORITY": 1}
    return Message(Method.BINDING, Class.REQUEST, attributes=attributes)


def test_answer_maps_the_source_address() -> None:
    req = request()
    reply = cli.answer(req.encode(key=KEY, fingerprint=True), SOURCE, "demo", KEY)
    assert reply is not None
    assert cli.check_response(reply, req, KEY) == SOURCE


@pytest.mark.parametrize(
    ("req", "key", "fingerprint", "code"),
    [
        (request(), KEY, False, 400),
        (request(), None, True, 400),
        (request({"PRIORITY": 1}), KEY, True, 400),
        (request({"USERNAME": "other:client"}), KEY, True, 401),
        (request(), b"wrong", True, 401),
    ],
)
def test_answer_refuses_bad_requests(
    req: Message, key: bytes | None, fingerprint: bool, code: int
) -> None:
    reply = cli.answer(
        req.encode(key=key, fingerprint=fingerprint), SOURCE, "demo", KEY
    )
    assert reply is not None
    with pytest.raises(cli.DemoError, match=f"error response {code} "):
        cli.check_response(reply, req, KEY)


@pytest.mark.parametrize(
    "data",
    [
        b"not stun at all, but long enough",
        request().encode(fingerprint=True)[:-1],
        Message(Method.BINDING, Class.INDICATION).encode(fingerprint=True),
        Message(Method.ALLOCATE, Class.REQUEST).encode(fingerprint=True),
    ],
)
def test_answer_drops_other_datagrams(data: bytes) -> None:
    assert cli.answer(data, SOURCE, "demo", KEY) is None


def response(
    req: Message, cls: Class = Class.SUCCESS, attributes: Attributes | None = None
) -> Message:
    return Message(req.method, cls, req.transaction_id, attributes=attributes)


REQ = request()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x17" * 40, "not a STUN message"),
        (b"\x00\x01\x00\x01\x21\x12\xa4\x42" + bytes(12), "malformed response"),
        (Message(Method.BINDING, Class.SUCCESS).encode(), "transaction ID"),
        (response(REQ, Class.ERROR).encode(), "error response 0 no ERROR-CODE"),
        (response(REQ, Class.INDICATION).encode(), "not a Binding success"),
        (
            response(REQ, attributes={"XOR-MAPPED-ADDRESS": SOURCE}).encode(key=KEY),
            "no FINGERPRINT",
        ),
        (response(REQ).encode(key=b"x", fingerprint=True), "MESSAGE-INTEGRITY"),
        (response(REQ).encode(key=KEY, fingerprint=True), "no XOR-MAPPED-ADDRESS"),
    ],
)
def test_check_response_rejects(data: bytes, problem: str) -> None:
    with pytest.raises(cli.DemoError, match=problem):
        cli.check_response(data, REQ, KEY)
