"""The signalling helpers of both facades: a connection's
:class:`~syncice.description.IceDescription`, and the peer's applied.

They run on a caller's thread (or an event loop) and do no I/O: what they
hand the connection goes through the facade core's own verbs.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._facade import ConnectionCore
from ._lite import BOTH_LITE
from .description import IceDescription
from .exceptions import NegotiationFailedError

__all__ = ["add_remote", "local_description", "remote_description"]

Form = IceDescription | Mapping[str, object] | str


def local_description(core: ConnectionCore) -> IceDescription:
    """What the connection knows of its side now: credentials, the local
    candidates gathered so far, end-of-candidates once gathering is done,
    ``lite``, and ``trickle`` (remote candidates are taken while connecting)."""
    return IceDescription(
        username=core.local_username,
        password=core.local_password,
        candidates=core.local_candidates,
        end_of_candidates=_gathered(core),
        lite=core.lite,
        trickle=True,
    )


def _gathered(core: ConnectionCore) -> bool:
    session = core.session
    fut = None if session is None else session.gathered
    return (
        fut is not None
        and fut.done()
        and not fut.cancelled()
        and fut.exception() is None
    )


def remote_description(core: ConnectionCore, value: Form) -> IceDescription:
    """The peer's description, read and checked against the connection,
    before anything is applied.

    :raises ValueError: a bad description (naming the field or line), or
        candidates after end-of-candidates.
    :raises TypeError: not a form of a description.
    :raises NegotiationFailedError: both sides are ICE-lite.
    """
    desc = IceDescription.parse(value)
    core.check_inherited()
    if desc.lite and core.lite:
        raise NegotiationFailedError(BOTH_LITE)
    if core.remote_end and (desc.candidates or desc.end_of_candidates):
        raise ValueError("Cannot add remote candidate after end-of-candidates.")
    return desc


def add_remote(core: ConnectionCore, desc: IceDescription) -> None:
    """Add the candidates of ``desc``, and its end-of-candidates."""
    for candidate in desc.candidates:
        core.add_remote_candidate(candidate)
    if desc.end_of_candidates:
        core.add_remote_candidate(None)
