"""syncice: Interactive Connectivity Establishment (RFC 8445) with blocking calls."""

from __future__ import annotations

import logging

from ._appview import ConnectionState, SelectedPair
from .candidate import Candidate, candidate_foundation, candidate_priority
from .connection import Connection, TransportPolicy
from .events import ConnectionClosed, ConnectionEvent
from .exceptions import (
    CandidateError,
    ComponentError,
    ConnectionClosedError,
    IceConnectionError,
    IceError,
    IceTimeoutError,
    NegotiationFailedError,
    NotConnectedError,
    StunError,
    StunParseError,
)
from .ice import IceConfig

__version__ = "0.1.0.dev0"

__all__ = [
    "Candidate",
    "CandidateError",
    "ComponentError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionEvent",
    "ConnectionState",
    "IceConfig",
    "IceConnectionError",
    "IceError",
    "IceTimeoutError",
    "NegotiationFailedError",
    "NotConnectedError",
    "SelectedPair",
    "StunError",
    "StunParseError",
    "TransportPolicy",
    "__version__",
    "candidate_foundation",
    "candidate_priority",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
