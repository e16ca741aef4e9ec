"""STUN and TURN servers given as URLs: ``ice_servers=[...]`` (RFC 7064,
RFC 7065, and the W3C ``RTCIceServer`` shape).

An entry is a URL string, or a dict or an object (aiortc's
``RTCIceServer``, by duck typing) with ``urls`` (a URL or a list of them),
``username`` and ``credential``:

- ``stun:host[:port]`` (port 3478 by default);
- ``turn:host[:port][?transport=udp|tcp]`` (3478, UDP by default);
- ``turns:host[:port][?transport=tcp]`` (5349, TLS over TCP).

The host is a DNS name, an IPv4 address or an IPv6 address in brackets
(``[2001:db8::1]``). The check is strict, so that a mistake shows at
construction: no ``//``, no user information, no parameter but
``transport``, no percent-encoding, a port from 1 to 65535. ``stuns:``
(STUN over TLS) and ``turns:...?transport=udp`` (DTLS) are refused: syncice
gathers server-reflexive candidates over UDP and speaks TLS over TCP only. A
TURN URL needs a username and a credential: the entry's, or, for a bare
string, the connection's ``turn_username`` and ``turn_password``.

Sans-IO: parsing only, no name is resolved here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StunServer", "TurnServer", "parse_ice_servers", "parse_url"]

#: Default ports (RFC 7064 §3.2, RFC 7065 §3.2).
STUN_PORT = 3478
STUNS_PORT = 5349

_REG_NAME = re.compile(r"[A-Za-z0-9._~-]+")
_KEYS = frozenset({"urls", "username", "credential", "credentialType", "ssl_context"})


@dataclass(frozen=True)
class StunServer:
    """A STUN server to ask for server-reflexive candidates."""

    host: str
    port: int
    #: The URL it came from (or ``"stun_server"`` for the old keyword).
    url: str = field(default="", compare=False)


@dataclass(frozen=True)
class TurnServer:
    """A TURN server to allocate relay candidates from.

    :ivar transport: ``"udp"``, ``"tcp"`` or ``"tls"``.
    :ivar context: for TLS: ``True`` (the default trust store) or an
        :class:`ssl.SSLContext`.
    """

    host: str
    port: int
    transport: str
    username: str
    password: str
    context: Any = field(default=True, compare=False)
    url: str = field(default="", compare=False)


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"ice_servers: bad URL {url!r}: {why}")


def _host(url: str, text: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise _bad(url, "an IPv6 address needs its closing ']'")
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise _bad(url, f"{text} is not an IPv6 address") from None
        if address.scope_id is not None:
            raise _bad(url, "scoped IPv6 addresses are not supported")
        return address.compressed
    if not text:
        raise _bad(url, "no host")
    if ":" in text:
        raise _bad(url, "an IPv6 address must be in brackets, [addr]")
    if not _REG_NAME.fullmatch(text):
        raise _bad(url, f"{text!r} is not a host name or IP address")
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return ipaddress.IPv4Address(text).compressed
        except ValueError:
            raise _bad(url, f"{text} is not an IPv4 address") from None
    if text.startswith(".") or ".." in text:
        raise _bad(url, f"{text!r} is not a host name")
    return text


def parse_url(url: str) -> tuple[str, str, int, str]:
    """Parse one STUN or TURN URL.

    :returns: ``(scheme, host, port, transport)``: the scheme in lower case
        (``"stun"``, ``"turn"`` or ``"turns"``), the host (an IP address in
        compressed form, or a name), the port, and ``"udp"``, ``"tcp"`` or
        ``"tls"`` (``"udp"`` for STUN).
    :raises TypeError: if ``url`` is not a :class:`str`.
    :raises ValueError: naming the URL, if it is malformed or asks for
        what syncice does not do (``stuns:``, DTLS).
    """
    if not isinstance(url, str):
        raise TypeError(f"ice_servers: a URL must be a str, not {type(url).__name__}")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("stun", "stuns", "turn", "turns"):
        raise _bad(url, "the scheme must be stun:, turn: or turns:")
    if scheme == "stuns":
        raise _bad(url, "STUN over TLS (stuns:) is not supported: use stun:")
    if rest.startswith("//"):
        raise _bad(url, "no '//' after the scheme (RFC 7064, RFC 7065)")
    if "@" in rest:
        raise _bad(url, "no user information: give username and credential")
    if "%" in rest or "#" in rest:
        raise _bad(url, "no percent-encoding or fragment")
    authority, question, query = rest.partition("?")
    transport = "tls" if scheme == "turns" else "udp"
    if question:
        if scheme == "stun":
            raise _bad(url, "a stun: URL has no parameters")
        name, _, value = query.partition("=")
        value = value.lower()
        if name != "transport" or value not in ("udp", "tcp"):
            raise _bad(url, "the only parameter is transport=udp or transport=tcp")
        if scheme == "turns" and value == "udp":
            raise _bad(
                url, "TURN over DTLS (turns: with transport=udp) is not supported"
            )
        if scheme == "turn":
            transport = value
    if authority.startswith("["):
        end = authority.find("]")
        host_text, port_text = (
            (authority, "") if end < 0 else (authority[: end + 1], authority[end + 1 :])
        )
        if port_text and not port_text.startswith(":"):
            raise _bad(url, "':port' expected after the IPv6 address")
        port_text = port_text[1:]
        has_port = bool(authority[end + 1 :]) if end >= 0 else False
    else:
        host_text, has_colon, port_text = authority.rpartition(":")
        has_port = bool(has_colon)
        if not has_colon:
            host_text, port_text = authority, ""
    host = _host(url, host_text)
    port = STUNS_PORT if scheme == "turns" else STUN_PORT
    if has_port:
        if not port_text.isascii() or not port_text.isdigit():
            raise _bad(url, f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 0 < port < 65536:
            raise _bad(url, f"port {port} is not in 1-65535")
    return scheme, host, port, transport


def _text(entry: object, name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"ice_servers: {name} of {entry!r} must be a str, not"
            f" {type(value).__name__}"
        )
    return value


def _fields(entry: object) -> tuple[list[str], str | None, str | None, Any]:
    """``urls``, ``username``, ``credential`` and the TLS context of an entry."""
    if isinstance(entry, str):
        return [entry], None, None, None
    if isinstance(entry, dict):
        unknown = sorted(str(k) for k in entry if k not in _KEYS)
        if unknown:
            raise ValueError(
                f"ice_servers: unknown key(s) {', '.join(unknown)} in {entry!r}"
                " (urls, username, credential, credentialType)"
            )
        get = entry.get
    elif hasattr(entry, "urls"):

        def get(key: str, default: object = None) -> object:
            return getattr(entry, key, default)
    else:
        raise TypeError(
            "ice_servers: an entry must be a URL, a dict or an object with urls,"
            f" not {type(entry).__name__}"
        )
    urls = get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, (list, tuple)) or not urls:
        raise ValueError(f"ice_servers: {entry!r} needs urls: a URL or a list of them")
    kind = get("credentialType")
    if kind not in (None, "password"):
        raise ValueError(
            f"ice_servers: credentialType {kind!r} is not supported (only 'password')"
        )
    username = _text(entry, "username", get("username"))
    credential = _text(entry, "credential", get("credential"))
    return list(urls), username, credential, get("ssl_context")


def parse_ice_servers(
    entries: Iterable[object],
    *,
    turn_username: str | None = None,
    turn_password: str | None = None,
) -> tuple[list[StunServer], list[TurnServer]]:
    """Check every entry of ``ice_servers=`` (see the module).

    :param turn_username: the username for TURN URLs given as bare strings.
    :param turn_password: their password.
    :returns: the STUN and the TURN servers, each once, in the order given.
    :raises TypeError: ``entries`` is a single string, or an entry or field
        has the wrong type.
    :raises ValueError: a URL (named in the message) is malformed, or a
        TURN URL has no username or credential.
    """
    if isinstance(entries, (str, bytes, dict)) or not isinstance(
        entries, (list, tuple)
    ):
        raise TypeError(
            "ice_servers must be a list of URLs, dicts or RTCIceServer objects,"
            f" not {type(entries).__name__}"
        )
    stun: list[StunServer] = []
    turn: list[TurnServer] = []
    for entry in entries:
        urls, username, credential, context = _fields(entry)
        if isinstance(entry, str):
            username, credential = turn_username, turn_password
        for url in urls:
            scheme, host, port, transport = parse_url(url)
            if scheme == "stun":
                server = StunServer(host, port, url)
                if server not in stun:
                    stun.append(server)
                continue
            if not username or not credential:
                raise ValueError(
                    f"ice_servers: {url!r} needs a username and a credential"
                )
            relay = TurnServer(
                host,
                port,
                transport,
                username,
                credential,
                True if context is None else context,
                url,
            )
            if relay not in turn:
                turn.append(relay)
    return stun, turn
