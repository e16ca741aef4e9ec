"""aioice's asyncio API over syncice's worker thread.

``import syncice.asyncio as aioice`` gives a :class:`Connection` whose
coroutines are aioice's, over the same facade core as the blocking
:class:`syncice.Connection` (:mod:`syncice._facade`): each operation returns
a completion, which this module bridges to the caller's event loop with
:meth:`asyncio.loop.call_soon_threadsafe`. No thread is parked per call, and
the event loop never waits: not for the network, not for the worker thread.

The rules of the bridge:

- :meth:`Connection.recv` returns at once, with no thread hop, when a datagram
  is queued. Otherwise it leaves a waiter (:class:`AsyncWaiter`) in the
  connection's mailbox, the same receive as the blocking facade's
  (:mod:`syncice._inbox`); the worker hands it the datagram, which reaches
  the loop in one ``call_soon_threadsafe`` (batched per loop).
- A cancelled ``recv()`` (or ``get_event()``) loses nothing: an item the
  worker already handed to it goes back to the front of the mailbox.
- Cancelling :meth:`Connection.connect` or :meth:`Connection.gather_candidates`
  cancels only the wait: the checks (or the gathering) go on, a later call
  waits for the same outcome, and :meth:`Connection.close` works.
- Several event loops, in several threads, may use connections at once: one
  worker serves them all. A connection's coroutines must be awaited on one
  loop at a time. A loop that is gone leaves nothing behind here.
- A coroutine that waits for the worker yields to the loop at least once,
  even when the worker is done already, as aioice's do; and what it awaits
  is held until the worker resolves it, so a task nobody keeps
  (``asyncio.ensure_future(conn.connect())``, as aiortc does) is not
  collected halfway.

What the loop never waits for, and how: binding sockets and resolving server
names run in the loop's default executor (the core's gathering job, under
no lock); commands go to the worker without waiting for it
(``Worker.post``), in order, so a later call sees their effect. The locks
the loop takes (the core's, the life cycle's, a mailbox's) are only ever
held for a few statements, never across I/O or a wait. ``tests/loopguard.py``
checks all this: it fails a test whose loop thread makes a blocking call or
waits for a lock another thread holds, but for those.

The package has aioice's module layout where programs reach into it:
:mod:`syncice.asyncio.ice` (the connection, ``CONSENT_FAILURES``,
``CONSENT_INTERVAL``) and :mod:`syncice.asyncio.stun` (``RETRY_MAX``,
``RETRY_RTO``), so that ``sys.modules["aioice"] = syncice.asyncio`` (with
nothing more: ``import aioice.ice`` then finds this package's submodule,
not a second copy of it) runs an aioice program, aiortc for one, unchanged
(:doc:`/migrating`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

from . import ice, stun
from .ice import (
    Candidate,
    Connection,
    ConnectionClosed,
    ConnectionEvent,
    TransportPolicy,
)

__all__ = [
    "Candidate",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "TransportPolicy",
    "ice",
    "stun",
]

#: The submodules that an alias of this package (``aioice``) imports.
SUBMODULES: dict[str, types.ModuleType] = {"ice": ice, "stun": stun}


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``<alias>.ice`` and ``<alias>.stun`` as this package's own
    submodules, for a name ``<alias>`` bound to this package in
    :data:`sys.modules` (``sys.modules["aioice"] = syncice.asyncio``):
    without it, Python would find ``ice.py`` on the package's path and run
    a second copy under the alias, with its own tunables."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for an alias's submodule; ``None`` for any other name."""
        parent, _, child = fullname.rpartition(".")
        if parent == __name__ or child not in SUBMODULES:
            return None
        if sys.modules.get(parent) is not sys.modules.get(__name__):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        """The submodule itself, already imported."""
        return SUBMODULES[spec.name.rpartition(".")[2]]

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing: the submodule has run once, under its own name."""


if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, AliasFinder())
