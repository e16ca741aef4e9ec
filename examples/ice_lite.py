"""ICE-lite: a server with a public address answers checks, the client
nominates (RFC 8445 §2.5).

Both sides live in this process on 127.0.0.1; in a real deployment the lite
side is a server with a public address and the full side a client behind
any NAT. The descriptions travel as JSON, as they would over HTTP.
"""

from __future__ import annotations

import logging
import sys
import threading

import syncice


def main() -> None:
    logging.basicConfig(stream=sys.stdout, format="log: %(message)s")
    logging.getLogger("syncice.ice").setLevel(logging.INFO)
    # The lite side: host candidates only, always controlled. Asked to
    # control and given a STUN server, it says in the log that it will not.
    server = syncice.Connection(
        ice_controlling=True,
        stun_server=("127.0.0.1", 3478),
        local_addresses=["127.0.0.1"],
        ice_lite=True,
    )
    client = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    logging.getLogger("syncice.ice").setLevel(logging.WARNING)
    try:
        server.gather_candidates(timeout=10)
        client.gather_candidates(timeout=10)
        offer = server.local_description()
        print("server says:", offer.to_sdp().splitlines()[0])  # noqa: T201
        # The client reads a=ice-lite and so takes the controlling role.
        client.set_remote_description(offer.to_json())
        server.set_remote_description(client.local_description().to_json())

        waiting = threading.Thread(target=server.connect, kwargs={"timeout": 10})
        waiting.start()
        client.connect(timeout=10)
        waiting.join()
        print("client controlling:", client.ice_controlling)  # noqa: T201
        print("server controlling:", server.ice_controlling)  # noqa: T201

        client.send(b"hello")
        print("server got:", server.recv(timeout=10).decode())  # noqa: T201
        server.send(b"welcome")
        print("client got:", client.recv(timeout=10).decode())  # noqa: T201
        sent = sum(s.requests_sent for s in server.get_stats())
        print("checks the server sent:", sent)  # noqa: T201

        # Two lite agents cannot connect: neither would check.
        other = syncice.Connection(
            ice_controlling=False, local_addresses=["127.0.0.1"], ice_lite=True
        )
        try:
            other.set_remote_description(offer)
        except syncice.NegotiationFailedError as exc:
            print("lite against lite:", str(exc).split(":")[0])  # noqa: T201
        finally:
            other.close()
    finally:
        client.close()
        server.close()


if __name__ == "__main__":
    main()
