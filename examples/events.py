"""What a connection shows: its state, its selected pair, and (opt-in) every
event of its ICE agent.

Two peers in this process on 127.0.0.1. ``a`` asks for every event
(``events="all"``); ``b`` keeps aioice's (only ``ConnectionClosed``).
"""

from __future__ import annotations

import threading

import syncice
from syncice.events import PairStateChanged

LOCAL = ["127.0.0.1"]


def signal(offer: syncice.Connection, answer: syncice.Connection) -> None:
    """Credentials and candidates, each way, then end-of-candidates."""
    for ours, theirs in ((offer, answer), (answer, offer)):
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        for candidate in ours.local_candidates:
            theirs.add_remote_candidate(candidate)
        theirs.add_remote_candidate(None)


def main() -> None:
    a = syncice.Connection(True, local_addresses=LOCAL, events="all")
    b = syncice.Connection(False, local_addresses=LOCAL)
    with a, b:  # both closed at the end of the block
        print("before:", a.state)  # noqa: T201
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)
        signal(a, b)
        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()
        a.connect(timeout=10)
        other.join()
        print("after connect:", a.state)  # noqa: T201
        a.send(b"counted")
        b.recv(timeout=10)
        pair = a.selected_pair()
        assert pair is not None
        print("selected:", pair.local.type, "->", pair.remote.type)  # noqa: T201
        print("sent on it:", pair.stats.datagrams_sent)  # noqa: T201
    print("after the block:", a.state)  # noqa: T201
    # Every event of a's agent, in order, then ConnectionClosed, then None.
    while (event := a.get_event(timeout=10)) is not None:
        if isinstance(event, PairStateChanged):
            print(" ", type(event).__name__, event.old_state, "->", event.new_state)  # noqa: T201
        else:
            print(" ", type(event).__name__)  # noqa: T201
    print("b's events:", b.get_event(timeout=10), b.get_event(timeout=10))  # noqa: T201


if __name__ == "__main__":
    main()
