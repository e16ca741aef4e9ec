"""The exception hierarchy of STYLE §5: every leaf is also the builtin that
aioice raises in its place, and carries what a caller needs to act."""

from __future__ import annotations

import pytest

from syncice import exceptions as exc
from syncice.stun import Class, Message, Method


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (exc.StunParseError, ValueError),
        (exc.CandidateError, ValueError),
        (exc.TransactionTimeout, TimeoutError),
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


def test_transaction_failed_carries_the_response_and_its_code() -> None:
    response = Message(
        Method.ALLOCATE, Class.ERROR, attributes={"ERROR-CODE": (401, "Unauthorized")}
    )
    error = exc.TransactionFailed("allocate refused", response)
    assert error.response is response
    assert error.error_code == 401
    assert isinstance(error, exc.TransactionError)
    assert exc.TransactionFailed("no response object").error_code is None


def test_transaction_timeout_has_no_response() -> None:
    error = exc.TransactionTimeout("no answer")
    assert error.response is None
    assert str(error) == "no answer"


def test_turn_error_and_closed_reason() -> None:
    assert exc.TurnError("refused", 403).error_code == 403
    assert exc.TurnError("refused").error_code is None
    assert exc.ConnectionClosedError("closed").reason == "closed"
    assert (
        exc.ConnectionClosedError("lost", "consent expired").reason == "consent expired"
    )
