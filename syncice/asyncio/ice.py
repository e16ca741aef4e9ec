"""aioice's ``aioice.ice``, for :mod:`syncice.asyncio`: the connection's
names, and aioice's consent tunables.

:data:`CONSENT_FAILURES` and :data:`CONSENT_INTERVAL` (with
:data:`syncice.asyncio.stun.RETRY_MAX` and ``RETRY_RTO``) are read into the
:class:`~syncice.ice.IceConfig` of each :class:`Connection` made without a
``config=`` (:func:`default_config`): a program or test that sets them the
aioice way gets their effect on the connections it makes afterwards.
"""

from __future__ import annotations

import dataclasses

from .._facade import TransportPolicy
from ..candidate import Candidate
from ..events import ConnectionClosed, ConnectionEvent
from ..ice import IceConfig
from . import stun
from .connection import Connection

__all__ = [
    "CONSENT_FAILURES",
    "CONSENT_INTERVAL",
    "Candidate",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "TransportPolicy",
    "default_config",
]

#: aioice's defaults of (``stun.RETRY_MAX``, ``stun.RETRY_RTO``): with these,
#: a connection keeps syncice's own retransmission schedule.
AIOICE_RETRY = (6, 0.5)

#: aioice's count of consent checks in a row without an answer after which
#: consent is lost; with :data:`CONSENT_INTERVAL`, the defaults give
#: syncice's ``consent_timeout`` of 30 s.
CONSENT_FAILURES = 6
#: aioice's mean interval of consent checks, in seconds (``consent_interval``).
CONSENT_INTERVAL = 5


def default_config() -> IceConfig:
    """The :class:`~syncice.ice.IceConfig` of a :class:`Connection` made
    without one, from aioice's module-level names as they are now.

    - :data:`CONSENT_INTERVAL` is ``consent_interval``, and ``consent_timeout``
      is ``CONSENT_FAILURES * CONSENT_INTERVAL`` (at least 1.25 intervals,
      the least :class:`~syncice.ice.IceConfig` takes).
    - :data:`syncice.asyncio.stun.RETRY_MAX` and ``RETRY_RTO``, at aioice's
      values (6 and 0.5 s), leave syncice's retransmission schedule (a check
      gives up after 39.5 s, aioice's after 63.5 s). Set to anything else,
      they give aioice's schedule: ``RETRY_MAX`` retransmissions after the
      first send, the interval doubling from ``RETRY_RTO`` with no cap, and
      a last wait of one doubled interval (at most 100 initial intervals).
      Gathering keeps its own bound (``gather_timeout``).
    """
    interval = float(CONSENT_INTERVAL)
    config = IceConfig(
        consent_interval=interval,
        consent_timeout=max(CONSENT_FAILURES * interval, 1.25 * interval),
    )
    if (stun.RETRY_MAX, stun.RETRY_RTO) == AIOICE_RETRY:
        return config
    retries = min(max(int(stun.RETRY_MAX), 0), 99)  # IceConfig's range of sends
    rto = float(stun.RETRY_RTO)
    return dataclasses.replace(
        config,
        rto=rto,
        max_sends=retries + 1,
        final_wait=min(2**retries, 100),
        rto_max=None,
        gather_rto_max=max(config.gather_rto_max, rto),
    )
