"""The exception hierarchy of STYLE §5: every leaf is also the builtin that
aioice raises in its place, and carries what a caller needs to act."""

from __future__ import annotations

import pytest

from syncice import exceptions as exc


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (exc.StunParseError, ValueError),
        (exc.CandidateError, ValueError),
        (exc.IceTimeoutError, TimeoutError),
        (exc.IceConnectionError, ConnectionError),
        (exc.NotConnectedError, ConnectionError),
        (exc.NegotiationFailedError, ConnectionError),
        (exc.ConnectionClosedError, ConnectionError),
        # aioice raises ConnectionError for an unknown component, syncice
        # checked it with ValueError: both catch it.
        (exc.ComponentError, ConnectionError),
        (exc.ComponentError, ValueError),
    ],
)
def test_leaves_are_also_the_builtins_aioice_raises(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, builtin)
    assert issubclass(error, exc.IceError)


def test_every_name_is_an_ice_error() -> None:
    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.IceError), name


def test_closed_reason() -> None:
    assert exc.ConnectionClosedError("closed").reason == "closed"
    assert (
        exc.ConnectionClosedError("lost", "consent expired").reason == "consent expired"
    )


def test_no_error_is_exported_that_nothing_raises() -> None:
    # TransactionError, TransactionFailed, TransactionTimeout and TurnError
    # were never raised: the core handles failed transactions and refused
    # allocations itself. They are gone, from syncice too.
    import syncice

    for name in ("TransactionError", "TransactionFailed", "TransactionTimeout"):
        assert not hasattr(exc, name)
        assert name not in syncice.__all__
    assert not hasattr(exc, "TurnError")
    assert "TurnError" not in syncice.__all__
