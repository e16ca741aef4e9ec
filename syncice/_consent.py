"""Consent freshness (RFC 7675) on the selected pairs: :class:`ConsentSet`.

- Once a component has a pair selected by ICE, a consent check (a Binding
  request) goes out on it every ``consent_interval``, each interval drawn
  between 0.8 and 1.2 times it (RFC 7675 §5.1).
- Consent lasts ``consent_timeout`` from the last authenticated success
  response on the pair, which may be older than the nomination that selected
  it; the first consent check counts from it too (at once if it is that old).
- A pair chosen by hand (``set_selected_pair``) has no consent: a peer that
  does not do ICE would not answer.
- When consent expires on any component the agent closes; once ICE failed
  (or the agent closed) no consent check goes out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from ._ice_config import IceConfig

__all__ = ["Consent", "ConsentSet"]


class Consent:
    """The consent of one component: when to check, when it expires, and the
    transaction ID of the check still out."""

    __slots__ = ("check_at", "expires_at", "pending")

    def __init__(self, check_at: float, expires_at: float) -> None:
        self.check_at = check_at
        self.expires_at = expires_at
        self.pending: bytes | None = None


class ConsentSet:
    """The consent of every component with a pair selected by ICE.

    :param config: ``consent_interval`` and ``consent_timeout``.
    :param rng: the source of the intervals' jitter.
    """

    __slots__ = ("_by_component", "_config", "_rng")

    def __init__(self, config: IceConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._by_component: dict[int, Consent] = {}

    def _interval(self) -> float:
        return self._config.consent_interval * (0.8 + 0.4 * self._rng.random())

    def start(self, component: int, now: float, responded_at: float | None) -> None:
        """A pair was selected on ``component`` by ICE at ``now``; its last
        authenticated response came at ``responded_at`` (``None``: now)."""
        granted = now if responded_at is None else responded_at
        interval = self._interval()
        self._by_component[component] = Consent(
            max(now, granted + interval), granted + self._config.consent_timeout
        )

    def stop(self, component: int) -> None:
        """No consent on ``component`` any more (a pair chosen by hand)."""
        self._by_component.pop(component, None)

    def clear(self) -> None:
        """No consent anywhere (ICE failed, or closed)."""
        self._by_component.clear()

    def timers(self) -> Iterator[float]:
        """Every consent deadline: checks and expiries."""
        for consent in self._by_component.values():
            yield consent.check_at
            yield consent.expires_at

    def answered(self, component: int, now: float) -> None:
        """An authenticated success response came on the selected pair of
        ``component``: consent lasts ``consent_timeout`` from now."""
        consent = self._by_component.get(component)
        if consent is not None:
            consent.expires_at = now + self._config.consent_timeout

    def run(
        self, now: float, check: Callable[[int, bytes | None], bytes]
    ) -> int | None:
        """Send the consent checks due at ``now``: ``check(component,
        previous)`` sends one (dropping the ``previous`` check, if still out)
        and returns its transaction ID.

        :returns: a component whose consent expired (the agent closes), or
            ``None``.
        """
        for component, consent in list(self._by_component.items()):
            if now >= consent.expires_at:
                return component
            if now >= consent.check_at:
                consent.pending = check(component, consent.pending)
                consent.check_at = now + self._interval()
        return None
