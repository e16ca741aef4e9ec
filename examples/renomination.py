"""Renomination as libwebrtc does it, on the sans-IO agent (no sockets).

A controlled :class:`syncice.ice.IceAgent` has one host candidate and two
remote candidates from a browser-like peer, which this program plays by
hand: it answers the agent's checks, then sends checks carrying libwebrtc's
``NOMINATION`` attribute (0xC001). The agent selects the pair of the highest
nomination value it has seen, even one of lower priority, and says so with a
``SelectedPairChanged`` event each time.
"""

from __future__ import annotations

import itertools

from syncice.candidate import Candidate, candidate_priority
from syncice.events import SelectedPairChanged
from syncice.ice import IceAgent
from syncice.stun import Class, Message, Method, parse_message, short_term_key

OURS = ("10.0.0.1", 4000)
PEER_UFRAG, PEER_PWD = "peer", "peerpassword22charslong"
FIRST = Candidate(
    "1", 1, "udp", candidate_priority(1, "host", 65535), "10.0.0.2", 5000, "host"
)
SECOND = Candidate(
    "2", 1, "udp", candidate_priority(1, "host", 100), "10.0.1.2", 5001, "host"
)
_ids = itertools.count(1)


def check(agent: IceAgent, nomination: int) -> bytes:
    """A check from the peer, nominating its pair with ``nomination``."""
    request = Message(
        Method.BINDING,
        Class.REQUEST,
        next(_ids).to_bytes(12, "big"),
        {
            "USERNAME": f"{agent.local_username}:{PEER_UFRAG}",
            "PRIORITY": 1862270975,
            "ICE-CONTROLLING": 1,
            "NOMINATION": nomination,
        },
    )
    return request.encode(key=short_term_key(agent.local_password), fingerprint=True)


def answer_checks(agent: IceAgent, now: float) -> None:
    """Answer every check the agent sent, as the peer would."""
    for out in agent.datagrams_to_send():
        request = parse_message(out.data)
        if request.message_class is Class.REQUEST:
            response = Message(
                Method.BINDING,
                Class.SUCCESS,
                request.transaction_id,
                {"XOR-MAPPED-ADDRESS": OURS},
            )
            data = response.encode(key=short_term_key(PEER_PWD), fingerprint=True)
            agent.receive_datagram(out.endpoint, data, out.addr, now)


def selections(agent: IceAgent) -> list[str]:
    """The remote address of each pair selected since the last call."""
    picked = []
    while (event := agent.next_event()) is not None:
        if isinstance(event, SelectedPairChanged):
            picked.append(event.remote.host)
    return picked


def main() -> None:
    agent = IceAgent(
        controlling=False,
        local_username="mine",
        local_password="minepassword22charslong",
    )
    agent.add_host_candidate(0, 1, OURS)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    for candidate in (FIRST, SECOND, None):
        agent.add_remote_candidate(candidate, 0.0)
    agent.connect(0.0)
    now = 0.0
    while not all(pair.valid for pair in agent.pairs):  # both pairs checked
        answer_checks(agent, now)
        now += 0.05
        agent.handle_timer(now)
    selections(agent)
    first, second = (FIRST.host, FIRST.port), (SECOND.host, SECOND.port)
    for nomination, source in ((1, first), (2, second), (1, first), (3, first)):
        agent.receive_datagram(0, check(agent, nomination), source, now)
        picked = selections(agent)
        shown = picked or "as before"
        print(f"NOMINATION={nomination} from {source[0]}: selected", shown)  # noqa: T201
    print("selected now:", agent.selected[1].remote.host)  # noqa: T201


if __name__ == "__main__":
    main()
