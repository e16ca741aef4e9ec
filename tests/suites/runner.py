"""Runs aioice 0.13.0's and aiortc 1.16.0's own test suites, from their
sdists, with syncice in aioice's place, and reads what passed.

The sdists come from ``SYNCICE_SUITES_DIR`` (``/tmp/syncice-suites`` by
default), where ``tests/run-all.sh`` puts them::

    pip download aioice==0.13.0 aiortc==1.16.0 --no-binary :all: --no-deps \\
        -d "$SYNCICE_SUITES_DIR"

Each suite runs in a pytest of its own, in a network namespace of its own
(``unshare -n``, as root): loopback and one veth pair (``si-suites0`` with
10.213.0.1/24 and fd13::1/64, its peer end unused, a route for multicast),
so that host candidates, the suites' TURN server and mDNS queries never
leave the namespace, and a test that needs a real STUN server
(``stun.l.google.com``) finds no DNS: nothing reaches the internet. Host
address discovery is not patched: aioice's and syncice's own find the veth's
addresses. :mod:`tests.suites.suite_plugin` does the swap, in one of two ways:

- ``public``: aioice's suite runs on the real aioice (its internals are
  there for the tests that use them), with aioice's public classes
  (``Connection``, ``Candidate``, ``ConnectionClosed``, ``ConnectionEvent``,
  ``TransportPolicy``) replaced by syncice.asyncio's.
- ``syncice``: the migration guide's one line,
  ``sys.modules["aioice"] = syncice.asyncio``, for aiortc's tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUITES", "Outcome", "Suite", "netns_available", "run_suite", "sdist"]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_DIR = "/tmp/syncice-suites"

#: The namespace's network: set up by ``sh -c`` inside ``unshare -n``.
NETNS_SETUP = """set -e
ip link set lo up
ip link add si-suites0 type veth peer name si-suites1
ip link set si-suites1 up
ip link set si-suites0 multicast on up
ip addr add 10.213.0.1/24 dev si-suites0
ip addr add fd13::1/64 dev si-suites0 nodad
ip route add 224.0.0.0/4 dev si-suites0
exec "$@"
"""


@dataclass(frozen=True)
class Suite:
    """One external suite: a project's sdist and the test files to run."""

    key: str
    project: str
    version: str
    files: tuple[str, ...]
    side: str  # suite_plugin's SYNCICE_SUITE_SIDE

    @property
    def archive(self) -> str:
        return f"{self.project}-{self.version}.tar.gz"


SUITES = {
    "aioice": Suite("aioice", "aioice", "0.13.0", ("tests",), "public"),
    "aiortc": Suite(
        "aiortc",
        "aiortc",
        "1.16.0",
        ("tests/test_rtcicetransport.py", "tests/test_rtcpeerconnection.py"),
        "syncice",
    ),
}


@dataclass(frozen=True)
class Outcome:
    """What one test did: ``passed``, ``failed`` (or errored) or ``skipped``."""

    status: str
    message: str


def suites_dir() -> Path:
    """Where the sdists are."""
    return Path(os.environ.get("SYNCICE_SUITES_DIR", DEFAULT_DIR))


def sdist(suite: Suite) -> Path | None:
    """The suite's sdist, or ``None`` if it was not downloaded."""
    path = suites_dir() / suite.archive
    return path if path.is_file() else None


def netns_available() -> tuple[bool, str]:
    """Whether this process may make a network namespace (root, unshare, ip)."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return False, f"no {tool} on PATH"
    try:
        subprocess.run(
            ["unshare", "-n", "true"], check=True, timeout=30, capture_output=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"unshare -n fails ({exc}): run as root"
    return True, ""


def read_junit(path: Path) -> dict[str, Outcome]:
    """Each test's outcome, by ``file::Class::test`` (its subtests folded in:
    a test fails if any of its subtests did)."""
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).iter("testcase"):
        module = (case.get("classname") or "").split(".")
        # classname is tests.test_x.Class: the file, then the class.
        file = "/".join(module[:2]) + ".py"
        name = "::".join([file, *module[2:], case.get("name") or ""])
        kids = [k for k in case if k.tag in ("failure", "error", "skipped")]
        if not kids:
            outcome = Outcome("passed", "")
        else:
            kind = "skipped" if kids[0].tag == "skipped" else "failed"
            outcome = Outcome(kind, (kids[0].get("message") or "").split("\n")[0])
        known = outcomes.get(name)
        if known is None or known.status == "passed":
            outcomes[name] = outcome
    return outcomes


def run_suite(suite: Suite, work: Path, *, timeout: float = 1800) -> dict[str, Outcome]:
    """Unpack the suite's sdist in ``work`` and run it; each test's outcome.

    :raises FileNotFoundError: if the sdist is not in :func:`suites_dir`.
    """
    archive = sdist(suite)
    if archive is None:
        raise FileNotFoundError(suites_dir() / suite.archive)
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    tree = work / f"{suite.project}-{suite.version}"
    junit = work / f"{suite.key}.xml"
    env = {
        **os.environ,
        "SYNCICE_SUITE_SIDE": suite.side,
        # The suite's own "tests" package first (pytest's rootdir), then the
        # plugin, then this tree's syncice.
        "PYTHONPATH": os.pathsep.join([str(tree), str(HERE), str(ROOT)]),
    }
    env.pop("CI", None)  # the suites' own CI switches are GitHub's, not ours
    env.pop("GITHUB_ACTIONS", None)
    command = [
        "unshare",
        "-n",
        "sh",
        "-c",
        NETNS_SETUP,
        "netns",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "suite_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "-o",
        "addopts=",
        # Native tracebacks: pytest's own rendering parses the failing test's
        # source, which CPython 3.11 sometimes cannot do ("AST constructor
        # recursion depth mismatch"), ending the whole run.  The outcomes
        # read from the junit report are the same either way.
        "--tb=native",
        f"--junitxml={junit}",
        *suite.files,
    ]
    for _ in range(2):
        done = subprocess.run(
            command,
            cwd=tree,
            env=env,
            timeout=timeout,
            capture_output=True,
            check=False,
        )
        # What the run printed, for a failure to quote (an INTERNALERROR says
        # nothing more in the report).
        (work / f"{suite.key}.log").write_bytes(done.stdout + done.stderr)
        results = read_junit(junit)
        # An INTERNALERROR ends the whole run: run it once more, then let the
        # test report what it got.
        if "pytest.py::internal" not in results:
            break
        # Said, not hidden: the warnings summary of our run shows it (a
        # warning, not the error our own filterwarnings would make of it),
        # and the first run's log stays.
        kept = (work / f"{suite.key}.log").replace(work / f"{suite.key}-1.log")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(
                f"{suite.key}: the suite's pytest ended with an INTERNALERROR;"
                f" running it once more (the first run's log: {kept})",
                stacklevel=2,
            )
    return results
