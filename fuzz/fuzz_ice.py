"""Fuzz harnesses for the ICE agent's input, :meth:`IceAgent.receive_datagram`.

Invariant of every harness: whatever bytes arrive, from whatever address, in
whatever state the agent is in, ``receive_datagram`` does not raise, answers an
unauthenticated sender with no more bytes than it sent (and a failed or closed
agent answers nothing at all), and creates no state (no pair, no remote
candidate) for a sender that did not authenticate. ``handle_timer`` then runs
without raising either.

For coverage-guided fuzzing, hand atheris ``fuzz_one_input_datagram``, or
:func:`check_datagram`, which takes the raw bytes.
"""

from __future__ import annotations

import random

from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st

from syncice.candidate import Candidate
from syncice.ice import IceAgent, IceState
from syncice.stun import Class, Message, Method

PEER = ("192.0.2.9", 4000)
STATES = ("new", "checking", "completed", "failed", "closed", "restarting")


def make_agent(state: str) -> IceAgent:
    """An agent with one host candidate and one remote candidate, in ``state``."""
    agent = IceAgent(
        controlling=True,
        local_username="fuzz",
        local_password="f" * 22,
        rng=random.Random(7),
    )
    agent.add_host_candidate(0, 1, ("192.0.2.1", 1000))
    agent.set_remote_credentials("peer", "p" * 22)
    agent.add_remote_candidate(
        Candidate("remote", 1, "udp", 2130706431, "192.0.2.2", 2000, "host"), 0.0
    )
    if state == "failed":
        agent.add_remote_candidate(None, 0.0)
    if state != "new":
        agent.connect(0.0)
    if state == "failed":
        # Nobody answers: the check times out, at 39.5 s.
        while (at := agent.get_timer()) is not None:
            agent.handle_timer(at)
        assert agent.state == IceState.FAILED
    if state in ("completed", "restarting"):
        agent.set_selected_pair(1, agent.local_candidates[0].foundation, "remote")
    if state == "restarting":
        # An ICE restart: the old generation (ufrag "fuzz") still answers.
        agent.restart("fuzz2", "g" * 22)
    if state == "closed":
        agent.close()
    agent.datagrams_to_send()
    return agent


def check_datagram(data: bytes, state: str = "checking") -> None:
    """The invariant for one datagram from an unknown, unauthenticated peer."""
    agent = make_agent(state)
    pairs = len(agent.pairs)
    remotes = len(agent.remote_candidates)
    got = agent.receive_datagram(0, data, PEER, 1.0)
    assert got is None  # the peer never authenticated: no data accepted
    answers = agent.datagrams_to_send()
    if state in ("failed", "closed"):
        assert answers == []  # silent
    for transmit in answers:
        assert len(transmit.data) <= len(data)
        assert transmit.addr == PEER
    assert len(agent.pairs) == pairs
    assert len(agent.remote_candidates) == remotes
    agent.handle_timer(2.0)


def _request(attributes: dict[str, object]) -> bytes:
    message = Message(Method.BINDING, Class.REQUEST, attributes=attributes)  # type: ignore[arg-type]
    return message.encode(key=b"wrong-password-xxxxxxx", fingerprint=True)


SEEDS = (
    b"",
    b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),
    _request({"USERNAME": "fuzz:peer", "PRIORITY": 1}),
    _request({"USERNAME": "fuzz:peer", "ICE-CONTROLLING": 5, "USE-CANDIDATE": None}),
    Message(
        Method.BINDING, Class.SUCCESS, attributes={"XOR-MAPPED-ADDRESS": PEER}
    ).encode(),
)


@examples(*SEEDS)
@given(st.binary(max_size=600))
def fuzz_datagram(data: bytes) -> None:
    """Any bytes from an unknown peer: no raise, no state, no amplification."""
    check_datagram(data)


@given(st.sampled_from(SEEDS), st.data(), st.sampled_from(STATES))
def fuzz_mutated_datagram(seed: bytes, draw: st.DataObject, state: str) -> None:
    """Near-valid checks and responses, in every agent state: the same."""
    data = bytearray(seed)
    for _ in range(draw.draw(st.integers(0, 8))):
        if not data:
            break
        i = draw.draw(st.integers(0, len(data) - 1))
        data[i] = draw.draw(st.integers(0, 255))
    check_datagram(bytes(data), state)


@given(st.lists(st.binary(max_size=200), max_size=20), st.sampled_from(STATES))
def fuzz_datagram_sequence(datagrams: list[bytes], state: str) -> None:
    """Many datagrams in a row: the agent's state stays bounded."""
    agent = make_agent(state)
    pairs = len(agent.pairs)
    for i, data in enumerate(datagrams):
        assert (
            agent.receive_datagram(0, data, ("192.0.2.9", 4000 + i), float(i)) is None
        )
        agent.handle_timer(float(i))
    assert len(agent.pairs) == pairs
    assert agent.state in (
        IceState.NEW,
        IceState.CHECKING,
        IceState.COMPLETED,
        IceState.FAILED,
        IceState.CLOSED,
    )


fuzz_one_input_datagram = atheris_target(fuzz_datagram)
