"""The agent's configuration and credential checks: :class:`IceConfig`,
:func:`validate_username`, :func:`validate_password` (re-exported by
:mod:`syncice.ice`).

Every timing constant and bound of the agent is a field of a frozen
:class:`IceConfig`, checked field by field when it is made, rather than a
module global that tests rewrite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_CONFIG", "IceConfig", "validate_password", "validate_username"]

_ICE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
)


def _ice_chars(value: object, name: str, low: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not (low <= len(value) <= 256 and _ICE_CHARS.issuperset(value)):
        raise ValueError(f"{name} must be {low} to 256 ice-chars (RFC 8839 §5.4)")
    return value


def validate_username(value: object) -> str:
    """Check an ``ice-ufrag``: 4 to 256 ice-chars (RFC 8839 §5.4).

    :raises ValueError: if it is malformed.
    :raises TypeError: if it is not a :class:`str`.
    """
    return _ice_chars(value, "username", 4)


def validate_password(value: object) -> str:
    """Check an ``ice-pwd``: 22 to 256 ice-chars (RFC 8839 §5.4).

    :raises ValueError: if it is malformed.
    :raises TypeError: if it is not a :class:`str`.
    """
    return _ice_chars(value, "password", 22)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an int or a float, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IceConfig:
    """Timing constants and bounds of the agent (durations in seconds).

    Every field is checked when the config is made: a wrong type raises
    :class:`TypeError` (a :class:`bool` is not a number here), a value out of
    range :class:`ValueError`, each naming the field. Durations are finite
    ints or floats.

    :param ta: pacing of ordinary checks (RFC 8445 §14.2); at least 5 ms.
    :param rto: initial retransmission timeout of checks and STUN requests;
        positive.
    :param max_sends: Rc, how many times a request is sent (RFC 8489 §6.2.1);
        1 to 100.
    :param final_wait: Rm, the wait after the last send, in RTOs; 0 to 100.
    :param rto_max: a cap on the doubled retransmission interval, or ``None``;
        at least ``rto``.
        The defaults (Rc 18, the interval capped at 2 s) send a check at 0,
        0.5, 1.5, 3.5 s and then every 2 s until 31.5 s, and give up at
        39.5 s, the RFC's own bound (Rc 7 without a cap: 0, 0.5, ... 15.5,
        31.5 s). The same time to fail, but 18 tries instead of 7, and none
        of the 8 and 16 s silences before the last two: on lossy paths that
        is the difference between connecting and not.
    :param gather_timeout: how long each STUN or TURN server may take during
        gathering; positive (to gather host candidates only, give no
        server). Every server is asked at once, so this also bounds the
        whole gathering, however many servers are silent.
    :param gather_rto_max: the cap on the retransmission interval of STUN
        requests made while gathering: with the defaults, a lost request is
        sent again every 0.5 s, ten tries within the 5 s bound instead of
        four. A peer that misses its server-reflexive candidate cannot be
        reached through a NAT that filters, so these tries are worth more
        than any later ones. At least ``rto``.
    :param nomination_wait: how long the controlling agent waits, after a
        component's first pair succeeded, for a better pair still in checks;
        0 or more.
    :param nomination_timeout: how long the controlled agent waits for the
        controlling peer. While some component has no selected pair, ICE
        fails once no authenticated check has come from the peer on a pair
        of such a component for this long: counted from
        :meth:`IceAgent.connect`, and again from every such check and from a
        switch to the controlled role (consent checks on a component already
        selected, or checks that could not be paired, do not count). A peer
        that is still checking sends checks far more often (a lost one is
        sent again within 2 s with the defaults), so this only ends the wait
        for a peer that failed, gave up, or cannot authenticate itself; it
        also bounds the wait for peer-reflexive candidates of a controlled
        agent that has no remote candidate. Longer than ``nomination_wait``;
        10 s by default.
    :param consent_interval: mean interval of consent checks (RFC 7675 §5.1),
        each drawn between 0.8 and 1.2 times it; positive.
    :param consent_timeout: consent is lost this long after the last
        authenticated response on the selected pair; longer than 1.2 times
        ``consent_interval`` (the longest gap between two consent checks).
    :param max_remote_candidates: bound on remote candidates, peer-reflexive
        ones included; 1 to 10,000.
    :param max_pairs: bound on the check list (RFC 8445 §6.1.2.5); 1 to
        10,000.
    :param max_early_checks: bound on the sources of checks kept until
        :meth:`IceAgent.connect` (one entry per source address and socket,
        which remembers a USE-CANDIDATE); 1 to 10,000.
    :param batch_io: whether ``send_many()`` may hand a run of equal-sized
        datagrams to the kernel in one system call (Linux's GSO, found to
        work or not on the first try and remembered), and ``recv_many()``
        let it glue what arrives (GRO); ``False`` sends and reads one
        datagram per call, always. A bool.
    :param ice_lite: whether the agent is an ICE-lite one (RFC 8445 §2.5,
        :mod:`syncice._lite`): host candidates only, always controlled, it
        answers checks and sends none, the full peer nominates. A bool,
        ``False`` by default.
    :param so_rcvbuf: the ``SO_RCVBUF`` to set on every socket the
        connection binds, in bytes (1 to 2**31 - 1), or ``None``: UDP
        sockets are then raised to 1 MiB if smaller, best effort. The kernel
        may double or cap what is asked (Linux: ``net.core.rmem_max``); the
        connection's ``socket_buffers`` tells what it got.
    :param so_sndbuf: the same for ``SO_SNDBUF`` (``net.core.wmem_max``).
    :param tcp_simultaneous_open: with ``transports`` naming ``"tcp"``, also
        gather a simultaneous-open TCP candidate per host address
        (``tcptype so``, RFC 6544 §4.1): a port of its own from which the
        connection opens a TCP connection to each remote S-O candidate, as
        the peer does to it; crossing SYNs make one connection (through
        firewalls and NATs that let neither side's SYN in first). A bool,
        ``False`` by default (browsers and libnice gather none).
    :raises TypeError: if a field has the wrong type.
    :raises ValueError: if a field is out of range.
    """

    ta: float = 0.02
    rto: float = 0.5
    max_sends: int = 18
    final_wait: int = 16
    rto_max: float | None = 2.0
    gather_timeout: float = 5.0
    gather_rto_max: float = 0.5
    nomination_wait: float = 0.5
    nomination_timeout: float = 10.0
    consent_interval: float = 5.0
    consent_timeout: float = 30.0
    max_remote_candidates: int = 100
    max_pairs: int = 100
    max_early_checks: int = 100
    batch_io: bool = True
    ice_lite: bool = False
    so_rcvbuf: int | None = None
    so_sndbuf: int | None = None
    tcp_simultaneous_open: bool = False

    def __post_init__(self) -> None:
        if _number("ta", self.ta) < 0.005:
            raise ValueError(
                f"ta must be at least 0.005 s (RFC 8445 §14.2), not {self.ta!r}"
            )
        rto = _number("rto", self.rto)
        if rto <= 0:
            raise ValueError(f"rto must be positive, not {self.rto!r}")
        _integer("max_sends", self.max_sends, 1, 100)
        _integer("final_wait", self.final_wait, 0, 100)
        for name, value in (
            ("rto_max", self.rto_max),
            ("gather_rto_max", self.gather_rto_max),
        ):
            if value is None and name == "rto_max":
                continue  # no cap
            if _number(name, value) < rto:
                raise ValueError(
                    f"{name} must be at least rto ({rto:g}), not {value!r}"
                )
        if _number("gather_timeout", self.gather_timeout) <= 0:
            raise ValueError(
                "gather_timeout must be positive (to gather host candidates "
                f"only, give no server), not {self.gather_timeout!r}"
            )
        wait = _number("nomination_wait", self.nomination_wait)
        if wait < 0:
            raise ValueError(
                f"nomination_wait must not be negative, not {self.nomination_wait!r}"
            )
        if _number("nomination_timeout", self.nomination_timeout) <= wait:
            raise ValueError(
                f"nomination_timeout must be longer than nomination_wait "
                f"({wait:g}), not {self.nomination_timeout!r}"
            )
        interval = _number("consent_interval", self.consent_interval)
        if interval <= 0:
            raise ValueError(
                f"consent_interval must be positive, not {self.consent_interval!r}"
            )
        if _number("consent_timeout", self.consent_timeout) <= 1.2 * interval:
            raise ValueError(
                "consent_timeout must be longer than 1.2 times consent_interval "
                f"({1.2 * interval:g}), not {self.consent_timeout!r}"
            )
        for name in ("max_remote_candidates", "max_pairs", "max_early_checks"):
            _integer(name, getattr(self, name), 1, 10_000)
        for name in ("so_rcvbuf", "so_sndbuf"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1, 2**31 - 1)
        for name in ("batch_io", "ice_lite", "tcp_simultaneous_open"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {type(value).__name__}")

    @property
    def patience(self) -> float:
        """How long one check takes to fail (``max_sends`` sends, the
        interval doubled from ``rto`` up to ``rto_max``, then ``final_wait``
        RTOs): 39.5 s with the defaults. It is also the patience timer of
        RFC 8863 §3: how long, after :meth:`IceAgent.connect`, an agent
        with nothing to pair on a component still waits there for the
        peer's checks (peer-reflexive candidates) before ICE fails."""
        total, interval = 0.0, self.rto
        for _ in range(self.max_sends - 1):
            total += interval
            interval *= 2
            if self.rto_max is not None and interval > self.rto_max:
                interval = self.rto_max
        return total + self.final_wait * self.rto


#: The default configuration: frozen, so one instance serves every
#: connection that is given none.
DEFAULT_CONFIG = IceConfig()
