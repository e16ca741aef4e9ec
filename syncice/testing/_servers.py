"""STUN and TURN servers on the public segment of the virtual network."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syncice.exceptions import StunParseError
from syncice.stun import (
    Address,
    ChannelData,
    Class,
    Message,
    Method,
    StreamFramer,
    is_channel_data,
    long_term_key,
    parse_channel_data,
    parse_message,
)

if TYPE_CHECKING:
    from syncice.testing._net import Stream, VirtualNet


def _binding_response(request: Message, src: Address) -> bytes:
    return Message(
        Method.BINDING,
        Class.SUCCESS,
        request.transaction_id,
        {"XOR-MAPPED-ADDRESS": src},
    ).encode(fingerprint=True)


class StunServer:
    """A STUN server (RFC 8489) on a public host: it answers Binding requests
    with the source address it saw, in XOR-MAPPED-ADDRESS. It ignores
    anything else, malformed bytes included (counted in :attr:`ignored`).

    :param net: the network; the host is added if it is not there.
    :param addr: where it listens.
    """

    def __init__(self, net: VirtualNet, addr: Address) -> None:
        if addr[0] not in net.hosts:
            net.add_host(addr[0])
        self.net = net
        self.addr = addr
        #: How many requests it answered, and how many datagrams it ignored.
        self.answered = 0
        self.ignored = 0
        net.bind(addr, self._on_datagram)

    def _on_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        try:
            request = parse_message(data)
        except StunParseError:
            self.ignored += 1
            return
        if request.message_class != Class.REQUEST or request.method != Method.BINDING:
            self.ignored += 1
            return
        self.answered += 1
        self.net.send(self.addr, src, _binding_response(request, src))


_PERMISSION_LIFETIME = 300.0
_CHANNEL_LIFETIME = 600.0


@dataclass
class TurnAllocationState:
    """One allocation on a :class:`TurnServer`."""

    client: Address
    relayed: Address
    expires: float
    stream: Stream | None
    #: peer IP -> when its permission expires.
    permissions: dict[str, float] = field(default_factory=dict)
    #: channel -> (peer, expiry), and peer -> channel.
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)
    peers: dict[Address, int] = field(default_factory=dict)
    allocate_tid: bytes = b""


class TurnServer:
    """A TURN server (RFC 8656) on a public host, over UDP and TCP.

    Requests need the long-term credential (RFC 8489 §9.2): without a valid
    MESSAGE-INTEGRITY they get 401 with REALM and NONCE, and create nothing.
    Supported: Allocate (REQUESTED-TRANSPORT UDP; 437 when the client has one
    already, the same response again for a retransmitted Allocate), Refresh
    (LIFETIME 0 deletes), CreatePermission, ChannelBind (400 for a bad
    channel or a channel or peer already bound elsewhere), Send and Data
    indications, ChannelData (padded on TCP). Binding requests are answered
    as by :class:`StunServer`. Permissions last 300 s, channels 600 s,
    allocations their LIFETIME (capped at ``max_lifetime``): all are checked
    when used, so an expired one drops traffic. Data from a peer without a
    permission is dropped (counted in :attr:`dropped`). Tests can make it
    refuse a method (:attr:`refuse`) or redirect Allocates
    (:attr:`alternate`).

    :param net: the network; the host is added if it is not there.
    :param addr: where it listens (UDP and TCP).
    :param username: the one user.
    :param password: its password.
    :param realm: the realm.
    :param max_allocations: Allocate gets 486 beyond this.
    :param max_lifetime: the longest lifetime granted, in seconds.
    :param relay_port: the port of the first relayed address; the next ones
        count up.
    """

    def __init__(
        self,
        net: VirtualNet,
        addr: Address,
        *,
        username: str = "user",
        password: str = "secret",
        realm: str = "syncice.test",
        max_allocations: int = 64,
        max_lifetime: int = 3600,
        relay_port: int = 49152,
    ) -> None:
        if addr[0] not in net.hosts:
            net.add_host(addr[0])
        self.net = net
        self.addr = addr
        self.username = username
        self.password = password
        self.realm = realm
        self.max_allocations = max_allocations
        self.max_lifetime = max_lifetime
        self.key = long_term_key(username, realm, password)
        self.nonce = b"0123456789abcdef"
        #: client address (as seen) -> allocation.
        self.allocations: dict[Address, TurnAllocationState] = {}
        #: Every request received: ``(client, message)``.
        self.requests: list[tuple[Address, Message]] = []
        #: Datagrams and frames dropped: malformed, unauthenticated indications,
        #: no allocation, no permission.
        self.dropped = 0
        self._by_relayed: dict[Address, TurnAllocationState] = {}
        #: Authenticated requests refused: method -> the error code to answer
        #: them with (after :attr:`alternate`). Tests set and clear it.
        self.refuse: dict[int, int] = {}
        #: Where to send clients instead: every authenticated Allocate gets
        #: 300 with this ALTERNATE-SERVER (RFC 8489 §10), or ``None``.
        self.alternate: Address | None = None
        self._ports = itertools.count(relay_port)
        net.bind(addr, self._on_udp)
        net._stream_servers[addr] = self

    # --- transport ---------------------------------------------------------------

    def accept(self, stream: Stream) -> None:
        """Take a new TCP connection (see :meth:`VirtualNet.open_stream`)."""
        framer = StreamFramer()

        def on_bytes(data: bytes) -> None:
            try:
                frames = framer.feed(data)
            except StunParseError:
                stream.close()
                self._drop_stream(stream)
                return
            for frame in frames:
                if isinstance(frame, ChannelData):
                    self._on_channel_data(stream.seen, frame)
                else:
                    self._on_message(stream.seen, frame, stream)

        stream.on_server_data = on_bytes

    def _drop_stream(self, stream: Stream) -> None:
        state = self.allocations.get(stream.seen)
        if state is not None and state.stream is stream:
            self._delete(state)

    def _reply(self, client: Address, stream: Stream | None, data: bytes) -> None:
        if stream is not None:
            stream.reply(data)
        else:
            self.net.send(self.addr, client, data)

    def _on_udp(self, src: Address, dst: Address, data: bytes) -> None:
        if is_channel_data(data):
            try:
                frame = parse_channel_data(data)
            except StunParseError:
                self.dropped += 1
                return
            self._on_channel_data(src, frame)
            return
        try:
            message = parse_message(data)
        except StunParseError:
            self.dropped += 1
            return
        self._on_message(src, message, None)

    # --- allocations ----------------------------------------------------------------

    def _live(self, client: Address) -> TurnAllocationState | None:
        state = self.allocations.get(client)
        if state is not None and self.net.now >= state.expires:
            self._delete(state)
            return None
        return state

    def _delete(self, state: TurnAllocationState) -> None:
        self.allocations.pop(state.client, None)
        self._by_relayed.pop(state.relayed, None)
        self.net.unbind(state.relayed)

    def _permitted(self, state: TurnAllocationState, ip: str) -> bool:
        expires = state.permissions.get(ip)
        return expires is not None and self.net.now < expires

    def _on_channel_data(self, client: Address, frame: ChannelData) -> None:
        state = self._live(client)
        bound = None if state is None else state.channels.get(frame.channel)
        if state is None or bound is None or self.net.now >= bound[1]:
            self.dropped += 1
            return
        peer = bound[0]
        if not self._permitted(state, peer[0]):
            self.dropped += 1
            return
        self.net.send(state.relayed, peer, frame.data)

    def _on_peer(self, src: Address, dst: Address, data: bytes) -> None:
        state = self._by_relayed.get(dst)
        if state is None or self._live(state.client) is None:
            self.dropped += 1
            return
        if not self._permitted(state, src[0]):
            self.dropped += 1
            return
        channel = state.peers.get(src)
        if channel is not None and self.net.now < state.channels[channel][1]:
            out = ChannelData(channel, data).encode(padded=state.stream is not None)
        else:
            out = Message(
                Method.DATA,
                Class.INDICATION,
                self.net.rng.getrandbits(96).to_bytes(12, "big"),
                {"XOR-PEER-ADDRESS": src, "DATA": data},
            ).encode()
        self._reply(state.client, state.stream, out)

    # --- messages -------------------------------------------------------------------

    def _answer(
        self,
        request: Message,
        attributes: dict[str, object],
        *,
        code: int = 0,
        reason: str = "",
    ) -> bytes:
        if code:
            attributes = {"ERROR-CODE": (code, reason), **attributes}
        return Message(
            request.method,
            Class.ERROR if code else Class.SUCCESS,
            request.transaction_id,
            attributes,  # type: ignore[arg-type]
        ).encode(key=self.key, fingerprint=True)

    def _on_message(
        self, client: Address, message: Message, stream: Stream | None
    ) -> None:
        if message.message_class == Class.INDICATION:
            if message.method == Method.SEND:
                self._on_send(client, message)
            else:
                self.dropped += 1
            return
        if message.message_class != Class.REQUEST:
            self.dropped += 1
            return
        if message.method == Method.BINDING:
            self._reply(client, stream, _binding_response(message, client))
            return
        self.requests.append((client, message))
        if message.attributes.get(
            "USERNAME"
        ) != self.username or not message.check_integrity(self.key):
            unauthorized = Message(
                message.method,
                Class.ERROR,
                message.transaction_id,
                {
                    "ERROR-CODE": (401, "Unauthorized"),
                    "REALM": self.realm,
                    "NONCE": self.nonce,
                },
            )
            self._reply(client, stream, unauthorized.encode(fingerprint=True))
            return
        handlers: dict[int, Callable[[Address, Message, Stream | None], bytes]] = {
            Method.ALLOCATE: self._allocate,
            Method.REFRESH: self._refresh,
            Method.CREATE_PERMISSION: self._create_permission,
            Method.CHANNEL_BIND: self._channel_bind,
        }
        handler = handlers.get(message.method)
        refused = self.refuse.get(message.method, 0)
        if self.alternate is not None and message.method == Method.ALLOCATE:
            answer = self._answer(
                message,
                {"ALTERNATE-SERVER": self.alternate},
                code=300,
                reason="Try Alternate",
            )
        elif refused:
            answer = self._answer(message, {}, code=refused, reason="Refused")
        elif handler is None:
            answer = self._answer(message, {}, code=400, reason="Bad Request")
        else:
            answer = handler(client, message, stream)
        self._reply(client, stream, answer)

    def _allocate(
        self, client: Address, message: Message, stream: Stream | None
    ) -> bytes:
        state = self._live(client)
        if state is not None:
            if state.allocate_tid == message.transaction_id:
                return self._allocated(message, state)
            return self._answer(message, {}, code=437, reason="Allocation Mismatch")
        if message.attributes.get("REQUESTED-TRANSPORT") != 17:
            return self._answer(
                message, {}, code=442, reason="Unsupported Transport Protocol"
            )
        if len(self.allocations) >= self.max_allocations:
            return self._answer(message, {}, code=486, reason="Allocation Quota")
        relayed = (self.addr[0], next(self._ports))
        state = TurnAllocationState(
            client,
            relayed,
            self.net.now + self._lifetime(message),
            stream,
            allocate_tid=message.transaction_id,
        )
        self.allocations[client] = state
        self._by_relayed[relayed] = state
        self.net.bind(relayed, self._on_peer)
        return self._allocated(message, state)

    def _allocated(self, message: Message, state: TurnAllocationState) -> bytes:
        return self._answer(
            message,
            {
                "XOR-RELAYED-ADDRESS": state.relayed,
                "XOR-MAPPED-ADDRESS": state.client,
                "LIFETIME": round(state.expires - self.net.now),
            },
        )

    def _lifetime(self, message: Message) -> int:
        asked = message.attributes.get("LIFETIME", 600)
        return min(asked if isinstance(asked, int) else 600, self.max_lifetime)

    def _refresh(
        self, client: Address, message: Message, stream: Stream | None
    ) -> bytes:
        state = self._live(client)
        if state is None:
            return self._answer(message, {}, code=437, reason="Allocation Mismatch")
        lifetime = self._lifetime(message)
        if lifetime == 0:
            self._delete(state)
        else:
            state.expires = self.net.now + lifetime
        return self._answer(message, {"LIFETIME": lifetime})

    def _create_permission(
        self, client: Address, message: Message, stream: Stream | None
    ) -> bytes:
        state = self._live(client)
        if state is None:
            return self._answer(message, {}, code=437, reason="Allocation Mismatch")
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        if not isinstance(peer, tuple):
            return self._answer(message, {}, code=400, reason="Bad Request")
        state.permissions[peer[0]] = self.net.now + _PERMISSION_LIFETIME
        return self._answer(message, {})

    def _channel_bind(
        self, client: Address, message: Message, stream: Stream | None
    ) -> bytes:
        state = self._live(client)
        if state is None:
            return self._answer(message, {}, code=437, reason="Allocation Mismatch")
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        channel = message.attributes.get("CHANNEL-NUMBER")
        if (
            not isinstance(peer, tuple)
            or not isinstance(channel, int)
            or not 0x4000 <= channel <= 0x4FFF
        ):
            return self._answer(message, {}, code=400, reason="Bad Request")
        bound = state.channels.get(channel)
        if (bound is not None and bound[0] != peer) or state.peers.get(
            peer, channel
        ) != channel:
            return self._answer(message, {}, code=400, reason="Bad Request")
        state.channels[channel] = (peer, self.net.now + _CHANNEL_LIFETIME)
        state.peers[peer] = channel
        state.permissions[peer[0]] = self.net.now + _PERMISSION_LIFETIME
        return self._answer(message, {})

    def _on_send(self, client: Address, message: Message) -> None:
        state = self._live(client)
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        data = message.attributes.get("DATA")
        if (
            state is None
            or not isinstance(peer, tuple)
            or not isinstance(data, bytes)
            or not self._permitted(state, peer[0])
        ):
            self.dropped += 1
            return
        self.net.send(state.relayed, peer, data)
