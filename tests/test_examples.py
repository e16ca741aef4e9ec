"""The examples in ``examples/`` that use the blocking API run and say so.

Each runs as its own program, with this interpreter, from the repository
root, on loopback only. ``-X dev -W error`` turns an unclosed socket or
connection into a line on stderr, which must stay empty: the examples shut
down cleanly. The asyncio examples are run by ``tests/test_asyncio.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A hang guard, not a measurement: the example takes well under a second.
HANG_GUARD = 120.0


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    return subprocess.run(
        [sys.executable, "-bb", "-X", "dev", "-W", "error", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


@pytest.mark.parametrize(
    ("flags", "clients", "messages"),
    [((), 3, 10), (("--clients", "5", "--messages", "4"), 5, 4)],
)
def test_threaded_echo(flags: tuple[str, ...], clients: int, messages: int) -> None:
    """A server thread echoes for several client threads, signalling over TCP."""
    done = run_example("examples/threaded_echo.py", *flags)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        *(
            f"client {i}: {messages} of {messages} echoes ok"
            for i in range(1, 1 + clients)
        ),
        f"server echoed {clients * messages} datagrams",
        f"{clients} of {clients} clients ok",
    ]


def test_threaded_echo_fails_with_exit_status_1() -> None:
    """A client that cannot finish is reported, and the program exits 1.

    A timeout of 0 seconds makes every blocking call poll, so the first one
    that has to wait (TCP, gathering or connect) fails at once.
    """
    done = run_example("examples/threaded_echo.py", "--clients", "2", "--timeout", "0")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["client 1", "client 2"]
    assert all(": failed: " in line for line in lines[:2])
    assert lines[2:] == ["server echoed 0 datagrams", "0 of 2 clients ok"]
