"""NAT mapping probe for the lab (stdlib only).

``probe.py serve HOST PORT1 PORT2 SECONDS`` answers every UDP datagram on
both ports with the source ``ip:port`` it came from; ``probe.py probe HOST
PORT1 PORT2`` asks both ports from one local socket and prints JSON
``{"mapped1", "mapped2", "mapping"}``, where ``mapping`` is
``endpoint-independent`` when both answers show the same public address,
``address-and-port-dependent`` when they differ (a symmetric NAT).
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time


def serve(host: str, ports: list[int], seconds: float) -> None:
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        socks.append(sock)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        readable, _, _ = select.select(socks, [], [], 0.2)
        for sock in readable:
            _, addr = sock.recvfrom(2048)
            sock.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)


def probe(host: str, ports: list[int]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(0.5)
    seen: list[str | None] = []
    for port in ports:
        answer = None
        for _ in range(10):
            sock.sendto(b"?", (host, port))
            try:
                answer = sock.recv(2048).decode()
                break
            except TimeoutError:
                continue
        seen.append(answer)
    if seen[0] and seen[0] == seen[1]:
        mapping = "endpoint-independent"
    elif all(seen):
        mapping = "address-and-port-dependent"
    else:
        mapping = "unknown"
    result = {"mapped1": seen[0], "mapped2": seen[1], "mapping": mapping}
    sys.stdout.write(json.dumps(result) + "\n")


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "serve":
        serve(args[1], [int(args[2]), int(args[3])], float(args[4]))
    elif len(args) == 4 and args[0] == "probe":
        probe(args[1], [int(args[2]), int(args[3])])
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
