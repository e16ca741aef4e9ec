"""Many STUN and TURN servers, given as URLs (``ice_servers=``): every
server is asked at once, and two peers connect through whichever relay
answers.

    python examples/ice_servers.py HOST PORT TLS_PORT USER PASSWORD [--ca CA.pem]

HOST is a STUN and TURN server (coturn) listening on PORT (UDP and TCP) and
TLS_PORT (TLS); an IPv6 address goes in brackets in a URL, which this
program does. The peers gather on 127.0.0.1; the server must allow relaying
to it (coturn: ``allow-loopback-peers``).
"""

from __future__ import annotations

import argparse
import ssl
import threading
from typing import Any

import syncice


def ice_servers(args: argparse.Namespace) -> list[Any]:
    host = f"[{args.host}]" if ":" in args.host else args.host
    tls = ssl.create_default_context(cafile=args.ca) if args.ca else None
    credentials = {"username": args.user, "credential": args.password}
    return [
        f"stun:{host}:{args.port}",  # srflx candidates
        # The W3C RTCIceServer shape (aiortc's RTCIceServer objects work too):
        {
            "urls": [
                f"turn:{host}:{args.port}?transport=udp",
                f"turn:{host}:{args.port}?transport=tcp",
            ],
            **credentials,
        },
        # TLS; "ssl_context" (a syncice extension) trusts a private CA, else
        # the system's trust store is used.
        {"urls": f"turns:{host}:{args.tls_port}", **credentials, "ssl_context": tls},
    ]


def relayed_connection(
    args: argparse.Namespace, controlling: bool
) -> syncice.Connection:
    return syncice.Connection(
        ice_controlling=controlling,
        ice_servers=ice_servers(args),
        transport_policy=syncice.TransportPolicy.RELAY,  # relay candidates only
        local_addresses=["127.0.0.1"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("tls_port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--ca", help="CA certificate file for TLS")
    args = parser.parse_args()

    a = relayed_connection(args, controlling=True)
    b = relayed_connection(args, controlling=False)
    try:
        for conn in (a, b):
            conn.gather_candidates(timeout=10)
        relays = [c for c in a.local_candidates if c.type == "relay"]
        print("a relay candidates:", len(relays))  # noqa: T201  one per server
        for ours, theirs in ((a, b), (b, a)):
            theirs.remote_username = ours.local_username
            theirs.remote_password = ours.local_password
            for candidate in ours.local_candidates:
                theirs.add_remote_candidate(candidate)
            theirs.add_remote_candidate(None)
        other = threading.Thread(target=b.connect, kwargs={"timeout": 20})
        other.start()
        a.connect(timeout=20)
        other.join()
        [pair] = [s for s in a.get_stats() if s.selected]
        print(f"selected: {pair.local.type} -> {pair.remote.type}")  # noqa: T201
        a.send(b"through a relay")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
