"""Driving the NAT lab from Python: bring it up and down with ``netlab.sh``,
run ICE peers in its namespaces, record their results.

The lab itself is ``netlab.sh`` (one implementation); this module calls it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
NETLAB_SH = HERE / "netlab.sh"
PEER_PY = HERE / "peer.py"
#: The libnice peer (written for tests/interop/), run with Debian's python3.
NICE_PEER_PY = HERE.parent / "interop" / "nice_peer.py"
SYSTEM_PYTHON = "/usr/bin/python3"
#: Lab hosts: behind cone NATs (a, b) and the symmetric NAT (c).
HOSTS = ("a", "b", "c")


def missing_components() -> list[str]:
    """What the lab needs and this machine lacks (empty: the lab can run)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for tool, package in (
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("turnserver", "coturn"),
        ("openssl", "openssl"),
    ):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun (TAP devices)")
    return missing


def libnice_missing() -> str | None:
    """Why the libnice peer cannot run here, or ``None``."""
    if not NICE_PEER_PY.exists():
        return f"{NICE_PEER_PY} not found"
    probe = (
        "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice"
    )
    try:
        subprocess.run(
            [SYSTEM_PYTHON, "-c", probe], check=True, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return (
            "libnice's GObject bindings missing for /usr/bin/python3"
            " (apt-get install python3-gi gir1.2-nice-0.1 libnice10)"
        )
    return None


class Lab:
    """One running lab, named by a unique namespace prefix.

    :param prefix: the namespaces' prefix; include the PID so that parallel
        runs never clash.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.env: dict[str, str] = {}

    @classmethod
    def up(cls, prefix: str) -> Lab:
        """Build the lab (``netlab.sh up``); a failed ``up`` removes what it built."""
        lab = cls(prefix)
        out = subprocess.run(
            ["bash", str(NETLAB_SH), "up", prefix],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        lab.env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return lab

    def down(self) -> None:
        """Stop the lab's processes, delete its namespaces (``netlab.sh down``)."""
        subprocess.run(
            ["bash", str(NETLAB_SH), "down", self.prefix], check=True, timeout=60
        )

    def impair(
        self,
        links: str,
        direction: str,
        loss: float,
        delay_ms: float,
        jitter_ms: float = 0,
    ) -> None:
        """Set loss (percent), delay and jitter (ms) on WAN links; returns once
        the wire applies them."""
        subprocess.run(
            [
                "bash",
                str(NETLAB_SH),
                "impair",
                self.prefix,
                links,
                direction,
                str(loss),
                str(delay_ms),
                str(jitter_ms),
            ],
            check=True,
            timeout=30,
        )

    def namespace(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def exec_args(self, node: str) -> list[str]:
        """The command prefix that runs a program in ``node``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(node)]

    def host_ip(self, host: str) -> str:
        return self.env[f"NETLAB_{host.upper()}_IP"]

    @property
    def stun(self) -> str:
        return f"{self.env['NETLAB_PUB_IP']}:{self.env['NETLAB_TURN_PORT']}"

    def turn_args(self, transport: str = "udp") -> list[str]:
        """Peer arguments for the lab's TURN server over ``transport``."""
        port = self.env[
            "NETLAB_TURN_TLS_PORT" if transport == "tls" else "NETLAB_TURN_PORT"
        ]
        args = [
            "--turn",
            f"{self.env['NETLAB_PUB_IP']}:{port}",
            "--turn-user",
            self.env["NETLAB_TURN_USER"],
            "--turn-password",
            self.env["NETLAB_TURN_PASSWORD"],
            "--turn-transport",
            transport,
        ]
        if transport == "tls":
            args += ["--turn-ca", self.env["NETLAB_TURN_CERT"]]
        return args


@dataclass
class PeerSpec:
    """One side of a pair.

    :param host: the lab host it runs on (``a``, ``b`` or ``c``).
    :param impl: ``syncice``, ``aioice`` or ``libnice``.
    :param stun: gather a server-reflexive candidate from the lab's STUN server.
    :param turn: the TURN transport (``udp``, ``tcp``, ``tls``) or ``None``.
    :param relay_only: the relay transport policy.
    :param gather_timeout: syncice's ``IceConfig.gather_timeout`` (default 5 s).
    """

    host: str
    impl: str = "syncice"
    stun: bool = False
    turn: str | None = None
    relay_only: bool = False
    gather_timeout: float | None = None


class PeerProcess:
    """A peer program in a lab namespace, with its JSON lines on a queue."""

    def __init__(
        self,
        lab: Lab,
        spec: PeerSpec,
        role: str,
        connect_timeout: float,
        log: Path,
    ) -> None:
        self.spec = spec
        self.role = role
        args = ["--role", role, "--local-address", lab.host_ip(spec.host)]
        if spec.stun:
            args += ["--stun", lab.stun]
        if spec.turn:
            args += lab.turn_args(spec.turn)
        if spec.relay_only:
            args += ["--relay-only"]
        if spec.gather_timeout is not None:
            args += ["--gather-timeout", str(spec.gather_timeout)]
        max_life = str(connect_timeout + 60)
        if spec.impl == "libnice":
            command = [SYSTEM_PYTHON, str(NICE_PEER_PY), *args, "--max-life", max_life]
        else:
            command = [
                sys.executable,
                str(PEER_PY),
                "--impl",
                spec.impl,
                "--connect-timeout",
                str(connect_timeout),
                "--max-life",
                max_life,
                *args,
            ]
        self.log = log
        self._stderr: IO[bytes] = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.namespace(spec.host), *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=HERE.parent.parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line[:200]}
            self.events.put(event)
        self.events.put({"event": "eof"})

    def expect(self, names: tuple[str, ...], timeout: float) -> dict[str, Any]:
        """The next event named in ``names`` (others are kept in :attr:`seen`);
        ``{"event": "timeout"}`` or ``{"event": "eof"}`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"event": "timeout"}
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                return {"event": "timeout"}
            self.seen.append(event)
            if event["event"] in names or event["event"] == "eof":
                return event

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def stop(self) -> None:
        """Ask it to quit; end it by its PID if it does not within 10 s."""
        if self.proc.poll() is None:
            self.send({"cmd": "quit"})
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a quit line it never read
                    pipe.close()
        self._stderr.close()

    def stderr_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


@dataclass
class SideResult:
    """What one peer reported."""

    impl: str
    role: str
    outcome: str = "failed"  # "connected" | "failed"
    seconds: float | None = None
    selected: str | None = None
    local: str | None = None
    remote: str | None = None
    echoed: int = 0
    error: str | None = None
    candidates: list[str] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PairResult:
    """Both sides of one run."""

    controlling: SideResult
    controlled: SideResult
    wall_seconds: float

    @property
    def connected(self) -> bool:
        return (
            self.controlling.outcome == "connected"
            and self.controlled.outcome == "connected"
        )

    def describe(self) -> str:
        return json.dumps(
            {
                "controlling": self.controlling.__dict__,
                "controlled": self.controlled.__dict__,
                "wall": self.wall_seconds,
            }
        )


def _selected_from_nice(event: dict[str, Any]) -> tuple[str, str, str]:
    def parse(line: str) -> str:
        words = line.removeprefix("a=").split()
        kind = words[words.index("typ") + 1]
        return f"{kind} {words[4]}:{words[5]}"

    local, remote = parse(event["local"]), parse(event["remote"])
    return local, remote, f"{local.split()[0]}/{remote.split()[0]}"


class PairRun:
    """One run of two peers: started by the constructor, collected by
    :meth:`finish`, which also stops both processes."""

    def __init__(
        self,
        lab: Lab,
        controlling: PeerSpec,
        controlled: PeerSpec,
        *,
        connect_timeout: float = 60.0,
        pings: int = 20,
        logdir: Path,
        name: str = "pair",
    ) -> None:
        self.pings = pings
        self.connect_timeout = connect_timeout
        self.started = time.monotonic()
        self.peers = [
            PeerProcess(
                lab,
                controlling,
                "controlling",
                connect_timeout,
                logdir / f"{name}-1.log",
            ),
            PeerProcess(
                lab, controlled, "controlled", connect_timeout, logdir / f"{name}-2.log"
            ),
        ]
        self.results = [
            SideResult(controlling.impl, "controlling"),
            SideResult(controlled.impl, "controlled"),
        ]

    def exchange(self) -> bool:
        """Hand each peer the other's description; ``False`` if one never came."""
        descriptions = []
        for peer, result in zip(self.peers, self.results, strict=True):
            event = peer.expect(("local-description",), 60.0)
            if event["event"] != "local-description":
                result.error = f"no local description: {event} {peer.stderr_tail()}"
                return False
            result.candidates = event["candidates"]
            descriptions.append(event)
        for peer, other in zip(self.peers, reversed(descriptions), strict=True):
            peer.send(
                {
                    "ufrag": other["ufrag"],
                    "pwd": other["pwd"],
                    "candidates": other["candidates"],
                }
            )
        return True

    def finish(self) -> PairResult:
        """Collect the outcome, echo, stop both peers."""
        return finish_all([self])[0]

    def await_outcome(self) -> None:
        """Wait for each side's connect() to succeed or fail."""
        names = ("connected", "failed", "selected-pair", "exit", "error")
        for peer, result in zip(self.peers, self.results, strict=True):
            event = peer.expect(names, self.connect_timeout + 30.0)
            if event["event"] == "connected":
                result.outcome = "connected"
                result.seconds = event["seconds"]
                result.selected = event["selected"]
                result.local, result.remote = event["local"], event["remote"]
            elif event["event"] == "selected-pair":  # the libnice peer
                result.outcome = "connected"
                result.seconds = event.get("seconds")
                result.local, result.remote, result.selected = _selected_from_nice(
                    event
                )
            else:
                result.seconds = event.get("seconds")
                result.pairs = event.get("pairs", [])
                result.error = event.get("error") or json.dumps(event)
                if event["event"] != "failed":
                    result.error += " " + peer.stderr_tail()

    def _pingers(self) -> list[tuple[PeerProcess, SideResult]]:
        if not self.pings or not all(r.outcome == "connected" for r in self.results):
            return []
        return [
            (peer, result)
            for peer, result in zip(self.peers, self.results, strict=True)
            if peer.spec.impl != "libnice"
        ]

    def start_pings(self) -> None:
        """Both sides (but libnice, which only echoes) send their pings."""
        for peer, _ in self._pingers():
            peer.send({"cmd": "ping", "count": self.pings, "size": 200, "timeout": 20})

    def collect_pings(self) -> None:
        for peer, result in self._pingers():
            event = peer.expect(("pinged",), 40.0)
            result.echoed = event.get("echoed", 0)

    def stop(self) -> PairResult:
        """Stop both peers (by PID if they do not quit); the result."""
        for peer in self.peers:
            peer.send({"cmd": "quit"})
        try:
            self.peers[0].stop()
        finally:
            self.peers[1].stop()
        return PairResult(
            self.results[0], self.results[1], round(time.monotonic() - self.started, 3)
        )


def finish_all(runs: list[PairRun]) -> list[PairResult]:
    """Finish several runs side by side: outcomes, then pings, then stop;
    every peer is stopped even when a step raises."""
    try:
        for run in runs:
            run.await_outcome()
        for run in runs:
            run.start_pings()
        for run in runs:
            run.collect_pings()
    finally:
        results = []
        errors = []
        for run in runs:
            try:
                results.append(run.stop())
            except Exception as exc:  # stop the others first
                errors.append(exc)
        if errors:
            raise errors[0]
    return results


def record(
    *,
    scenario: str,
    peer: str,
    ours: SideResult,
    turn_transport: str | None,
    impairment: str | None,
    run: int,
    datagrams: int,
) -> None:
    """Append one result line to ``$SYNCICE_INTEROP_RESULTS`` (when set);
    a side that did not connect also leaves its error, candidates and pairs,
    so that a run that failed inside a passing test can still be explained."""
    path = os.environ.get("SYNCICE_INTEROP_RESULTS")
    if not path:
        return
    fields: dict[str, Any] = {
        "suite": "netlab",
        "scenario": scenario,
        "peer": peer,
        "ours": ours.impl,
        "role": ours.role,
        "turn_transport": turn_transport,
        "impairment": impairment,
        "run": run,
        "outcome": ours.outcome,
        "seconds": ours.seconds,
        "selected": ours.selected,
        "datagrams": datagrams,
    }
    if ours.outcome != "connected":
        fields.update(error=ours.error, candidates=ours.candidates, pairs=ours.pairs)
    line = json.dumps(fields)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


#: The impairment of the lossy scenario (6): 20 % loss and 50 ms (+-5 ms) on
#: both directions of every WAN link, so ~36 % loss and ~100 ms each way
#: between two hosts, and 36 % loss on a round trip to the STUN server.
LOSSY_IMPAIRMENT = "loss 36% each way (20% per hop, 2 hops) delay 100ms"


def lossy_runs(
    lab: Lab,
    impl: str,
    runs: int,
    within: float,
    logdir: Path,
    *,
    pings: int = 20,
    gather_timeout: float | None = None,
) -> list[PairResult]:
    """Scenario 6: ``runs`` pairs of ``impl`` peers (a <-> b, STUN on both
    sides) at once, each given ``within`` seconds to connect, over the lossy
    WAN links. Sets the impairment on ``lab``."""
    lab.impair("all", "both", 20, 50, 5)
    started: list[PairRun] = []
    try:
        for i in range(runs):
            started.append(
                PairRun(
                    lab,
                    PeerSpec("a", impl, stun=True, gather_timeout=gather_timeout),
                    PeerSpec("b", impl, stun=True, gather_timeout=gather_timeout),
                    connect_timeout=within,
                    pings=pings,
                    logdir=logdir,
                    name=f"lossy-{impl}-{i}",
                )
            )
        for run in started:
            run.exchange()
    finally:
        results = finish_all(started)
    return results
