"""ICE candidates and their SDP form (RFC 8445 §5.1, RFC 8839 §5.1).

A :class:`Candidate` is an immutable value. It is built either by its
constructor, which takes aioice's arguments, or by :meth:`Candidate.from_sdp`,
which parses one ``a=candidate`` line; both validate every field and raise
:class:`~syncice.exceptions.CandidateError` (a :class:`ValueError`) whose
message starts with the name of the offending field.

The rules this module keeps:

- The SDP line is the candidate's identity. ``from_sdp(x).to_sdp() == x`` for
  every bare line ``x`` that ``from_sdp`` accepts, so parsing accepts only the
  canonical spelling: single spaces, decimal numbers without sign or leading
  zero, lowercase ``typ``/``raddr``/``rport`` keywords in their places.
  Extension attributes keep their order, including where ``tcptype`` and
  ``generation`` stand among them; the constructor emits ``tcptype``, then
  ``generation``, then ``extensions`` (aioice's order).
- Two candidates are equal, and hash alike, exactly when their SDP lines are
  equal: all fields, and the order of the extension attributes.
- Nothing here does I/O: host names (FQDN, mDNS ``.local``) are checked for
  syntax only and resolved elsewhere.

Parsing runs for every line a peer signals, so :meth:`Candidate.from_sdp` has
two parts. One regular expression checks the shape of the line and splits it,
and a few inlined checks test the values; a line that fails any of them goes
to ``Candidate._parse``, the plain field-by-field parser that states the rules
and words the errors. Both accept the same lines with the same result, which
``fuzz/fuzz_candidate.py`` checks.
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
# Names that errors about a missing value name as such, not as "extension".
_KEYWORDS: Final = _RESERVED | {"tcptype", "generation"}
# The fields before the extension attributes, to name a missing one.
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

# RFC 8839 §5.1: foundation = 1*32ice-char; ice-char = ALPHA / DIGIT / "+" / "/".
# Accepted more leniently, as aioice does: 1 to 32 ice-chars or RFC 4566
# token-chars (so "some-foundation", "a.b", "x_1"), which keeps a line
# parseable (no space, no ":") and foundations distinct when compared.
_FOUNDATION_RE = r"[!#-'*+\-./0-9A-Z^-~]{1,32}"
_FOUNDATION: Final = re.compile(_FOUNDATION_RE).fullmatch
# RFC 4566 §9: token = 1*(token-char), the characters %x21-7E except
# '"', '(', ')', ',', '/', ':' to '@' and '[' to ']'.
_TOKEN_RE = r"[!#-'*+\-.0-9A-Z^-~]+"
_TOKEN: Final = re.compile(_TOKEN_RE).fullmatch
# Tokens seen in nearly every line, checked by a set lookup first.
_COMMON_TOKENS: Final = frozenset(
    {"udp", "tcp", "UDP", "TCP", "host", "srflx", "prflx", "relay"}
    | {"generation", "tcptype", "ufrag", "network-id", "network-cost"}
)
# Canonical decimals "0" to "256": component IDs and most generations parse
# by a lookup.
_SMALL_UINTS: Final = {str(i): i for i in range(257)}

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
# Groups around one "::". The regex does not bound how many there are; see
# _ipv6_groups_fit().
_IPV6_COMPRESSED: Final = re.compile(
    rf"(?:{_H16}(?::{_H16})*)?::(?:(?:{_H16}:)*(?:{_H16}|{_IPV4}))?"
).fullmatch

# The shape of a canonical line (RFC 8839 §5.1). Addresses, the ranges of the
# numbers and the other extension attributes are checked after the match.
_UINT = r"[1-9][0-9]{0,9}"  # 1 to 10 digits, no leading zero
_PORT = r"[1-9][0-9]{0,4}|0"
_LINE: Final = re.compile(
    rf"({_FOUNDATION_RE})"  # 1: foundation
    r" ([1-9][0-9]{0,2})"  # 2: component-id
    rf" ({_TOKEN_RE})"  # 3: transport
    rf" ({_UINT})"  # 4: priority
    r" ([^ ]+)"  # 5: connection-address
    rf" ({_PORT})"  # 6: port
    rf" typ ({_TOKEN_RE})"  # 7: cand-type
    rf"(?: raddr ([^ ]+) rport ({_PORT}))?"  # 8, 9: rel-addr, rel-port
    rf"(?: generation (0|{_UINT}))?"  # 10: the usual first extension
    r"( .*)?"  # 11: any other extension attributes
).fullmatch

_new_object: Final = object.__new__
_type_of: Final = type  # Candidate.__init__ has a parameter named type

_FAMILY_INVALID: Final = -1
_FAMILY_NAME: Final = 0


def _ipv6_groups_fit(text: str) -> bool:
    """Tell whether a ``_IPV6_COMPRESSED`` match leaves room for its "::".

    "::" stands for one or more zero groups, so at most 7 may be written, a
    dotted IPv4 tail counting as two. ``text.split(":")`` would give one item
    more than there are colons, of which "::" leaves one empty, plus one more
    for each end of the text that it touches; the others are the groups. So
    text of at most 15 characters always fits.
    """
    groups = text.count(":") - (text[0] == ":") - (text[-1] == ":")
    return groups + ("." in text) <= 7


def _is_ipv4(text: str) -> bool:
    octets = text.split(".")
    return (
        len(octets) == 4
        and octets[0] in _OCTETS
        and octets[1] in _OCTETS
        and octets[2] in _OCTETS
        and octets[3] in _OCTETS
    )


def _address_family(text: str) -> int:
    """Return 4 or 6 for an IP address, 0 for a host name, -1 otherwise."""
    if ":" in text:
        if "::" in text:
            valid = _IPV6_COMPRESSED(text) is not None and _ipv6_groups_fit(text)
        else:
            valid = _IPV6_FULL(text) is not None
        return 6 if valid else _FAMILY_INVALID
    if _is_ipv4(text):
        return 4
    # RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text.
    if len(text) <= 253 and _HOSTNAME(text) is not None:
        return _FAMILY_NAME
    return _FAMILY_INVALID


# Address texts already found valid, with their family (4, 6 or 0 for a host
# name): the same few addresses come back in every candidate of an interface,
# in every line a peer signals, and in every pair checked. Bounded: emptied
# when full, and only short texts are kept (an IPv6 address is at most 45
# characters, an mDNS name 42), so that a peer's stream of new names costs no
# memory; a miss only costs the full check again.
_KNOWN_ADDRESSES: Final[dict[str, int]] = {}
_KNOWN_LIMIT: Final = 512
_KNOWN_LONGEST: Final = 64


def _known_family(text: str) -> int:
    """:func:`_address_family`, remembered for the valid texts."""
    family = _KNOWN_ADDRESSES.get(text)
    if family is None:
        family = _address_family(text)
        if family != _FAMILY_INVALID and len(text) <= _KNOWN_LONGEST:
            if len(_KNOWN_ADDRESSES) >= _KNOWN_LIMIT:
                _KNOWN_ADDRESSES.clear()
            _KNOWN_ADDRESSES[text] = family
    return family


def _short(value: object) -> str:
    text = repr(value)
    if len(text) > 60:  # fuzzers send megabytes; keep messages readable
        text = text[:57] + "..."
    return text


def _error(field: str, problem: str, value: object) -> CandidateError:
    return CandidateError(f"{field}: {problem}, got {_short(value)}")


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


def _check_foundation(field: str, value: str) -> None:
    if _FOUNDATION(value) is None:
        raise _error(
            field,
            "must be 1 to 32 ice-chars (RFC 8839 §5.1) or token-chars (RFC 4566 §9)",
            value,
        )


def _check_token(field: str, value: str) -> None:
    if value not in _COMMON_TOKENS and _TOKEN(value) is None:
        raise _error(field, "must be a token (RFC 4566 §9)", value)


def _check_address(field: str, value: str) -> None:
    if _known_family(value) == _FAMILY_INVALID:
        raise _error(field, "must be an IPv4 or IPv6 address or a host name", value)


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


def _parse_uint(field: str, text: str, maximum: int, minimum: int = 0) -> int:
    """Parse a canonical decimal: ASCII digits, no sign, no leading zero."""
    # int() alone would take "+5", " 5", "1_0" and "٣" too. The length bound
    # keeps int() cheap; every maximum here has at most 10 digits.
    if text.isdigit() and text.isascii() and len(text) <= 10:
        value = int(text)
        if minimum <= value <= maximum and (text[0] != "0" or text == "0"):
            return value
    raise _error(field, f"must be a decimal integer in {minimum}..{maximum}", text)


def _parse_extensions(
    bits: list[str], start: int, sdp: str, generation: int | None = None
) -> tuple[str | None, int | None, tuple[tuple[str, str], ...]]:
    """Parse extension attributes, from ``bits[start]`` on, in pairs.

    :param generation: the generation met earlier in the line, if any.
    :returns: ``tcptype``, ``generation`` and the other attributes in order.
    """
    if (len(bits) - start) % 2:
        name = bits[-1]
        field = name if name in _KEYWORDS else "extension"
        raise _error(field, "attribute without a value", name)
    tcptype: str | None = None
    others: list[tuple[str, str]] = []
    for index in range(start, len(bits), 2):
        name = bits[index]
        value = bits[index + 1]
        if name == "generation":
            if generation is not None:
                raise _error("generation", "appears twice", sdp)
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
            others.append((name, value))
    return tcptype, generation, tuple(others)


def candidate_foundation(
    candidate_type: str,
    candidate_transport: str,
    base_address: str,
    *,
    server: str | None = None,
) -> str:
    """Compute a candidate's foundation (RFC 8445 §5.1.1.3).

    Candidates of the same type, transport, base address and (for
    server-reflexive and relayed ones) server share a foundation; others get
    different ones. The result is 16 lowercase hex digits: a valid
    foundation (1 to 32 ice-chars, RFC 8839 §5.1), the same on every run and
    platform. The transport is compared case-insensitively.

    :param candidate_type: ``"host"``, ``"srflx"``, ``"prflx"`` or ``"relay"``.
    :param candidate_transport: the transport, for instance ``"udp"``.
    :param base_address: the IP address of the candidate's base.
    :param server: the IP address of the STUN or TURN server the candidate
        was learnt from, or ``None`` (as aioice computes it: a syncice
        extension).
    :raises TypeError: if an argument is not a :class:`str`.
    """
    key: tuple[str, ...] = (
        _check_str("candidate_type", candidate_type),
        _check_str("candidate_transport", candidate_transport).lower(),
        _check_str("base_address", base_address),
    )
    if server is not None:
        key += (_check_str("server", server),)
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
        raise _error("priority", f"must be in 1..{_MAX_PRIORITY}", priority)
    return priority


class Candidate:
    """An ICE candidate (RFC 8445 §5.1), as carried in SDP (RFC 8839 §5.1).

    The arguments are aioice's. Every field is validated; instances are
    immutable, and equal exactly when their :meth:`to_sdp` lines are equal.

    :param foundation: 1 to 32 ice-chars (``ALPHA / DIGIT / "+" / "/"``,
        RFC 8839 §5.1) or, as aioice accepts, RFC 4566 token-chars
        (``"some-foundation"``).
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
        # Each check has a fast test inline and the precise one, which also
        # raises, in a helper: addresses are built in bulk while gathering.
        if _type_of(foundation) is not str:
            foundation = _check_str("foundation", foundation)
        if not (
            len(foundation) <= 32 and foundation.isalnum() and foundation.isascii()
        ):
            _check_foundation("foundation", foundation)
        if _type_of(component) is not int or not 0 < component <= 256:
            component = _check_int("component", component, 1, 256)
        if _type_of(transport) is not str:
            transport = _check_str("transport", transport)
        if transport not in _COMMON_TOKENS:
            _check_token("transport", transport)
        if _type_of(priority) is not int or not 0 < priority <= _MAX_PRIORITY:
            priority = _check_int("priority", priority, 1, _MAX_PRIORITY)
        if _type_of(host) is not str:
            host = _check_str("host", host)
        if host not in _KNOWN_ADDRESSES:
            _check_address("host", host)
        if _type_of(port) is not int or not 0 <= port <= 65535:
            port = _check_int("port", port, 0, 65535)
        if _type_of(type) is not str:
            type = _check_str("type", type)
        if type not in _COMMON_TOKENS:
            _check_token("type", type)
        line = (
            f"{foundation} {component} {transport} {priority} {host} {port} typ {type}"
        )

        if related_address is not None or related_port is not None:
            if related_address is None or related_port is None:
                missing = "related_port" if related_port is None else "related_address"
                raise _error(
                    missing, "related_address and related_port go together", None
                )
            if _type_of(related_address) is not str:
                related_address = _check_str("related_address", related_address)
            if related_address not in _KNOWN_ADDRESSES:
                _check_address("related_address", related_address)
            if _type_of(related_port) is not int or not 0 <= related_port <= 65535:
                related_port = _check_int("related_port", related_port, 0, 65535)
            line += f" raddr {related_address} rport {related_port}"

        if tcptype is not None:
            tcptype = _check_str("tcptype", tcptype)
            if tcptype not in _TCPTYPES:
                raise _error("tcptype", "must be active, passive or so", tcptype)
            line += f" tcptype {tcptype}"
        if generation is not None:
            if (
                _type_of(generation) is not int
                or not 0 <= generation <= _MAX_GENERATION
            ):
                generation = _check_int("generation", generation, 0, _MAX_GENERATION)
            line += f" generation {generation}"

        pairs: tuple[tuple[str, str], ...] = ()
        if extensions:
            checked: list[tuple[str, str]] = []
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
                checked.append((name, value))
                line += f" {name} {value}"
            pairs = tuple(checked)

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
            pairs,
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
        # The fast path. Whatever it doubts goes to _parse(), which decides
        # and words the error, so it raises no CandidateError of its own.
        if type(sdp) is not str:
            sdp = _check_str("sdp", sdp)
        match = _LINE(sdp)
        if match is None:
            # A prefix ends in ":", which no foundation holds: look for one
            # only now, off the path of bare lines.
            if sdp.startswith("candidate:"):
                match = _LINE(sdp[10:])
            elif sdp.startswith("a=candidate:"):
                match = _LINE(sdp[12:])
            if match is None:
                return cls._parse(sdp)
            sdp = match.string
        (
            foundation,
            component,
            transport,
            priority,
            host,
            port,
            type_,
            related_address,
            related_port_text,
            generation_text,
            tail,
        ) = match.groups()
        component_value = _SMALL_UINTS.get(component)
        priority_value = int(priority)
        port_value = int(port)
        if (
            component_value is None
            or priority_value > _MAX_PRIORITY
            or port_value > 65535
        ):
            return cls._parse(sdp)
        # Addresses, as _address_family() checks them (remembered).
        if host not in _KNOWN_ADDRESSES and _known_family(host) == _FAMILY_INVALID:
            return cls._parse(sdp)
        related_port: int | None = None
        if related_address is not None:
            if (
                related_address not in _KNOWN_ADDRESSES
                and _known_family(related_address) == _FAMILY_INVALID
            ):
                return cls._parse(sdp)
            if related_port_text == port:  # port-preserving NATs; checked
                related_port = port_value
            else:
                related_port = int(related_port_text)
                if related_port > 65535:
                    return cls._parse(sdp)
        generation: int | None = None
        if generation_text is not None:
            generation = _SMALL_UINTS.get(generation_text)
            if generation is None:
                generation = int(generation_text)
                if generation > _MAX_GENERATION:
                    return cls._parse(sdp)
        tcptype: str | None = None
        extensions: tuple[tuple[str, str], ...] = ()
        if tail is not None:
            try:
                # tail starts with a space, so split() puts "" first.
                tcptype, generation, extensions = _parse_extensions(
                    tail.split(" "), 1, sdp, generation
                )
            except CandidateError:
                return cls._parse(sdp)

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

    @classmethod
    def _parse(cls, sdp: str) -> Candidate:
        """Parse a candidate line field by field: the reference for from_sdp."""
        if sdp.startswith("candidate:"):
            sdp = sdp[10:]
        elif sdp.startswith("a=candidate:"):
            sdp = sdp[12:]
        bits = sdp.split(" ")
        count = len(bits)
        if count < 8:
            field = _FIELDS[count] if sdp else "foundation"
            raise _error(field, f"missing, the line has {count} of 8 fields", sdp)
        foundation, component, transport, priority, host, port, typ, type_ = bits[:8]
        _check_foundation("foundation", foundation)
        component_value = _parse_uint("component", component, 256, 1)
        _check_token("transport", transport)
        priority_value = _parse_uint("priority", priority, _MAX_PRIORITY, 1)
        _check_address("host", host)
        port_value = _parse_uint("port", port, 65535)
        if typ != "typ":
            raise _error("typ", "expected the keyword 'typ' as 7th field", typ)
        _check_token("type", type_)

        related_address: str | None = None
        related_port: int | None = None
        start = 8  # of the extension attributes
        if count > 8 and bits[8] == "raddr":
            # RFC 8839 §5.1 lets either go alone; ICE sends both or neither.
            related_address = bits[9] if count > 9 else ""
            _check_address("raddr", related_address)
            if count < 12 or bits[10] != "rport":
                raise _error("rport", "must follow raddr, with a port", sdp)
            related_port = _parse_uint("rport", bits[11], 65535)
            start = 12
        tcptype, generation, extensions = _parse_extensions(bits, start, sdp)

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
        """The foundation (RFC 8445 §5.1.1.3): 1 to 32 ice-chars or token-chars."""
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

    def __copy__(self) -> Candidate:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Candidate:
        return self

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Pickle and copy as the line: compact, and validated again on load.
        return (type(self).from_sdp, (self._sdp,))
