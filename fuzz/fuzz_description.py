"""Fuzz harnesses for signalled descriptions (:mod:`syncice.description`).

Invariant of every harness: whatever text or JSON a peer signals,
:meth:`IceDescription.parse` (and so ``set_remote_description()``) either
returns a description or raises :class:`ValueError`, nothing else; and a
description it returns reads back equal from each of its own forms.

For coverage-guided fuzzing, hand atheris ``fuzz_one_input_text``.
"""

from __future__ import annotations

import json

from candidate_strategies import candidate_lines, mutated_lines
from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st

from syncice.description import IceDescription

SEEDS = (
    "a=ice-ufrag:abcd\r\na=ice-pwd:pppppppppppppppppppppp\r\n",
    "a=ice-lite\na=ice-options:trickle renomination\na=ice-ufrag:x\na=ice-pwd:y\n"
    "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\na=end-of-candidates\n",
    '{"username": "abcd", "password": "p", "candidates": ["1 1 udp 1 1.2.3.4 5 typ'
    ' host"], "lite": true}',
    "v=0\r\nm=audio 9 RTP/AVP 0\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\n",
)
_ATTRIBUTES = st.sampled_from(
    [
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=ice-lite",
        "a=ice-options:",
        "a=end-of-candidates",
        "a=candidate:",
        "a=mid:",
        "m=",
        "",
    ]
)


def check_text(text: str) -> None:
    """The invariant, for one text."""
    try:
        desc = IceDescription.parse(text)
    except ValueError:
        return
    for form in (desc.to_sdp(), desc.to_json(), desc.to_dict()):
        assert IceDescription.parse(form) == desc


@examples(*SEEDS)
@given(st.text(max_size=400))
def fuzz_text(text: str) -> None:
    """Any text: a description, or a ValueError."""
    check_text(text)


@given(
    st.lists(
        st.tuples(
            _ATTRIBUTES,
            st.one_of(candidate_lines(), mutated_lines(), st.text(max_size=30)),
        ),
        max_size=12,
    ),
    st.sampled_from(["\r\n", "\n", "\r"]),
)
def fuzz_sdp_lines(lines: list[tuple[str, str]], end: str) -> None:
    """Lines of the attributes read, with near-valid values."""
    check_text(end.join(name + value for name, value in lines))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "username": _JSON | st.text(max_size=8),
            "password": _JSON | st.text(max_size=8),
            "candidates": st.lists(candidate_lines() | mutated_lines(), max_size=3)
            | _JSON,
            "end_of_candidates": _JSON,
            "lite": _JSON,
            "trickle": _JSON,
        },
    )
)
def fuzz_json(data: dict[str, object]) -> None:
    """JSON objects with the description's keys and any values: the JSON
    text gives a description or a ValueError (TypeError is for Python
    callers handing a wrong type, never for JSON's)."""
    try:
        check_text(json.dumps(data))
    except TypeError as exc:
        # from_dict raises TypeError for a value of a wrong JSON type; as
        # JSON text, that is a bad description all the same.
        raise AssertionError(f"TypeError for JSON text: {exc}") from None


fuzz_one_input_text = atheris_target(fuzz_text)
