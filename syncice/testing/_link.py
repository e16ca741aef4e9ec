"""Links: what each direction of an access link does to datagrams."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from syncice.stun import Address


class Datagram(NamedTuple):
    """A datagram on the network: when (sent, or delivered), from where (as
    the receiver sees it, for one delivered), to where, what."""

    at: float
    src: Address
    dst: Address
    data: bytes


@dataclass(frozen=True)
class Link:
    """What one direction of a link does to each datagram that crosses it.

    :param loss: the probability that a datagram is lost.
    :param delay: the one-way delay, in seconds.
    :param jitter: an extra delay drawn uniformly from ``[0, jitter]``.
    :param duplicate: the probability that a datagram is delivered twice
        (the copy draws its own jitter).
    :param reorder: the probability that a datagram is held back an extra
        ``reorder_delay``, so that later ones overtake it.
    :param reorder_delay: how long a reordered datagram is held back.
    :raises ValueError: a probability outside [0, 1] or a negative time.
    """

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        for name in ("delay", "jitter", "reorder_delay"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must not be negative")

    def cross(self, at: float, rng: random.Random) -> list[float]:
        """When the copies of a datagram entering at ``at`` come out: none if
        it is lost, two if it is duplicated."""
        if self.loss and rng.random() < self.loss:
            return []
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        out = []
        for _ in range(copies):
            extra = self.delay
            if self.jitter:
                extra += rng.uniform(0.0, self.jitter)
            if self.reorder and rng.random() < self.reorder:
                extra += self.reorder_delay
            out.append(at + extra)
        return out


#: A link that delivers everything at once.
PERFECT = Link()
