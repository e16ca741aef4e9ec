"""A fake TURN server for the layer-1 tests of ``syncice.turn`` (no sockets).

:class:`FakeTurnServer` takes what a :class:`~syncice.turn.TurnAllocation`
sends (one datagram, or one frame of a stream) and returns its answers as
bytes. It keeps long-term credentials (401 with REALM and NONCE, MD5 or
SHA-256 keys, 438 when the nonce is old), one allocation, permissions,
channels, and what it relayed to peers. Knobs make it misbehave: ``errors``
answers the next requests of a method with error codes, ``stale`` answers the
next authenticated requests with 438, ``silent`` drops everything, ``sign``
off leaves success responses without integrity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncice.stun import (
    ChannelData,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    is_channel_data,
    long_term_key,
    parse_channel_data,
    parse_message,
)

Address = tuple[str, int]

SERVER = ("198.51.100.1", 3478)
RELAYED = ("198.51.100.1", 50000)
MAPPED = ("203.0.113.7", 40000)


@dataclass
class FakeTurnServer:
    """One TURN server, one client; see the module docstring."""

    username: str = "user"
    password: str = "secret"
    realm: str = "example.org"
    #: Offer SHA-256 (PASSWORD-ALGORITHMS in the 401), or this exact list.
    sha256: bool = False
    algorithms: tuple[tuple[int, bytes], ...] | None = None
    #: Include REALM and NONCE in 401 answers.
    challenge: bool = True
    relayed: Address = RELAYED
    mapped: Address | None = MAPPED
    #: LIFETIME in Allocate and Refresh answers; None: leave it out.
    lifetime: int | None = 600
    #: Pad ChannelData to 4 bytes (a stream).
    padded: bool = False
    silent: bool = False
    sign: bool = True
    #: Method -> error codes for its next requests, first first.
    errors: dict[int, list[int]] = field(default_factory=dict)
    #: ALTERNATE-SERVER of a 300 answer.
    alternate: Address | None = None
    #: How many authenticated requests to answer with 438 (a new nonce each).
    stale: int = 0
    nonce: bytes = b"nonce-1"
    requests: list[Message] = field(default_factory=list)
    #: Every datagram the client asked us to relay: (peer, data, how) with
    #: how "send" (a Send indication) or "channel" (ChannelData).
    relayed_out: list[tuple[Address, bytes, str]] = field(default_factory=list)
    allocated: bool = False
    permissions: set[str] = field(default_factory=set)
    channels: dict[int, Address] = field(default_factory=dict)

    def key(self, algorithm: int = PasswordAlgorithm.MD5) -> bytes:
        return long_term_key(
            self.username, self.realm, self.password, PasswordAlgorithm(algorithm)
        )

    def handle(self, data: bytes) -> list[bytes]:
        """Take one datagram (or frame) from the client; return the answers."""
        if is_channel_data(data):
            frame = parse_channel_data(data)
            peer = self.channels.get(frame.channel)
            if peer is not None and not self.silent:
                self.relayed_out.append((peer, frame.data, "channel"))
            return []
        message = parse_message(data)
        if message.message_class == Class.INDICATION:
            peer = message.attributes["XOR-PEER-ADDRESS"]
            if peer[0] in self.permissions and not self.silent:
                self.relayed_out.append((peer, message.attributes["DATA"], "send"))
            return []
        self.requests.append(message)
        if self.silent:
            return []
        return [self._answer(message)]

    def _error(
        self, request: Message, code: int, attributes: dict[str, object] | None = None
    ) -> bytes:
        response = Message(
            request.method,
            Class.ERROR,
            request.transaction_id,
            {"ERROR-CODE": (code, "error"), **(attributes or {})},  # type: ignore[arg-type]
        )
        return response.encode(fingerprint=True)

    def _challenge(self, request: Message, code: int = 401) -> bytes:
        attributes: dict[str, object] = {}
        if self.challenge:
            attributes = {"REALM": self.realm, "NONCE": self.nonce}
        if self.algorithms is not None:
            attributes["PASSWORD-ALGORITHMS"] = self.algorithms
        elif self.sha256:
            attributes["PASSWORD-ALGORITHMS"] = (
                (PasswordAlgorithm.SHA256, b""),
                (PasswordAlgorithm.MD5, b""),
            )
        return self._error(request, code, attributes)

    def _answer(self, request: Message) -> bytes:
        if request.integrity is None:
            return self._challenge(request)
        if self.stale:
            self.stale -= 1
            self.nonce += b"+"
            return self._challenge(request, 438)
        algorithm = request.attributes.get(
            "PASSWORD-ALGORITHM", (PasswordAlgorithm.MD5, b"")
        )[0]
        key = self.key(algorithm)
        if (
            request.attributes.get("USERNAME") != self.username
            or request.attributes.get("REALM") != self.realm
            or not request.check_integrity(key)
        ):
            return self._challenge(request)
        if request.attributes.get("NONCE") != self.nonce:
            return self._challenge(request, 438)
        codes = self.errors.get(request.method)
        if codes:
            code = codes.pop(0)
            if code == 300 and self.alternate is not None:
                return self._error(request, 300, {"ALTERNATE-SERVER": self.alternate})
            return self._error(request, code)
        attributes: dict[str, object] = {}
        attrs = request.attributes
        if request.method == Method.ALLOCATE:
            self.allocated = True
            attributes["XOR-RELAYED-ADDRESS"] = self.relayed
            if self.mapped is not None:
                attributes["XOR-MAPPED-ADDRESS"] = self.mapped
            if self.lifetime is not None:
                attributes["LIFETIME"] = self.lifetime
        elif request.method == Method.REFRESH:
            if attrs.get("LIFETIME") == 0:
                self.allocated = False
                attributes["LIFETIME"] = 0
            elif self.lifetime is not None:
                attributes["LIFETIME"] = self.lifetime
        elif request.method == Method.CREATE_PERMISSION:
            self.permissions.add(attrs["XOR-PEER-ADDRESS"][0])
        elif request.method == Method.CHANNEL_BIND:
            peer = attrs["XOR-PEER-ADDRESS"]
            self.permissions.add(peer[0])
            self.channels[attrs["CHANNEL-NUMBER"]] = peer
        response = Message(
            request.method,
            Class.SUCCESS,
            request.transaction_id,
            attributes,  # type: ignore[arg-type]
        )
        if not self.sign:
            return response.encode(fingerprint=True)
        return response.encode(key=key, integrity=request.integrity, fingerprint=True)

    def data_indication(self, peer: Address, data: bytes) -> bytes:
        """A Data indication from ``peer`` (whether or not it may send)."""
        message = Message(
            Method.DATA,
            Class.INDICATION,
            bytes(12),
            {"XOR-PEER-ADDRESS": peer, "DATA": data},
        )
        return message.encode(fingerprint=True)

    def channel_data(self, channel: int, data: bytes) -> bytes:
        """ChannelData on ``channel``, padded if the server is a stream."""
        return ChannelData(channel, data).encode(padded=self.padded)

    def requests_of(self, method: Method) -> list[Message]:
        return [m for m in self.requests if m.method == method]
