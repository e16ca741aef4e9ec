"""What every command of the ``syncice`` command line shares: exit codes,
output (a result on stdout, progress on stderr), logging and address parsing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "CommandError",
    "Output",
    "add_common_arguments",
    "parse_host_port",
    "resolve",
    "setup_logging",
]

#: The command did what it was asked and every check passed.
EXIT_OK = 0
#: A check failed: no answer, an error response, a connection that did not
#: come up, data that did not arrive intact. The reason is on stderr.
EXIT_FAILED = 1
#: Bad arguments (argparse's own code).
EXIT_USAGE = 2
#: The server lacks what was asked for (``stun --nat`` without RFC 5780).
EXIT_UNSUPPORTED = 3
#: Interrupted by SIGINT (Ctrl-C), as shells report it.
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit status:
  0    success
  1    a check failed (the reason is on stderr)
  2    bad arguments
  3    the server does not support what was asked (stun --nat)
  130  interrupted
"""


class CommandError(Exception):
    """A check failed; the message says what, and the exit code is in ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``-v``, which every command takes."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object on stdout",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level on stderr (the library's log included)",
    )


def setup_logging(verbose: bool, stream: TextIO | None = None) -> None:
    """With ``-v``: every logger at DEBUG, on stderr. Without it nothing
    changes (Python's default prints warnings and errors on stderr)."""
    if not verbose:
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


class Output:
    """Where a command writes: progress lines on stderr as it goes, the
    result on stdout at the end, as text or (``--json``) one JSON object.

    :param as_json: print the result as JSON.
    :param out: the result's stream (stdout by default).
    :param err: the progress stream (stderr by default).
    """

    def __init__(
        self, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.as_json = as_json
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._start = time.monotonic()

    def progress(self, message: str) -> None:
        """One progress line on stderr, with the time since the start."""
        elapsed = time.monotonic() - self._start
        self.err.write(f"[{elapsed:7.3f}s] {message}\n")
        self.err.flush()

    def result(self, data: dict[str, Any], lines: Sequence[str]) -> None:
        """The command's result: ``data`` as JSON, or ``lines`` as text."""
        if self.as_json:
            self.out.write(json.dumps(data, sort_keys=True) + "\n")
        else:
            self.out.writelines(line + "\n" for line in lines)
        self.out.flush()

    def error(self, message: str) -> None:
        """Why the command failed, on stderr."""
        self.err.write(f"error: {message}\n")
        self.err.flush()


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    :raises ValueError: the port is not a number from 1 to 65535.
    """
    host, port = text, str(default_port)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: no closing ]")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected :PORT after ]")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1 to 65535")
    return host, int(port)


def resolve(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> tuple[str, int]:
    """The first address ``host`` resolves to, IPv4 first.

    :raises CommandError: the name does not resolve.
    """
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except OSError as exc:
        raise CommandError(f"cannot resolve {host!r}: {exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    address = infos[0][4]
    return str(address[0]), int(address[1])
