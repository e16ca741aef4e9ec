"""The sans-IO TURN client (RFC 8656), with long-term credentials (RFC 8489).

One :class:`TurnAllocation` is one allocation on one TURN server. Rules of this
module, in the manner of h11's ``_state.py``:

- Bytes from the server and the time come in (:meth:`TurnAllocation.receive`,
  :meth:`TurnAllocation.handle_timer`, each with ``now``); datagrams for the
  server, events and the next deadline go out
  (:meth:`TurnAllocation.datagrams_to_send`, :meth:`TurnAllocation.next_event`,
  :meth:`TurnAllocation.get_timer`). Nothing here reads a clock, opens a socket
  or starts a thread; transaction IDs come from the ``random.Random`` handed in.
- The life cycle is :class:`TurnState`: ``new`` → ``allocating`` →
  ``allocated`` → ``closing`` → ``closed``, or ``failed`` from any state
  before ``closing``. ``closed`` and ``failed`` are final: nothing more is
  sent, and received bytes are ignored.
- Only a response to one of our pending transactions changes state: any other
  bytes are application data (a Data indication or ChannelData from a peer we
  hold a permission or a channel for) or are dropped and counted in
  :attr:`TurnAllocation.stats`. :meth:`TurnAllocation.receive` never raises.
- Success responses to authenticated requests count only with a valid
  MESSAGE-INTEGRITY(-SHA256) under our key; error responses are taken as they
  are, since 401 and 438 cannot carry one.
- The first Allocate goes without credentials; its 401 gives the realm and
  nonce, and every later request is authenticated (RFC 8489 §9.2). A 438
  Stale Nonce is answered by resending the request once with the new nonce.
- Data for a peer goes as ChannelData once a channel is bound, as a Send
  indication once its IP address has a permission, and is held (a few
  datagrams per peer) until then. The first datagram for a peer starts a
  CreatePermission for its IP and a ChannelBind for its address, together.
- Everything a server or peer can make us hold is bounded by
  :class:`TurnConfig`: peers (``max_peers``), held datagrams (``max_held``),
  one transaction per permission, channel and refresh, and the stream framer.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import cast

from ._demux import frame_channel_data
from ._transaction import ClientTransaction, Poll
from .exceptions import StunParseError
from .stun import (
    Attributes,
    ChannelData,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    StreamFramer,
    is_channel_data,
    long_term_key,
    parse_channel_data,
    parse_message,
    saslprep,
)

__all__ = [
    "Address",
    "AllocationClosed",
    "AllocationFailed",
    "AllocationSucceeded",
    "ChannelBound",
    "PermissionFailed",
    "ServerChanged",
    "TurnAllocation",
    "TurnConfig",
    "TurnEvent",
    "TurnState",
    "TurnStats",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]
"""An ``(ip, port)`` pair, with the IP address in its canonical text form."""

# One for every allocation: SystemRandom keeps no state worth a copy.
_SYSTEM_RANDOM = random.SystemRandom()

_UDP = 17  # REQUESTED-TRANSPORT: the relay is UDP whatever the client transport
_FIRST_CHANNEL = 0x4000
_LAST_CHANNEL = 0x4FFF
# The most data a Send indication can carry: 64 KiB of body, less the
# XOR-PEER-ADDRESS of an IPv6 peer (24 bytes) and the DATA header (4 bytes),
# rounded down to a multiple of 4 so that the padding fits too.
_MAX_SEND_DATA = 0xFFFF - 28 - 3
_HH = struct.Struct("!HH")

_PHRASES = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnConfig:
    """Timing constants and bounds of an allocation (durations in seconds).

    :param rto: initial retransmission timeout of requests over UDP
        (RFC 8489 §6.2.1); over TCP and TLS a request is sent once.
    :param max_sends: Rc, how many times a request is sent over UDP.
    :param final_wait: Rm, the wait after the last send over UDP, in RTOs.
    :param reliable_timeout: Ti, how long a request waits for its answer over
        TCP and TLS (RFC 8489 §6.2.2).
    :param lifetime: the LIFETIME asked for in Allocate and Refresh requests
        (RFC 8656 §7.1, §8).
    :param refresh_margin: the allocation is refreshed this long before its
        lifetime ends, or at half the lifetime if that is later.
    :param permission_refresh: how often a permission is refreshed; under the
        300 s it lasts (RFC 8656 §9).
    :param channel_refresh: how often a channel binding is refreshed; under
        the 600 s it lasts (RFC 8656 §12).
    :param max_peers: bound on the peers data is sent to (each has a channel,
        or one on the way, and shares its IP address's permission).
    :param max_held: how many datagrams are held per peer until its
        permission exists; more are dropped.
    :param close_timeout: how long :meth:`TurnAllocation.close` waits for the
        answer to its Refresh with a zero lifetime.
    """

    rto: float = 0.5
    max_sends: int = 7
    final_wait: int = 16
    reliable_timeout: float = 39.5
    lifetime: int = 600
    refresh_margin: float = 60.0
    permission_refresh: float = 240.0
    channel_refresh: float = 540.0
    max_peers: int = 64
    max_held: int = 16
    close_timeout: float = 1.0

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.max_sends < 1 or self.final_wait < 0:
            raise ValueError("rto must be > 0, max_sends >= 1, final_wait >= 0")
        if self.reliable_timeout <= 0:
            raise ValueError("reliable_timeout must be positive")
        if not 1 <= self.lifetime <= 0xFFFFFFFF:
            raise ValueError("lifetime must be 1 to 2**32 - 1 seconds")
        if self.refresh_margin < 0 or self.close_timeout < 0:
            raise ValueError("refresh_margin and close_timeout must not be negative")
        if not 0 < self.permission_refresh < 300:
            raise ValueError("permission_refresh must be in (0, 300) (RFC 8656 §9)")
        if not 0 < self.channel_refresh < 600:
            raise ValueError("channel_refresh must be in (0, 600) (RFC 8656 §12)")
        if not 1 <= self.max_peers <= _LAST_CHANNEL - _FIRST_CHANNEL + 1:
            raise ValueError("max_peers must be 1 to 4096 (one channel each)")
        if self.max_held < 0:
            raise ValueError("max_held must not be negative")


class TurnState:
    """The life cycle of an allocation, as strings."""

    NEW = "new"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class TurnStats:
    """Counters of what the allocation dropped (server and peer faults stay here).

    :param malformed: bytes that parse neither as STUN nor as ChannelData, and
        Data indications without XOR-PEER-ADDRESS or DATA.
    :param unexpected: requests, indications other than Data, and responses
        that match no pending transaction or have the wrong method.
    :param unauthenticated: success responses whose integrity check failed.
    :param unknown_channel: ChannelData on a channel we have not bound.
    :param no_permission: Data indications from a peer without a permission.
    :param held_dropped: datagrams dropped because a peer's hold queue was
        full, its permission failed, the allocation ended, or ``max_peers``
        was reached.
    :param oversized: datagrams too large for a Send indication, dropped
        (ChannelData carries up to 65535 bytes, a Send indication a little less).
    """

    malformed: int = 0
    unexpected: int = 0
    unauthenticated: int = 0
    unknown_channel: int = 0
    no_permission: int = 0
    held_dropped: int = 0
    oversized: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEvent:
    """Base class of the events of a :class:`TurnAllocation`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationSucceeded(TurnEvent):
    """The server granted the allocation (RFC 8656 §7.3).

    :param relayed: the relayed transport address (XOR-RELAYED-ADDRESS).
    :param mapped: our address as the server saw it (XOR-MAPPED-ADDRESS), if
        given.
    :param lifetime: the granted lifetime, seconds.
    """

    relayed: Address
    mapped: Address | None
    lifetime: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationFailed(TurnEvent):
    """The Allocate failed, or an allocation we held was lost.

    After it the state is ``failed`` and nothing more is sent.

    :param reason: readable text.
    :param error_code: the server's error code, or ``None`` (a timeout).
    """

    reason: str
    error_code: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationClosed(TurnEvent):
    """:meth:`TurnAllocation.close` finished: answered, refused or timed out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelBound(TurnEvent):
    """A channel is bound to a peer (RFC 8656 §12.2): data goes as ChannelData.

    :param peer: the peer's address.
    :param channel: the channel number.
    """

    peer: Address
    channel: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PermissionFailed(TurnEvent):
    """The server refused (or did not answer) a permission for a peer's IP.

    The data held for the peer is dropped; the allocation goes on, and a later
    :meth:`TurnAllocation.send` to the peer tries again.

    :param peer: a peer at that IP address (one event per peer).
    :param reason: readable text.
    :param error_code: the server's error code, or ``None`` (a timeout).
    """

    peer: Address
    reason: str
    error_code: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerChanged(TurnEvent):
    """The server redirected us (300 with ALTERNATE-SERVER, RFC 8489 §10).

    Datagrams now go to ``server``; over TCP or TLS the caller connects to it
    first.

    :param server: the new server address.
    """

    server: Address


@dataclass(slots=True)
class _Request:
    """One pending request, with what is needed to resend it after a 438."""

    kind: str  # "allocate", "refresh", "close", "permission" or "channel"
    method: Method
    attributes: dict[str, object]
    transaction: ClientTransaction
    key: bytes | None
    deadline: float | None
    stale: bool = False  # resent once after a 438 already
    ip: str = ""
    peer: Address | None = None


@dataclass(slots=True)
class _Permission:
    """The permission for one IP address (RFC 8656 §9)."""

    port: int  # the XOR-PEER-ADDRESS port; the server ignores it
    installed: bool = False
    refresh_at: float | None = None  # None while a CreatePermission is pending


@dataclass(slots=True)
class _Peer:
    """One peer address: its channel and the data held for it."""

    channel: int
    held: deque[bytes] = field(default_factory=deque)
    bound: bool = False
    refresh_at: float | None = None  # the channel's; None while not bound or pending
    retry: bool = False  # bind again at the IP's next permission refresh
    retried: bool = False  # the one retry after a failure was spent


@functools.lru_cache(maxsize=256)
def _check_host(host: str) -> None:
    # A hostname or a non-canonical IP (which would never match the addresses
    # the server reports) is the caller's mistake.
    try:
        canonical = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"peer {host!r} is not an IP address") from None
    if canonical != host:
        raise ValueError(f"peer {host!r} is not in canonical form ({canonical})")


def _describe(message: Message) -> tuple[str, int | None]:
    code = message.error_code
    if code is None:
        return "an error response without ERROR-CODE from the server", None
    return f"{code} {_PHRASES.get(code, 'Error')} from the server", code


class TurnAllocation:
    """A TURN allocation on one server, sans-IO (RFC 8656).

    Drive it as the ICE agent is driven (STYLE §3): :meth:`start`, then feed
    what the server sends to :meth:`receive`, call :meth:`handle_timer` when
    ``now`` reaches :meth:`get_timer`, send :meth:`datagrams_to_send` to
    :attr:`server` and read :meth:`next_event`.

    :param server: the TURN server's address (an IP address, resolved by the
        caller).
    :param username: the long-term credential's user name.
    :param password: its password; it never leaves this object, nor is logged.
    :param transport: ``"udp"``, ``"tcp"`` or ``"tls"``: how we reach the
        server. Over TCP and TLS, :meth:`receive` takes the stream in any
        chunks and requests are not retransmitted (RFC 8489 §6.2.2).
    :param family: the REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.1): ``1`` for an
        IPv4 relayed address, ``2`` for IPv6, ``None`` to leave it to the
        server.
    :param config: timing constants and bounds.
    :param rng: the source of transaction IDs (a module-wide
        :class:`random.SystemRandom` by default).
    :param name: prefixes every log line.
    :raises ValueError: an argument is invalid (transport, family, a server
        that is not an IP address, a password SASLprep rejects, a user name
        over 512 bytes).
    """

    def __init__(
        self,
        *,
        server: Address,
        username: str,
        password: str,
        transport: str = "udp",
        family: int | None = None,
        config: TurnConfig | None = None,
        rng: random.Random | None = None,
        name: str = "turn",
    ) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport must be udp, tcp or tls, not {transport!r}")
        if family not in (None, 1, 2):
            raise ValueError(f"family must be 1 (IPv4), 2 (IPv6) or None: {family!r}")
        try:
            version = ipaddress.ip_address(server[0]).version
        except ValueError:
            raise ValueError(f"server {server[0]!r} is not an IP address") from None
        if len(username.encode("utf-8")) > 512:
            raise ValueError("username is longer than 512 bytes")
        saslprep(password)  # raises ValueError now rather than at the first 401
        self.config = config if config is not None else TurnConfig()
        #: Where datagrams go now; changes when the server redirects us.
        self.server: Address = (server[0], server[1])
        #: How the server is reached: ``"udp"``, ``"tcp"`` or ``"tls"``.
        self.transport = transport
        #: A :class:`TurnState` value.
        self.state: str = TurnState.NEW
        #: The relayed address, once allocated.
        self.relayed: Address | None = None
        #: Our address as the server saw it, once allocated (if it said).
        self.mapped: Address | None = None
        #: The lifetime the server granted last, seconds.
        self.lifetime: int | None = None
        #: Peer → bound channel number. Only ever grows while allocated, by
        #: plain assignment: other threads read it to send ChannelData.
        self.channels: dict[Address, int] = {}
        #: What was dropped, and why.
        self.stats = TurnStats()
        #: Why the allocation failed: the server's error code, if any...
        self.error_code: int | None = None
        #: ... and readable text.
        self.reason: str | None = None
        self.name = name
        self._family = family
        self._version = version
        self._username = username
        self._password = password
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._stream = transport != "udp"
        self._framer = StreamFramer() if self._stream else None
        self._framer_dropped = 0
        # Credentials, from the server's 401.
        self._realm: str | None = None
        self._nonce: bytes | None = None
        self._key: bytes | None = None
        self._algorithms: tuple[tuple[int, bytes], ...] | None = None
        self._algorithm = PasswordAlgorithm.MD5
        self._auth_sent = False  # an authenticated Allocate went out
        self._redirected = False
        self._deadline: float | None = None
        self._pending: dict[bytes, _Request] = {}
        self._outbox: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._refresh_at: float | None = None
        self._expires_at: float | None = None
        self._close_at: float | None = None
        self._permissions: dict[str, _Permission] = {}
        self._peers: dict[Address, _Peer] = {}
        self._channel_peers: dict[int, Address] = {}

    def __repr__(self) -> str:
        return (
            f"<TurnAllocation {self.name} {self.transport} "
            f"{self.server[0]}:{self.server[1]} {self.state}>"
        )

    # --- the verbs ---------------------------------------------------------------

    def start(self, now: float, deadline: float | None = None) -> None:
        """Send the first Allocate request (RFC 8656 §7.1), without credentials.

        Calling it again does nothing.

        :param now: the current time.
        :param deadline: an absolute time by which the allocation must have
            succeeded, 401 and 438 retries and a redirection included;
            :class:`AllocationFailed` follows if it has not.
        """
        if self.state != TurnState.NEW:
            return
        self.state = TurnState.ALLOCATING
        self._deadline = deadline
        self._send_allocate(now)

    def receive(self, data: bytes, now: float) -> list[tuple[Address, bytes]]:
        """Take bytes from the server.

        Over UDP ``data`` is one datagram; over TCP and TLS, any chunk of the
        stream (RFC 8656 §12.5): a stream that falls out of step ends the
        allocation (:class:`AllocationFailed`, "stream out of step").

        :returns: the application datagrams carried, as ``(peer, data)``, in
            order: Data indications from peers whose IP address has a
            permission, ChannelData on channels we bound. Empty once closed
            or failed.
        """
        if self.state in (TurnState.CLOSED, TurnState.FAILED):
            return []
        out: list[tuple[Address, bytes]] = []
        framer = self._framer
        if framer is None:
            if is_channel_data(data):
                try:
                    self._on_channel_data(parse_channel_data(data), out)
                except StunParseError:
                    self.stats.malformed += 1
            else:
                try:
                    message = parse_message(data)
                except StunParseError:
                    self.stats.malformed += 1
                else:
                    self._on_message(message, now, out)
            return out
        frames: list[Message | ChannelData] = []
        try:
            frames = framer.feed(data)
            # The framer reports bad bytes that follow whole frames on its
            # next call: ask it now, so that the failure is not left waiting.
            framer.feed(b"")
            lost = False
        except StunParseError:
            lost = True
        self.stats.malformed += framer.dropped - self._framer_dropped
        self._framer_dropped = framer.dropped
        for frame in frames:
            if self._framer is not framer or self.state in (
                TurnState.CLOSED,
                TurnState.FAILED,
            ):
                return out  # ended, or redirected: the rest is of no use
            if isinstance(frame, ChannelData):
                self._on_channel_data(frame, out)
            else:
                self._on_message(frame, now, out)
        if lost and self._framer is framer:
            self._fail("stream out of step", None)
        return out

    def send(self, peer: Address, data: bytes, now: float) -> None:
        """Queue ``data`` for ``peer``, relayed through the server (RFC 8656 §11, §12).

        As ChannelData once a channel is bound to the peer, as a Send
        indication once its IP address has a permission; until then the data
        is held (``max_held`` datagrams per peer) and, the first time, a
        CreatePermission for the IP address and a ChannelBind for the peer
        start together. Held data goes out, in order, when either succeeds.
        A new peer beyond ``max_peers`` gets no channel, and its data is
        dropped until its IP address has a permission. Ignored unless the
        state is ``allocated``.

        :param peer: an IP address in canonical text form, and a port.
        :raises ValueError: ``peer`` is not an IP address in canonical form,
            or ``data`` is longer than 65535 bytes.
        """
        if len(data) > 0xFFFF:
            raise ValueError(f"datagram of {len(data)} bytes is too large")
        if self.state != TurnState.ALLOCATED:
            return
        channel = self.channels.get(peer)
        if channel is not None:
            self._send_channel_data(channel, data)
            return
        record = self._open(peer, now)
        permission = self._permissions.get(peer[0])
        if permission is not None and permission.installed:
            self._send_indication(peer, data)
        elif record is not None and len(record.held) < self.config.max_held:
            record.held.append(data)
        else:
            self.stats.held_dropped += 1

    def permit(self, peer: Address, now: float) -> None:
        """Ask for a permission and a channel for ``peer`` before any data
        (RFC 8656 §9, §12), so that what the peer sends first, a
        connectivity check to our relayed address, gets through.

        Does nothing for a peer already known, beyond ``max_peers``, or
        unless the state is ``allocated``.

        :param peer: an IP address in canonical text form, and a port.
        :raises ValueError: ``peer`` is not an IP address in canonical form.
        """
        if self.state == TurnState.ALLOCATED and peer not in self.channels:
            self._open(peer, now)

    def _open(self, peer: Address, now: float) -> _Peer | None:
        """The record of ``peer`` (``None`` beyond ``max_peers``); a new one
        starts a ChannelBind, and an IP address without a permission a
        CreatePermission."""
        host = peer[0]
        _check_host(host)
        if not 0 < peer[1] <= 0xFFFF:
            raise ValueError(f"peer port {peer[1]!r} is not 1 to 65535")
        record = self._peers.get(peer)
        if record is None and len(self._peers) >= self.config.max_peers:
            return None
        if host not in self._permissions:
            self._permissions[host] = _Permission(port=peer[1])
            self._send_permission(host, peer[1], now)
        if record is None:
            record = self._peers[peer] = _Peer(channel=self._free_channel())
            self._send_channel_bind(peer, record, now)
        return record

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: retransmissions, timeouts and refreshes.

        Call it when ``now`` reaches :meth:`get_timer`; earlier calls do nothing
        harmful.
        """
        state = self.state
        if state == TurnState.CLOSING:
            if now >= cast(float, self._close_at):
                logger.info("%s TURN release timed out", self.name)
                self._closed()
                return
        elif state == TurnState.ALLOCATED and now >= cast(float, self._expires_at):
            self._fail("lifetime expired", None)
            return
        for tid, request in list(self._pending.items()):
            if self._pending.get(tid) is not request:
                continue  # ended by an earlier one (a failure clears them all)
            result = request.transaction.poll(now)
            if result is Poll.SEND:
                self._outbox.append(request.transaction.data)
            elif result is Poll.TIMEOUT:
                del self._pending[tid]
                self._on_timeout(request, now)
        if self.state != TurnState.ALLOCATED:
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self._send_refresh(now)
        for ip, permission in self._permissions.items():
            if permission.refresh_at is not None and now >= permission.refresh_at:
                permission.refresh_at = None
                self._send_permission(ip, permission.port, now)
                for peer, record in self._peers.items():
                    if record.retry and peer[0] == ip:
                        record.retry = False
                        record.retried = True
                        self._send_channel_bind(peer, record, now)
        for peer, record in self._peers.items():
            if record.refresh_at is not None and now >= record.refresh_at:
                record.refresh_at = None
                self._send_channel_bind(peer, record, now)

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has work, or ``None``."""
        times = [r.transaction.timer_at for r in self._pending.values()]
        times += [
            t
            for t in (self._refresh_at, self._expires_at, self._close_at)
            if t is not None
        ]
        times += [
            p.refresh_at for p in self._permissions.values() if p.refresh_at is not None
        ]
        times += [
            p.refresh_at for p in self._peers.values() if p.refresh_at is not None
        ]
        return min(times, default=None)

    def datagrams_to_send(self) -> list[bytes]:
        """Take the datagrams queued for :attr:`server`, oldest first.

        Over TCP and TLS they are whole frames, to be written in order.
        """
        out = self._outbox
        self._outbox = []
        return out

    def next_event(self) -> TurnEvent | None:
        """Pop the oldest queued event, or return ``None``."""
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        """Release the allocation: a Refresh with a zero lifetime (RFC 8656 §7).

        Allocated: the Refresh goes out and the state is ``closing`` until its
        answer, whatever it is, or ``close_timeout``; then ``closed`` and
        :class:`AllocationClosed`. Allocating with an authenticated Allocate in
        flight (the server may hold an allocation already): ``closing``; if the
        Allocate succeeds the Refresh goes out then. Otherwise ``closed`` at
        once. Calling it again does nothing.
        """
        state = self.state
        if state in (TurnState.CLOSING, TurnState.CLOSED):
            return
        if state == TurnState.ALLOCATED:
            self._forget_peers()
            self._pending.clear()
            self._refresh_at = self._expires_at = None
            self.state = TurnState.CLOSING
            self._close_at = now + self.config.close_timeout
            self._send_release(now)
        elif state == TurnState.ALLOCATING and self._auth_sent:
            self.state = TurnState.CLOSING
            self._close_at = now + self.config.close_timeout
        else:
            self._closed()

    def abandon(self, reason: str) -> None:
        """End the allocation at once, without telling the server: the way to
        it is lost (a TCP or TLS connection reset, refused or closed).

        :class:`AllocationFailed` with ``reason`` follows (or
        :class:`AllocationClosed` while closing). Nothing once it is over.
        """
        self._fail(reason, None)

    # --- requests ------------------------------------------------------------------

    def _send_request(
        self,
        kind: str,
        method: Method,
        attributes: dict[str, object],
        now: float,
        *,
        authenticated: bool = True,
        deadline: float | None = None,
        ip: str = "",
        peer: Address | None = None,
        stale: bool = False,
    ) -> None:
        tid = self._rng.getrandbits(96).to_bytes(12, "big")
        full = dict(attributes)
        key = None
        if authenticated:
            key = self._key
            full["USERNAME"] = self._username
            full["REALM"] = self._realm
            full["NONCE"] = self._nonce
            if self._algorithms is not None:
                full["PASSWORD-ALGORITHMS"] = self._algorithms
                full["PASSWORD-ALGORITHM"] = (int(self._algorithm), b"")
        message = Message(method, Class.REQUEST, tid, cast(Attributes, full))
        data = message.encode(
            key=key,
            integrity="sha256"
            if self._algorithm == PasswordAlgorithm.SHA256
            else "sha1",
            fingerprint=True,
        )
        config = self.config
        if self._stream:
            # RFC 8489 §6.2.2: no retransmission over a reliable transport,
            # a single timeout Ti.
            rto, max_sends, final_wait = config.reliable_timeout, 1, 1
        else:
            rto, max_sends, final_wait = config.rto, config.max_sends, config.final_wait
        transaction = ClientTransaction(
            transaction_id=tid,
            data=data,
            endpoint=0,
            addr=self.server,
            now=now,
            rto=rto,
            max_sends=max_sends,
            final_wait=final_wait,
            deadline=deadline,
        )
        self._pending[tid] = _Request(
            kind, method, attributes, transaction, key, deadline, stale, ip, peer
        )
        self._outbox.append(data)

    def _send_allocate(self, now: float) -> None:
        attributes: dict[str, object] = {
            "REQUESTED-TRANSPORT": _UDP,
            "LIFETIME": self.config.lifetime,
        }
        if self._family is not None:
            attributes["REQUESTED-ADDRESS-FAMILY"] = self._family
        authenticated = self._key is not None
        self._auth_sent = authenticated
        self._send_request(
            "allocate",
            Method.ALLOCATE,
            attributes,
            now,
            authenticated=authenticated,
            deadline=self._deadline,
        )

    def _send_refresh(self, now: float) -> None:
        self._refresh_at = None
        self._send_request(
            "refresh",
            Method.REFRESH,
            {"LIFETIME": self.config.lifetime},
            now,
            deadline=self._expires_at,
        )

    def _send_release(self, now: float) -> None:
        self._send_request(
            "close", Method.REFRESH, {"LIFETIME": 0}, now, deadline=self._close_at
        )

    def _send_permission(self, ip: str, port: int, now: float) -> None:
        self._send_request(
            "permission",
            Method.CREATE_PERMISSION,
            {"XOR-PEER-ADDRESS": (ip, port)},
            now,
            ip=ip,
        )

    def _send_channel_bind(self, peer: Address, record: _Peer, now: float) -> None:
        self._send_request(
            "channel",
            Method.CHANNEL_BIND,
            {"CHANNEL-NUMBER": record.channel, "XOR-PEER-ADDRESS": peer},
            now,
            ip=peer[0],
            peer=peer,
        )

    def _free_channel(self) -> int:
        # The lowest number no peer holds: at most max_peers (<= 4096) are.
        used = {p.channel for p in self._peers.values()}
        channel = _FIRST_CHANNEL
        while channel in used:
            channel += 1
        return channel

    # --- data ----------------------------------------------------------------------

    def _send_channel_data(self, channel: int, data: bytes) -> None:
        self._outbox.append(frame_channel_data(channel, data, padded=self._stream))

    def _send_indication(self, peer: Address, data: bytes) -> None:
        if len(data) > _MAX_SEND_DATA:
            self.stats.oversized += 1
            return
        tid = self._rng.getrandbits(96).to_bytes(12, "big")
        message = Message(
            Method.SEND,
            Class.INDICATION,
            tid,
            {"XOR-PEER-ADDRESS": peer, "DATA": data},
        )
        self._outbox.append(message.encode())

    def _flush(self, ip: str) -> None:
        """Send what is held for the peers at ``ip``, now that it has a permission."""
        for peer, record in self._peers.items():
            if peer[0] != ip:
                continue
            held = record.held
            while held:
                data = held.popleft()
                if record.bound:
                    self._send_channel_data(record.channel, data)
                else:
                    self._send_indication(peer, data)

    def _on_channel_data(
        self, frame: ChannelData, out: list[tuple[Address, bytes]]
    ) -> None:
        peer = self._channel_peers.get(frame.channel)
        if peer is None:
            self.stats.unknown_channel += 1
        else:
            out.append((peer, frame.data))

    # --- responses -----------------------------------------------------------------

    def _on_message(
        self, message: Message, now: float, out: list[tuple[Address, bytes]]
    ) -> None:
        klass = message.message_class
        if klass == Class.INDICATION and message.method == Method.DATA:
            attributes = message.attributes
            peer = attributes.get("XOR-PEER-ADDRESS")
            data = attributes.get("DATA")
            if peer is None or data is None:
                self.stats.malformed += 1
                return
            permission = self._permissions.get(peer[0])
            if (permission is not None and permission.installed) or (
                peer in self.channels
            ):
                out.append((peer, data))
            else:
                self.stats.no_permission += 1
            return
        request = self._pending.get(message.transaction_id)
        if (
            klass not in (Class.SUCCESS, Class.ERROR)
            or request is None
            or request.method != message.method
        ):
            self.stats.unexpected += 1
            return
        if klass == Class.SUCCESS:
            if request.key is not None and not message.check_integrity(request.key):
                self.stats.unauthenticated += 1
                return
            del self._pending[message.transaction_id]
            self._on_success(request, message, now)
            return
        del self._pending[message.transaction_id]
        nonce = message.attributes.get("NONCE")
        if (
            message.error_code == 438
            and request.key is not None
            and not request.stale
            and nonce is not None
        ):
            # RFC 8489 §9.2.5: a new nonce (and maybe realm); resend once.
            self._nonce = nonce
            self._realm = message.attributes.get("REALM", self._realm)
            self._key = long_term_key(
                self._username, cast(str, self._realm), self._password, self._algorithm
            )
            self._send_request(
                request.kind,
                request.method,
                request.attributes,
                now,
                deadline=request.deadline,
                ip=request.ip,
                peer=request.peer,
                stale=True,
            )
            return
        self._on_error(request, message, now)

    def _on_success(self, request: _Request, message: Message, now: float) -> None:
        kind = request.kind
        attributes = message.attributes
        if kind == "allocate":
            if self.state == TurnState.CLOSING:
                # Closed while this was in flight: release what we just got.
                self._send_release(now)
                return
            relayed = attributes.get("XOR-RELAYED-ADDRESS")
            if relayed is None:
                self._fail("no XOR-RELAYED-ADDRESS in the Allocate success", None)
                return
            self.relayed = relayed
            self.mapped = attributes.get("XOR-MAPPED-ADDRESS")
            self.state = TurnState.ALLOCATED
            self._set_lifetime(attributes.get("LIFETIME", self.config.lifetime), now)
            logger.info(
                "%s TURN allocation at %s:%d: relayed %s:%d, lifetime %d s",
                self.name,
                self.server[0],
                self.server[1],
                relayed[0],
                relayed[1],
                self.lifetime,
            )
            self._events.append(
                AllocationSucceeded(
                    relayed=relayed,
                    mapped=self.mapped,
                    lifetime=cast(int, self.lifetime),
                )
            )
        elif kind == "refresh":
            self._set_lifetime(attributes.get("LIFETIME", self.config.lifetime), now)
        elif kind == "close":
            self._closed()
        elif kind == "permission":
            self._install(request.ip, now)
        else:
            peer = cast(Address, request.peer)
            record = self._peers[peer]
            if not record.bound:
                record.bound = True
                self._channel_peers[record.channel] = peer
                self.channels[peer] = record.channel
                self._events.append(ChannelBound(peer=peer, channel=record.channel))
            record.refresh_at = now + self.config.channel_refresh
            record.retried = False
            # A channel binding installs a permission too (RFC 8656 §12.2).
            self._install(request.ip, now, port=peer[1])

    def _on_error(self, request: _Request, message: Message, now: float) -> None:
        kind = request.kind
        reason, code = _describe(message)
        if kind == "allocate":
            if self.state == TurnState.CLOSING:
                self._closed()
            elif code == 401 and request.key is None:
                self._on_unauthenticated(message, now)
            elif code == 401:
                self._fail("wrong credentials", 401)
            elif code == 300:
                self._on_redirect(message, now)
            else:
                self._fail(reason, code)
        elif kind == "refresh":
            if code == 437:
                self._fail("allocation mismatch", 437)
            else:
                self._fail(f"{reason} to a Refresh", code)
        elif kind == "close":
            self._closed()
        elif kind == "permission":
            self._permission_failed(request.ip, reason, code)
        else:
            self._channel_failed(cast(Address, request.peer), reason)

    def _on_timeout(self, request: _Request, now: float) -> None:
        kind = request.kind
        if kind == "allocate":
            if self.state == TurnState.CLOSING:
                self._closed()
            else:
                self._fail("timed out waiting for the TURN server", None)
        elif kind == "refresh":
            # The lifetime is not over (handle_timer checks first): try again.
            self._send_refresh(now)
        elif kind == "close":
            self._closed()
        elif kind == "permission":
            self._permission_failed(request.ip, "timed out", None)
        else:
            self._channel_failed(cast(Address, request.peer), "timed out")

    def _on_unauthenticated(self, message: Message, now: float) -> None:
        """The 401 to our first Allocate: take the realm and nonce (RFC 8489 §9.2.3)."""
        attributes = message.attributes
        realm = attributes.get("REALM")
        nonce = attributes.get("NONCE")
        if realm is None or nonce is None:
            self._fail("401 without REALM or NONCE from the server", 401)
            return
        algorithms = attributes.get("PASSWORD-ALGORITHMS")
        algorithm = PasswordAlgorithm.MD5
        if algorithms is not None and any(
            a == PasswordAlgorithm.SHA256 for a, _ in algorithms
        ):
            algorithm = PasswordAlgorithm.SHA256
        self._realm = realm
        self._nonce = nonce
        self._algorithms = algorithms
        self._algorithm = algorithm
        self._key = long_term_key(self._username, realm, self._password, algorithm)
        self._send_allocate(now)

    def _on_redirect(self, message: Message, now: float) -> None:
        """300 Try Alternate (RFC 8489 §10): follow it once."""
        alternate = message.attributes.get("ALTERNATE-SERVER")
        if self._redirected or alternate is None:
            self._fail("300 Try Alternate from the server, not followed", 300)
            return
        if ipaddress.ip_address(alternate[0]).version != self._version:
            self._fail("300 Try Alternate to another address family", 300)
            return
        logger.info(
            "%s TURN server redirects to %s:%d", self.name, alternate[0], alternate[1]
        )
        self._redirected = True
        self.server = alternate
        self._realm = self._nonce = self._key = self._algorithms = None
        self._algorithm = PasswordAlgorithm.MD5
        if self._stream:
            self._framer = StreamFramer()  # a new connection, a new stream
            self._framer_dropped = 0
        self._events.append(ServerChanged(server=alternate))
        self._send_allocate(now)

    def _set_lifetime(self, lifetime: int, now: float) -> None:
        self.lifetime = lifetime
        self._expires_at = now + lifetime
        self._refresh_at = max(
            now + lifetime / 2, now + lifetime - self.config.refresh_margin
        )

    def _install(self, ip: str, now: float, port: int = 0) -> None:
        permission = self._permissions.get(ip)
        if permission is None:
            # Refreshing a channel whose permission had failed: it is back.
            permission = self._permissions[ip] = _Permission(port=port)
        permission.installed = True
        if permission.refresh_at is None:
            permission.refresh_at = now + self.config.permission_refresh
        self._flush(ip)

    def _permission_failed(self, ip: str, reason: str, code: int | None) -> None:
        logger.info("%s TURN permission for %s failed: %s", self.name, ip, reason)
        self._permissions.pop(ip, None)  # two CreatePermissions may fail
        for peer, record in list(self._peers.items()):
            if peer[0] != ip:
                continue
            self.stats.held_dropped += len(record.held)
            record.held.clear()
            self._events.append(
                PermissionFailed(peer=peer, reason=reason, error_code=code)
            )
            if not record.bound:
                # Forget it (and its ChannelBind): a later send starts over.
                del self._peers[peer]
                for tid, request in list(self._pending.items()):
                    if request.peer == peer:
                        del self._pending[tid]

    def _channel_failed(self, peer: Address, reason: str) -> None:
        logger.info(
            "%s TURN channel to %s:%d failed: %s", self.name, peer[0], peer[1], reason
        )
        record = self._peers[peer]
        # Send indications go on meanwhile; one more try, at the next
        # permission refresh, rather than a retry storm.
        record.retry = not record.retried

    # --- endings -------------------------------------------------------------------

    def _forget_peers(self) -> None:
        for record in self._peers.values():
            self.stats.held_dropped += len(record.held)
        self._peers.clear()
        self._permissions.clear()

    def _fail(self, reason: str, code: int | None) -> None:
        if self.state in (TurnState.CLOSED, TurnState.FAILED):
            return
        if self.state == TurnState.CLOSING:
            self._closed()
            return
        logger.warning("%s TURN allocation failed: %s", self.name, reason)
        self.state = TurnState.FAILED
        self.reason = reason
        self.error_code = code
        self._end()
        self._outbox.clear()
        self._events.append(AllocationFailed(reason=reason, error_code=code))

    def _closed(self) -> None:
        self.state = TurnState.CLOSED
        self._end()
        self._events.append(AllocationClosed())

    def _end(self) -> None:
        self._forget_peers()
        self._pending.clear()
        self._refresh_at = self._expires_at = self._close_at = None
