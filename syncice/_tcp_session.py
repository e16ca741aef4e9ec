"""ICE-TCP in a session: the glue between a :class:`~syncice._session.Session`,
its agent's TCP endpoints and the connections of :mod:`syncice._tcp_links`.
Worker thread only.

Each listening socket (one per host address and component, bound by
:func:`syncice._sockets.open_paths`) gives the agent a passive and an active
candidate (:meth:`~syncice.ice.IceAgent.add_tcp_candidates`) on two new
endpoints. Frames from a connection go to the agent as datagrams from the
connection's remote address; data it returns goes to the inbox, as a UDP
datagram's would. A connection that ends fails its pair's check at once;
when it carried a selected pair, the connection closes with reason
``"TCP connection lost: ..."``.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from ._tcp_links import TcpLinks

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["start_tcp"]

logger = logging.getLogger("syncice.connection")

Address = tuple[str, int]


def start_tcp(
    session: Session,
    listeners: list[tuple[socket.socket, int]],
    simultaneous: list[tuple[socket.socket, int]],
) -> None:
    """Give ``session`` its TCP endpoints (called while gathering starts):
    two per listening socket, and one per socket of ``simultaneous``
    (:func:`syncice._tcp_links.bind_so`), a simultaneous-open candidate."""
    agent = session.agent
    worker = session.worker

    def guarded_failure() -> None:
        logger.exception("%s internal error, closing the connection", session.name)
        session.close("internal error")

    def deliver(endpoint: int, frames: list[bytes], addr: Address) -> None:
        if session.closed:
            return
        try:
            take = agent.receive_datagram
            now = worker.clock.now()
            got = []
            other = False  # STUN or dropped: the agent's state may have moved
            for data in frames:
                item = take(endpoint, data, addr, now)
                if item is None:
                    other = True
                else:
                    got.append(item)
            if got:
                session.inbox.put_many(got)
            if other:
                session.flush()
        except Exception:
            guarded_failure()

    def lost(endpoint: int, addr: Address, reason: str) -> None:
        if session.closed:
            return
        try:
            if agent.tcp_closed(endpoint, addr, worker.clock.now()):
                session.close(f"TCP connection lost: {reason}")
            else:
                session.flush()
        except Exception:
            guarded_failure()

    links = session.tcp = TcpLinks(
        worker,
        deliver=deliver,
        lost=lost,
        authenticated=agent.is_authenticated,
        bind=session.bind,
    )
    agent.enable_tcp()
    for sock, component in listeners:
        passive, active = session.next_endpoint, session.next_endpoint + 1
        session.next_endpoint += 2
        addr = sock.getsockname()
        agent.add_tcp_candidates(passive, active, component, (addr[0], addr[1]))
        links.listen(passive, active, sock)
    for sock, component in simultaneous:
        endpoint = session.next_endpoint
        session.next_endpoint += 1
        addr = sock.getsockname()
        agent.add_tcp_so_candidate(endpoint, component, (addr[0], addr[1]))
        links.simultaneous(endpoint, sock)
