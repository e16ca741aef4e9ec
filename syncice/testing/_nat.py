"""NATs with the RFC 4787 mapping and filtering behaviours."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from syncice.stun import Address

#: RFC 4787 behaviours, for :attr:`NatBehavior.mapping` and
#: :attr:`NatBehavior.filtering`.
ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
_BEHAVIOURS = (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)


@dataclass(frozen=True)
class NatBehavior:
    """The RFC 4787 behaviour of a NAT.

    :param mapping: when an outgoing datagram reuses a mapping (§4.1): for
        every destination (``endpoint-independent``), for the same destination
        IP (``address-dependent``) or for the same destination IP and port
        (``address-and-port-dependent``, a "symmetric" NAT).
    :param filtering: which incoming datagrams a mapping lets in (§5): from
        anyone, from IPs it has sent to, or from IP and port pairs it has sent
        to.
    :param mapping_timeout: seconds after which a mapping no outgoing datagram
        refreshed expires (§4.3; incoming datagrams do not refresh it), or
        ``None`` for never.
    :param hairpinning: whether a datagram from a private host to the NAT's
        own public address is looped back in, with the sender's mapped address
        as its source (§6); dropped otherwise.
    :param port_base: the first external port the NAT hands out; it then
        counts up.
    """

    mapping: str = ENDPOINT_INDEPENDENT
    filtering: str = ENDPOINT_INDEPENDENT
    mapping_timeout: float | None = None
    hairpinning: bool = False
    port_base: int = 40000

    def __post_init__(self) -> None:
        if self.mapping not in _BEHAVIOURS or self.filtering not in _BEHAVIOURS:
            raise ValueError(f"mapping and filtering must be one of {_BEHAVIOURS}")
        if self.mapping_timeout is not None and self.mapping_timeout <= 0:
            raise ValueError("mapping_timeout must be positive or None")
        if not 1024 <= self.port_base <= 65535:
            raise ValueError("port_base must be 1024 to 65535")

    @classmethod
    def full_cone(cls) -> NatBehavior:
        """Endpoint-independent mapping and filtering."""
        return cls(ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT)

    @classmethod
    def restricted_cone(cls) -> NatBehavior:
        """Endpoint-independent mapping, address-dependent filtering."""
        return cls(ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT)

    @classmethod
    def port_restricted_cone(cls) -> NatBehavior:
        """Endpoint-independent mapping, address-and-port-dependent filtering
        (what most home routers do, RFC 4787 REQ-1 and REQ-8)."""
        return cls(ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT)

    @classmethod
    def symmetric(cls) -> NatBehavior:
        """Address-and-port-dependent mapping and filtering."""
        return cls(ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)


@dataclass
class NatMapping:
    """One mapping of a :class:`Nat`: a private address and the public one the
    NAT gave it, with the remote addresses it has sent to (for filtering)."""

    protocol: str
    internal: Address
    external: Address
    last_used: float
    contacted: set[Address] = field(default_factory=set)


@dataclass
class NatStats:
    """What a :class:`Nat` dropped, and why."""

    filtered: int = 0
    no_mapping: int = 0
    expired: int = 0
    hairpin_dropped: int = 0
    ports_exhausted: int = 0


class Nat:
    """A NAT in front of a private segment (made by :meth:`VirtualNet.add_nat`).

    :param public_ip: its public address.
    :param behavior: its RFC 4787 behaviour.
    """

    def __init__(self, public_ip: str, behavior: NatBehavior) -> None:
        self.public_ip = public_ip
        self.behavior = behavior
        self.stats = NatStats()
        #: The private host IPs behind it.
        self.private: set[str] = set()
        self._by_key: dict[tuple[object, ...], NatMapping] = {}
        self._by_port: dict[tuple[str, int], NatMapping] = {}
        self._ports = itertools.count(behavior.port_base)

    def __repr__(self) -> str:
        b = self.behavior
        return f"Nat({self.public_ip}, mapping={b.mapping}, filtering={b.filtering})"

    @property
    def mappings(self) -> list[NatMapping]:
        """The mappings it holds now, oldest first (expired ones included until
        they are next looked up)."""
        return list(self._by_port.values())

    def _alive(self, mapping: NatMapping, now: float) -> bool:
        timeout = self.behavior.mapping_timeout
        if (
            mapping.protocol == "udp"
            and timeout is not None
            and now - mapping.last_used > timeout
        ):
            self._forget(mapping)
            self.stats.expired += 1
            return False
        return True

    def _forget(self, mapping: NatMapping) -> None:
        del self._by_port[(mapping.protocol, mapping.external[1])]
        for key, m in list(self._by_key.items()):
            if m is mapping:
                del self._by_key[key]

    def outbound(
        self, protocol: str, internal: Address, remote: Address, now: float
    ) -> Address | None:
        """Map a datagram from ``internal`` to ``remote``: the public source
        address it leaves with, or ``None`` when the NAT has no port left."""
        kind = self.behavior.mapping
        key: tuple[object, ...] = (protocol, internal)
        if kind == ADDRESS_DEPENDENT:
            key += (remote[0],)
        elif kind == ADDRESS_AND_PORT_DEPENDENT:
            key += (remote,)
        mapping = self._by_key.get(key)
        if mapping is not None and not self._alive(mapping, now):
            mapping = None
        if mapping is None:
            port = next(self._ports)
            if port > 65535:
                self.stats.ports_exhausted += 1
                return None
            mapping = NatMapping(protocol, internal, (self.public_ip, port), now)
            self._by_key[key] = mapping
            self._by_port[(protocol, port)] = mapping
        mapping.last_used = now
        mapping.contacted.add(remote)
        return mapping.external

    def inbound(
        self, protocol: str, port: int, remote: Address, now: float
    ) -> Address | None:
        """The private address a datagram from ``remote`` to the public
        ``port`` goes to, or ``None`` when no mapping lets it in."""
        mapping = self._by_port.get((protocol, port))
        if mapping is None or not self._alive(mapping, now):
            self.stats.no_mapping += 1
            return None
        kind = self.behavior.filtering
        if (
            kind == ADDRESS_DEPENDENT
            and all(c[0] != remote[0] for c in mapping.contacted)
        ) or (kind == ADDRESS_AND_PORT_DEPENDENT and remote not in mapping.contacted):
            self.stats.filtered += 1
            return None
        return mapping.internal
