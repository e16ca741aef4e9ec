"""The process's open file descriptors, to tell what a test left open.

Counting descriptors, or comparing their numbers, also sees what other code
closes meanwhile (an earlier test's garbage, collected during this one) and
misses a leak that took a number something else freed.  Each descriptor
here is its number with what it refers to (a socket's inode, a file's path).
"""

from __future__ import annotations

import os

from syncice._inbox import _thread_wake

__all__ = ["open_descriptors", "opened_since"]

FD_DIR = "/proc/self/fd"


def open_descriptors() -> frozenset[str]:
    """Every open descriptor, as ``"<fd> <what it refers to>"``.

    The calling thread's wake-up pipe, which a blocking call makes the first
    time and which lives as long as the thread, is made first: it is there
    before the test whether or not an earlier test blocked on this thread.
    """
    _thread_wake()
    listing = os.path.realpath(FD_DIR)  # the listing's own descriptor
    found = set()
    for name in os.listdir(FD_DIR):
        try:
            target = os.readlink(os.path.join(FD_DIR, name))
        except FileNotFoundError:  # closed by another thread meanwhile
            continue
        if target != listing:
            found.add(f"{name} {target}")
    return frozenset(found)


def opened_since(before: frozenset[str]) -> set[str]:
    """The descriptors open now that were not in ``before``: what the code
    since then left open (closings by other code do not count)."""
    return set(open_descriptors() - before)
