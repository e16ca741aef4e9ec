"""``IceConfig`` (``syncice.ice``): every field is checked when a config is made.

A wrong type raises :class:`TypeError`, a value out of range :class:`ValueError`,
each naming the field (issue 13, point 5: ``IceConfig(ta=float("nan"))`` and
``IceConfig(consent_timeout=0)`` were accepted, the latter closing right
after connect).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from syncice.ice import IceConfig

#: Durations and other numbers: ints or floats, finite.
NUMBERS = [
    "ta",
    "rto",
    "rto_max",
    "gather_timeout",
    "gather_rto_max",
    "nomination_wait",
    "nomination_timeout",
    "consent_interval",
    "consent_timeout",
]
#: Counts: ints only.
INTS = [
    "max_sends",
    "final_wait",
    "max_remote_candidates",
    "max_pairs",
    "max_early_checks",
]
#: Switches: bools only.
BOOLS = ["batch_io", "ice_lite", "tcp_simultaneous_open"]
#: Socket buffer sizes: None or an int from 1 to 2**31 - 1.
SIZES = ["so_rcvbuf", "so_sndbuf"]


def test_every_field_is_in_a_table() -> None:
    assert sorted(NUMBERS + INTS + BOOLS + SIZES) == sorted(
        f.name for f in dataclasses.fields(IceConfig)
    )


@pytest.mark.parametrize("field", BOOLS)
@pytest.mark.parametrize(
    ("value", "kind"), [(1, "int"), ("yes", "str"), (None, "NoneType")]
)
def test_switches_take_bools_only(field: str, value: object, kind: str) -> None:
    with pytest.raises(TypeError, match=f"^{field} must be a bool, not {kind}$"):
        IceConfig(**{field: value})  # type: ignore[arg-type]


def test_defaults() -> None:
    config = IceConfig()
    assert dataclasses.asdict(config) == {
        "ta": 0.02,
        "rto": 0.5,
        "max_sends": 18,
        "final_wait": 16,
        "rto_max": 2.0,
        "gather_timeout": 5.0,
        "gather_rto_max": 0.5,
        "nomination_wait": 0.5,
        "nomination_timeout": 10.0,
        "consent_interval": 5.0,
        "consent_timeout": 30.0,
        "max_remote_candidates": 100,
        "max_pairs": 100,
        "max_early_checks": 100,
        "batch_io": True,
        "ice_lite": False,
        "so_rcvbuf": None,
        "so_sndbuf": None,
        "tcp_simultaneous_open": False,
    }


@pytest.mark.parametrize("field", SIZES)
def test_buffer_sizes(field: str) -> None:
    config = IceConfig(**{field: 2**31 - 1})  # type: ignore[arg-type]
    assert getattr(config, field) == 2**31 - 1
    for value, kind in [(1.0, "float"), (True, "bool"), ("1", "str")]:
        with pytest.raises(TypeError, match=f"^{field} must be an int, not {kind}$"):
            IceConfig(**{field: value})  # type: ignore[arg-type]
    for bad in (0, -1, 2**31):
        with pytest.raises(ValueError, match=f"^{field} must be from 1 to "):
            IceConfig(**{field: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        *((f, v, k) for f in NUMBERS for v, k in [("1", "str"), (True, "bool")]),
        *((f, None, "NoneType") for f in NUMBERS if f != "rto_max"),
        *(
            (f, v, k)
            for f in INTS
            for v, k in [
                (1.0, "float"),
                ("1", "str"),
                (True, "bool"),
                (None, "NoneType"),
            ]
        ),
        ("ta", [0.02], "list"),
        ("max_pairs", 100.5, "float"),
    ],
)
def test_wrong_types_raise_type_error(field: str, value: object, kind: str) -> None:
    expected = "an int" if field in INTS else "an int or a float"
    with pytest.raises(TypeError, match=f"^{field} must be {expected}, not {kind}$"):
        IceConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", NUMBERS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_numbers_raise_value_error(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be a finite number, not "):
        IceConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # RFC 8445 §14.2: Ta no shorter than 5 ms.
        ({"ta": 0.0049}, r"ta must be at least 0.005 s \(RFC 8445 §14.2\), not 0.0049"),
        ({"ta": 0}, "ta must be at least 0.005 s"),
        ({"ta": -1.0}, "ta must be at least 0.005 s"),
        ({"rto": 0.0}, "rto must be positive, not 0.0"),
        ({"rto": -0.5}, "rto must be positive"),
        ({"max_sends": 0}, "max_sends must be from 1 to 100, not 0"),
        ({"max_sends": 101}, "max_sends must be from 1 to 100, not 101"),
        ({"max_sends": 10**30}, "max_sends must be from 1 to 100"),
        ({"final_wait": -1}, "final_wait must be from 0 to 100, not -1"),
        ({"final_wait": 101}, "final_wait must be from 0 to 100"),
        ({"rto": 1.0, "rto_max": 0.5}, r"rto_max must be at least rto \(1\), not 0.5"),
        ({"rto_max": 0.0}, "rto_max must be at least rto"),
        ({"rto_max": -2.0}, "rto_max must be at least rto"),
        ({"gather_rto_max": 0.4}, r"gather_rto_max must be at least rto \(0.5\)"),
        ({"rto": 1.0, "rto_max": 1.0}, "gather_rto_max must be at least rto"),
        # Zero would abandon every STUN request as soon as it is sent.
        ({"gather_timeout": 0}, "gather_timeout must be positive"),
        ({"gather_timeout": -1.0}, "gather_timeout must be positive"),
        ({"nomination_wait": -0.1}, "nomination_wait must not be negative"),
        # The controlled side would give up before the controlling one
        # nominates a pair it waited for.
        ({"nomination_timeout": 0.5}, r"nomination_timeout must be longer than "),
        (
            {"nomination_wait": 10.0},
            r"nomination_timeout must be longer than nomination_wait \(10\), not 10.0",
        ),
        ({"nomination_timeout": 0}, "nomination_timeout must be longer than"),
        ({"nomination_timeout": -1}, "nomination_timeout must be longer than"),
        # Zero would send a consent check at every timer (a busy loop).
        ({"consent_interval": 0}, "consent_interval must be positive, not 0"),
        ({"consent_interval": -5.0}, "consent_interval must be positive"),
        # The example: consent would be lost at once.
        ({"consent_timeout": 0}, "consent_timeout must be longer than 1.2 times"),
        ({"consent_timeout": -30.0}, "consent_timeout must be longer than 1.2 times"),
        # Consent could expire between two consent checks, all answered.
        (
            {"consent_timeout": 6.0},
            r"consent_timeout must be longer than 1.2 times consent_interval \(6\), "
            "not 6.0",
        ),
        ({"consent_interval": 30.0}, "consent_timeout must be longer than 1.2 times"),
        ({"max_remote_candidates": 0}, "max_remote_candidates must be from 1 to 10000"),
        ({"max_pairs": 0}, "max_pairs must be from 1 to 10000, not 0"),
        ({"max_pairs": 10_001}, "max_pairs must be from 1 to 10000, not 10001"),
        ({"max_early_checks": -1}, "max_early_checks must be from 1 to 10000"),
        ({"max_early_checks": 10**6}, "max_early_checks must be from 1 to 10000"),
    ],
)
def test_out_of_range_values_raise_value_error(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        IceConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ta": 0.005},
        {"ta": 1},  # ints are numbers too
        {"rto": 0.01, "gather_rto_max": 0.01, "rto_max": 0.01},
        {"rto_max": None},  # no cap
        {"rto": 2, "rto_max": 2, "gather_rto_max": 2},
        {"max_sends": 1, "final_wait": 0},
        {"max_sends": 100, "final_wait": 100},
        {"gather_timeout": 0.001},
        {"nomination_wait": 0},  # nominate the first valid pair at once
        {"nomination_wait": 9.999},
        {"nomination_timeout": 0.501},
        {"nomination_wait": 30.0, "nomination_timeout": 60},
        {"consent_interval": 0.05, "consent_timeout": 0.5},
        {"consent_interval": 5.0, "consent_timeout": 6.001},
        {"max_remote_candidates": 1, "max_pairs": 1, "max_early_checks": 1},
        {
            "max_remote_candidates": 10_000,
            "max_pairs": 10_000,
            "max_early_checks": 10_000,
        },
    ],
)
def test_edge_values_are_accepted(kwargs: dict[str, object]) -> None:
    config = IceConfig(**kwargs)  # type: ignore[arg-type]
    for name, value in kwargs.items():
        assert getattr(config, name) == value


def test_float_subclasses_and_int_subclasses_are_numbers() -> None:
    class Seconds(float):
        pass

    class Count(int):
        pass

    config = IceConfig(ta=Seconds(0.05), max_pairs=Count(7))
    assert (config.ta, config.max_pairs) == (0.05, 7)


def test_a_config_is_frozen() -> None:
    config = IceConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ta = 1.0  # type: ignore[misc]
    # replace() checks again.
    with pytest.raises(ValueError, match=r"^ta must be a finite number"):
        dataclasses.replace(config, ta=math.nan)
