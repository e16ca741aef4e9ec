"""ICE restart: new credentials and a new check list, data flowing throughout.

Two peers in this process on 127.0.0.1, connected as in the quickstart. Peer
``a`` restarts ICE (say, its network changed); ``b`` learns of it through the
signalling and restarts too; both exchange their new credentials and
candidates and connect again. Datagrams sent meanwhile go over the old pair,
and none is lost across the switch.
"""

from __future__ import annotations

import threading

import syncice


def signal(offer: syncice.Connection, answer: syncice.Connection) -> None:
    """What each side must learn about the other: credentials and candidates."""
    for ours, theirs in ((offer, answer), (answer, offer)):
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        for candidate in ours.local_candidates:
            theirs.add_remote_candidate(candidate)
        theirs.add_remote_candidate(None)  # end of candidates


def connect(a: syncice.Connection, b: syncice.Connection) -> None:
    """Both sides call connect(); each returns once a pair is nominated."""
    other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
    other.start()
    a.connect(timeout=10)
    other.join()


def stream(a: syncice.Connection, b: syncice.Connection, first: int) -> int:
    """Send ten numbered datagrams from a to b; how many b got, in order."""
    for i in range(first, first + 10):
        a.send(i.to_bytes(4, "big"))
    got = [int.from_bytes(b.recv(timeout=10), "big") for _ in range(10)]
    return sum(1 for i, n in enumerate(got, first) if i == n)


def restart(a: syncice.Connection, b: syncice.Connection) -> None:
    old = a.local_username
    a.restart()  # new local credentials, a new check list
    print("a restarted, new ufrag:", a.local_username != old)  # noqa: T201
    print("during, b got:", stream(a, b, 10))  # noqa: T201  (the old pair)
    # The signalling tells b; b restarts too (RFC 8445 §9: both change).
    b.restart()
    signal(a, b)  # the new credentials and candidates, as the first time
    print("signalled, b got:", stream(a, b, 20))  # noqa: T201
    connect(a, b)  # returns once the new check list nominated a pair
    print("after, b got:", stream(a, b, 30))  # noqa: T201  (the new pair)


def main() -> None:
    a = syncice.Connection(ice_controlling=True, local_addresses=["127.0.0.1"])
    b = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    try:
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)
        signal(a, b)
        connect(a, b)
        print("before, b got:", stream(a, b, 0))  # noqa: T201
        restart(a, b)
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
