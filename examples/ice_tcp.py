"""ICE over TCP (RFC 6544): two connections that gather TCP host candidates
only, connect over TCP and exchange datagrams with the usual ``send()`` and
``recv()``; each datagram travels as one RFC 4571 frame.
"""

from __future__ import annotations

import threading

import syncice


def main() -> None:
    # transports=("udp", "tcp") gathers both kinds; ("tcp",) only TCP.
    a = syncice.Connection(
        ice_controlling=True, local_addresses=["127.0.0.1"], transports=("tcp",)
    )
    b = syncice.Connection(
        ice_controlling=False, local_addresses=["127.0.0.1"], transports=("tcp",)
    )
    try:
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)
        for candidate in a.local_candidates:
            print("a:", candidate.transport, candidate.tcptype, candidate.port)  # noqa: T201
        for ours, theirs in ((a, b), (b, a)):
            theirs.remote_username = ours.local_username
            theirs.remote_password = ours.local_password
            for candidate in ours.local_candidates:
                theirs.add_remote_candidate(candidate)
            theirs.add_remote_candidate(None)
        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()
        a.connect(timeout=10)
        other.join()
        [pair] = [s for s in a.get_stats() if s.selected]
        print("a's pair:", pair.local.tcptype, "->", pair.remote.tcptype)  # noqa: T201
        a.send(b"hello over TCP")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
        b.send(b"and back")
        print("a got:", a.recv(timeout=10).decode())  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
