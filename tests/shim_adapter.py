"""The blocking API over :class:`syncice.asyncio.Connection`, for the tests.

:class:`ShimAdapter` offers :class:`syncice.Connection`'s calls (with their
``timeout=``) and runs each as a coroutine of a shim connection on an event
loop in a background thread (:class:`LoopThread`), so that the scenario tests
of the blocking API exercise the shim unchanged: a ``timeout=`` becomes
:func:`asyncio.wait_for`, which cancels the shim's coroutine when it runs out.
The loop runs under :class:`tests.loopguard.LoopGuard`, so every scenario
also checks that the shim never blocks its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import syncice.asyncio
from syncice import IceTimeoutError
from syncice._appview import AnyEvent
from syncice._checklist import PairStats
from syncice._facade import check_timeout as _check_timeout
from syncice.candidate import Candidate
from tests.loopguard import SHIM, LoopBlocked, LoopGuard

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`.

    The loop runs under a :class:`~tests.loopguard.LoopGuard`: a shim call
    that would block the loop raises :exc:`~tests.loopguard.LoopBlocked` in
    the test that made it, and :meth:`stop` raises it again.
    """

    def __init__(self, name: str = "test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.guard = LoopGuard(SHIM)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(LoopBlocked), self.guard:  # stop() reports it
            self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its outcome."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.guard.check()


#: How many turns of the loop a poll (``timeout=0``) gives the coroutine: a
#: shim coroutine that waits for the worker yields once even when the worker
#: is done already (as aioice's do), and its result comes on a later turn.
POLL_TURNS = 3


async def _within(awaitable: Awaitable[T], timeout: float | None, what: str) -> T:
    if timeout is None:
        return await awaitable
    if timeout <= 0:
        # wait_for(x, 0) never lets x start: a poll gets a few turns of the
        # loop (counted, not timed), then gives up.
        task = asyncio.ensure_future(awaitable)
        for _ in range(POLL_TURNS):
            if task.done():
                break
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.cancelled():
                raise IceTimeoutError(f"{what} timed out")
        return task.result()
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise IceTimeoutError(f"{what} timed out") from None


class ShimAdapter:
    """A :class:`syncice.asyncio.Connection` with the blocking API.

    Attributes it does not define (``_inbox``, ``_published``...) are the
    underlying blocking connection's, for the tests that look inside.
    """

    def __init__(self, runner: LoopThread, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_runner"] = runner
        self.__dict__["_shim"] = syncice.asyncio.Connection(*args, **kwargs)

    _runner: LoopThread
    _shim: syncice.asyncio.Connection

    def __repr__(self) -> str:
        return f"ShimAdapter({self._shim!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return getattr(self._shim, name)
        return getattr(self._shim, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._shim, name, value)

    def _run(
        self,
        make: Callable[[], Awaitable[T]],
        timeout: float | None = None,
        what: str = "call",
    ) -> T:
        timeout = _check_timeout(timeout)

        async def call() -> T:
            return await _within(make(), timeout, what)

        return self._runner.run(call())

    def gather_candidates(self, *, timeout: float | None = None) -> None:
        self._run(self._shim.gather_candidates, timeout, "gather_candidates")

    def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        self._run(lambda: self._shim.add_remote_candidate(remote_candidate))

    def connect(self, *, timeout: float | None = None) -> None:
        try:
            self._run(self._shim.connect, timeout, "connect")
        except IceTimeoutError:
            # The blocking facade's words (what is missing), for its tests.
            if self._shim.ice_controlling:
                raise IceTimeoutError(
                    "connect timed out: no candidate pair has succeeded and been"
                    " nominated yet (checks go on)"
                ) from None
            raise IceTimeoutError(
                "connect timed out: the controlling peer has not nominated a pair"
                " yet (it must call connect() too; checks go on)"
            ) from None

    def close(self) -> None:
        self._run(self._shim.close)

    def recv(self, *, timeout: float | None = None) -> bytes:
        return self._run(self._shim.recv, timeout, "recv")

    def recvfrom(self, *, timeout: float | None = None) -> tuple[bytes, int]:
        return self._run(self._shim.recvfrom, timeout, "recv")

    def send(self, data: bytes) -> None:
        self._run(lambda: self._shim.send(data))

    def sendto(self, data: bytes, component: int) -> None:
        self._run(lambda: self._shim.sendto(data, component))

    def send_many(self, datagrams: Iterable[bytes], component: int = 1) -> None:
        self._run(lambda: self._shim.send_many(datagrams, component))

    def recv_many(
        self, max_count: int = 64, *, timeout: float | None = None
    ) -> list[bytes]:
        return self._run(lambda: self._shim.recv_many(max_count), timeout, "recv")

    def recvfrom_many(
        self, max_count: int = 64, *, timeout: float | None = None
    ) -> list[tuple[bytes, int]]:
        return self._run(lambda: self._shim.recvfrom_many(max_count), timeout, "recv")

    def get_event(self, *, timeout: float | None = None) -> AnyEvent | None:
        return self._run(self._shim.get_event, timeout, "get_event")

    def get_stats(self) -> list[PairStats]:
        return self._run(self._shim.get_stats)

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        async def select() -> None:
            self._shim.set_selected_pair(component, local_foundation, remote_foundation)

        self._run(select)
