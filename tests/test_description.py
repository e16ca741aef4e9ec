"""The signalling helpers: :class:`syncice.description.IceDescription` and
both facades' ``local_description()`` / ``set_remote_description()``."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import syncice
import syncice.asyncio as shim
from syncice.candidate import Candidate
from syncice.description import IceDescription
from tests.loopguard import SHIM, guarded_run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import contextlib

from candidate_strategies import candidates

LOOPBACK = ["127.0.0.1"]
GUARD = 10.0
ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
HOST = Candidate.from_sdp("1 1 udp 2130706431 192.0.2.1 5000 typ host")
SRFLX = Candidate.from_sdp(
    "2 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 192.0.2.1 rport 5000"
)


def credentials(low: int) -> st.SearchStrategy[str]:
    return st.text(ICE_CHARS, min_size=low, max_size=40)


descriptions = st.builds(
    IceDescription,
    username=credentials(1),
    password=credentials(1),
    candidates=st.lists(candidates(), max_size=5).map(tuple),
    end_of_candidates=st.booleans(),
    lite=st.booleans(),
    trickle=st.booleans(),
)


# --- round trips ------------------------------------------------------------


@given(descriptions)
def test_every_form_reads_back_equal(desc: IceDescription) -> None:
    assert IceDescription.from_dict(desc.to_dict()) == desc
    assert IceDescription.from_json(desc.to_json()) == desc
    assert IceDescription.from_sdp(desc.to_sdp()) == desc
    for form in (desc, desc.to_dict(), desc.to_json(), desc.to_sdp()):
        assert IceDescription.parse(form) == desc
    # And across forms: SDP read back, written as JSON, read back.
    again = IceDescription.from_json(IceDescription.from_sdp(desc.to_sdp()).to_json())
    assert again == desc
    assert json.loads(desc.to_json()) == desc.to_dict()


@given(descriptions)
def test_sdp_lines_survive_lf_endings_and_other_sdp_lines(desc: IceDescription) -> None:
    lines = desc.to_sdp().split("\r\n")
    text = "v=0\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\na=mid:0\n"
    assert IceDescription.from_sdp(text + "\n".join(lines)) == desc


def test_the_sdp_lines() -> None:
    desc = IceDescription(
        username="abcd",
        password="p" * 22,
        candidates=[HOST, SRFLX],  # type: ignore[arg-type]
        end_of_candidates=True,
        lite=True,
        trickle=True,
    )
    assert desc.candidates == (HOST, SRFLX)  # a list becomes a tuple
    assert desc.to_sdp().split("\r\n") == [
        "a=ice-lite",
        "a=ice-options:trickle",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:" + "p" * 22,
        "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host",
        "a=candidate:2 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr"
        " 192.0.2.1 rport 5000",
        "a=end-of-candidates",
        "",
    ]
    assert desc.to_dict() == {
        "username": "abcd",
        "password": "p" * 22,
        "candidates": [HOST.to_sdp(), SRFLX.to_sdp()],
        "end_of_candidates": True,
        "lite": True,
        "trickle": True,
    }
    bare = IceDescription.from_sdp("a=ice-ufrag:abcd\r\na=ice-pwd:" + "p" * 22)
    assert bare == IceDescription(username="abcd", password="p" * 22)
    assert not (bare.lite)
    assert not (bare.trickle)
    assert not (bare.end_of_candidates)


# --- errors: the bad line or field is named ----------------------------------

GOOD = "a=ice-ufrag:abcd\r\na=ice-pwd:" + "p" * 22 + "\r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "a=candidate:1 1 udp x 1.2.3.4 5 typ host", r"line 3 'a=candidate:1 1"),
        (GOOD + "hello", r"line 3 'hello': not an SDP line"),
        ("a=ice-ufrag:ab cd\n" + GOOD, r"line 1 'a=ice-ufrag:ab cd': ice-ufrag"),
        (GOOD + "a=ice-ufrag:efgh", r"line 3 'a=ice-ufrag:efgh': a second"),
        (GOOD + "a=ice-lite:yes", r"line 3 'a=ice-lite:yes': a=ice-lite takes no"),
        (GOOD + "a=end-of-candidates:1", r"line 3 .*takes no value"),
        (GOOD + "a=ice-options:trickle  x", r"line 3 .*ice-options"),
        ("a=ice-pwd:" + "p" * 22, r"no a=ice-ufrag line"),
        ("a=ice-ufrag:abcd", r"no a=ice-pwd line"),
    ],
)
def test_a_bad_sdp_line_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IceDescription.from_sdp(text)
    with pytest.raises(ValueError, match=message):
        IceDescription.parse(text)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"username": "abcd"}, ValueError, "no 'password'"),
        ({"username": "abcd", "password": "p" * 22, "pwd": 1}, ValueError, "'pwd'"),
        (
            {
                "username": "abcd",
                "password": "p" * 22,
                "candidates": [HOST.to_sdp(), "x"],
            },
            ValueError,
            r"candidates\[1\] 'x'",
        ),
        ({"username": "abcd", "password": "p" * 22, "lite": 1}, ValueError, "lite"),
        ({"username": "ab:c", "password": "p" * 22}, ValueError, "username"),
        ({"username": 5, "password": "p" * 22}, ValueError, "username"),
        ({"username": "a", "password": "p", "candidates": "x"}, ValueError, "list"),
        (
            {"username": "a", "password": "p", "candidates": [5]},
            ValueError,
            r"candidates\[0\] must be a str",
        ),
    ],
)
def test_a_bad_field_is_named(
    data: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        IceDescription.from_dict(data)
    with pytest.raises(error, match=message):
        IceDescription.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["{", "[1]", '{"a": }'])
def test_bad_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="JSON"):
        IceDescription.from_json(text)


def test_deep_json_is_a_value_error() -> None:
    deep = '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ValueError, match="JSON"):
        IceDescription.from_json(deep)


def test_bounds() -> None:
    """A peer's description is untrusted: at most 10,000 lines or candidates."""
    with pytest.raises(ValueError, match="more than 10000 candidates"):
        IceDescription(username="abcd", password="p", candidates=(HOST,) * 10_001)
    lines = ["x"] * 10_001
    with pytest.raises(ValueError, match="more than 10000 candidates"):
        IceDescription.from_dict(
            {"username": "a", "password": "p", "candidates": lines}
        )
    with pytest.raises(ValueError, match="more than 10000 lines"):
        IceDescription.from_sdp(GOOD + "\n" * 10_000)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: IceDescription.from_dict(["username"]), "must be a mapping"),  # type: ignore[arg-type]
        (lambda: IceDescription.from_json(b"{}"), "JSON text must be a str"),  # type: ignore[arg-type]
        (lambda: IceDescription.from_sdp(None), "SDP text must be a str"),  # type: ignore[arg-type]
        (
            lambda: IceDescription(username="a", password="p", candidates=5),  # type: ignore[arg-type]
            "iterable of Candidate",
        ),
        (
            lambda: IceDescription(username="a", password="p", candidates="x"),  # type: ignore[arg-type]
            "iterable of Candidate",
        ),
    ],
)
def test_wrong_types(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_parse_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="a description must be"):
        IceDescription.parse(b"a=ice-ufrag:abcd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Candidate"):
        IceDescription(username="abcd", password="p", candidates=("x",))  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_any_text_reads_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        IceDescription.parse(text)


# --- the facades ----------------------------------------------------------------


def test_blocking_connections_connect_through_descriptions() -> None:
    a = syncice.Connection(ice_controlling=True, local_addresses=LOOPBACK)
    b = syncice.Connection(ice_controlling=False, local_addresses=LOOPBACK)
    try:
        before = a.local_description()
        assert before.username == a.local_username
        assert before.password == a.local_password
        assert before.candidates == ()
        assert not before.end_of_candidates
        assert before.trickle
        assert not before.lite
        for c in (a, b):
            c.gather_candidates(timeout=GUARD)
        desc = a.local_description()
        assert desc.candidates == tuple(a.local_candidates)
        assert desc.end_of_candidates
        a.set_remote_description(b.local_description().to_json())
        b.set_remote_description(desc.to_sdp())
        assert b.remote_username == a.local_username
        assert b.remote_password == a.local_password
        assert b.remote_candidates == a.local_candidates
        t = threading.Thread(target=b.connect, kwargs={"timeout": GUARD})
        t.start()
        a.connect(timeout=GUARD)
        t.join(GUARD)
        a.send(b"\x80x")
        assert b.recv(timeout=GUARD) == b"\x80x"
        # After end-of-candidates, more candidates are refused, whole.
        with pytest.raises(ValueError, match="after end-of-candidates"):
            b.set_remote_description(desc)
    finally:
        a.close()
        b.close()


def test_a_bad_description_applies_nothing() -> None:
    a = syncice.Connection(ice_controlling=True, local_addresses=LOOPBACK)
    try:
        text = (
            "a=ice-ufrag:abcd\na=ice-pwd:" + "p" * 22 + "\n"
            "a=candidate:" + HOST.to_sdp() + "\n"
            "a=candidate:1 1 udp 1 1.2.3.4 99999 typ host\n"
            "a=end-of-candidates\n"
        )
        with pytest.raises(ValueError, match=r"line 4 'a=candidate:1 1 udp 1 1\.2"):
            a.set_remote_description(text)
        assert a.remote_username is None
        assert a.remote_password is None
        assert a.remote_candidates == []
        a.add_remote_candidate(HOST)  # end-of-candidates was not applied
        assert a.remote_candidates == [HOST]
    finally:
        a.close()


def test_asyncio_connections_connect_through_descriptions() -> None:
    async def main() -> None:
        a = shim.Connection(ice_controlling=True, local_addresses=LOOPBACK)
        b = shim.Connection(ice_controlling=False, local_addresses=LOOPBACK)
        try:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            a.set_remote_description(b.local_description().to_sdp())
            b.set_remote_description(a.local_description().to_dict())
            assert b.remote_candidates == a.local_candidates
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            await a.send(b"\x80x")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"\x80x"
            with pytest.raises(ValueError, match="line 1"):
                a.set_remote_description("nonsense")
        finally:
            await a.close()
            await b.close()

    guarded_run(main(), allow=SHIM)
