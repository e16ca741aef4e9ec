"""Network namespaces that a test makes for itself: ``lo`` up, optionally an
nftables ruleset, every process left inside ended, and the namespace removed
whatever happened.

Needs root, ``ip`` (iproute2) and ``nft`` (nftables): without them the test
skips, under ``CI`` it fails (:func:`tests.conftest.missing_service`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from tests.conftest import missing_service


@contextlib.contextmanager
def own_namespace(name: str, nft_rules: str | None = None) -> Iterator[str]:
    """A namespace called ``name`` (prefix it with the test's own tag and
    the PID) with ``lo`` up and ``nft_rules`` loaded; removed on exit."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        missing_service("root, iproute2 and nftables (apt-get install nftables)")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        if nft_rules is not None:
            subprocess.run(["ip", "netns", "exec", name, "nft", nft_rules], check=True)
        yield name
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split():
            os.kill(int(pid), 9)  # ours: the namespace is this test's
        subprocess.run(["ip", "netns", "del", name], check=True)
