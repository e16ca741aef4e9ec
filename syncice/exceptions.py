"""Every error a syncice user can catch.

Each leaf also inherits the builtin that aioice callers already catch
(:class:`ValueError`, :class:`ConnectionError`, :class:`TimeoutError`), so code
written for aioice keeps working, while ``except IceError`` catches everything
syncice raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "CandidateError",
    "ComponentError",
    "ConnectionClosedError",
    "IceConnectionError",
    "IceError",
    "IceTimeoutError",
    "NegotiationFailedError",
    "NotConnectedError",
    "StunError",
    "StunParseError",
]


class IceError(Exception):
    """Base class of every error raised by syncice."""


class StunError(IceError):
    """A STUN message or exchange went wrong."""


class StunParseError(StunError, ValueError):
    """Bytes given to the STUN codec are not a well-formed message.

    :func:`syncice.stun.parse_message` raises this and nothing else, whatever
    the input bytes are.
    """


class CandidateError(IceError, ValueError):
    """A candidate, or its SDP line, is malformed.

    The message names the offending field.
    """


class IceConnectionError(IceError, ConnectionError):
    """The connection cannot do what was asked (aioice: :class:`ConnectionError`)."""


class NotConnectedError(IceConnectionError):
    """``send``/``recv`` before :meth:`~syncice.Connection.connect` succeeded,
    or ``connect`` before gathering or without remote credentials."""


class ComponentError(IceConnectionError, ValueError):
    """``sendto()`` named a component the connection does not have.

    aioice raises :class:`ConnectionError` there ("not connected"), so this
    is both: code written for aioice and code written for syncice, which
    checks arguments with :class:`ValueError`, catch it.
    """


class NegotiationFailedError(IceConnectionError):
    """ICE negotiation failed: no candidate pair succeeded or was nominated."""


class ConnectionClosedError(IceConnectionError):
    """The connection was closed locally, or its path was lost.

    :ivar reason: why, for example ``"closed"``, ``"consent expired"``,
        ``"TURN relay lost: closed by the server"`` or ``"internal error"``.
    """

    def __init__(self, message: str, reason: str = "closed") -> None:
        super().__init__(message)
        self.reason = reason


class IceTimeoutError(IceError, TimeoutError):
    """A ``timeout=`` given to a blocking call ran out.

    Only the call ends: protocol state is unchanged and nothing is lost.
    """
