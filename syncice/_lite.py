"""Local ICE-lite (RFC 8445 §2.5): the rules of an agent made with
``IceConfig(ice_lite=True)``.

- **Host candidates only** (RFC 8445 §5.2): no server-reflexive or relayed
  candidate is gathered, even when STUN or TURN servers are given
  (:func:`lite_servers` drops them and logs it).
- **Always controlled** (RFC 8445 §6.1.1): an agent asked to control is
  made controlled, and says so in the log (:func:`lite_role`); a later
  request to control is ignored. Against a full peer that also claims the
  controlled role, a check is answered 487 (Role Conflict) whatever the
  tie-breakers say, so the full peer takes the controlling role (RFC 8445
  §7.2.5.1); the lite agent never switches.
- **Answers checks, sends none**: no ordinary check, no triggered check, no
  nomination (:func:`take_check`). A check with USE-CANDIDATE makes its pair
  (the socket it came in on and its source) valid and nominated, and selects
  it (RFC 8445 §7.3.2); a later nominated pair of higher priority takes over
  (RFC 8445 §8.2). A check without USE-CANDIDATE is answered and remembered
  (its source may send data), nothing more.
- **Consent** (RFC 7675 §4): a lite agent sends no consent checks; it only
  answers the full peer's, which are ordinary checks to it. It runs no
  consent timer of its own: the full peer's consent freshness is what stops
  the traffic of a dead path, and a lite application that must notice a
  vanished peer does so in its own protocol (or closes).
- **Two lite agents** cannot connect here: RFC 8445 §6.2 lets the initiator
  pick a pair from the signalled candidates without any check, which is
  what :meth:`~syncice.ice.IceAgent.set_selected_pair` does. Signalling a
  lite peer to a lite agent raises :class:`ValueError`
  (:data:`BOTH_LITE`).
"""

from __future__ import annotations

import logging

from ._checklist import CandidatePair, CheckList, PairState
from ._ice_log import EventLog

__all__ = ["BOTH_LITE", "lite_role", "lite_servers", "take_check"]

logger = logging.getLogger("syncice.ice")

#: Why two ICE-lite agents cannot connect.
BOTH_LITE = (
    "both agents are ICE-lite: neither sends checks, so they cannot connect"
    " (make one side a full agent, or pick the pair by hand with"
    " set_selected_pair(), RFC 8445 §6.2)"
)


def lite_role(name: str, controlling: bool) -> bool:
    """The role a lite agent takes: controlled, whatever was asked (RFC 8445
    §6.1.1); logged when ``controlling`` was asked."""
    if controlling:
        logger.info(
            "%s ICE-lite: taking the controlled role (ice_controlling=True"
            " ignored: a lite agent is always controlled, RFC 8445 §6.1.1)",
            name,
        )
    return False


def lite_servers(name: str, *servers: object) -> None:
    """Log that a lite agent gathers no server-reflexive or relayed
    candidate from the ``servers`` given (``None`` for none)."""
    given = [s for s in servers if s is not None]
    if given:
        logger.info(
            "%s ICE-lite: host candidates only, STUN/TURN server %s not used"
            " (RFC 8445 §5.2)",
            name,
            ", ".join(f"{s[0]}:{s[1]}" for s in given),  # type: ignore[index]
        )


def take_check(
    checklist: CheckList, log: EventLog, pair: CandidatePair, use_candidate: bool
) -> bool:
    """A lite agent's part of an authenticated check on ``pair`` (RFC 8445
    §7.3.2), already answered: with USE-CANDIDATE the pair becomes valid,
    succeeded and nominated by the peer.

    :returns: whether the pair is to be selected now.
    """
    if not use_candidate:
        return False
    if not pair.valid:
        # Its data is counted on it from now on, as for a pair that a check
        # of ours validated.
        checklist.endpoints[pair.endpoint].peers[pair.remote_addr] = pair
        pair.valid = True
    if pair.state is not PairState.SUCCEEDED:
        checklist.set_state(pair, PairState.SUCCEEDED)
    if not pair.remote_nominated:
        log.debug("pair %s nominated by the peer (USE-CANDIDATE, lite)", pair)
    pair.remote_nominated = True
    return True
