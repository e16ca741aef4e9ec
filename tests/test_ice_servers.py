"""``ice_servers=``: STUN and TURN URLs (RFC 7064, RFC 7065) and the W3C
``RTCIceServer`` shape, checked at construction; many servers gathered in
parallel, the end of gathering bounded per server (layer 1, in virtual
time)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

import syncice.asyncio
from syncice import Connection, TransportPolicy, candidate_foundation
from syncice._ice_servers import StunServer, TurnServer, parse_ice_servers, parse_url
from syncice.events import CandidateGathered, GatheringCompleted
from syncice.ice import IceAgent, IceConfig
from syncice.testing import NatBehavior
from syncice.testing import StunServer as VirtualStun
from syncice.testing import TurnServer as VirtualTurn
from syncice.turn import TurnAllocation
from tests.conftest import missing_service
from tests.helpers import exact_net

FACADES = [Connection, syncice.asyncio.Connection]


# --- URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("stun:stun.example.org", ("stun", "stun.example.org", 3478, "udp")),
        ("stun:stun.example.org:19302", ("stun", "stun.example.org", 19302, "udp")),
        ("STUN:192.0.2.1:3478", ("stun", "192.0.2.1", 3478, "udp")),
        ("stun:[2001:DB8::1]", ("stun", "2001:db8::1", 3478, "udp")),
        ("stun:[2001:db8::1]:1234", ("stun", "2001:db8::1", 1234, "udp")),
        ("turn:turn.example.org", ("turn", "turn.example.org", 3478, "udp")),
        ("turn:192.0.2.1:3479?transport=udp", ("turn", "192.0.2.1", 3479, "udp")),
        ("turn:[::1]:3478?transport=tcp", ("turn", "::1", 3478, "tcp")),
        ("turn:h?transport=TCP", ("turn", "h", 3478, "tcp")),
        ("turns:turn.example.org", ("turns", "turn.example.org", 5349, "tls")),
        ("turns:h:443?transport=tcp", ("turns", "h", 443, "tls")),
    ],
)
def test_good_urls(url: str, parsed: tuple[str, str, int, str]) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("stun://stun.example.org", "'//'"),
        ("http:example.org", "scheme"),
        ("stun", "scheme"),
        ("stuns:example.org", "stuns:"),
        ("stun:", "no host"),
        ("stun::3478", "no host"),
        ("stun:example.org:", "port ''"),
        ("stun:example.org:0", "not in 1-65535"),
        ("stun:example.org:65536", "not in 1-65535"),
        ("stun:example.org:34x", "not a number"),
        ("stun:example.org:-1", "not a number"),
        ("stun:2001:db8::1", "in brackets"),
        ("stun:[2001:db8::1", "closing"),
        ("stun:[2001:db8::zz]", "not an IPv6"),
        ("stun:[fe80::1%eth0]", "percent"),
        ("stun:[::1]x", "':port'"),
        ("stun:999.1.1.1", "not an IPv4"),
        ("stun:exa mple.org", "not a host name"),
        ("stun:example..org", "not a host name"),
        ("stun:user@example.org", "user information"),
        ("stun:example.org?transport=udp", "no parameters"),
        ("turn:example.org?transport=sctp", "transport=udp or transport=tcp"),
        ("turn:example.org?foo=bar", "only parameter"),
        ("turns:example.org?transport=udp", "DTLS"),
        ("turn:example.org#frag", "fragment"),
    ],
)
def test_bad_urls_name_the_url(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad URL") as info:
        parse_url(url)
    assert repr(url) in str(info.value)
    assert why in str(info.value)


# --- entries --------------------------------------------------------------------


@dataclass
class RTCIceServer:
    """aiortc's shape (aiortc.RTCIceServer): fields, not a dict."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None
    credentialType: str = "password"


def test_entries_of_every_shape() -> None:
    stun, turn = parse_ice_servers(
        [
            "stun:a.example",
            {"urls": ["stun:b.example", "turn:b.example"], "username": "u"}
            | {"credential": "p"},
            RTCIceServer(urls="turns:c.example", username="v", credential="q"),
            "stun:a.example",  # listed once
        ]
    )
    assert stun == [StunServer("a.example", 3478), StunServer("b.example", 3478)]
    assert turn == [
        TurnServer("b.example", 3478, "udp", "u", "p"),
        TurnServer("c.example", 5349, "tls", "v", "q"),
    ]
    assert turn[1].url == "turns:c.example"


def test_a_bare_turn_url_takes_the_old_credentials() -> None:
    _, turn = parse_ice_servers(
        ["turn:t.example?transport=tcp"], turn_username="u", turn_password="p"
    )
    assert turn == [TurnServer("t.example", 3478, "tcp", "u", "p")]
    with pytest.raises(ValueError, match=r"'turn:t\.example' needs a username"):
        parse_ice_servers(["turn:t.example"])


def test_aiortc_rtciceserver_is_taken_as_it_is() -> None:
    try:
        import aiortc
    except ImportError:
        missing_service("aiortc is not installed (pip install aiortc)")
    stun, turn = parse_ice_servers(
        [
            aiortc.RTCIceServer("stun:s.example:3478"),
            aiortc.RTCIceServer(
                ["turn:t.example:3478?transport=udp"], username="u", credential="p"
            ),
        ]
    )
    assert stun == [StunServer("s.example", 3478)]
    assert turn == [TurnServer("t.example", 3478, "udp", "u", "p")]


@pytest.mark.parametrize(
    ("servers", "error", "match"),
    [
        ("stun:a.example", TypeError, "must be a list"),
        ([42], TypeError, "an entry must be"),
        ([{"url": "stun:a"}], ValueError, "unknown key"),
        ([{"urls": []}], ValueError, "needs urls"),
        ([{"urls": "turn:a", "username": "u"}], ValueError, "needs a username"),
        ([{"urls": "turn:a", "username": 1, "credential": "p"}], TypeError, "str"),
        (
            [
                {"urls": "turn:a", "username": "u", "credential": "p"},
                {"urls": "stun:b", "credentialType": "oauth"},
            ],
            ValueError,
            "oauth",
        ),
        ([{"urls": [7]}], TypeError, "a URL must be a str"),
    ],
)
def test_bad_entries(servers: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_ice_servers(servers)  # type: ignore[arg-type]


@pytest.mark.parametrize("facade", FACADES)
def test_a_bad_url_fails_the_construction(facade: type[Connection]) -> None:
    with pytest.raises(ValueError, match=r"bad URL 'stun:host:99999'"):
        facade(True, ice_servers=["stun:ok.example", "stun:host:99999"])


@pytest.mark.parametrize("facade", FACADES)
def test_the_old_keywords_are_unchanged_beside_ice_servers(
    facade: type[Connection],
) -> None:
    conn = facade(
        True,
        stun_server=("s.example", 3478),
        turn_server=("t.example", 3478),
        turn_username="u",
        turn_password="p",
        ice_servers=["stun:s2.example"],
    )
    assert conn.stun_server == ("s.example", 3478)
    assert conn.turn_server == ("t.example", 3478)
    conn.close() if facade is Connection else None


def test_the_relay_policy_accepts_ice_servers() -> None:
    with pytest.raises(ValueError, match="needs a STUN or TURN server"):
        Connection(True, transport_policy=TransportPolicy.RELAY)
    conn = Connection(
        True,
        transport_policy=TransportPolicy.RELAY,
        ice_servers=[{"urls": "turn:t.example", "username": "u", "credential": "p"}],
    )
    conn.close()


# --- layer 1: every server at once, each within the bound ----------------------

HOST = ("10.0.0.1", 5000)
LIVE_STUN = [("198.51.100.1", 3478), ("198.51.100.2", 3478), ("198.51.100.3", 3478)]
LIVE_TURN = ("198.51.100.11", 3478)
SILENT = [("198.51.100.9", 3478), ("198.51.100.19", 3478), ("198.51.100.29", 3478)]
BOUND = 2.0


def _gather(silent_stun: int, silent_turn: int) -> tuple[IceAgent, list[float], float]:
    """3 STUN and 2 TURN servers, some of them silent (nothing there): the
    agent behind a symmetric NAT, so each live STUN server sees another
    mapping. Returns the agent, when each candidate came and when gathering
    completed."""
    net = exact_net()
    nat = net.add_nat("203.0.113.1", NatBehavior.symmetric())
    net.add_host(HOST[0], nat=nat)
    for addr in LIVE_STUN:
        VirtualStun(net, addr)
    VirtualTurn(net, LIVE_TURN, realm="test", relay_port=50000)
    agent = IceAgent(
        controlling=True,
        local_username="user",
        local_password="p" * 22,
        config=IceConfig(gather_timeout=BOUND),
    )
    peer = net.attach(agent)
    peer.add_host(0, 1, HOST)
    stun = LIVE_STUN[: 3 - silent_stun] + SILENT[:silent_stun]
    turn = [LIVE_TURN] * (2 - silent_turn) + [SILENT[2]] * silent_turn
    for i, server in enumerate(turn):
        allocation = TurnAllocation(
            server=server,
            username="user",
            password="secret",
            rng=random.Random(i),
            name=agent.name,
        )
        agent.add_relay(10 + 2 * i, 11 + 2 * i, 1, allocation)
        peer.add_transport(10 + 2 * i, (HOST[0], 6000 + i))
    start = net.now
    agent.gather(start, stun)
    net.run(start + 10 * BOUND, stop=lambda: peer.gathered)
    times = [t - start for t, e in peer.timeline if isinstance(e, CandidateGathered)]
    return agent, times, net.first(agent, GatheringCompleted) - start


def test_all_servers_live_gathering_ends_with_the_last_answer() -> None:
    agent, times, done = _gather(silent_stun=0, silent_turn=0)
    kinds = sorted(c.type for c in agent.local_candidates)
    # One srflx per server (the symmetric NAT maps each anew), one relay per
    # allocation.
    assert kinds == ["host", "relay", "relay", "srflx", "srflx", "srflx"]
    assert done < BOUND / 4
    assert max(times) <= done


@pytest.mark.parametrize(
    ("silent_stun", "silent_turn"), [(1, 0), (0, 1), (1, 1), (3, 2)]
)
def test_silent_servers_cost_one_bound_not_the_sum(
    silent_stun: int, silent_turn: int
) -> None:
    agent, times, done = _gather(silent_stun, silent_turn)
    # Ends at the bound once, however many servers are silent ...
    assert done == pytest.approx(BOUND)
    # ... and the live ones' candidates came when they answered, long before.
    kinds = [c.type for c in agent.local_candidates]
    assert kinds.count("srflx") == 3 - silent_stun
    assert kinds.count("relay") == 2 - silent_turn
    assert all(t < BOUND / 4 for t in times)


def test_each_stun_server_gives_its_own_foundation() -> None:
    """RFC 8445 §5.1.1.3: server-reflexive candidates of one base learnt
    from different STUN servers have different foundations (they may not
    share a fate), each of its base and its server's address."""
    agent, _, _ = _gather(silent_stun=0, silent_turn=0)
    srflx = [c for c in agent.local_candidates if c.type == "srflx"]
    assert [c.foundation for c in srflx] == [
        candidate_foundation("srflx", "udp", HOST[0], server=server[0])
        for server in LIVE_STUN
    ]
    assert len({c.foundation for c in srflx}) == 3


def test_the_same_mapping_from_two_servers_is_one_candidate() -> None:
    """RFC 8445 §5.1.3: behind an endpoint-independent NAT every server sees
    the same address: one srflx candidate, not one per server."""
    net = exact_net()
    nat = net.add_nat("203.0.113.1", NatBehavior.full_cone())
    net.add_host(HOST[0], nat=nat)
    for addr in LIVE_STUN:
        VirtualStun(net, addr)
    agent = IceAgent(
        controlling=True,
        local_username="user",
        local_password="p" * 22,
        config=IceConfig(gather_timeout=BOUND),
    )
    peer = net.attach(agent)
    peer.add_host(0, 1, HOST)
    agent.gather(net.now, LIVE_STUN)
    net.run(net.now + 10 * BOUND, stop=lambda: peer.gathered)
    assert [c.type for c in agent.local_candidates] == ["host", "srflx"]


def test_a_refusing_turn_server_ends_at_its_answer_not_the_bound() -> None:
    """A TURN server that refuses the credentials ends its allocation when
    it answers; the other server's relay comes, and gathering ends then."""
    net = exact_net()
    net.add_host(HOST[0])
    VirtualTurn(net, LIVE_TURN, realm="test", relay_port=50000)
    agent = IceAgent(
        controlling=True,
        local_username="user",
        local_password="p" * 22,
        config=IceConfig(gather_timeout=BOUND),
    )
    peer = net.attach(agent)
    peer.add_host(0, 1, HOST)
    for i, password in enumerate(["secret", "wrong"]):
        allocation = TurnAllocation(
            server=LIVE_TURN,
            username="user",
            password=password,
            rng=random.Random(i),
            name=agent.name,
        )
        agent.add_relay(10 + 2 * i, 11 + 2 * i, 1, allocation)
        peer.add_transport(10 + 2 * i, (HOST[0], 6000 + i))
    start = net.now
    agent.gather(start, [])
    net.run(start + 10 * BOUND, stop=lambda: peer.gathered)
    assert [c.type for c in agent.local_candidates] == ["host", "relay"]
    assert net.first(agent, GatheringCompleted) - start < BOUND / 4
