"""A pytest plugin that runs an external suite on aioice, or on
``syncice.asyncio`` in aioice's place (:mod:`tests.suites.runner`).

Loaded with ``-p suite_plugin`` (this directory on ``PYTHONPATH``: the
suites have a ``tests`` package of their own). ``SYNCICE_SUITE_SIDE`` says
which side:

- ``"aioice"``: the real aioice, the baseline.
- ``"public"``: the real aioice, its public classes replaced by
  syncice.asyncio's (:data:`PUBLIC`), for aioice's own suite: a test that
  uses aioice's internals still finds them, and fails on syncice where it
  reaches into a connection.
- ``"syncice"``: the migration guide's one line, ``sys.modules["aioice"] =
  syncice.asyncio``, for aiortc's suite.

Host address discovery is left alone: the runner's network namespace has
loopback and one veth, whose addresses aioice and syncice find.
"""

from __future__ import annotations

import os
import sys

SIDE = os.environ.get("SYNCICE_SUITE_SIDE", "syncice")


def _swap() -> None:
    import syncice.asyncio

    sys.modules["aioice"] = syncice.asyncio  # the migration guide's one line


#: The public names of aioice that the "public" side replaces.
PUBLIC = (
    "Candidate",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "TransportPolicy",
)


def _public() -> None:
    import aioice
    import aioice.candidate
    import aioice.ice
    import aioice.stun

    import syncice.asyncio

    for module in (aioice, aioice.ice, aioice.candidate):
        for name in PUBLIC:
            if hasattr(module, name):
                setattr(module, name, getattr(syncice.asyncio, name))
    # aioice's tests tune aioice.stun's RETRY_MAX and RETRY_RTO: the shim's
    # connections read them there instead of in syncice.asyncio.stun.
    ice = sys.modules.get("syncice.asyncio.ice")  # None before the package
    if ice is not None:
        ice.stun = aioice.stun  # type: ignore[attr-defined]


if SIDE == "syncice":
    _swap()
elif SIDE == "public":
    _public()
elif SIDE != "aioice":  # pragma: no cover - a mistake in the runner
    raise RuntimeError(f"SYNCICE_SUITE_SIDE: aioice, public or syncice, not {SIDE!r}")
