"""Layer-1 test conveniences: agents built and paired on a
:class:`syncice.testing.VirtualNet`, and hand-made checks.

There is one virtual network, :mod:`syncice.testing`; this module only builds
fixtures on it. :func:`exact_net` is the network the layer-1 tests assert
exact times on: every datagram takes :data:`DELAY` (one up link of 1 ms, no
delay down or in the core), and a server answers 1 ms after it is asked.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from syncice.events import IceEvent
from syncice.ice import IceAgent, IceConfig
from syncice.stun import Class, Message, Method, short_term_key
from syncice.testing import Address as Address
from syncice.testing import Link, VirtualNet

#: The one-way delay of every datagram on :func:`exact_net`.
DELAY = 0.001


def exact_net() -> VirtualNet:
    """A network on which every datagram takes exactly :data:`DELAY`: each
    host's up link delays it, nothing else does, nothing is lost."""
    return VirtualNet(up=Link(delay=DELAY), down=Link())


def link_down(net: VirtualNet) -> None:
    """Lose every datagram from now on (until the filters are cleared)."""
    net.filters.append(lambda src, dst, data: False)


def make_agent(
    controlling: bool,
    *,
    seed: int,
    ufrag: str,
    components: int = 1,
    config: IceConfig | None = None,
) -> IceAgent:
    return IceAgent(
        controlling=controlling,
        local_username=ufrag,
        local_password=password_of(ufrag),
        components=components,
        config=config,
        rng=random.Random(seed),
        name=ufrag,
    )


def password_of(ufrag: str) -> str:
    """The password :func:`make_agent` gives an agent of that ufrag."""
    return ufrag * (22 // len(ufrag) + 1)


def agent_pair(
    *,
    seed: int = 1,
    components: int = 1,
    config: IceConfig | None = None,
    a_hosts: tuple[str, ...] = ("10.0.0.1",),
    b_hosts: tuple[str, ...] = ("10.0.0.2",),
    controlling: tuple[bool, bool] = (True, False),
    net: VirtualNet | None = None,
    exchange: bool = True,
) -> tuple[VirtualNet, IceAgent, IceAgent]:
    """Two agents on a virtual network, credentials and candidates exchanged.

    Agent ``a`` (ufrag ``aaaa``) has an endpoint per host and component, on
    ports 1000, 1001...; agent ``b`` (``bbbb``) on ports 2000, 2001...
    """
    net = net if net is not None else exact_net()
    a = make_agent(
        controlling[0], seed=seed, ufrag="aaaa", components=components, config=config
    )
    b = make_agent(
        controlling[1],
        seed=seed + 1,
        ufrag="bbbb",
        components=components,
        config=config,
    )
    for agent, hosts, port in ((a, a_hosts, 1000), (b, b_hosts, 2000)):
        peer = net.attach(agent)
        endpoint = 0
        for host in hosts:
            for component in range(1, components + 1):
                peer.add_host(endpoint, component, (host, port + endpoint))
                endpoint += 1
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    if exchange:
        exchange_candidates(net, a, b)
    net.flush()
    return net, a, b


def exchange_candidates(
    net: VirtualNet, a: IceAgent, b: IceAgent, *, end: bool = True
) -> None:
    """Give each agent the other's local candidates (and end-of-candidates)."""
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            y.add_remote_candidate(c, net.now)
        if end:
            y.add_remote_candidate(None, net.now)


def connect_pair(
    net: VirtualNet, a: IceAgent, b: IceAgent, until: float = 60.0
) -> float:
    """Start both agents and run until both are done (completed or failed)."""
    a.connect(net.now)
    b.connect(net.now)
    return net.run(until, stop=lambda: a.state != "checking" and b.state != "checking")


def drain(agent: IceAgent) -> list[IceEvent]:
    """Pop every queued event of an agent that is not on a network."""
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    return events


def check_request(
    *,
    username: str,
    password: str,
    priority: int | None = 1862270975,
    controlling: int | None = None,
    controlled: int | None = None,
    use_candidate: bool = False,
    transaction_id: bytes | None = None,
    extra: list[tuple[int, bytes]] | None = None,
    sign: bool = True,
) -> bytes:
    """An ICE connectivity check as a peer would send it.

    :param username: the USERNAME attribute (``"theirs:mine"``).
    :param password: the password it is signed with (the receiver's).
    """
    attributes: dict[str, object] = {"USERNAME": username}
    if priority is not None:
        attributes["PRIORITY"] = priority
    if controlling is not None:
        attributes["ICE-CONTROLLING"] = controlling
    if controlled is not None:
        attributes["ICE-CONTROLLED"] = controlled
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    message = Message(
        Method.BINDING,
        Class.REQUEST,
        transaction_id if transaction_id is not None else bytes(range(12)),
        attributes,  # type: ignore[arg-type]
        extra or (),
    )
    key = short_term_key(password) if sign else None
    return message.encode(key=key, fingerprint=True)


def serve(
    net: VirtualNet, addr: Address, answer: Callable[[Address, bytes], bytes | None]
) -> None:
    """Bind a server at ``addr`` (its host added if need be) that answers
    what it gets, ``answer(source, data)``, unless that is ``None``."""
    if addr[0] not in net.hosts:
        net.add_host(addr[0])

    def on_datagram(src: Address, dst: Address, data: bytes) -> None:
        reply = answer(src, data)
        if reply is not None:
            net.send(dst, src, reply)

    net.bind(addr, on_datagram)
