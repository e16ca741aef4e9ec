"""Regular nomination by the controlling agent (RFC 8445 §8.1.1), and the
selection of pairs: :class:`Nomination`.

- The controlling agent nominates as soon as the best pair it can still
  hope for on a component has succeeded, or ``nomination_wait`` after the
  component's first pair succeeded if better ones are still being checked; at
  once with an ICE-lite peer, which never checks.
- A failed nomination takes its pair out of the valid list (the check driver
  does that), so that another pair is nominated, or ICE fails, instead of
  waiting on it for ever.
- A pair is selected when its nomination succeeds, or when the controlling
  peer nominated it (USE-CANDIDATE) and it is valid; a selected pair only
  gives way to a nominated pair of higher priority.
- Renomination (libwebrtc's goog ``NOMINATION`` attribute, 0xC001): once
  the controlling peer has sent a nomination value on a component, the
  controlled agent selects the pair with the highest value it has seen
  there, whatever the pairs' priorities, and ignores lower values and
  plain USE-CANDIDATE on other pairs of that component.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._checklist import CandidatePair, CheckList, PairState
from .events import SelectedPairChanged

__all__ = ["Nomination"]


class Nomination:
    """When each component's first pair succeeded, and the choice of the pair
    to nominate.

    :param checklist: the pairs, and the selected pair of each component.
    :param wait: ``nomination_wait``, seconds.
    """

    __slots__ = ("_checklist", "_first_valid_at", "_renominated", "_wait")

    def __init__(self, checklist: CheckList, wait: float) -> None:
        self._checklist = checklist
        self._wait = wait
        self._first_valid_at: dict[int, float] = {}
        # Renomination: the highest NOMINATION value and its pair, by component.
        self._renominated: dict[int, tuple[int, CandidatePair]] = {}

    def renominate(self, pair: CandidatePair, value: int) -> bool:
        """The controlling peer nominated ``pair`` with the NOMINATION value
        ``value`` (libwebrtc's renomination).

        :returns: whether it is the highest value seen on its component (the
            pair is then the one to select, once valid).
        """
        held = self._renominated.get(pair.component)
        if held is not None and value <= held[0]:
            return False
        self._renominated[pair.component] = (value, pair)
        return True

    def components(self) -> list[int]:
        """The components with a valid pair and no selected pair yet."""
        return list(self._first_valid_at)

    def first_valid(self, component: int, now: float) -> None:
        """A pair of ``component`` became valid at ``now`` (the first one
        starts the ``nomination_wait``)."""
        self._first_valid_at.setdefault(component, now)

    def nominating(self, component: int) -> bool:
        """Whether a nomination is out on ``component``."""
        return any(
            p.nominating for p in self._checklist.pairs if p.component == component
        )

    def timers(self) -> Iterator[float]:
        """When the ``nomination_wait`` of each component still to nominate
        ends (the controlling agent's timers)."""
        selected = self._checklist.selected
        for component, t in self._first_valid_at.items():
            if component not in selected and not self.nominating(component):
                yield t + self._wait

    def choose(self, component: int, now: float, *, lite: bool) -> CandidatePair | None:
        """The pair to nominate on ``component`` now, or ``None`` (nothing
        valid, a nomination out, or better pairs still in checks and the
        wait not over).

        :param lite: whether the peer is ICE-lite (no wait then).
        """
        if component in self._checklist.selected or self.nominating(component):
            return None
        best_valid: CandidatePair | None = None
        best_pending: CandidatePair | None = None
        for pair in self._checklist.pairs:
            if pair.component != component:
                continue
            if pair.valid:
                if best_valid is None or pair.priority > best_valid.priority:
                    best_valid = pair
            elif pair.state is not PairState.FAILED and (
                best_pending is None or pair.priority > best_pending.priority
            ):
                best_pending = pair
        if best_valid is None:
            self._first_valid_at.pop(component, None)
            return None
        first = self._first_valid_at.setdefault(component, now)
        if (
            best_pending is None
            or best_valid.priority >= best_pending.priority
            or lite
            or now >= first + self._wait
        ):
            return best_valid
        return None

    def select(self, pair: CandidatePair) -> SelectedPairChanged | None:
        """Select ``pair`` on its component, unless it is selected already or
        a pair of higher priority is (with renomination: unless another pair
        holds the highest nomination value).

        :returns: the event to queue, or ``None`` if nothing changed.
        """
        component = pair.component
        selected = self._checklist.selected
        current = selected.get(component)
        held = self._renominated.get(component)
        if current is pair or (
            held[1] is not pair
            if held is not None
            else current is not None and current.priority > pair.priority
        ):
            return None
        pair.nominated = True
        selected[component] = pair
        self._first_valid_at.pop(component, None)
        return SelectedPairChanged(
            component=component, local=pair.valid_local, remote=pair.remote
        )

    def pending(self, component: int) -> bool:
        """Whether ``component`` has had a valid pair and is still to be
        nominated."""
        return component in self._first_valid_at
