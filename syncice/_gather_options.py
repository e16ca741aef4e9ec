"""The connection's options that shape gathering, checked at construction:
``ice_servers=``, ``port_range=``, ``interface_filter=``, ``interfaces=``
and ``exclude_interfaces=`` (and the socket buffers of
:class:`~syncice.IceConfig`).

Both facades pass them, as given, in a :class:`GatherOptions`; the facade
core calls :meth:`GatherOptions.check`, which raises for a wrong one, and
hands :meth:`GatherOptions.plan_fields` to the gathering plan
(:class:`syncice._sockets.Plan`).

The servers of ``ice_servers=`` are used together with those of the old
keywords (``stun_server=``, ``turn_server=`` ...): the old keywords' first,
then each new one once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._bind import DEFAULT_BIND, BindOptions, Interfaces
from ._ice_config import DEFAULT_CONFIG, IceConfig
from ._ice_servers import StunServer, TurnServer, parse_ice_servers

__all__ = ["GatherOptions"]


def _names(name: str, value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            f"{name} must be a list of interface names or None, not"
            f" {type(value).__name__}"
        )
    for entry in value:
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"{name}: {entry!r} is not an interface name")
    return frozenset(value)


def _port_range(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"port_range must be a (lo, hi) tuple or None, not {value!r}")
    lo, hi = value
    for port in (lo, hi):
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port_range must hold two ints, not {value!r}")
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(
            f"port_range must be (lo, hi) with 1 <= lo <= hi <= 65535, not {value!r}"
        )
    return (lo, hi)


class GatherOptions:
    """The gathering options of one connection, as given, then checked.

    :param ice_servers: STUN and TURN servers (:mod:`syncice._ice_servers`).
    :param port_range: ``(lo, hi)`` for every socket the connection binds.
    :param interface_filter: ``filter(interface, address) -> bool``.
    :param interfaces: only the addresses of these interfaces.
    :param exclude_interfaces: never the addresses of these.
    """

    __slots__ = (
        "_given",
        "bind",
        "interfaces",
        "stun_servers",
        "tcp_simultaneous_open",
        "turn_servers",
    )

    def __init__(
        self,
        *,
        ice_servers: Sequence[Any] | None = None,
        port_range: tuple[int, int] | None = None,
        interface_filter: Callable[[str, str], bool] | None = None,
        interfaces: Sequence[str] | None = None,
        exclude_interfaces: Sequence[str] | None = None,
    ) -> None:
        self._given = (
            ice_servers,
            port_range,
            interface_filter,
            interfaces,
            exclude_interfaces,
        )
        self.stun_servers: tuple[StunServer, ...] = ()
        self.turn_servers: tuple[TurnServer, ...] = ()
        self.bind = DEFAULT_BIND
        self.interfaces: Interfaces | None = None
        self.tcp_simultaneous_open = False

    def check(
        self,
        turn_username: str | None,
        turn_password: str | None,
        config: IceConfig | None,
    ) -> None:
        """Check every option.

        :param turn_username: the credentials for TURN URLs given as
            bare strings.
        :param turn_password: their password.
        :param config: the connection's config (its socket buffers).
        :raises TypeError: an option of the wrong type.
        :raises ValueError: a wrong value, a bad URL (named).
        """
        servers, port_range, flt, allow, deny = self._given
        if servers is not None:
            stun, turn = parse_ice_servers(
                servers, turn_username=turn_username, turn_password=turn_password
            )
            self.stun_servers, self.turn_servers = tuple(stun), tuple(turn)
        if flt is not None and not callable(flt):
            raise TypeError(
                "interface_filter must be a callable(interface, address) or None,"
                f" not {type(flt).__name__}"
            )
        allowed = _names("interfaces", allow)
        denied = _names("exclude_interfaces", deny)
        if flt is not None or allowed is not None or denied is not None:
            self.interfaces = Interfaces(flt, allowed, denied or frozenset())
        config = config or DEFAULT_CONFIG
        self.tcp_simultaneous_open = config.tcp_simultaneous_open
        bind = BindOptions(_port_range(port_range), config.so_rcvbuf, config.so_sndbuf)
        self.bind = DEFAULT_BIND if bind.default else bind

    @property
    def has_servers(self) -> bool:
        """Whether ``ice_servers`` names a server."""
        return bool(self.stun_servers or self.turn_servers)

    def plan_fields(self) -> dict[str, Any]:
        """The fields of :class:`syncice._sockets.Plan` these options set."""
        return {
            "stun_servers": self.stun_servers,
            "turn_servers": self.turn_servers,
            "bind": self.bind,
            "interfaces": self.interfaces,
            "tcp_simultaneous_open": self.tcp_simultaneous_open,
        }
