"""ICE candidates and their SDP form (RFC 8445 §5.1, RFC 8839 §5.1).

A :class:`Candidate` is an immutable value. It is built either by its
constructor, which takes aioice's arguments, or by :meth:`Candidate.from_sdp`,
which parses one ``a=candidate`` line; both validate every field and raise
:class:`~syncice.exceptions.CandidateError` (a :class:`ValueError`) whose
message starts with the name of the offending field.

The rules this module keeps:

- The SDP line is the candidate's identity. ``from_sdp(x).to_sdp() == x`` for
  every line ``x`` that ``from_sdp`` accepts in its bare form, so parsing
  accepts only the canonical spelling: single spaces, decimal numbers without
  sign or leading zeros, lowercase ``typ``/``raddr``/``rport`` keywords.
  Extension attributes keep their order, including where ``tcptype`` and
  ``generation`` stand among them; the constructor emits ``tcptype``, then
  ``generation``, then ``extensions`` (aioice's order).
- Two candidates are equal, and hash alike, exactly when their SDP lines are
  equal: all fields, and the order of the extension attributes.
- Nothing here does I/O: host names (FQDN, mDNS ``.local``) are checked for
  syntax only and are resolved elsewhere.

Parsing is on the hot path of signalling, so :meth:`Candidate.from_sdp` avoids
:mod:`ipaddress` and per-field helper calls for the common fields, and
:meth:`Candidate.to_sdp` returns the line kept at construction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

from .exceptions import CandidateError

__all__ = ["Candidate", "candidate_foundation", "candidate_priority"]

# RFC 8445 §5.1.2.2: recommended type preferences.
_TYPE_PREFERENCES: Final = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}

_MAX_PRIORITY: Final = (1 << 31) - 1  # RFC 8445 §5.1.2.1
_MAX_GENERATION: Final = (1 << 32) - 1  # libwebrtc keeps it in a uint32
_TCPTYPES: Final = frozenset({"active", "passive", "so"})  # RFC 6544 §4.5
# Keywords with a fixed place in the line; never extension attribute names.
_RESERVED: Final = frozenset({"typ", "raddr", "rport"})

# RFC 8839 §5.1: foundation = 1*32ice-char; ice-char = ALPHA / DIGIT / "+" / "/".
_FOUNDATION: Final = re.compile(r"[A-Za-z0-9+/]{1,32}").fullmatch
# RFC 4566 §9: token = 1*(token-char), the characters %x21-7E except
# '"', '(', ')', ',', '/', ':' to '@' and '[' to ']'.
_TOKEN: Final = re.compile(r"[!#-'*+\-.0-9A-Z^-~]+").fullmatch
# Tokens seen in nearly every line, checked by a set lookup instead.
_COMMON_TOKENS: Final = frozenset(
    {"udp", "tcp", "UDP", "TCP", "host", "srflx", "prflx", "relay"}
    | {"generation", "tcptype", "ufrag", "network-id", "network-cost"}
)
# Canonical decimals "0" .. "256": component IDs and most generations parse by
# a lookup; "0" is not a component (RFC 8445 §5.1.2.1).
_SMALL_UINTS: Final = {str(i): i for i in range(257)}
_PRIORITY_RANGE: Final = "must be a decimal integer in 1..2147483647"
_PORT_RANGE: Final = "must be a decimal integer in 0..65535"
_ADDRESS_KINDS: Final = "must be an IPv4 or IPv6 address or a host name"

# Addresses (RFC 4566 §9 connection-address): an IPv4 address in dotted decimal
# without leading zeros, an IPv6 address (RFC 4291 §2.2, no zone), or an FQDN of
# LDH labels (RFC 1123 §2.1) whose last label is not all digits (RFC 3696 §2),
# so that "1.2.3.256" is a bad address rather than a host name.
_OCTETS: Final = frozenset(str(i) for i in range(256))  # of IPv4 dotted decimal
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME: Final = re.compile(rf"(?:{_LABEL}\.)*(?=[0-9-]*[A-Za-z]){_LABEL}").fullmatch
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"  # the last 32 bits (RFC 4291 §2.2 form 3)
# Eight groups, the last two possibly as dotted IPv4.
_IPV6_FULL: Final = re.compile(rf"(?:{_H16}:){{6}}{_LS32}").fullmatch
# Groups around one "::". A regex cannot count them, so callers also bound the
# colons: n groups around "::" take n + 1 colons, a dotted IPv4 tail counts as
# two groups but takes one colon fewer, and at most 7 groups remain.
_IPV6_COMPRESSED: Final = re.compile(
    rf"(?:{_H16}(?::{_H16})*)?::(?:(?:{_H16}:)*(?:{_H16}|{_IPV4}))?"
).fullmatch

# The fields of a line before the extensions, for "too few fields" errors.
_FIELDS: Final = (
    "foundation",
    "component",
    "transport",
    "priority",
    "host",
    "port",
    "typ",
    "type",
)

# Keywords of values named in error messages as themselves, not "extension".
_NAMED_VALUES: Final = frozenset({"raddr", "rport", "tcptype", "generation"})

_new_object: Final = object.__new__

_FAMILY_INVALID: Final = -1
_FAMILY_NAME: Final = 0


def _is_ipv6(text: str) -> bool:
    """Tell whether ``text`` is an IPv6 address (RFC 4291 §2.2), without zone."""
    if "::" in text:
        colons = text.count(":")
        return _IPV6_COMPRESSED(text) is not None and (
            colons < 8 or (colons == 8 and "." not in text)
        )
    return _IPV6_FULL(text) is not None


def _address_family(text: str) -> int:
    """Return 4 or 6 for an IP address, 0 for a host name, -1 otherwise."""
    if ":" in text:
        return 6 if _is_ipv6(text) else _FAMILY_INVALID
    octets = text.split(".")
    if len(octets) == 4 and all(octet in _OCTETS for octet in octets):
        return 4
    # RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text.
    if len(text) <= 253 and _HOSTNAME(text) is not None:
        return _FAMILY_NAME
    return _FAMILY_INVALID


def _short(value: object) -> str:
    text = repr(value)
    if len(text) > 60:  # fuzzers send megabytes; keep messages readable
        text = text[:57] + "..."
    return text


def _error(field: str, problem: str, value: object) -> CandidateError:
    return CandidateError(f"{field}: {problem}, got {_short(value)}")


def _non_ascii_error(sdp: str) -> CandidateError:
    """Name the first field of ``sdp`` that holds a non-ASCII character."""
    bits = sdp.split(" ")
    index = next(i for i, bit in enumerate(bits) if not bit.isascii())
    if index < len(_FIELDS):
        field = _FIELDS[index]
    elif index % 2 == 1 and bits[index - 1] in _NAMED_VALUES:
        field = bits[index - 1]
    else:
        field = "extension"
    return _error(field, "must be ASCII", bits[index])


def _parse_uint(field: str, text: str, maximum: int) -> int:
    """Parse a canonical decimal (ASCII digits, no sign or leading zero)."""
    # int() alone would take "+5", " 5", "1_0" and "٣" too. Every maximum here
    # has at most 10 digits; the length bound also keeps int() linear.
    if len(text) <= 10 and text.isdigit() and text.isascii():
        value = int(text)
        if value <= maximum and (text[0] != "0" or text == "0"):
            return value
    raise _error(field, f"must be a decimal integer in 0..{maximum}", text)


def _check_str(field: str, value: object) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"{field}: must be str, not {type(value).__name__}")


def _check_int(field: str, value: object, minimum: int, maximum: int) -> int:
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{field}: must be int, not {type(value).__name__}")
        value = int(value)
    if not minimum <= value <= maximum:
        raise _error(field, f"must be in {minimum}..{maximum}", value)
    return value


def _check_token(field: str, value: str) -> None:
    if value not in _COMMON_TOKENS and _TOKEN(value) is None:
        raise _error(field, "must be a token (RFC 4566 §9)", value)


def _check_address(field: str, value: str) -> None:
    if _address_family(value) == _FAMILY_INVALID:
        raise _error(field, _ADDRESS_KINDS, value)


def _check_extension(name: str, value: str) -> None:
    if name not in _COMMON_TOKENS and _TOKEN(name) is None:
        raise _error("extension", "name must be a token (RFC 4566 §9)", name)
    # extension-att-value is VCHAR (%x21-7E): printable ASCII but no space.
    if not (value and value.isascii() and value.isprintable() and " " not in value):
        raise _error(
            "extension",
            f"value of {_short(name)} must be 1*VCHAR (printable ASCII)",
            value,
        )


def candidate_foundation(
    candidate_type: str, candidate_transport: str, base_address: str
) -> str:
    """Compute a candidate's foundation (RFC 8445 §5.1.1.3).

    Candidates of the same type, transport and base address share a
    foundation; others get different ones. The result is 16 lowercase hex
    digits: a valid foundation (1 to 32 ice-chars, RFC 8839 §5.1), the same on
    every run and platform. The transport is compared case-insensitively.

    :param candidate_type: ``"host"``, ``"srflx"``, ``"prflx"`` or ``"relay"``.
    :param candidate_transport: the transport, for instance ``"udp"``.
    :param base_address: the IP address of the candidate's base.
    :raises TypeError: if an argument is not a :class:`str`.
    """
    key = (
        _check_str("candidate_type", candidate_type),
        _check_str("candidate_transport", candidate_transport).lower(),
        _check_str("base_address", base_address),
    )
    # repr() of a tuple of str is injective, so distinct inputs give distinct
    # keys whatever characters they hold. Not a security use of the hash.
    digest = hashlib.blake2s(repr(key).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def candidate_priority(
    candidate_component: int, candidate_type: str, local_pref: int = 65535
) -> int:
    """Compute a candidate's priority with the recommended formula.

    RFC 8445 §5.1.2.1: ``2**24 * type_pref + 2**8 * local_pref +
    (256 - component)``, with the type preferences of §5.1.2.2: host 126,
    prflx 110, srflx 100, relay 0.

    :param candidate_component: the component ID, 1 to 256.
    :param candidate_type: ``"host"``, ``"prflx"``, ``"srflx"`` or ``"relay"``.
    :param local_pref: the local preference, 0 to 65535.
    :raises CandidateError: if an argument is out of range, the type is
        unknown, or the result would be 0 (relay, ``local_pref`` 0, component
        256), which is not a valid priority.
    :raises TypeError: if an argument has the wrong type.
    """
    component = _check_int("candidate_component", candidate_component, 1, 256)
    local_pref = _check_int("local_pref", local_pref, 0, 65535)
    type_pref = _TYPE_PREFERENCES.get(_check_str("candidate_type", candidate_type))
    if type_pref is None:
        raise _error(
            "candidate_type", "must be host, prflx, srflx or relay", candidate_type
        )
    priority = (type_pref << 24) + (local_pref << 8) + (256 - component)
    if priority == 0:
        raise _error("priority", "must be in 1..2147483647", priority)
    return priority


class Candidate:
    """An ICE candidate (RFC 8445 §5.1), as carried in SDP (RFC 8839 §5.1).

    The arguments are aioice's. Every field is validated; instances are
    immutable, and equal exactly when their :meth:`to_sdp` lines are equal.

    :param foundation: 1 to 32 ice-chars (``ALPHA / DIGIT / "+" / "/"``).
    :param component: the component ID, 1 to 256.
    :param transport: a token, usually ``"udp"`` or ``"tcp"``; its case is kept.
    :param priority: 1 to 2**31 - 1.
    :param host: an IPv4 address, an IPv6 address (no zone), or a host name
        such as an mDNS ``.local`` name.
    :param port: 0 to 65535.
    :param type: ``"host"``, ``"srflx"``, ``"prflx"``, ``"relay"`` or another token.
    :param related_address: the ``raddr`` address, or None.
    :param related_port: the ``rport`` port, or None; given with
        ``related_address`` or not at all.
    :param tcptype: ``"active"``, ``"passive"``, ``"so"`` (RFC 6544 §4.5) or None.
    :param generation: 0 to 2**32 - 1, or None.
    :param extensions: other extension attributes as ``(name, value)`` pairs,
        in order (``ufrag``, ``network-id``, ``network-cost``...): a token
        name other than ``typ``, ``raddr``, ``rport``, ``tcptype`` and
        ``generation``, and a non-empty printable ASCII value without spaces.
    :raises CandidateError: if a field is invalid; the message names it.
    :raises TypeError: if a field has the wrong type.
    """

    # Two slots rather than one per field: from_sdp() builds candidates in
    # bulk, and one tuple is cheaper to store than twelve attributes.
    __slots__ = ("_fields", "_sdp")

    _fields: tuple[
        str,  # 0 foundation
        int,  # 1 component
        str,  # 2 transport
        int,  # 3 priority
        str,  # 4 host
        int,  # 5 port
        str,  # 6 type
        str | None,  # 7 related_address
        int | None,  # 8 related_port
        str | None,  # 9 tcptype
        int | None,  # 10 generation
        tuple[tuple[str, str], ...],  # 11 extensions
    ]
    _sdp: str  # the bare line: what to_sdp() returns, and the identity

    def __init__(
        self,
        foundation: str,
        component: int,
        transport: str,
        priority: int,
        host: str,
        port: int,
        type: str,
        related_address: str | None = None,
        related_port: int | None = None,
        tcptype: str | None = None,
        generation: int | None = None,
        *,
        extensions: Iterable[tuple[str, str]] = (),
    ) -> None:
        foundation = _check_str("foundation", foundation)
        if _FOUNDATION(foundation) is None:
            raise _error("foundation", "must be 1 to 32 ice-chars", foundation)
        component = _check_int("component", component, 1, 256)
        transport = _check_str("transport", transport)
        _check_token("transport", transport)
        priority = _check_int("priority", priority, 1, _MAX_PRIORITY)
        host = _check_str("host", host)
        _check_address("host", host)
        port = _check_int("port", port, 0, 65535)
        type = _check_str("type", type)
        _check_token("type", type)
        line = (
            f"{foundation} {component} {transport} {priority} {host} {port} typ {type}"
        )

        if (related_address is None) != (related_port is None):
            missing = "related_port" if related_port is None else "related_address"
            raise _error(missing, "related_address and related_port go together", None)
        if related_address is not None:
            related_address = _check_str("related_address", related_address)
            _check_address("related_address", related_address)
            related_port = _check_int("related_port", related_port, 0, 65535)
            line += f" raddr {related_address} rport {related_port}"

        if tcptype is not None:
            tcptype = _check_str("tcptype", tcptype)
            if tcptype not in _TCPTYPES:
                raise _error("tcptype", "must be active, passive or so", tcptype)
            line += f" tcptype {tcptype}"
        if generation is not None:
            generation = _check_int("generation", generation, 0, _MAX_GENERATION)
            line += f" generation {generation}"

        pairs: list[tuple[str, str]] = []
        for pair in extensions:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(
                    f"extensions: items must be (name, value) tuples, not {pair!r}"
                )
            name = _check_str("extension name", pair[0])
            value = _check_str("extension value", pair[1])
            if name in _RESERVED or name == "tcptype" or name == "generation":
                raise _error(name, "has its own argument, not an extension", name)
            _check_extension(name, value)
            pairs.append((name, value))
            line += f" {name} {value}"

        self._fields = (
            foundation,
            component,
            transport,
            priority,
            host,
            port,
            type,
            related_address,
            related_port,
            tcptype,
            generation,
            tuple(pairs),
        )
        self._sdp = line

    @classmethod
    def from_sdp(cls, sdp: str) -> Candidate:
        """Parse a candidate line (RFC 8839 §5.1).

        The line is ``foundation SP component-id SP transport SP priority SP
        connection-address SP port SP "typ" SP cand-type [SP "raddr" SP
        connection-address SP "rport" SP port] *(SP extension-att-name SP
        extension-att-value)``, bare or after ``candidate:`` or
        ``a=candidate:``. ``tcptype`` (RFC 6544 §4.5) and ``generation`` are
        read into their attributes, the other extension attributes into
        :attr:`extensions`, and the order of all of them is kept.

        Only the canonical spelling is accepted, so that ``to_sdp()`` gives
        the line back: fields apart by one space, numbers in ASCII digits
        without sign or leading zero, the keywords ``typ``, ``raddr`` and
        ``rport`` in lowercase and in their places.

        .. code-block:: python

           Candidate.from_sdp(
               "6815297761 1 udp 659136 1.2.3.4 31102 typ host generation 0")

        :param sdp: the line, without line terminator.
        :raises CandidateError: if the line is malformed; the message names the
            offending field.
        :raises TypeError: if ``sdp`` is not a :class:`str`.
        """
        # This runs for every line a peer signals, so the checks are inlined
        # (a call costs as much as a check), cheap tests come first, and the
        # precise ones (regexes, helpers) run only when a cheap one fails.
        if type(sdp) is not str:
            sdp = _check_str("sdp", sdp)
        # Every valid line is ASCII; checking that once (O(1) in CPython) lets
        # isdigit() and isalnum() below stand for their ASCII meanings.
        if not sdp.isascii():
            raise _non_ascii_error(sdp)
        bits = sdp.split(" ")
        count = len(bits)
        if count < 8:
            raise _error(_FIELDS[count], f"missing: too few fields ({count} of 8)", sdp)
        foundation, component, transport, priority, host, port, typ, type_ = bits[:8]

        if not (len(foundation) <= 32 and foundation.isalnum()):
            # A prefix ends in ":", which no foundation holds, so look for one
            # only here, off the path of bare lines.
            if foundation.startswith("candidate:"):
                foundation = foundation[10:]
                sdp = sdp[10:]
            elif foundation.startswith("a=candidate:"):
                foundation = foundation[12:]
                sdp = sdp[12:]
            if _FOUNDATION(foundation) is None:
                raise _error("foundation", "must be 1 to 32 ice-chars", foundation)
        component_value = _SMALL_UINTS.get(component)
        if not component_value:  # None, or 0
            raise _error("component", "must be a decimal integer in 1..256", component)
        if transport not in _COMMON_TOKENS and _TOKEN(transport) is None:
            raise _error("transport", "must be a token (RFC 4566 §9)", transport)
        # Digits, at most 10 of them (which also keeps int() cheap), and no
        # leading zero: a digit string is >= "1" exactly when it starts with 1-9.
        if not (priority.isdigit() and len(priority) <= 10 and priority >= "1"):
            raise _error("priority", _PRIORITY_RANGE, priority)
        priority_value = int(priority)
        if priority_value > _MAX_PRIORITY:
            raise _error("priority", _PRIORITY_RANGE, priority)
        if ":" in host:
            if "::" in host:
                colons = host.count(":")  # see _IPV6_COMPRESSED
                valid = _IPV6_COMPRESSED(host) is not None and (
                    colons < 8 or (colons == 8 and "." not in host)
                )
            else:
                valid = _IPV6_FULL(host) is not None
            if not valid:
                raise _error("host", _ADDRESS_KINDS, host)
        else:
            octets = host.split(".")
            if not (len(octets) == 4 and _OCTETS.issuperset(octets)) and (
                len(host) > 253 or _HOSTNAME(host) is None  # see _address_family
            ):
                raise _error("host", _ADDRESS_KINDS, host)
        if not (port.isdigit() and len(port) <= 5 and (port >= "1" or port == "0")):
            raise _error("port", _PORT_RANGE, port)
        port_value = int(port)
        if port_value > 65535:
            raise _error("port", _PORT_RANGE, port)
        if typ != "typ":
            raise _error("typ", "expected the keyword 'typ' as 7th field", typ)
        if type_ not in _COMMON_TOKENS and _TOKEN(type_) is None:
            raise _error("type", "must be a token (RFC 4566 §9)", type_)

        related_address: str | None = None
        related_port: int | None = None
        tcptype: str | None = None
        generation: int | None = None
        extensions: tuple[tuple[str, str], ...] = ()
        start = 8  # of the extension attributes
        if count > 8 and bits[8] == "raddr":
            if count < 12 or bits[10] != "rport":
                _check_address("raddr", bits[9] if count > 9 else "")
                raise _error("rport", "must follow raddr, with a port", sdp)
            related_address = bits[9]
            octets = related_address.split(".")
            if not (len(octets) == 4 and _OCTETS.issuperset(octets)):
                _check_address("raddr", related_address)
            rport = bits[11]
            if not (
                rport.isdigit() and len(rport) <= 5 and (rport >= "1" or rport == "0")
            ):
                raise _error("rport", _PORT_RANGE, rport)
            related_port = int(rport)
            if related_port > 65535:
                raise _error("rport", _PORT_RANGE, rport)
            start = 12
        if count == start + 2 and bits[start] == "generation":  # the usual tail
            generation = _SMALL_UINTS.get(bits[start + 1])
            if generation is None:
                generation = _parse_uint("generation", bits[start + 1], _MAX_GENERATION)
        elif count > start:
            if (count - start) % 2:
                raise _error("extension", "attribute without a value", bits[-1])
            others: list[tuple[str, str]] | None = None
            for index in range(start, count, 2):
                name = bits[index]
                value = bits[index + 1]
                if name == "generation":
                    if generation is not None:
                        raise _error("generation", "appears twice", sdp)
                    generation = _SMALL_UINTS.get(value)
                    if generation is None:
                        generation = _parse_uint("generation", value, _MAX_GENERATION)
                elif name == "tcptype":
                    if tcptype is not None:
                        raise _error("tcptype", "appears twice", sdp)
                    if value not in _TCPTYPES:
                        raise _error("tcptype", "must be active, passive or so", value)
                    tcptype = value
                elif name in _RESERVED:
                    problem = "without raddr" if name == "rport" else "out of place"
                    raise _error(name, problem, sdp)
                else:
                    _check_extension(name, value)
                    if others is None:
                        others = [(name, value)]
                    else:
                        others.append((name, value))
            if others is not None:
                extensions = tuple(others)

        # Every field is valid: fill the slots without running __init__.
        candidate = _new_object(cls)
        candidate._fields = (
            foundation,
            component_value,
            transport,
            priority_value,
            host,
            port_value,
            type_,
            related_address,
            related_port,
            tcptype,
            generation,
            extensions,
        )
        candidate._sdp = sdp
        return candidate

    def to_sdp(self) -> str:
        """Return the candidate line for SDP, without ``candidate:`` prefix.

        For a parsed candidate this is the line given to :meth:`from_sdp`
        (without prefix); for a constructed one, aioice's format: fields, then
        ``raddr``/``rport``, ``tcptype``, ``generation`` and the extensions.
        """
        return self._sdp

    def can_pair_with(self, other: Candidate) -> bool:
        """Tell whether a local and a remote candidate may form a pair.

        RFC 8445 §6.1.2.2: the candidates must have the same component ID and
        IP address family, and, here, the same transport (case-insensitive).
        A host name (such as an mDNS ``.local`` name) pairs with nothing: it
        must be resolved first.

        :param other: the other candidate.
        """
        mine = self._fields
        theirs = other._fields
        if mine[1] != theirs[1] or mine[2].lower() != theirs[2].lower():
            return False
        family = _address_family(mine[4])
        return family != _FAMILY_NAME and family == _address_family(theirs[4])

    @property
    def foundation(self) -> str:
        """The foundation (RFC 8445 §5.1.1.3): 1 to 32 ice-chars."""
        return self._fields[0]

    @property
    def component(self) -> int:
        """The component ID, 1 to 256."""
        return self._fields[1]

    @property
    def transport(self) -> str:
        """The transport token as given, usually ``"udp"`` or ``"tcp"``."""
        return self._fields[2]

    @property
    def priority(self) -> int:
        """The priority (RFC 8445 §5.1.2), 1 to 2**31 - 1."""
        return self._fields[3]

    @property
    def host(self) -> str:
        """The address: IPv4, IPv6 or a host name, as given."""
        return self._fields[4]

    @property
    def port(self) -> int:
        """The port, 0 to 65535."""
        return self._fields[5]

    @property
    def type(self) -> str:
        """The candidate type: ``"host"``, ``"srflx"``, ``"prflx"``, ``"relay"``..."""
        return self._fields[6]

    @property
    def related_address(self) -> str | None:
        """The related address (``raddr``), or None."""
        return self._fields[7]

    @property
    def related_port(self) -> int | None:
        """The related port (``rport``), or None."""
        return self._fields[8]

    @property
    def tcptype(self) -> str | None:
        """The TCP candidate type (RFC 6544 §4.5), or None."""
        return self._fields[9]

    @property
    def generation(self) -> int | None:
        """The ``generation`` extension attribute, or None."""
        return self._fields[10]

    @property
    def extensions(self) -> tuple[tuple[str, str], ...]:
        """The other extension attributes, as ``(name, value)`` pairs in order."""
        return self._fields[11]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Candidate):
            return self._sdp == other._sdp
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._sdp)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_sdp({self._sdp!r})"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Pickle and copy as the line: compact, and validated again on load.
        return (type(self).from_sdp, (self._sdp,))
