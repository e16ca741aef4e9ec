"""A STUN server with RFC 5780 for the command-line tests: coturn started on
two addresses (so that it gives OTHER-ADDRESS and honours CHANGE-REQUEST),
as a process of the test's own, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

#: Lines shared by every RFC 5780 server of these tests: STUN only.
_CONF = """\
no-auth
no-tls
no-dtls
no-cli
fingerprint
no-multicast-peers
simple-log
verbose
"""


class Rfc5780Server:
    """coturn listening on ``ips`` at ``port`` and ``port + 1``.

    :param ips: two addresses (primary first).
    :param netns: the network namespace to run it in, if any.
    """

    def __init__(self, ips: Sequence[str], port: int, netns: str | None = None) -> None:
        self.ips = list(ips)
        self.port = port
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix="si-clidocs-stun-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def primary(self) -> str:
        return f"{self.ips[0]}:{self.port}"

    def _in_ns(self, args: list[str]) -> list[str]:
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + args

    def start(self) -> None:
        conf = self.dir / "turnserver.conf"
        lines = [f"listening-ip={ip}" for ip in self.ips]
        lines += [
            f"listening-port={self.port}",
            f"alt-listening-port={self.port + 1}",
            f"userdb={self.dir / 'turndb'}",
            f"pidfile={self.dir / 'turnserver.pid'}",
            f"log-file={self.dir / 'turnserver.log'}",
        ]
        conf.write_text("\n".join(lines) + "\n" + _CONF)
        turnserver = shutil.which("turnserver") or "turnserver"
        with open(self.dir / "stdout.log", "wb") as log:
            self.process = subprocess.Popen(
                self._in_ns([turnserver, "-c", str(conf)]),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wanted = {f"{ip}:{p}" for ip in self.ips for p in (self.port, self.port + 1)}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            listed = subprocess.run(
                self._in_ns(["ss", "-Hlnu"]),
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if all(address in listed for address in wanted):
                return
            time.sleep(0.02)  # polling for the listeners, not a race guard
        log_text = (self.dir / "stdout.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"coturn (RFC 5780) did not start:\n{log_text}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port ``p`` with ``p`` and ``p + 1`` free for UDP on ``host``."""
    import socket

    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no free pair of UDP ports")


ROOT = Path(__file__).resolve().parent.parent.parent


def cli(
    args: Sequence[str], *, prefix: Sequence[str] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m syncice ARGS`` (in a namespace with ``prefix``)."""
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*prefix, sys.executable, "-m", "syncice", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def report(text: str) -> None:
    """Show a measured figure or a command's output in the test log (-s)."""
    import sys

    sys.stdout.write(text.rstrip("\n") + "\n")
