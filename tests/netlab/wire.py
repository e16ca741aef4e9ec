"""A userspace netem: joins pairs of TAP devices in different network
namespaces and forwards Ethernet frames between them, with loss, delay and
jitter set per link and per direction. ARP frames are never impaired (see
``ETHERTYPE_ARP``).

The NAT lab (``netlab.sh``) needs it because this kernel has no ``sch_netem``
(``tc qdisc ... netem`` fails with "Specified qdisc kind is unknown")::

    wire.py --config FILE --applied FILE --link NAME=NS1:DEV1=NS2:DEV2 ...

The TAP devices must exist (``ip -n NS tuntap add dev DEV mode tap``). Frames
read on ``DEV1`` travel "up" to ``DEV2``, frames read on ``DEV2`` "down".
The config file holds ``{"generation": N, "links": {NAME: {"up": {"loss":
0.2, "delay": 0.05, "jitter": 0.01}, "down": {...}}}}`` (loss a fraction,
times in seconds); it is re-read when it changes, and each applied
generation is written to the ``--applied`` file, so that a caller can wait
for it. Prints ``ready`` once every link is attached; exits on SIGTERM.
Needs root (``setns``, ``/dev/net/tun``).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
#: How often the config file's modification time is looked at (seconds).
RELOAD_INTERVAL = 0.05
#: Bound on frames held back for delay (a full queue drops, as a router would).
MAX_QUEUED = 10_000
#: ARP frames pass at once, neither lost nor delayed. The impairment models
#: loss on the path between the NATs and the Internet, as it reaches IP
#: packets; but the lab's NATs and coturn share one Ethernet segment, so the
#: NATs resolve each other's addresses across two impaired wires. At 20 % a
#: wire, a unicast ARP probe and its answer get through 41 % of the time, a
#: neighbour's three probes all fail 20 % of the time, and the kernel then
#: drops or holds every packet to that neighbour for 1-3 s: a blackout for
#: all the peers behind a NAT at once, which the scenarios do not state.
ETHERTYPE_ARP = b"\x08\x06"

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Impairment:
    """What one direction of one link does to frames."""

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0


@dataclass(frozen=True)
class Port:
    """One TAP device of a link: frames read here leave through ``out``."""

    link: str
    direction: str
    out: int


def setns(path: str) -> None:
    """Move this thread into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(namespace: str, device: str) -> int:
    """Attach to the TAP ``device`` in ``namespace``; returns its fd."""
    setns(f"/var/run/netns/{namespace}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(
        fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TAP | IFF_NO_PI)
    )
    return fd


def load(path: str) -> tuple[int, dict[tuple[str, str], Impairment]]:
    """The generation and the impairments of a config file."""
    with open(path) as f:
        raw = json.load(f)
    table: dict[tuple[str, str], Impairment] = {}
    for link, directions in raw.get("links", {}).items():
        for direction, setting in directions.items():
            table[(link, direction)] = Impairment(
                loss=float(setting.get("loss", 0.0)),
                delay=float(setting.get("delay", 0.0)),
                jitter=float(setting.get("jitter", 0.0)),
            )
    return int(raw.get("generation", 0)), table


def log(line: str) -> None:
    """One line on stdout (the lab's wire.log)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write_frame(fd: int, frame: bytes) -> None:
    """Write one frame; a full or detached device drops it."""
    try:
        os.write(fd, frame)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EIO):
            raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--applied", required=True)
    parser.add_argument(
        "--link", action="append", required=True, help="NAME=NS1:DEV1=NS2:DEV2"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    ports: dict[int, Port] = {}
    for spec in args.link:
        name, left, right = spec.split("=")
        fd1 = open_tap(*left.split(":"))
        fd2 = open_tap(*right.split(":"))
        ports[fd1] = Port(name, "up", fd2)
        ports[fd2] = Port(name, "down", fd1)
    if _libc.setns(home, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back home")
    os.close(home)

    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    table: dict[tuple[str, str], Impairment] = {}
    mtime: int | None = None
    reload_at = 0.0

    def reload() -> None:
        nonlocal table, mtime
        try:
            stamp = os.stat(args.config).st_mtime_ns
        except FileNotFoundError:
            return
        if stamp == mtime:
            return
        try:
            generation, new = load(args.config)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log(f"bad config: {exc!r}")
            return
        mtime, table = stamp, new
        with open(args.applied + ".tmp", "w") as f:
            f.write(f"{generation}\n")
        os.replace(args.applied + ".tmp", args.applied)
        log(f"applied {generation} {table}")

    reload()
    log("ready")
    queue: list[tuple[float, int, int, bytes]] = []  # (release at, seq, out fd, frame)
    seq = 0
    fds = list(ports)
    none = Impairment()
    while running:
        now = time.monotonic()
        if now >= reload_at:
            reload()
            reload_at = now + RELOAD_INTERVAL
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            write_frame(out, frame)
        timeout = RELOAD_INTERVAL
        if queue:
            timeout = max(0.0, min(timeout, queue[0][0] - now))
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            port = ports[fd]
            imp = table.get((port.link, port.direction), none)
            for _ in range(64):
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EIO:  # the other side is not up yet
                        break
                    raise
                if frame[12:14] == ETHERTYPE_ARP:
                    write_frame(port.out, frame)  # see ETHERTYPE_ARP
                    continue
                if imp.loss and rng.random() < imp.loss:
                    continue
                delay = imp.delay
                if imp.jitter:
                    delay = max(0.0, delay + rng.uniform(-imp.jitter, imp.jitter))
                if delay <= 0:
                    write_frame(port.out, frame)
                elif len(queue) < MAX_QUEUED:
                    seq += 1
                    heapq.heappush(queue, (now + delay, seq, port.out, frame))
    for fd in fds:
        os.close(fd)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
