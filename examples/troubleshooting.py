"""The failures of the troubleshooting guide, reproduced: each scenario
prints the error (or outcome) that syncice gives for it.

The first three run real connections on 127.0.0.1, with a short
:class:`syncice.IceConfig` so that they fail in about a second rather than
the default 39.5 s; the NAT scenarios run on syncice's virtual network
(:mod:`syncice.testing`), in virtual time.
"""

from __future__ import annotations

import logging
import socket
import threading

import syncice
from syncice.testing import NatBehavior, StunServer, TurnServer, VirtualNet

#: Checks every 0.05-0.1 s, 4 tries: failure within about a second.
QUICK = syncice.IceConfig(
    rto=0.05, rto_max=0.1, max_sends=4, final_wait=4, nomination_timeout=1.5
)


def pair() -> tuple[syncice.Connection, syncice.Connection]:
    a = syncice.Connection(True, local_addresses=["127.0.0.1"], config=QUICK)
    b = syncice.Connection(False, local_addresses=["127.0.0.1"], config=QUICK)
    a.gather_candidates(timeout=10)
    b.gather_candidates(timeout=10)
    return a, b


def signal(ours: syncice.Connection, theirs: syncice.Connection) -> None:
    theirs.remote_username = ours.local_username
    theirs.remote_password = ours.local_password
    for candidate in ours.local_candidates:
        theirs.add_remote_candidate(candidate)
    theirs.add_remote_candidate(None)


def connect_both(a: syncice.Connection, b: syncice.Connection) -> list[str]:
    """Both sides' outcome of connect(): "connected" or the error."""
    results = ["", ""]

    def run(i: int, conn: syncice.Connection) -> None:
        try:
            conn.connect(timeout=30)
            results[i] = "connected"
        except syncice.IceError as exc:
            results[i] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate((a, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wrong_password() -> None:
    a, b = pair()
    try:
        signal(a, b)
        signal(b, a)
        a.remote_password = "x" * 22  # not b's password
        for side, result in zip("ab", connect_both(a, b), strict=True):
            print(f"wrong password, {side}: {result}")  # noqa: T201
    finally:
        a.close()
        b.close()


def firewall() -> None:
    """The peer's candidates are right, but nothing comes back from them."""
    a, b = pair()
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        port = blackhole.getsockname()[1]
        a.remote_username = b.local_username
        a.remote_password = b.local_password
        a.add_remote_candidate(
            syncice.Candidate.from_sdp(f"1 1 udp 2130706431 127.0.0.1 {port} typ host")
        )
        a.add_remote_candidate(None)
        try:
            a.connect(timeout=30)
        except syncice.NegotiationFailedError as exc:
            print(f"firewall: {type(exc).__name__}: {exc}")  # noqa: T201
    finally:
        blackhole.close()
        a.close()
        b.close()


def no_turn_server() -> None:
    """A TURN server that does not answer: gathering ends without a relay."""
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("syncice")
    logger.addHandler(handler)
    conn = syncice.Connection(
        True,
        local_addresses=["127.0.0.1"],
        turn_server=dead.getsockname(),
        turn_username="user",
        turn_password="password",
        config=syncice.IceConfig(gather_timeout=1.0),
    )
    try:
        conn.gather_candidates(timeout=10)
        types = sorted({c.type for c in conn.local_candidates})
        print(f"no TURN: candidate types {types}")  # noqa: T201
        for message in records:
            if "TURN" in message or "relay" in message:
                print(f"no TURN: log: {message}")  # noqa: T201
    finally:
        logger.removeHandler(handler)
        conn.close()
        dead.close()


def behind_nats(relay: bool) -> None:
    """A cone NAT against a symmetric one, with or without a TURN server."""
    net = VirtualNet(seed=7)
    stun = StunServer(net, ("198.51.100.1", 3478))
    turn = TurnServer(net, ("198.51.100.2", 3478)) if relay else None
    cone = net.add_nat("203.0.113.1", NatBehavior.port_restricted_cone())
    symmetric = net.add_nat("203.0.113.2", NatBehavior.symmetric())
    net.add_host("10.0.0.1", nat=cone)
    net.add_host("10.0.0.2", nat=symmetric)
    a = net.add_agent("a", "10.0.0.1", stun=stun.addr, turn=turn)
    b = net.add_agent("b", "10.0.0.2", stun=stun.addr, turn=turn, controlling=False)
    outcome = net.connect(a, b)
    label = "with TURN" if relay else "no TURN"
    if outcome.connected:
        print(  # noqa: T201
            f"symmetric NAT, {label}: connected on {outcome.local_type} -> "
            f"{outcome.remote_type} in {outcome.connect_time:.2f} virtual s"
        )
    else:
        print(  # noqa: T201
            f"symmetric NAT, {label}: failed after {outcome.fail_time:.1f} "
            f"virtual s: {outcome.reason}"
        )


def main() -> None:
    wrong_password()
    firewall()
    no_turn_server()
    behind_nats(relay=False)
    behind_nats(relay=True)


if __name__ == "__main__":
    main()
