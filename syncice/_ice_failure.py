"""Why ICE failed: the text of :class:`~syncice.events.IceFailed`.

The most telling cause comes first: the peer refusing our credentials, then
us refusing its, the nomination timeout (when that is what ended it), error
responses, timeouts; each counted over the whole check list. "no candidate
pair succeeded" only when nothing more is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._checklist import CandidatePair, PairFaults
from ._ice_log import plural, status, times

__all__ = ["FailureFacts", "failure_reason"]


@dataclass(slots=True, kw_only=True)
class FailureFacts:
    """What the agent knows when ICE fails, beyond its pairs' faults.

    :param nomination_timeout: set (to the timeout, in seconds) when the
        controlled agent gave up waiting for a nomination.
    :param checks_received: authenticated checks from the peer on pairs of
        components not yet selected.
    :param checks_rejected: the peer's checks we refused (401).
    :param waiting: components without a selected pair.
    :param any_selected: whether some component has a selected pair.
    :param local_candidates: whether the agent has a local endpoint.
    :param remote_candidates: how many remote candidates it has.
    :param candidates_refused: how many remote candidates it refused.
    :param relays_lost: why the TURN relays that had pairs ended.
    """

    nomination_timeout: float | None = None
    checks_received: int = 0
    checks_rejected: int = 0
    waiting: Sequence[int] = ()
    any_selected: bool = False
    local_candidates: bool = False
    remote_candidates: int = 0
    candidates_refused: int = 0
    relays_lost: Sequence[str] = field(default_factory=list)


def failure_reason(pairs: Sequence[CandidatePair], facts: FailureFacts) -> str:
    """The reason of an :class:`~syncice.events.IceFailed`, from the check
    list and ``facts``."""
    parts: list[str] = []
    if facts.nomination_timeout is not None:
        since = "for" if facts.checks_received else "in the"
        after = "" if facts.checks_received else " since connect()"
        on = ""
        if facts.any_selected:
            names = ", ".join(str(c) for c in facts.waiting)
            on = f" on component{'s' if len(facts.waiting) > 1 else ''} {names}"
        parts.append(
            f"no nomination: no check from the controlling peer{on} {since} "
            f"{facts.nomination_timeout:g} s{after} (nomination_timeout)"
        )
    if not pairs:
        if not facts.local_candidates:
            parts.append("no local candidates")
        elif not facts.remote_candidates:
            refused = facts.candidates_refused
            parts.append(
                "no remote candidates"
                + (f" ({refused} refused: see the DEBUG log)" if refused else "")
            )
        else:
            parts.append(
                "no remote candidate pairs with a local one (address "
                "family or component)"
            )
    faults = PairFaults()
    for pair in pairs:
        faults.add(pair.faults)
    codes = sorted(c for c in faults.rejected if c)
    if codes:
        parts.append(
            "the peer rejected our checks with "
            + " and ".join(
                f"{status(c)} (unsigned, {times(faults.rejected[c])})" for c in codes
            )
            + ": check remote_username/remote_password"
        )
    if faults.rejected.get(0):
        parts.append(
            "responses to our checks failed their integrity check "
            f"({times(faults.rejected[0])}): check remote_password"
        )
    if facts.checks_rejected:
        parts.append(
            "we rejected the peer's checks with 401 Unauthenticated "
            f"({times(facts.checks_rejected)}): check its "
            "remote_username/remote_password"
        )
    if faults.errors:
        parts.append(
            "the peer answered our checks with "
            + " and ".join(
                f"{status(c)} ({times(n)})" for c, n in sorted(faults.errors.items())
            )
        )
    if faults.asymmetric:
        parts.append(
            "responses came from another address than the checks went to "
            f"({times(faults.asymmetric)})"
        )
    if faults.unmapped:
        parts.append(
            f"success responses without XOR-MAPPED-ADDRESS ({times(faults.unmapped)})"
        )
    for reason in facts.relays_lost:
        parts.append(f"TURN relay lost: {reason}")
    if faults.timeouts:
        parts.append(
            f"no response to {plural(faults.timeouts, 'check')}, sent "
            f"{times(faults.unanswered)} (timeout)"
        )
    return "; ".join(parts) or "no candidate pair succeeded"
