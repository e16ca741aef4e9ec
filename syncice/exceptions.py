"""Every error a syncice user can catch.

Each leaf also inherits the builtin that aioice callers already catch
(:class:`ValueError`, :class:`ConnectionError`, :class:`TimeoutError`), so code
written for aioice keeps working, while ``except IceError`` catches everything
syncice raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "CandidateError",
    "IceError",
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
