"""ICE over TCP (RFC 6544): the rules of TCP candidates, and the RFC 4571
framing of what a TCP connection carries. Sans-IO.

- **Candidates.** A host address gives two TCP candidates (RFC 6544 §5.1):
  a *passive* one, the address of a listening socket, and an *active* one,
  with port 9 in SDP (§4.5), from which connections are opened. Both have
  the ``tcptype`` attribute. Simultaneous-open (``so``) candidates are
  parsed and kept, but never gathered here, so they pair with nothing.
- **Priorities** (RFC 6544 §4.2): the local preference is
  ``2**13 * direction-pref + other-pref``, with the direction preferences
  of §4.2 for host candidates: active 6, passive 4, S-O 2; ``other-pref`` is
  the low 13 bits of the address's local preference (8191 by default). The
  type preference is half of the UDP one (host 63, prflx 55), as libnice
  does, so that a UDP pair is preferred to a TCP pair whenever both work.
- **Pairing** (RFC 6544 §6.2): an active local candidate pairs with a
  passive remote one, a passive local candidate with an active remote one
  (only a peer-reflexive one, learnt from a check arriving over a
  connection the peer opened: a signalled active candidate has no port to
  reach), S-O with S-O.
- **Endpoints.** A pair is keyed by its endpoint and remote address, and
  the caller keeps one TCP connection per such key: the pair's connection.
  The passive endpoint's connections are those accepted from the peer, the
  active endpoint's those opened to the remote passive candidates.
- **Mapped addresses.** A check from an active candidate comes from an
  ephemeral port: the port of the XOR-MAPPED-ADDRESS is ignored for an
  active local candidate (RFC 6544 §7.2.2), so it teaches no peer-reflexive
  candidate on a loopback or a LAN.
- **Framing** (RFC 4571 §2): each STUN message and each datagram of data is
  preceded by its length in two bytes, big-endian. :class:`FrameDecoder`
  cuts a byte stream into frames and holds at most one unfinished frame
  (65,537 bytes); a zero length is an error (no ICE message is empty) that
  ends the connection, never the ICE connection.
"""

from __future__ import annotations

import struct

from .candidate import Candidate, candidate_foundation, candidate_priority

__all__ = [
    "ACTIVE_PORT",
    "DIRECTION_PREFERENCES",
    "MAX_FRAME",
    "TRANSPORTS",
    "FrameDecoder",
    "FramingError",
    "check_transports",
    "frame",
    "is_tcp",
    "mapped_is_base",
    "prflx_priority",
    "tcp_candidate",
    "tcp_pairable",
    "tcp_priority",
    "tcptype_seen_from_peer",
]

Address = tuple[str, int]

#: The port an active TCP candidate shows in SDP (RFC 6544 §4.5: discard).
ACTIVE_PORT = 9
#: The direction preferences of host candidates (RFC 6544 §4.2).
DIRECTION_PREFERENCES = {"active": 6, "passive": 4, "so": 2}
#: The largest frame RFC 4571 can carry.
MAX_FRAME = 0xFFFF
_TYPE_PREFERENCES = {"host": 63, "prflx": 55, "srflx": 50, "relay": 0}
_LENGTH = struct.Struct("!H")


#: The transports a connection may gather candidates on.
TRANSPORTS = ("udp", "tcp")


def check_transports(transports: object) -> tuple[str, ...]:
    """The ``transports=`` option of a connection, checked: a non-empty
    list or tuple of ``"udp"`` and ``"tcp"``, each at most once.

    :raises TypeError: not a list or tuple of :class:`str`.
    :raises ValueError: empty, repeated or unknown names.
    """
    if not isinstance(transports, (list, tuple)) or not all(
        isinstance(t, str) for t in transports
    ):
        raise TypeError('transports must be a tuple of "udp" and "tcp"')
    names = tuple(transports)
    unknown = [t for t in names if t not in TRANSPORTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            f'transports must name "udp", "tcp" or both, once each, not {transports!r}'
        )
    return names


class FramingError(ValueError):
    """A TCP stream that is not RFC 4571 framing: its connection must close."""


def frame(data: bytes) -> bytes:
    """``data`` with its RFC 4571 length in front.

    :raises ValueError: if ``data`` is empty or longer than 65,535 bytes.
    """
    if not 0 < len(data) <= MAX_FRAME:
        raise ValueError(f"a frame of {len(data)} bytes cannot be sent")
    return _LENGTH.pack(len(data)) + data


class FrameDecoder:
    """Cuts the bytes of one TCP connection into RFC 4571 frames.

    Holds at most one unfinished frame, so its memory is bounded whatever the
    peer sends. A zero length ends it: :attr:`error` says why, and the
    connection is to close (after the frames before it are handled).
    """

    __slots__ = ("_buffer", "error")

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Why the stream is not RFC 4571 framing, or ``None``.
        self.error: str | None = None

    @property
    def pending(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take received bytes; return the frames they complete, in order, up
        to a zero length, which sets :attr:`error` (nothing is taken after
        it). Never raises."""
        if self.error is not None:
            return []
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= 2:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length == 0:
                buffer.clear()
                self.error = "a frame of length 0"
                return frames
            if end - start - 2 < length:
                break
            frames.append(bytes(buffer[start + 2 : start + 2 + length]))
            start += 2 + length
        del buffer[:start]
        return frames


def tcp_priority(
    component: int, candidate_type: str, tcptype: str, local_pref: int = 65535
) -> int:
    """The priority of a TCP candidate (RFC 6544 §4.2, RFC 8445 §5.1.2.1).

    :param local_pref: the address's local preference; its low 13 bits are
        the ``other-pref``.
    """
    direction = DIRECTION_PREFERENCES[tcptype]
    local = (direction << 13) + (local_pref & 0x1FFF)
    return (_TYPE_PREFERENCES[candidate_type] << 24) + (local << 8) + (256 - component)


def tcp_candidate(
    component: int, addr: Address, tcptype: str, local_pref: int = 65535
) -> Candidate:
    """A host TCP candidate: ``addr`` is the listening address of a passive
    one; an active one shows port 9 (:data:`ACTIVE_PORT`)."""
    host = addr[0]
    return Candidate(
        foundation=candidate_foundation("host", "tcp", host),
        component=component,
        transport="tcp",
        priority=tcp_priority(component, "host", tcptype, local_pref),
        host=host,
        port=ACTIVE_PORT if tcptype == "active" else addr[1],
        type="host",
        tcptype=tcptype,
    )


def is_tcp(candidate: Candidate) -> bool:
    """Whether ``candidate`` is a TCP candidate."""
    return candidate.transport.lower() == "tcp"


def prflx_priority(local: Candidate) -> int:
    """The PRIORITY of a check from ``local``: the priority a peer-reflexive
    candidate of its base would have (RFC 8445 §7.1.1, RFC 6544 §4.2)."""
    if not is_tcp(local) or local.tcptype is None:
        return candidate_priority(
            local.component, "prflx", (local.priority >> 8) & 0xFFFF
        )
    return tcp_priority(
        local.component, "prflx", local.tcptype, (local.priority >> 8) & 0x1FFF
    )


def tcptype_seen_from_peer(local: Candidate) -> str | None:
    """The ``tcptype`` of a peer-reflexive remote candidate learnt by
    ``local``'s endpoint: active for a passive endpoint and the other way
    round, S-O for S-O; ``None`` for UDP."""
    if not is_tcp(local):
        return None
    return {"active": "passive", "passive": "active"}.get(local.tcptype or "", "so")


def tcp_pairable(local: Candidate, remote: Candidate) -> bool:
    """Whether two candidates that :meth:`Candidate.can_pair_with` each other
    form a pair, by their ``tcptype`` (RFC 6544 §6.2); always for UDP."""
    if not is_tcp(local):
        return True
    mine, theirs = local.tcptype, remote.tcptype
    if mine == "active":
        return theirs == "passive"
    if mine == "passive":
        return theirs == "active" and remote.type == "prflx"
    return mine == "so" and theirs == "so"


def mapped_is_base(local: Candidate, mapped: Address) -> bool:
    """Whether a check's XOR-MAPPED-ADDRESS is ``local``'s own address (so no
    peer-reflexive candidate is learnt): for an active TCP candidate, whose
    port is ephemeral, the address alone counts."""
    if is_tcp(local) and local.tcptype == "active":
        return local.host == mapped[0]
    return (local.host, local.port) == mapped
