"""syncice: Interactive Connectivity Establishment (RFC 8445) with blocking calls."""

from __future__ import annotations

import logging

from .candidate import Candidate, candidate_foundation, candidate_priority
from .exceptions import CandidateError, IceError, StunError, StunParseError

__version__ = "0.1.0.dev0"

__all__ = [
    "Candidate",
    "CandidateError",
    "IceError",
    "StunError",
    "StunParseError",
    "__version__",
    "candidate_foundation",
    "candidate_priority",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
