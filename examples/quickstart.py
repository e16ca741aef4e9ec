"""Quickstart: two ICE peers with the blocking API, signalling by hand.

Both peers live in this process and gather on 127.0.0.1 only, so it runs
anywhere; in a real program each side runs on its own host and the
"signalling" below is whatever channel you have (HTTP, a chat, copy and paste).
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


def main() -> None:
    # One side controls (nominates the pair), the other does not.
    a = syncice.Connection(ice_controlling=True, local_addresses=["127.0.0.1"])
    b = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    try:
        # Gathering binds sockets and asks STUN/TURN servers (none here).
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)
        print("a candidates:", [c.to_sdp() for c in a.local_candidates])  # noqa: T201
        signal(a, b)

        # Both sides call connect(); each blocks until a pair is nominated.
        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()
        a.connect(timeout=10)
        other.join()

        a.send(b"hello")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
        b.send(b"hi there")
        print("a got:", a.recv(timeout=10).decode())  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
