"""Fuzz harnesses for candidate lines (:mod:`syncice.candidate`), one invariant each.

pytest runs them with the ``ci`` Hypothesis profile; ``fuzz/deep.py`` runs
them for a set time. For coverage-guided fuzzing, hand atheris
``fuzz_one_input`` (:func:`fuzz_from_sdp`'s ``.hypothesis.fuzz_one_input``,
which reads Hypothesis choice sequences), or :func:`check_line_bytes`, which
takes raw bytes and so can start from the seed corpus::

    import atheris, sys
    sys.path[:0] = [".", "fuzz"]
    import fuzz_candidate
    atheris.Setup(sys.argv, fuzz_candidate.check_line_bytes)
    atheris.Fuzz()

Seed corpus, ``fuzz/corpus/candidate/``: one valid line per ``.txt`` file
(host, srflx, relay, prflx, TCP, IPv6, mDNS, prefixed, browser-style
extension attributes). :func:`test_corpus_parses` checks each; the harnesses
use them as explicit examples and mutation seeds.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from candidate_strategies import (
    address_like,
    candidates,
    canonical_line,
    fields,
    foundations,
    mutated_lines,
    prefixed_lines,
    rebuild,
    tokens,
)
from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st

from syncice.candidate import Candidate
from syncice.exceptions import CandidateError

CORPUS = Path(__file__).parent / "corpus" / "candidate"
SEEDS = sorted(
    path.read_text(encoding="ascii").rstrip("\n") for path in CORPUS.glob("*.txt")
)
#: The fields that error messages start with.
FIELDS = frozenset(
    {"foundation", "component", "transport", "priority", "host", "port", "typ"}
    | {"type", "raddr", "rport", "tcptype", "generation", "extension"}
)


def outcome(parse: Callable[[str], Candidate], text: str) -> Candidate | str:
    """What ``parse(text)`` gives: the candidate, or the CandidateError's message."""
    try:
        return parse(text)
    except CandidateError as exc:
        return str(exc)


def check_line(text: str) -> Candidate | None:
    """``Candidate.from_sdp(text)``, with every promise about it checked.

    :returns: the candidate, or None if the line was rejected.
    """
    candidate = outcome(Candidate.from_sdp, text)
    # The reference parser agrees, down to the words of the error.
    reference = outcome(Candidate._parse, text)
    if isinstance(candidate, str):
        assert candidate.partition(":")[0] in FIELDS, candidate
        assert reference == candidate
        return None
    assert isinstance(reference, Candidate)
    assert fields(reference) == fields(candidate)
    bare = re.sub(r"^(a=)?candidate:", "", text)
    assert candidate.to_sdp() == bare
    assert reference == candidate
    again = Candidate.from_sdp(bare)
    assert again == candidate
    assert fields(again) == fields(candidate)
    assert hash(again) == hash(candidate)
    rebuilt = rebuild(candidate)
    assert fields(rebuilt) == fields(candidate)
    assert rebuilt.to_sdp() == canonical_line(bare)
    return candidate


def check_line_bytes(data: bytes) -> None:
    """:func:`check_line` on raw bytes, for byte-level fuzzers."""
    check_line(data.decode("utf-8", "surrogateescape"))


# --- from_sdp ------------------------------------------------------------------


@given(st.one_of(st.text(), mutated_lines(), prefixed_lines()))
@examples(*SEEDS, "", " ", "candidate:", "a=candidate:", "\x00" * 9)
def fuzz_from_sdp(text: str) -> None:
    """from_sdp raises CandidateError naming a field, as the reference parser
    does, or returns a candidate that gives the line back and parses back
    equal."""
    check_line(text)


@given(prefixed_lines())
@examples(*SEEDS)
def fuzz_valid_lines(line: str) -> None:
    """Every valid line parses, to_sdp() gives back its bare form, and the
    constructor agrees on its fields."""
    assert check_line(line) is not None


@given(candidates())
def fuzz_roundtrip(candidate: Candidate) -> None:
    """A constructed candidate's line parses back to an equal candidate with
    equal fields."""
    line = candidate.to_sdp()
    assert check_line(line) == candidate
    assert fields(Candidate.from_sdp(line)) == fields(candidate)
    assert line == canonical_line(line)  # the constructor's order


_INTS = st.one_of(
    st.integers(-3, 300),
    st.integers(),
    st.sampled_from([65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32]),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
_TEXTS = st.one_of(st.text(max_size=8), tokens(), st.integers(0, 9), st.none())


_ARGUMENTS = st.tuples(
    st.one_of(foundations(), _TEXTS),
    _INTS,
    st.one_of(st.sampled_from(["udp", "tcp"]), _TEXTS),
    _INTS,
    st.one_of(address_like(), _TEXTS),
    _INTS,
    st.one_of(st.sampled_from(["host", "srflx"]), _TEXTS),
    st.one_of(st.none(), address_like()),
    st.one_of(st.none(), _INTS),
    st.one_of(st.none(), st.sampled_from(["active", "passive", "so"]), _TEXTS),
    st.one_of(st.none(), _INTS),
    st.lists(st.one_of(st.tuples(_TEXTS, _TEXTS), _TEXTS), max_size=3),
)


@given(_ARGUMENTS)
def fuzz_constructor(arguments: tuple[Any, ...]) -> None:
    """The constructor raises CandidateError or TypeError, or builds a
    candidate whose line parses back to the same fields."""
    *positional, extensions = arguments
    try:
        candidate = Candidate(*positional, extensions=extensions)
    except CandidateError as exc:
        field = str(exc).partition(":")[0]
    except TypeError:
        return
    else:
        assert fields(candidate) == (*positional, tuple(extensions))
        parsed = check_line(candidate.to_sdp())
        assert parsed is not None
        assert fields(parsed) == fields(candidate)
        return
    assert field in FIELDS | {"related_address", "related_port"}


# --- addresses -----------------------------------------------------------------


def reference_address(text: str) -> bool:
    """Whether ``text`` is a connection address, decided apart from the module:
    :mod:`ipaddress` for IP addresses, RFC 1123 and RFC 3696 for names."""
    try:
        return "%" not in text and ipaddress.ip_address(text) is not None
    except ValueError:
        pass
    labels = text.split(".")
    ldh = set(string.ascii_letters + string.digits + "-")
    return (
        len(text) <= 253
        and all(
            0 < len(label) <= 63
            and set(label) <= ldh
            and not label.startswith("-")
            and not label.endswith("-")
            for label in labels
        )
        and any(c.isalpha() for c in labels[-1])
    )


@given(address_like())
@examples("::", "::1", "1::", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::3:4:5:6:7:8")
@examples(
    "1:2:3:4:5:6:7::8", "1::2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4"
)
@examples("1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "1:2:3:4:5::1.2.3.4", "1.2.3.04")
def fuzz_addresses(text: str) -> None:
    """A host is accepted exactly when ipaddress reads it as an IP address
    (without zone) or it is a host name of LDH labels with a letter last."""
    line = f"1 1 udp 1 {text} 9 typ host"
    expected = reference_address(text) and " " not in text
    try:
        candidate = Candidate.from_sdp(line)
    except CandidateError:
        assert not expected, text
    else:
        assert expected, text
        assert candidate.host == text


# --- the seed corpus -----------------------------------------------------------


def test_corpus_parses() -> None:
    """Every corpus file holds one valid line, and passes the harness checks."""
    assert len(SEEDS) >= 8
    for path in sorted(CORPUS.iterdir()):
        assert path.suffix == ".txt", f"{path.name}: corpus files end in .txt"
        text = path.read_text(encoding="ascii")
        assert text.count("\n") == 1, path.name
        assert text.endswith("\n"), path.name
        assert check_line(text.rstrip("\n")) is not None, path.name


# Entry points for atheris or AFL (see the module docstring).
fuzz_one_input = atheris_target(fuzz_from_sdp)
fuzz_one_input_from_sdp = fuzz_one_input
fuzz_one_input_valid_lines = atheris_target(fuzz_valid_lines)
fuzz_one_input_roundtrip = atheris_target(fuzz_roundtrip)
fuzz_one_input_constructor = atheris_target(fuzz_constructor)
fuzz_one_input_addresses = atheris_target(fuzz_addresses)
