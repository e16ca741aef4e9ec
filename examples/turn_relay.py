"""STUN, TURN and TLS configuration: two peers that may talk only through a
TURN relay (``TransportPolicy.RELAY``), over UDP, TCP or TLS.

    python examples/turn_relay.py HOST PORT USER PASSWORD [--transport tls --ca CA.pem]

The peers gather on 127.0.0.1; the TURN server must allow relaying to it
(coturn: ``allow-loopback-peers``).
"""

from __future__ import annotations

import argparse
import ssl
import threading

import syncice


def relayed_connection(
    args: argparse.Namespace, controlling: bool
) -> syncice.Connection:
    turn_ssl: bool | ssl.SSLContext = False
    if args.transport == "tls":
        # True would check the certificate against the system's trust store;
        # a context of your own can trust a private CA instead.
        turn_ssl = ssl.create_default_context(cafile=args.ca) if args.ca else True
    return syncice.Connection(
        ice_controlling=controlling,
        stun_server=(args.host, args.stun_port or args.port),  # srflx candidates
        turn_server=(args.host, args.port),
        turn_username=args.user,
        turn_password=args.password,
        turn_transport="udp" if args.transport == "udp" else "tcp",  # TLS runs on TCP
        turn_ssl=turn_ssl,
        transport_policy=syncice.TransportPolicy.RELAY,  # relay candidates only
        local_addresses=["127.0.0.1"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    parser.add_argument("--ca", help="CA certificate file for TLS")
    parser.add_argument("--stun-port", type=int, help="STUN port (default PORT)")
    args = parser.parse_args()

    a = relayed_connection(args, controlling=True)
    b = relayed_connection(args, controlling=False)
    try:
        for conn in (a, b):
            conn.gather_candidates(timeout=10)
        print("a candidates:", sorted({c.type for c in a.local_candidates}))  # noqa: T201
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
        a.send(b"through the relay")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
