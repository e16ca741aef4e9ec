"""Two ICE agents on a hostile virtual network, driven by Hypothesis.

:class:`IcePairMachine` loses, duplicates, delays (and so reorders) datagrams
in flight, trickles candidates and end-of-candidates, and advances virtual
time, while checking the agents' invariants after every step. The fuzz tests
below it feed arbitrary bytes, and mutated valid checks, to
:meth:`~syncice.ice.IceAgent.receive_datagram` in every state of the agent.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from syncice._checklist import CandidatePair, PairState
from syncice.ice import IceAgent, IceConfig
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from syncice.testing import VirtualNet
from tests.helpers import (
    Address,
    agent_pair,
    check_request,
    connect_pair,
    exact_net,
    link_down,
    password_of,
)

#: Defaults, and one with short timers so that failures, nomination waits and
#: consent expiry all happen within a few dozen steps.
CONFIGS = [
    IceConfig(),
    IceConfig(
        rto=0.05,
        max_sends=3,
        final_wait=4,
        nomination_wait=0.1,
        consent_interval=0.5,
        consent_timeout=3.0,
        max_remote_candidates=6,
        max_pairs=6,
        max_early_checks=2,
    ),
]

B_PUBLIC = ("203.0.113.2", 62000)


def addresses(pair: CandidatePair) -> tuple[Address, Address]:
    """(local, remote) transport addresses of a pair, as the peer sees them."""
    local = pair.valid_local
    return (local.host, local.port), pair.remote_addr


class IcePairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.net = exact_net()
        self.a: IceAgent
        self.b: IceAgent
        self.to_give: dict[int, list[object]] = {}

    @initialize(
        seed=st.integers(0, 2**16),
        roles=st.sampled_from(
            [(True, False), (False, True), (True, True), (False, False)]
        ),
        a_hosts=st.integers(1, 2),
        b_hosts=st.integers(1, 2),
        components=st.integers(1, 2),
        config=st.sampled_from(CONFIGS),
        nat=st.booleans(),
        trickle=st.booleans(),
        lite=st.booleans(),
    )
    def setup(
        self,
        seed: int,
        roles: tuple[bool, bool],
        a_hosts: int,
        b_hosts: int,
        components: int,
        config: IceConfig,
        nat: bool,
        trickle: bool,
        lite: bool,
    ) -> None:
        self.net, self.a, self.b = agent_pair(
            seed=seed,
            components=components,
            config=config,
            a_hosts=tuple(f"10.0.{i}.1" for i in range(a_hosts)),
            b_hosts=tuple(f"10.0.{i}.2" for i in range(b_hosts)),
            controlling=roles,
            exchange=False,
        )
        if nat:
            # b's first socket is behind a NAT: its checks come from a public
            # address a has never been told about (peer-reflexive candidates).
            self.net.add_static_nat(("10.0.0.2", 2000), B_PUBLIC)
        # The candidates each agent has yet to learn (the other's), in order.
        self.to_give = {
            id(self.a): list(self.b.local_candidates),
            id(self.b): list(self.a.local_candidates),
        }
        if not trickle:
            for agent in (self.a, self.b):
                self.give_all(agent)
        if lite and roles == (True, False):
            # b plays an ICE-lite agent: it never checks, only answers.
            self.a.set_remote_lite(True)
            self.a.connect(0.0)
        else:
            self.a.connect(0.0)
            self.b.connect(0.0)
        self.net.flush()

    def give_all(self, agent: IceAgent) -> None:
        while self.to_give[id(agent)]:
            agent.add_remote_candidate(self.to_give[id(agent)].pop(0), self.net.now)  # type: ignore[arg-type]
        agent.add_remote_candidate(None, self.net.now)

    def agent(self, first: bool) -> IceAgent:
        return self.a if first else self.b

    # --- time ----------------------------------------------------------------

    @rule(dt=st.sampled_from([0.0005, 0.001, 0.003, 0.02, 0.1, 0.5, 2.0, 10.0]))
    def advance(self, dt: float) -> None:
        self.net.run(self.net.now + dt)

    @rule()
    def step(self) -> None:
        self.net.step()

    # --- the network ------------------------------------------------------------

    def busy(self) -> bool:
        return bool(self.net.in_flight())

    @precondition(busy)
    @rule(index=st.integers(0, 50))
    def lose(self, index: int) -> None:
        self.net.drop(index)

    @precondition(busy)
    @rule(index=st.integers(0, 50), extra=st.sampled_from([0.0, 0.0003, 0.002, 0.7]))
    def duplicate(self, index: int, extra: float) -> None:
        self.net.duplicate(index, extra)

    @precondition(busy)
    @rule(index=st.integers(0, 50), extra=st.sampled_from([0.0004, 0.0015, 0.03, 1.0]))
    def delay(self, index: int, extra: float) -> None:
        self.net.hold(index, extra)

    @rule(up=st.booleans())
    def link(self, up: bool) -> None:
        # Cut the link for a while, or mend it.
        if up:
            self.net.filters.clear()
        elif not self.net.filters:
            link_down(self.net)

    # --- signalling -----------------------------------------------------------------

    @rule(first=st.booleans())
    def trickle(self, first: bool) -> None:
        agent = self.agent(first)
        pending = self.to_give[id(agent)]
        if pending and not agent.remote_end:
            agent.add_remote_candidate(pending.pop(0), self.net.now)  # type: ignore[arg-type]

    @rule(first=st.booleans())
    def end_of_candidates(self, first: bool) -> None:
        agent = self.agent(first)
        if not agent.remote_end:
            self.give_all(agent)

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def one_selected_pair_per_component(self) -> None:
        for agent in (self.a, self.b):
            selected = [s.component for s in agent.pair_stats() if s.selected]
            assert len(selected) == len(set(selected))
            for component, pair in agent.selected.items():
                assert pair.component == component
                assert pair in agent.pairs
                assert pair.nominated

    @invariant()
    def timers_never_left_in_the_past(self) -> None:
        assert self.net.stuck_timers == []

    @invariant()
    def states_are_consistent(self) -> None:
        for agent in (self.a, self.b):
            assert agent.state in ("new", "checking", "completed", "failed", "closed")
            if agent.state == "closed":
                assert agent.get_timer() is None
            for pair in agent.pairs:
                if pair.state is PairState.IN_PROGRESS:
                    assert pair.transaction is not None
            timer = agent.get_timer()
            assert timer is None or timer >= 0.0

    @invariant()
    def completed_agents_agree_on_the_selected_pairs(self) -> None:
        a, b = self.a, self.b
        if a.state != "completed" or b.state != "completed":
            return
        for component in set(a.selected) & set(b.selected):
            a_local, a_remote = addresses(a.selected[component])
            b_local, b_remote = addresses(b.selected[component])
            assert a_remote == b_local, (component, a.selected, b.selected)
            assert a_local == b_remote, (component, a.selected, b.selected)

    def teardown(self) -> None:
        # Where the run got to (shown by --hypothesis-show-statistics).
        event(f"a {self.a.state}, b {self.b.state}")
        # Liveness: with the link mended and every candidate given, nobody is
        # left checking for ever. Not even a controlled agent whose peer gave
        # up (say, its nomination was lost in an outage): RFC 8445 sets no
        # limit to that wait, the nomination timeout does.
        self.net.filters.clear()
        for agent in (self.a, self.b):
            if not agent.remote_end:
                self.give_all(agent)
        self.net.run(self.net.now + 120.0)
        assert self.net.stuck_timers == []
        for agent in (self.a, self.b):
            assert agent.state != "checking", (agent.name, agent.pairs)
            if agent.state in ("failed", "closed"):
                # A failed or closed agent is silent (test_ice_failures.py).
                assert agent.get_timer() is None
        event(f"finally a {self.a.state}, b {self.b.state}")


IcePairMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None
)
TestIcePair = IcePairMachine.TestCase


# --- fuzzing receive_datagram in every state ------------------------------------------

STATES = ("new", "checking", "completed", "failed", "closed")
PEER = ("10.0.0.2", 2000)
SOURCES = [
    PEER,
    ("192.0.2.9", 4000),
    ("10.0.0.2", 2001),
    ("::1", 9),
    ("fe80::1%eth0", 9),  # as recvfrom() names a link-local sender
]


def agent_in(state: str) -> tuple[VirtualNet, IceAgent]:
    """Agent a of a pair, in ``state``, its output drained."""
    net, a, b = agent_pair(seed=3)
    if state == "checking":
        a.connect(0.0)
    elif state == "completed":
        connect_pair(net, a, b)
    elif state == "failed":
        link_down(net)
        connect_pair(net, a, b)
    elif state == "closed":
        connect_pair(net, a, b)
        a.close()
    net.flush()
    assert a.state == state
    return net, a


def exercise(
    state: str, data: bytes, source: Address, endpoint: int
) -> tuple[IceAgent, list[bytes]]:
    """Feed ``data`` to agent a in ``state``, then run its next timer; return
    the agent and what it sent in answer to the datagram."""
    net, agent = agent_in(state)
    now = net.now + 0.001
    got = agent.receive_datagram(endpoint, data, source, now)
    if got is not None:
        assert got == (data, 1)
    answers = [tx.data for tx in agent.datagrams_to_send() if tx.addr == source]
    at = agent.get_timer()
    if at is not None:
        at = max(at, now)
        agent.handle_timer(at)
        after = agent.get_timer()
        assert after is None or after > at
    agent.datagrams_to_send()
    while agent.next_event() is not None:
        pass
    return agent, answers


@settings(max_examples=150, deadline=None)
@given(
    state=st.sampled_from(STATES),
    data=st.binary(max_size=300),
    source=st.sampled_from(SOURCES),
    endpoint=st.sampled_from([0, 0, 1]),
)
def test_arbitrary_bytes_never_raise(
    state: str, data: bytes, source: Address, endpoint: int
) -> None:
    # Random bytes never authenticate: no state, and no answer larger than
    # the datagram.
    _, before = agent_in(state)
    agent, answers = exercise(state, data, source, endpoint)
    assert all(len(answer) <= len(data) for answer in answers)
    assert len(agent.pairs) == len(before.pairs)
    assert len(agent.remote_candidates) == len(before.remote_candidates)


@st.composite
def checks(draw: st.DrawFn) -> bytes:
    """A check to agent a, validly signed, with drawn attributes."""
    attributes: dict[str, object] = {
        "USERNAME": draw(st.sampled_from(["aaaa:bbbb", "aaaa:", "aaaa:bbbb:x"])),
    }
    if draw(st.booleans()):
        attributes["PRIORITY"] = draw(st.integers(0, 2**32 - 1))
    role = draw(st.sampled_from([None, "ICE-CONTROLLING", "ICE-CONTROLLED"]))
    if role is not None:
        attributes[role] = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        attributes["USE-CANDIDATE"] = None
    extra = draw(
        st.lists(
            st.tuples(
                st.integers(0x0030, 0x0040) | st.integers(0x8030, 0x8040),
                st.binary(max_size=8),
            ),
            max_size=2,
        )
    )
    method = draw(st.sampled_from([Method.BINDING, Method.BINDING, Method.ALLOCATE]))
    klass = draw(
        st.sampled_from([Class.REQUEST, Class.REQUEST, Class.INDICATION, Class.SUCCESS])
    )
    tid = draw(st.binary(min_size=12, max_size=12))
    message = Message(method, klass, tid, attributes, extra)  # type: ignore[arg-type]
    key = short_term_key(
        draw(st.sampled_from([password_of("aaaa"), password_of("bbbb")]))
    )
    integrity = draw(st.sampled_from(["sha1", "sha256", "both"]))
    return message.encode(key=key, integrity=integrity, fingerprint=draw(st.booleans()))  # type: ignore[arg-type]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(checks()))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "append"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from(STATES),
    data=st.one_of(checks(), mutated()),
    source=st.sampled_from(SOURCES),
)
def test_valid_and_mutated_checks_never_raise(
    state: str, data: bytes, source: Address
) -> None:
    agent, _ = exercise(state, data, source, 0)
    assert len(agent.remote_candidates) <= agent.config.max_remote_candidates
    assert len(agent.pairs) <= agent.config.max_pairs


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(st.one_of(checks(), mutated(), st.binary(max_size=64)), max_size=8)
)
def test_a_stream_of_checks_before_connect(data: list[bytes]) -> None:
    # Many checks before connect(): bounded, then processed without raising.
    net, a, _b = agent_pair(seed=5, config=CONFIGS[1])
    for i, datagram in enumerate(data):
        a.receive_datagram(0, datagram, ("192.0.2.9", 4000 + i), 0.001 * i)
    a.connect(0.01)
    assert len(a.remote_candidates) <= a.config.max_remote_candidates
    net.run(1.0)
    assert net.stuck_timers == []


def test_check_request_helper_is_signed() -> None:
    data = check_request(username="aaaa:bbbb", password=password_of("aaaa"))
    assert parse_message(data).check_integrity(short_term_key(password_of("aaaa")))
