"""One ICE peer for the NAT lab, driven by JSON lines on stdin and stdout.

Run it inside a lab namespace, with syncice (default) or aioice as the ICE
implementation::

    ip netns exec NS .venv/bin/python tests/netlab/peer.py --role controlling
        [--impl syncice|aioice] [--local-address IP] [--stun HOST:PORT]
        [--turn HOST:PORT --turn-user U --turn-password P
         --turn-transport udp|tcp|tls --turn-ca PEM] [--relay-only]
        [--connect-timeout 60] [--max-life 120] [--gather-timeout S]

The protocol follows the libnice peer's (``tests/interop/nice_peer.py``), so
a test drives either the same way.

stdout, one JSON object per line:

- ``{"event": "local-description", "ufrag", "pwd", "candidates":
  ["candidate:...", ...], "gather_seconds"}`` once gathering is done;
- ``{"event": "connected", "seconds", "selected": "LOCALTYPE/REMOTETYPE",
  "local": "TYPE IP:PORT", "remote": "TYPE IP:PORT"}`` or ``{"event":
  "failed", "seconds", "error"}``: ``seconds`` from the remote description to
  the end of ``connect()``;
- ``{"event": "pinged", "count", "echoed", "seconds"}``: the answer to a
  ``ping`` command, ``echoed`` counting the datagrams that came back intact;
- ``{"event": "error", "message"}`` and, last, ``{"event": "exit", "reason"}``.

stdin, one JSON object per line:

- ``{"ufrag", "pwd", "candidates": [...]}``: the remote description, once;
- ``{"cmd": "ping", "count": N, "size": B, "timeout": S}``: send ``N``
  datagrams of ``B`` random bytes, re-sent every 0.3 s until each has come
  back or ``S`` seconds have passed;
- ``{"cmd": "quit"}`` or EOF: close the connection and exit.

Once connected, every datagram that is not the echo of one of this peer's own
pings is echoed back unchanged, so two such peers (or this one and the libnice
peer, which echoes everything) test the data path both ways. The process
closes and exits by itself after ``--max-life`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_out = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """Write one JSON line on stdout."""
    line = json.dumps({"event": event, **fields}) + "\n"
    with _out:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def hostport(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` as a tuple."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def sdp(line: str) -> str:
    """A candidate line without its ``a=`` and ``candidate:`` prefixes."""
    line = line.strip()
    line = line.removeprefix("a=")
    return line.removeprefix("candidate:")


class Backend(Protocol):
    """The blocking calls the peer needs from an ICE implementation."""

    ufrag: str
    pwd: str

    def gather(self) -> list[str]: ...
    def set_remote(self, ufrag: str, pwd: str, candidates: list[str]) -> None: ...
    def connect(self, timeout: float) -> None: ...
    def selected(self) -> tuple[str, str]: ...
    def send(self, data: bytes) -> None: ...
    def recv(self, timeout: float) -> bytes | None: ...
    def close(self) -> None: ...
    def pair_report(self) -> list[dict[str, Any]]: ...


def turn_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TURN keyword arguments, the same for syncice and aioice."""
    if not args.turn:
        return {}
    options: dict[str, Any] = {
        "turn_server": hostport(args.turn),
        "turn_username": args.turn_user,
        "turn_password": args.turn_password,
        "turn_transport": "udp" if args.turn_transport == "udp" else "tcp",
    }
    if args.turn_transport == "tls":
        options["turn_ssl"] = ssl.create_default_context(cafile=args.turn_ca)
    return options


class SynciceBackend:
    """syncice's blocking :class:`syncice.Connection`."""

    def __init__(self, args: argparse.Namespace) -> None:
        import syncice

        self._syncice = syncice
        config = None
        if args.gather_timeout is not None:
            config = syncice.IceConfig(gather_timeout=args.gather_timeout)
        policy = (
            syncice.TransportPolicy.RELAY
            if args.relay_only
            else syncice.TransportPolicy.ALL
        )
        self.conn = syncice.Connection(
            args.role == "controlling",
            stun_server=hostport(args.stun) if args.stun else None,
            use_ipv6=False,
            transport_policy=policy,
            local_addresses=[args.local_address] if args.local_address else None,
            config=config,
            **turn_options(args),
        )
        self.ufrag = self.conn.local_username
        self.pwd = self.conn.local_password

    def gather(self) -> list[str]:
        self.conn.gather_candidates(timeout=30.0)
        return [c.to_sdp() for c in self.conn.local_candidates]

    def set_remote(self, ufrag: str, pwd: str, candidates: list[str]) -> None:
        for line in candidates:
            self.conn.add_remote_candidate(self._syncice.Candidate.from_sdp(sdp(line)))
        self.conn.add_remote_candidate(None)
        self.conn.remote_username, self.conn.remote_password = ufrag, pwd

    def connect(self, timeout: float) -> None:
        self.conn.connect(timeout=timeout)

    def selected(self) -> tuple[str, str]:
        for stats in self.conn.get_stats():
            if stats.selected:
                return (
                    f"{stats.local.type} {stats.local.host}:{stats.local.port}",
                    f"{stats.remote.type} {stats.remote.host}:{stats.remote.port}",
                )
        raise RuntimeError("connected, but no selected pair")

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def recv(self, timeout: float) -> bytes | None:
        try:
            return self.conn.recv(timeout=timeout)
        except self._syncice.IceTimeoutError:
            return None

    def close(self) -> None:
        self.conn.close()

    def pair_report(self) -> list[dict[str, Any]]:
        return [
            {
                "local": f"{s.local.type} {s.local.host}:{s.local.port}",
                "remote": f"{s.remote.type} {s.remote.host}:{s.remote.port}",
                "state": s.state,
                "nominated": s.nominated,
                "requests_sent": s.requests_sent,
                "requests_received": s.requests_received,
                "responses_received": s.responses_received,
            }
            for s in self.conn.get_stats()
        ]


class AioiceBackend:
    """aioice's :class:`aioice.Connection` on an event loop in its own thread,
    behind blocking calls."""

    def __init__(self, args: argparse.Namespace) -> None:
        import aioice

        self._aioice = aioice
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        policy = (
            aioice.TransportPolicy.RELAY
            if args.relay_only
            else aioice.TransportPolicy.ALL
        )
        self.conn = aioice.Connection(
            ice_controlling=args.role == "controlling",
            stun_server=hostport(args.stun) if args.stun else None,
            use_ipv6=False,
            transport_policy=policy,
            **turn_options(args),
        )
        self.ufrag = self.conn.local_username
        self.pwd = self.conn.local_password

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def gather(self) -> list[str]:
        self._run(self.conn.gather_candidates())
        return [c.to_sdp() for c in self.conn.local_candidates]

    def set_remote(self, ufrag: str, pwd: str, candidates: list[str]) -> None:
        async def add() -> None:
            for line in candidates:
                candidate = self._aioice.Candidate.from_sdp(sdp(line))
                await self.conn.add_remote_candidate(candidate)
            await self.conn.add_remote_candidate(None)
            self.conn.remote_username, self.conn.remote_password = ufrag, pwd

        self._run(add())

    def connect(self, timeout: float) -> None:
        self._run(asyncio.wait_for(self.conn.connect(), timeout))

    def selected(self) -> tuple[str, str]:
        pair = self.conn._nominated.get(1)
        if pair is None:
            raise RuntimeError("connected, but no nominated pair")
        local, remote = pair.local_candidate, pair.remote_candidate
        return (
            f"{local.type} {local.host}:{local.port}",
            f"{remote.type} {remote.host}:{remote.port}",
        )

    def send(self, data: bytes) -> None:
        self._run(self.conn.send(data))

    def recv(self, timeout: float) -> bytes | None:
        try:
            data: bytes = self._run(asyncio.wait_for(self.conn.recv(), timeout))
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            return None
        return data

    def close(self) -> None:
        try:
            self._run(self.conn.close(), 5.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5.0)

    def pair_report(self) -> list[dict[str, Any]]:
        return []


class Echoer:
    """Receives on a connected backend: echoes foreign datagrams and ticks off
    the echoes of our own pings."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.sent: set[bytes] = set()  # every ping payload we sent
        self.waiting: set[bytes] = set()  # those not echoed yet
        self.changed = threading.Condition(self.lock)
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped:
            try:
                data = self.backend.recv(0.2)
            except (ConnectionError, RuntimeError, OSError):
                return
            if data is None:
                continue
            with self.lock:
                ours = data in self.sent
                if ours:
                    self.waiting.discard(data)
                    self.changed.notify_all()
            if not ours:
                try:
                    self.backend.send(data)
                except (ConnectionError, OSError):
                    return

    def ping(self, count: int, size: int, timeout: float) -> int:
        """Send ``count`` random datagrams; how many came back intact."""
        payloads = [os.urandom(size) for _ in range(count)]
        with self.lock:
            self.sent.update(payloads)
            self.waiting.update(payloads)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                missing = [p for p in payloads if p in self.waiting]
            if not missing or time.monotonic() >= deadline:
                return count - len(missing)
            for payload in missing:
                self.backend.send(payload)
            with self.lock:
                resend_at = min(deadline, time.monotonic() + 0.3)
                while self.waiting & set(missing):
                    left = resend_at - time.monotonic()
                    if left <= 0:
                        break
                    self.changed.wait(left)


def read_commands(lines: queue.Queue[dict[str, Any] | None]) -> None:
    """Feed stdin's JSON lines into ``lines``; ``None`` at EOF."""
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            lines.put(json.loads(raw))
        except ValueError:
            emit("error", message=f"bad JSON line: {raw[:100]!r}")
    lines.put(None)


def run(args: argparse.Namespace, backend: Backend) -> str:
    lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=read_commands, args=(lines,), daemon=True).start()
    started = time.monotonic()
    candidates = backend.gather()
    emit(
        "local-description",
        ufrag=backend.ufrag,
        pwd=backend.pwd,
        candidates=["candidate:" + c for c in candidates],
        gather_seconds=round(time.monotonic() - started, 3),
    )
    remote = lines.get()
    if remote is None or "ufrag" not in remote:
        return "no remote description"
    backend.set_remote(remote["ufrag"], remote["pwd"], remote["candidates"])
    started = time.monotonic()
    echoer: Echoer | None = None
    try:
        backend.connect(args.connect_timeout)
    except (ConnectionError, TimeoutError, asyncio.TimeoutError) as exc:
        emit(
            "failed",
            seconds=round(time.monotonic() - started, 3),
            error=repr(exc),
            pairs=backend.pair_report(),
        )
    else:
        seconds = round(time.monotonic() - started, 3)
        local, remote_candidate = backend.selected()
        selected = f"{local.split()[0]}/{remote_candidate.split()[0]}"
        emit(
            "connected",
            seconds=seconds,
            selected=selected,
            local=local,
            remote=remote_candidate,
        )
        echoer = Echoer(backend)
        echoer.thread.start()
    while True:
        command = lines.get()
        if command is None:
            return "eof"
        if command.get("cmd") == "quit":
            return "quit"
        if command.get("cmd") == "ping":
            if echoer is None:
                emit("error", message="ping: not connected")
                continue
            t0 = time.monotonic()
            count = int(command.get("count", 10))
            echoed = echoer.ping(
                count, int(command.get("size", 100)), float(command.get("timeout", 10))
            )
            emit(
                "pinged",
                count=count,
                echoed=echoed,
                seconds=round(time.monotonic() - t0, 3),
            )
        else:
            emit("error", message=f"unknown command {command!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["controlling", "controlled"], required=True)
    parser.add_argument("--impl", choices=["syncice", "aioice"], default="syncice")
    parser.add_argument("--local-address")
    parser.add_argument("--stun")
    parser.add_argument("--turn")
    parser.add_argument("--turn-user", default="")
    parser.add_argument("--turn-password", default="")
    parser.add_argument(
        "--turn-transport", choices=["udp", "tcp", "tls"], default="udp"
    )
    parser.add_argument("--turn-ca")
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument(
        "--gather-timeout", type=float, help="syncice: IceConfig.gather_timeout"
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--max-life", type=float, default=120.0)
    args = parser.parse_args()

    def expire() -> None:
        emit("exit", reason="max-life")
        os._exit(3)

    timer = threading.Timer(args.max_life, expire)
    timer.daemon = True
    timer.start()
    backend: Backend = (
        SynciceBackend(args) if args.impl == "syncice" else AioiceBackend(args)
    )
    reason = "error"
    try:
        reason = run(args, backend)
    except Exception as exc:
        emit("error", message=repr(exc))
        raise
    finally:
        backend.close()
        emit("exit", reason=reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
