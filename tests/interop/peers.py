"""The two sides of an interop cell, behind one blocking interface.

"Ours" is the implementation under test (syncice, or aioice for the baseline
of the same cell): it connects, sends datagrams and checks their echoes.
"Theirs" is the peer (aioice in-process, or libnice in a ``nice_peer.py``
process): it connects and echoes every datagram. Everything gathers on
127.0.0.1 only; servers are the coturn of the ``coturn`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aioice

import syncice
from tests.conftest import TurnService

#: The libnice peer program, run with Debian's interpreter (python3-gi), or
#: the one named by ``$SYNCICE_NICE_PYTHON``.
NICE_PEER = Path(__file__).with_name("nice_peer.py")
SYSTEM_PYTHON = os.environ.get("SYNCICE_NICE_PYTHON", "/usr/bin/python3")
#: The werift-ice peer program (its npm packages installed beside it), run
#: with ``node`` or the one named by ``$SYNCICE_NODE``.
WERIFT_PEER = Path(__file__).parent / "werift" / "werift_peer.js"
NODE = os.environ.get("SYNCICE_NODE", "node")

#: Bound of every blocking step of a cell (hang guard, not a timing claim).
STEP_TIMEOUT = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class Servers:
    """What one side uses: STUN, TURN over ``turn_transport``, relay-only.

    :param stun: use coturn as STUN server.
    :param turn_transport: ``"udp"``, ``"tcp"`` or ``"tls"`` for TURN, or
        ``None`` for no TURN server.
    :param relay_only: offer relayed candidates only.
    :param transports: ``("udp",)``, or ``("tcp",)`` for ICE-TCP.
    """

    stun: bool = False
    turn_transport: str | None = None
    relay_only: bool = False
    #: The transports of host candidates (``("tcp",)``: ICE-TCP only).
    transports: tuple[str, ...] = ("udp",)


@dataclass(frozen=True)
class Description:
    """What the signalling channel carries: credentials and candidates (SDP
    ``candidate`` attribute values without the ``candidate:`` prefix)."""

    ufrag: str
    pwd: str
    candidates: list[str]
    #: Whether the side is ICE-lite (``a=ice-lite``).
    lite: bool = False


def candidate_type(sdp: str) -> str:
    """The ``typ`` of a candidate in SDP form."""
    fields = sdp.split()
    return fields[fields.index("typ") + 1]


def without_redundant(candidates: list[str]) -> list[str]:
    """Drop server-reflexive candidates equal to a host candidate (RFC 8445
    §5.1.3), which aioice offers on loopback and libnice 0.1.21 aborts on."""
    hosts = set()
    for sdp in candidates:
        fields = sdp.split()
        if candidate_type(sdp) == "host":
            hosts.add((fields[4], fields[5]))
    return [
        sdp
        for sdp in candidates
        if not (candidate_type(sdp) == "srflx" and tuple(sdp.split()[4:6]) in hosts)
    ]


def _strip_prefix(sdp: str) -> str:
    return sdp.removeprefix("a=").removeprefix("candidate:")


class Ours(Protocol):
    """The side under test."""

    name: str

    def gather(self) -> Description: ...

    def connect(self, remote: Description) -> float:
        """Apply the remote description, connect; the seconds it took."""
        ...

    def selected(self) -> str:
        """``"local/remote"`` candidate types of the selected pair."""
        ...

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes: ...

    def close(self) -> None: ...


class Theirs(Protocol):
    """The peer: connects and echoes every datagram."""

    name: str

    def gather(self) -> Description: ...

    def start(self, remote: Description) -> None:
        """Apply the remote description and start connecting; returns at once."""
        ...

    def close(self) -> None: ...


# --- syncice ---------------------------------------------------------------


def _tls_context(turn: TurnService) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(turn.cert))


def _server_kwargs(turn: TurnService, servers: Servers) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if servers.stun:
        kwargs["stun_server"] = (turn.ip, turn.port)
    if servers.turn_transport is not None:
        tls = servers.turn_transport == "tls"
        kwargs.update(
            turn_server=(turn.ip, turn.tls_port if tls else turn.port),
            turn_username=turn.username,
            turn_password=turn.password,
            turn_transport="udp" if servers.turn_transport == "udp" else "tcp",
            turn_ssl=_tls_context(turn) if tls else False,
        )
    return kwargs


class SynciceOurs:
    """syncice's :class:`syncice.Connection`."""

    name = "syncice"

    def __init__(
        self,
        controlling: bool,
        turn: TurnService,
        servers: Servers,
        *,
        lite: bool = False,
    ):
        policy = syncice.TransportPolicy.RELAY if servers.relay_only else None
        kwargs = _server_kwargs(turn, servers)
        if policy is not None:
            kwargs["transport_policy"] = policy
        self.conn = syncice.Connection(
            controlling,
            local_addresses=["127.0.0.1"],
            ice_lite=lite,
            transports=servers.transports,
            **kwargs,
        )

    def gather(self) -> Description:
        self.conn.gather_candidates(timeout=STEP_TIMEOUT)
        return Description(
            self.conn.local_username,
            self.conn.local_password,
            [c.to_sdp() for c in self.conn.local_candidates],
            self.conn.local_description().lite,
        )

    def connect(self, remote: Description) -> float:
        start = time.monotonic()
        self.conn.remote_username = remote.ufrag
        self.conn.remote_password = remote.pwd
        for sdp in remote.candidates:
            self.conn.add_remote_candidate(
                syncice.Candidate.from_sdp(_strip_prefix(sdp))
            )
        self.conn.add_remote_candidate(None)
        self.conn.connect(timeout=STEP_TIMEOUT)
        return time.monotonic() - start

    def selected(self) -> str:
        [pair] = [s for s in self.conn.get_stats() if s.selected]
        return f"{pair.local.type}/{pair.remote.type}"

    def checks_sent(self) -> int:
        """The STUN requests sent on every pair (checks and consent)."""
        return sum(s.requests_sent for s in self.conn.get_stats())

    def send(self, data: bytes) -> None:
        self.conn.send(data)

    def recv(self, timeout: float) -> bytes:
        return self.conn.recv(timeout=timeout)

    def close(self) -> None:
        self.conn.close()


# --- aioice on its own event loop thread -----------------------------------


class _Loop:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="aioice-loop", daemon=True
        )
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.call(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STEP_TIMEOUT)
        self.loop.close()


class _Aioice:
    """An :class:`aioice.Connection` driven from other threads."""

    def __init__(self, controlling: bool, turn: TurnService, servers: Servers):
        if "tcp" in servers.transports:
            raise NotImplementedError("aioice 0.13 has no ICE-TCP")
        self.runner = _Loop()
        kwargs = _server_kwargs(turn, servers)
        if servers.relay_only:
            kwargs["transport_policy"] = aioice.TransportPolicy.RELAY
        self.conn = aioice.Connection(controlling, use_ipv6=False, **kwargs)

    def gather(self) -> Description:
        self.runner.call(self.conn.gather_candidates())
        # aioice offers a srflx equal to its host candidate when there is no
        # NAT: dropped here, as a signalling layer should (RFC 8445 §5.1.3).
        return Description(
            self.conn.local_username,
            self.conn.local_password,
            without_redundant([c.to_sdp() for c in self.conn.local_candidates]),
        )

    async def _apply(self, remote: Description) -> None:
        self.conn.remote_username = remote.ufrag
        self.conn.remote_password = remote.pwd
        self.conn.remote_is_lite = remote.lite
        for sdp in remote.candidates:
            await self.conn.add_remote_candidate(
                aioice.Candidate.from_sdp(_strip_prefix(sdp))
            )
        await self.conn.add_remote_candidate(None)

    def close(self) -> None:
        try:
            self.runner.call(self.conn.close())
        finally:
            self.runner.stop()


class AioiceOurs(_Aioice):
    """aioice in syncice's place: the baseline of a cell."""

    name = "aioice"

    def connect(self, remote: Description) -> float:
        # The clock starts here, in the harness's thread, as syncice's does,
        # and stops in aioice's loop when connect() returns, where an aioice
        # caller goes on. Started inside the coroutine instead, it would miss
        # the hop into the loop (0.17 to 0.27 ms, measured) that syncice's
        # time includes: in cells paced by the peer, that was the whole
        # difference between the two.
        start = time.monotonic()

        async def run() -> float:
            await self._apply(remote)
            await self.conn.connect()
            return time.monotonic() - start

        return self.runner.call(run())

    def selected(self) -> str:
        pair = self.conn._nominated[1]
        return f"{pair.local_candidate.type}/{pair.remote_candidate.type}"

    def send(self, data: bytes) -> None:
        self.runner.call(self.conn.send(data))

    def recv(self, timeout: float) -> bytes:
        data: bytes = self.runner.call(asyncio.wait_for(self.conn.recv(), timeout))
        return data


class AioiceTheirs(_Aioice):
    """aioice as the peer: connects, then echoes every datagram."""

    name = "aioice"

    def start(self, remote: Description) -> None:
        async def run() -> None:
            await self._apply(remote)
            await self.conn.connect()
            while True:
                data = await self.conn.recv()
                await self.conn.send(data)

        asyncio.run_coroutine_threadsafe(run(), self.runner.loop)


# --- libnice in a process --------------------------------------------------


class NiceTheirs:
    """libnice in a ``nice_peer.py`` process; its events go to a queue."""

    def __init__(
        self,
        controlling: bool,
        turn: TurnService,
        servers: Servers,
        nomination: str,
        max_life: float = 60.0,
    ):
        self.name = f"libnice-{nomination}"
        args = [
            SYSTEM_PYTHON,
            str(NICE_PEER),
            "--role",
            "controlling" if controlling else "controlled",
            "--local-address",
            "127.0.0.1",
            "--nomination",
            nomination,
            "--max-life",
            str(max_life),
        ]
        if servers.stun:
            args += ["--stun", f"{turn.ip}:{turn.port}"]
        if servers.turn_transport is not None:
            port = turn.tls_port if servers.turn_transport == "tls" else turn.port
            args += [
                "--turn",
                f"{turn.ip}:{port}",
                "--turn-user",
                turn.username,
                "--turn-password",
                turn.password,
                "--turn-transport",
                servers.turn_transport,
            ]
        if servers.relay_only:
            args.append("--relay-only")
        if "tcp" in servers.transports:
            args += ["--transport", "tcp"]
        self._spawn(args)

    def _spawn(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A copy, not the process's own environ: a setenv() on another
            # thread (pytest sets PYTEST_CURRENT_TEST) that moves environ
            # while the vfork()ed child execs from it fails the exec with
            # EFAULT ("Bad address"), as it did when cells ran on a pool.
            env=dict(os.environ),
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr.append(f"stdout: {line}")
        self.events.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.stderr) < 200:
                self.stderr.append(line)

    def wait_for(self, event: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        """The next ``event`` line; fails on exit or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.name}: no {event!r} in {timeout} s"
                ) from None
            if got is None:
                self.proc.wait(STEP_TIMEOUT)
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) before {event!r}; "
                    f"stderr: {''.join(self.stderr)[-2000:]}"
                )
            self.seen.append(got)
            if got.get("event") == event:
                return got

    def command(self, **msg: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def gather(self) -> Description:
        desc = self.wait_for("local-description")
        return Description(desc["ufrag"], desc["pwd"], desc["candidates"])

    def start(self, remote: Description) -> None:
        self.command(ufrag=remote.ufrag, pwd=remote.pwd, candidates=remote.candidates)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self.command(cmd="quit")
            try:
                self.proc.wait(STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait(STEP_TIMEOUT)
        finally:
            for thread in self._threads:
                thread.join(STEP_TIMEOUT)
            while True:  # the events nobody waited for, up to "exit"
                try:
                    got = self.events.get_nowait()
                except queue.Empty:
                    break
                if got is not None:
                    self.seen.append(got)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    with contextlib.suppress(BrokenPipeError):
                        stream.close()


# --- werift-ice in a node process ------------------------------------------


class WeriftTheirs(NiceTheirs):
    """werift-ice in a ``werift/werift_peer.js`` node process: the same JSON
    lines as libnice's peer."""

    def __init__(self, controlling: bool, turn: TurnService, servers: Servers):
        self.name = "werift"
        args = [
            NODE,
            str(WERIFT_PEER),
            "--role",
            "controlling" if controlling else "controlled",
            "--local-address",
            "127.0.0.1",
        ]
        if servers.stun:
            args += ["--stun", f"{turn.ip}:{turn.port}"]
        if servers.turn_transport is not None:
            port = turn.tls_port if servers.turn_transport == "tls" else turn.port
            args += [
                "--turn",
                f"{turn.ip}:{port}",
                "--turn-user",
                turn.username,
                "--turn-password",
                turn.password,
                "--turn-transport",
                servers.turn_transport,
                "--turn-ca",
                str(turn.cert),
            ]
        if servers.relay_only:
            args.append("--relay-only")
        if "tcp" in servers.transports:
            args += ["--transport", "tcp"]
        self._spawn(args)


def werift_available() -> tuple[bool, str]:
    """Whether node and the installed werift-ice are here, and why not."""
    if shutil.which(NODE) is None:
        return False, "no node: apt-get install -y nodejs npm"
    if not (WERIFT_PEER.parent / "node_modules" / "werift-ice").is_dir():
        return False, f"no werift-ice: cd {WERIFT_PEER.parent} && npm ci"
    return True, ""


def nice_available() -> tuple[bool, str]:
    """Whether ``/usr/bin/python3`` can load libnice's GI bindings, and why not."""
    try:
        result = subprocess.run(
            [
                SYSTEM_PYTHON,
                "-c",
                'import gi; gi.require_version("Nice", "0.1"); '
                "from gi.repository import Nice",
            ],
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return False, lines[-1] if lines else f"exit status {result.returncode}"
    return True, ""


__all__ = [
    "AioiceOurs",
    "AioiceTheirs",
    "Description",
    "NiceTheirs",
    "Servers",
    "SynciceOurs",
    "WeriftTheirs",
    "candidate_type",
    "nice_available",
    "werift_available",
    "without_redundant",
]
