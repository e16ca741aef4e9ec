"""A sans-IO mDNS resolver and responder for ICE candidates (RFC 6762).

It serves draft-ietf-mmusic-mdns-ice-candidates: a host candidate may carry a
random name ``<uuid4>.local`` instead of its address, and a peer on the same
link resolves the name with a multicast DNS query. :class:`MdnsProtocol` does
both halves over dnspython messages, with the verbs of the rest of the core:
bytes and ``now`` go in through :meth:`~MdnsProtocol.receive_datagram`,
datagrams come out of :meth:`~MdnsProtocol.datagrams_to_send`, the next
deadline out of :meth:`~MdnsProtocol.get_timer`, results out of
:meth:`~MdnsProtocol.next_event`. The worker owns the multicast socket.

Its rules:

- **Resolving** is a one-shot query (RFC 6762 §5.1) asking A and AAAA in one
  message, sent multicast without the QU bit (QM): the answer is multicast
  too, so every resolver on the link waiting for the name gets it, and
  resolvers bound to port 5353 (ours, aioice's) hear it either way. The query
  is sent again after ``retransmit`` seconds, the interval doubling, until an
  answer or ``resolve_timeout``; the name is then reported unresolved
  (:class:`NameUnresolved`). At most ``max_pending`` names are being resolved
  at once; beyond that a name is reported unresolved at once.
- **Answers** are taken from the answer and additional sections of a
  response from port 5353 (§11: other source ports are ignored), only for a
  name being resolved or already cached: an answer nobody asked for creates no
  state. Cached names keep their addresses for their TTL (at most
  ``max_ttl``); a TTL of 0 (a goodbye, §10.1) removes them. The cache holds at
  most ``max_cache`` names, the oldest evicted first.
- **Publishing**: :meth:`~MdnsProtocol.publish` registers one of our names
  with its address. A query from port 5353 that asks for one of our names (A,
  AAAA or ANY, class IN, with or without the QU bit) is answered with the
  records of the family asked, multicast to the group of the family it came
  from, with the cache-flush bit (§10.2: the names are unique) and TTL
  ``ttl``; a record is multicast at most once per ``answer_interval`` (§6).
  Questions for other names are never answered.
- **Bytes** from the network never raise: a datagram that does not parse, is
  larger than 9000 bytes (§17), or is neither a query nor a response we use is
  dropped and counted in :attr:`MdnsProtocol.stats`. A record whose rdata
  has a compressed name where dnspython refuses one (an NSEC record, as
  Chromium's responder sends with every answer: RFC 6762 §18.14 allows it)
  is skipped, the rest of its message used.
- **Names** are checked strictly: :func:`is_mdns_hostname` accepts one
  LDH label (RFC 1123) of 1 to 63 characters followed by ``.local``, and
  :func:`create_mdns_hostname` makes a random UUID version 4 name.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import re
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = [
    "MDNS_ADDRESS",
    "MDNS_ADDRESS6",
    "MDNS_PORT",
    "MdnsConfig",
    "MdnsEvent",
    "MdnsProtocol",
    "MdnsStats",
    "NameResolved",
    "NameUnresolved",
    "create_mdns_hostname",
    "is_mdns_hostname",
]

#: The IPv4 mDNS group (RFC 6762 §3).
MDNS_ADDRESS: Final = "224.0.0.251"
#: The IPv6 mDNS group.
MDNS_ADDRESS6: Final = "ff02::fb"
#: The mDNS port.
MDNS_PORT: Final = 5353

#: RFC 6762 §17: the largest mDNS message.
_MAX_MESSAGE: Final = 9000
#: The top bit of a question's class (QU) or a record's class (cache-flush).
_TOP_BIT: Final = 0x8000
_IN: Final = int(dns.rdataclass.IN)
_A: Final = int(dns.rdatatype.A)
_AAAA: Final = int(dns.rdatatype.AAAA)
_ANY: Final = int(dns.rdatatype.ANY)
_FAMILIES: Final = ((4, dns.rdatatype.A), (6, dns.rdatatype.AAAA))
_FLUSH_IN: Final = dns.rdataclass.RdataClass.make(_IN | _TOP_BIT)

_HOSTNAME: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.local", re.ASCII | re.IGNORECASE
).fullmatch

Address = tuple[str, int]
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_mdns_hostname(name: object) -> bool:
    """Whether ``name`` is a name this module resolves: one LDH label of 1 to
    63 characters (letters, digits, inner hyphens), then ``.local``.

    ``"a.b.local"``, a trailing dot, an empty label or any other domain are
    refused; case does not matter.

    :param name: the candidate's address, as text.
    """
    return isinstance(name, str) and _HOSTNAME(name) is not None


def create_mdns_hostname(rng: random.Random | None = None) -> str:
    """A fresh name for a host candidate: a random UUID version 4 and
    ``.local`` (draft-ietf-mmusic-mdns-ice-candidates §3.1.1).

    :param rng: the source of the 122 random bits; ``None`` for
        :func:`uuid.uuid4` (the operating system's randomness).
    """
    if rng is None:
        return f"{uuid.uuid4()}.local"
    return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}.local"


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsConfig:
    """Timing and bounds of :class:`MdnsProtocol`.

    :ivar retransmit: seconds before the first retransmission of a query; the
        interval doubles after each.
    :ivar resolve_timeout: seconds after which a name without an answer is
        reported unresolved.
    :ivar max_pending: names being resolved at once.
    :ivar max_cache: names kept in the cache (the oldest go first).
    :ivar max_ttl: the longest a cached answer is kept, in seconds.
    :ivar ttl: the TTL of our answers, in seconds (RFC 6762 §10: 120 for
        records with a host name).
    :ivar answer_interval: a record is multicast at most once this often.
    :ivar max_queued: datagrams waiting for :meth:`MdnsProtocol.datagrams_to_send`;
        more are dropped.
    """

    retransmit: float = 0.25
    resolve_timeout: float = 2.0
    max_pending: int = 64
    max_cache: int = 64
    max_ttl: float = 3600.0
    ttl: int = 120
    answer_interval: float = 1.0
    max_queued: int = 64

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"MdnsConfig.{field.name} must be > 0, not {value!r}")


@dataclass(slots=True)
class MdnsStats:
    """Counters of :class:`MdnsProtocol`.

    :ivar malformed: datagrams that did not parse as DNS, or were too long.
    :ivar ignored: well-formed datagrams we had no use for (wrong port or
        opcode, unsolicited answers, questions for names not ours).
    :ivar answers_sent: responses queued.
    :ivar queries_sent: queries queued, retransmissions included.
    :ivar queue_drops: datagrams dropped because the send queue was full.
    """

    malformed: int = 0
    ignored: int = 0
    answers_sent: int = 0
    queries_sent: int = 0
    queue_drops: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MdnsEvent:
    """Base class of the events of :class:`MdnsProtocol`.

    :ivar name: the name, lower-case, as passed to :meth:`MdnsProtocol.resolve`.
    """

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NameResolved(MdnsEvent):
    """A name was resolved.

    :ivar addresses: its addresses, in the order of the answer (at least one).
    """

    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NameUnresolved(MdnsEvent):
    """A name got no answer within ``resolve_timeout``, or could not be
    queried (too many pending, or :meth:`MdnsProtocol.fail_pending`)."""


@dataclass(slots=True)
class _Pending:
    deadline_at: float
    retransmit_at: float
    interval: float


@dataclass(slots=True)
class _Cached:
    addresses: list[str]
    expires_at: float


def _address(rdata: dns.rdata.Rdata) -> str | None:
    """The address of an A or AAAA record (of any class), or ``None``."""
    data = rdata.to_wire() or b""
    if rdata.rdtype == _A and len(data) == 4:
        return str(ipaddress.IPv4Address(data))
    if rdata.rdtype == _AAAA and len(data) == 16:
        return str(ipaddress.IPv6Address(data))
    return None


def _parse_ip(address: str) -> _IPAddress:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise ValueError(f"{address!r}: scoped IPv6 addresses are not supported")
    return ip


def _dns_name(name: str) -> dns.name.Name:
    """The absolute DNS name of a checked mDNS host name."""
    return dns.name.from_text(name.lower() + ".")


class MdnsProtocol:
    """mDNS resolver and responder, sans-IO; see the module docstring.

    :param config: timing and bounds; the defaults otherwise.

    :ivar stats: counters of dropped and sent datagrams.
    """

    def __init__(self, config: MdnsConfig | None = None) -> None:
        self.config = config if config is not None else MdnsConfig()
        self.stats = MdnsStats()
        # Our names: DNS name -> {4 or 6: address}.
        self._owned: dict[dns.name.Name, dict[int, str]] = {}
        # When each (name, rdtype) of ours was last multicast.
        self._answered: dict[tuple[dns.name.Name, int], float] = {}
        self._pending: dict[dns.name.Name, _Pending] = {}
        self._cache: OrderedDict[dns.name.Name, _Cached] = OrderedDict()
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._events: deque[MdnsEvent] = deque()

    # --- publishing ------------------------------------------------------------

    def publish(self, name: str, address: str) -> None:
        """Answer queries for ``name`` with ``address`` from now on.

        A name has at most one address per family; publishing again replaces
        it.

        :param name: one of our names (:func:`is_mdns_hostname`).
        :param address: an IPv4 or IPv6 address (no scope).
        :raises ValueError: the name or the address is malformed.
        """
        if not is_mdns_hostname(name):
            raise ValueError(f"{name!r} is not an mDNS host name (<label>.local)")
        ip = _parse_ip(address)
        self._owned.setdefault(_dns_name(name), {})[ip.version] = ip.compressed

    def unpublish(self, name: str) -> None:
        """Stop answering for ``name``; no error if it was not published.

        :param name: a name given to :meth:`publish`.
        """
        if is_mdns_hostname(name):
            key = _dns_name(name)
            self._owned.pop(key, None)
            for rdtype in (_A, _AAAA):
                self._answered.pop((key, rdtype), None)

    # --- resolving -------------------------------------------------------------

    def resolve(self, name: str, now: float) -> None:
        """Start resolving ``name``; the result comes as an event.

        A name in the cache is resolved at once (:class:`NameResolved` is
        queued); a name already being resolved is not queried again.

        :param name: a name for which :func:`is_mdns_hostname` holds.
        :param now: the current time.
        :raises ValueError: the name is malformed.
        """
        if not is_mdns_hostname(name):
            raise ValueError(f"{name!r} is not an mDNS host name (<label>.local)")
        key = _dns_name(name)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.expires_at > now:
                self._events.append(
                    NameResolved(name=name.lower(), addresses=tuple(cached.addresses))
                )
                return
            del self._cache[key]
        if key in self._pending:
            return
        if len(self._pending) >= self.config.max_pending:
            self._events.append(NameUnresolved(name=name.lower()))
            return
        config = self.config
        self._pending[key] = _Pending(
            deadline_at=now + config.resolve_timeout,
            retransmit_at=now + config.retransmit,
            interval=config.retransmit,
        )
        self._send_query(key)

    def fail_pending(self) -> None:
        """Report every name being resolved as unresolved now (the socket
        cannot send, for instance)."""
        for key in self._pending:
            self._events.append(NameUnresolved(name=_text(key)))
        self._pending.clear()

    def cached(self, name: str, now: float) -> tuple[str, ...] | None:
        """:returns: the addresses cached for ``name``, if not expired."""
        if not is_mdns_hostname(name):
            return None
        entry = self._cache.get(_dns_name(name))
        if entry is None or entry.expires_at <= now:
            return None
        return tuple(entry.addresses)

    def _send_query(self, key: dns.name.Name) -> None:
        message = dns.message.Message(id=0)
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            message.question.append(dns.rrset.RRset(key, dns.rdataclass.IN, rdtype))
        self.stats.queries_sent += 1
        self._queue_datagram(message.to_wire(), (MDNS_ADDRESS, MDNS_PORT))

    # --- the core verbs --------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Handle a datagram received on the mDNS socket; never raises.

        :param data: the datagram.
        :param addr: where it came from: ``(host, port)``.
        :param now: the current time.
        """
        if len(data) > _MAX_MESSAGE:
            self.stats.malformed += 1
            return
        message = _parse(data)
        if message is None:
            self.stats.malformed += 1
            return
        if addr[1] != MDNS_PORT or message.opcode() != dns.opcode.QUERY:
            self.stats.ignored += 1
            return
        if message.flags & dns.flags.QR:
            self._receive_response(message, now)
        else:
            self._receive_query(message, addr, now)

    def _receive_query(
        self, message: dns.message.Message, addr: Address, now: float
    ) -> None:
        response = dns.message.Message(id=0)
        response.flags = dns.flags.QR | dns.flags.AA
        interval = self.config.answer_interval
        for question in message.question:
            addresses = self._owned.get(question.name)
            if addresses is None or question.rdclass & ~_TOP_BIT != _IN:
                continue
            for family, rdtype in _FAMILIES:
                address = addresses.get(family)
                if address is None or question.rdtype not in (rdtype, _ANY):
                    continue
                last = self._answered.get((question.name, rdtype))
                if last is not None and now - last < interval:
                    continue
                self._answered[(question.name, rdtype)] = now
                rdata = dns.rdata.GenericRdata(
                    _FLUSH_IN, rdtype, ipaddress.ip_address(address).packed
                )
                rrset = dns.rrset.RRset(question.name, _FLUSH_IN, rdtype)
                rrset.update_ttl(self.config.ttl)
                rrset.add(rdata)
                response.answer.append(rrset)
        if not response.answer:
            self.stats.ignored += 1
            return
        group = MDNS_ADDRESS6 if ":" in addr[0] else MDNS_ADDRESS
        self.stats.answers_sent += 1
        self._queue_datagram(response.to_wire(), (group, MDNS_PORT))

    def _receive_response(self, message: dns.message.Message, now: float) -> None:
        found: dict[dns.name.Name, tuple[list[str], float]] = {}
        for rrset in (*message.answer, *message.additional):
            key = rrset.name
            if rrset.rdclass & ~_TOP_BIT != _IN or (
                key not in self._pending and key not in self._cache
            ):
                continue
            addresses, ttl = found.setdefault(key, ([], float(rrset.ttl)))
            for rdata in rrset:
                address = _address(rdata)
                if address is not None and address not in addresses:
                    addresses.append(address)
            found[key] = (addresses, min(ttl, float(rrset.ttl)))
        used = False
        for key, (addresses, ttl) in found.items():
            if not addresses:
                continue
            used = True
            if ttl <= 0:  # a goodbye
                self._cache.pop(key, None)
                continue
            self._remember(key, addresses, now + min(ttl, self.config.max_ttl))
            if self._pending.pop(key, None) is not None:
                self._events.append(
                    NameResolved(name=_text(key), addresses=tuple(addresses))
                )
        if not used:
            self.stats.ignored += 1

    def _remember(self, key: dns.name.Name, addresses: list[str], at: float) -> None:
        cache = self._cache
        cache.pop(key, None)
        cache[key] = _Cached(addresses, at)
        while len(cache) > self.config.max_cache:
            cache.popitem(last=False)

    def _queue_datagram(self, data: bytes, addr: Address) -> None:
        if len(self._queue) >= self.config.max_queued:
            self.stats.queue_drops += 1
            return
        self._queue.append((data, addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Take the datagrams queued to send (the queue is emptied).

        :param now: the current time.
        :returns: ``(data, (host, port))`` pairs, in order.
        """
        out = list(self._queue)
        self._queue.clear()
        return out

    def get_timer(self) -> float | None:
        """:returns: when :meth:`handle_timer` should next run, or ``None``."""
        return min(
            (min(p.retransmit_at, p.deadline_at) for p in self._pending.values()),
            default=None,
        )

    def handle_timer(self, now: float) -> None:
        """Retransmit queries that are due, and give up on names past their
        deadline.

        :param now: the current time.
        """
        for key, pending in list(self._pending.items()):
            if pending.deadline_at <= now:
                del self._pending[key]
                self._events.append(NameUnresolved(name=_text(key)))
            elif pending.retransmit_at <= now:
                pending.interval *= 2
                pending.retransmit_at = now + pending.interval
                self._send_query(key)

    def next_event(self) -> MdnsEvent | None:
        """:returns: the next event, or ``None`` when there is none."""
        return self._events.popleft() if self._events else None


#: dnspython >= 2.8 refuses a compression pointer in the rdata of a type
#: whose RFC forbids it (NSEC's next domain name, RFC 4034 §4.1.1); older
#: versions decompress every name and never raise it.
_DecompressionForbidden: type[Exception] = getattr(
    dns.name, "DecompressionForbidden", type("_Never", (Exception,), {})
)


def _parse(data: bytes) -> dns.message.Message | None:
    """The DNS message in ``data``, or ``None`` if it is not one.

    RFC 6762 §18.14 has mDNS compress names in rdata too, NSEC's included:
    Chromium's responder does, in the NSEC record it adds to every answer
    (the "negative" half of its announcement, RFC 6762 §6.1). A strict
    parser refuses such a message whole; here only those records are
    skipped (we use none of them) and the rest of the message is kept. Any
    other error drops the datagram.
    """
    try:
        return dns.message.from_wire(data, ignore_trailing=True)
    except _DecompressionForbidden:
        pass
    except Exception:  # dnspython raises many kinds on hostile input
        return None
    try:
        message = dns.message.from_wire(
            data, ignore_trailing=True, continue_on_error=True
        )
    except Exception:
        return None
    # A compressed name in rdata is skipped record by record (parsing goes
    # on); any other error ends the parse and the message is refused.
    errors = getattr(message, "errors", ())
    if not all(isinstance(e.exception, _DecompressionForbidden) for e in errors):
        return None
    return message


def _text(key: dns.name.Name) -> str:
    return key.to_text(omit_final_dot=True).lower()
