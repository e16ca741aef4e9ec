"""What :class:`syncice.asyncio.Connection` has beyond aioice's API: the
drop counters, the batch coroutines, the pair statistics and the
signalling helpers, as :class:`syncice.Connection` has them.

A mixin, so that ``connection.py`` keeps aioice's API alone and its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._aio_bridge import bridge
from .._checklist import PairStats
from .._describe import Form, add_remote, local_description, remote_description
from ..description import IceDescription
from ..exceptions import ConnectionClosedError

if TYPE_CHECKING:
    import concurrent.futures

    from .._facade import ConnectionCore


class Extensions:
    """syncice's additions to aioice's ``Connection`` (all of them also on
    :class:`syncice.Connection`)."""

    if TYPE_CHECKING:
        _core: ConnectionCore
        _selecting: concurrent.futures.Future[None] | None
        remote_username: str | None
        remote_password: str | None
        remote_is_lite: bool

        async def recvfrom(self) -> tuple[bytes, int]: ...

        async def _selected(self) -> None: ...

    @property
    def send_drops(self) -> int:
        """Datagrams dropped by a full socket buffer (a syncice extension)."""
        return self._core.send_drops

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the receive queue was full (a syncice
        extension)."""
        return self._core.recv_drops

    @property
    def socket_buffers(self) -> dict[tuple[str, int], tuple[int, int]]:
        """``(SO_RCVBUF, SO_SNDBUF)`` of each UDP socket by local address,
        as :attr:`syncice.Connection.socket_buffers`."""
        return dict(self._core.socket_buffers)

    async def recv_many(self, max_count: int = 64) -> list[bytes]:
        """Receive the next datagrams: wait for one, as :meth:`recv` does,
        then take up to ``max_count - 1`` more that have arrived already,
        in order (as :meth:`syncice.Connection.recv_many`; the first call
        lets the kernel glue datagrams, GRO). Cancelling it loses no
        datagram.

        :raises: as :meth:`recv`; :class:`ValueError` (:class:`TypeError`)
            for a ``max_count`` below 1 (not an int).
        """
        return [data for data, _ in await self.recvfrom_many(max_count)]

    async def recvfrom_many(self, max_count: int = 64) -> list[tuple[bytes, int]]:
        """Receive the next datagrams with their components, as
        :meth:`recv_many` does: a list of ``(bytes, component)``."""
        if isinstance(max_count, bool) or not isinstance(max_count, int):
            raise TypeError(f"max_count must be an int, not {type(max_count).__name__}")
        if max_count < 1:
            raise ValueError(f"max_count must be 1 or more, not {max_count}")
        self._core.want_glued_reads()
        items = [await self.recvfrom()]
        take = self._core.receive_nowait
        try:
            while len(items) < max_count:
                item = take()
                if item is None:
                    break
                items.append(item)
        except ConnectionClosedError:  # closed behind them: the next call says so
            pass
        return items

    async def send_many(self, datagrams: Iterable[bytes], component: int = 1) -> None:
        """Send datagrams on a component, in order, in fewer system calls
        than one :meth:`sendto` each (as :meth:`syncice.Connection.send_many`).
        Never waits, but as :meth:`send` does.

        :raises: as :meth:`sendto`; a datagram too large for the path raises
            :class:`ValueError` with those before it sent, none after it.
        """
        if not isinstance(datagrams, (list, tuple)):
            datagrams = list(datagrams)
        if self._selecting is not None:
            await self._selected()
        self._core.send_many(datagrams, component)

    async def get_stats(self) -> list[PairStats]:
        """Per-pair statistics: a syncice extension (see
        :meth:`syncice.Connection.get_stats`)."""
        return await bridge(self._core.stats())

    def local_description(self) -> IceDescription:
        """As :meth:`syncice.Connection.local_description`."""
        return local_description(self._core)

    def set_remote_description(self, description: Form) -> None:
        """As :meth:`syncice.Connection.set_remote_description`: a plain
        method, not a coroutine, since it returns at once (no I/O)."""
        desc = remote_description(self._core, description)
        self.remote_username = desc.username
        self.remote_password = desc.password
        self.remote_is_lite = desc.lite
        add_remote(self._core, desc)

    async def restart(
        self, local_username: str | None = None, local_password: str | None = None
    ) -> None:
        """Restart ICE (RFC 8445 §9): a syncice extension, as
        :meth:`syncice.Connection.restart`; then exchange the new
        credentials and candidates, and ``await`` :meth:`connect` again.

        :raises NotConnectedError: if the connection has not connected yet.
        :raises ValueError: a malformed credential, or one that is not new.
        """
        done = self._core.restart(local_username, local_password)
        self.remote_username = None
        self.remote_password = None
        await bridge(done)
