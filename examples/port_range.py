"""Binding control: a port range for every socket, socket buffer sizes,
and which local addresses are used.

    python examples/port_range.py [LO HI]

Two connections on loopback bind their sockets within LO-HI (default
50000-50003); a third, given a range whose only port is taken, fails with
a clear error.
"""

from __future__ import annotations

import errno
import sys

import syncice


def keep(interface: str, address: str) -> bool:
    """The interface filter: called with each local address before binding."""
    return address != "127.0.0.2"  # e.g. an address of a VPN left out


def bound_connection(port_range: tuple[int, int]) -> syncice.Connection:
    return syncice.Connection(
        ice_controlling=True,
        components=2,
        local_addresses=["127.0.0.1", "127.0.0.2"],
        interface_filter=keep,
        port_range=port_range,  # host sockets and those towards TURN servers
        config=syncice.IceConfig(so_rcvbuf=1 << 18, so_sndbuf=1 << 18),
    )


def main() -> None:
    lo, hi = (
        (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (50000, 50003)
    )
    a, b = bound_connection((lo, hi)), bound_connection((lo, hi))
    try:
        for name, conn in (("a", a), ("b", b)):
            conn.gather_candidates(timeout=10)
            ports = sorted(c.port for c in conn.local_candidates)
            hosts = sorted({c.host for c in conn.local_candidates})
            print(f"{name}: {hosts} ports {[p - lo for p in ports]} above {lo}")  # noqa: T201
        # What the kernel made of the buffer sizes asked for (Linux doubles
        # them, up to net.core.rmem_max and wmem_max).
        sizes = set(a.socket_buffers.values())
        print("buffer sizes reported for every socket:", len(sizes) == 1)  # noqa: T201
        c = bound_connection((lo, lo))  # a's socket holds this port
        try:
            c.gather_candidates(timeout=10)
        except OSError as exc:
            reason = f"{errno.errorcode[exc.errno or 0]}: {exc.strerror}"
            print("c:", reason.replace(str(lo), "LO"))  # noqa: T201
        finally:
            c.close()
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
