"""aioice's module-level names of ``aioice.stun``, for :mod:`syncice.asyncio`.

Only the tunables that programs and tests of aioice set: the STUN messages
themselves are :mod:`syncice.stun`'s. They are read when a
:class:`syncice.asyncio.Connection` is made without ``config=``
(:func:`syncice.asyncio.ice.default_config`).
"""

from __future__ import annotations

__all__ = ["RETRY_MAX", "RETRY_RTO"]

#: How many times a request is sent again after the first send (aioice's).
RETRY_MAX = 6
#: The first retransmission interval, in seconds (aioice's).
RETRY_RTO = 0.5
