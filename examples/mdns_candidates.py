"""mDNS host candidates: hide the host's addresses behind random ``.local``
names (draft-ietf-mmusic-mdns-ice-candidates), as browsers do.

It sends and answers multicast DNS queries on 224.0.0.251:5353, so run it
where multicast stays local: the tests run it in a network namespace of their
own whose only interface is ``lo``.
"""

from __future__ import annotations

import os
import threading

import syncice


def main() -> None:
    if os.environ.get("SYNCICE_MDNS_EXAMPLE_OK") != "1":
        raise SystemExit("refusing to send multicast: set SYNCICE_MDNS_EXAMPLE_OK=1")
    # a hides its address; b resolves a's .local name when it gets it.
    a = syncice.Connection(
        ice_controlling=True, local_addresses=["127.0.0.1"], mdns_host_candidates=True
    )
    b = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    try:
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)
        [hidden] = a.local_candidates
        print("a's candidate:", hidden.to_sdp().split()[4], hidden.type)  # noqa: T201
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
        [pair] = [s for s in b.get_stats() if s.selected]
        print("b reached a at:", pair.remote.host)  # noqa: T201
        a.send(b"hello over a hidden address")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
