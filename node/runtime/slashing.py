"""Who is slashable for a closed round, and which member's turn it is to send the slashes.

A pure reading of the coordinator's event record (`ChainHistory`), the same on every node:

- committed but never revealed: ``slash`` (finalized or failed round);
- revealed but left out of the finalized bitmap: ``slash``;
- revealed in a failed round, and left out of attested tuples whose stakes add up to the round's
  required stake: ``slashRejected`` with those tuples (`rejecting_outcomes`).

The turn rotates by round id over the members whose reveal stood: those accepted in a finalized
round, or those no quorum rejected in a failed one, so no offender is ever asked to slash itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmchain.node.chain.protocol import Outcome, decode_bitmap, rejecting_outcomes
from swarmchain.node.runtime.history import ChainHistory


@dataclass(frozen=True)
class Offence:
    """One member to slash for the round."""

    node: str
    index: int  # its bitmap index
    rejected_by: tuple[Outcome, ...]  # the tuples for ``slashRejected``; () means ``slash``


@dataclass(frozen=True)
class SlashPlan:
    """The round's offences, and who sends their slashes."""

    offences: tuple[Offence, ...]  # in member-index order
    rotation: tuple[str, ...]  # members whose reveal stood, in member-index order

    def sender(self, round_id: int) -> str | None:
        """The member whose turn it is to send the round's slashes (None: nobody's)."""
        if not self.offences or not self.rotation:
            return None
        return self.rotation[round_id % len(self.rotation)]


def slash_plan(
    history: ChainHistory, round_id: int, required_stake: int, outcome: Outcome | None
) -> SlashPlan:
    """The offences of a closed round, read from the event record.

    Parameters
    ----------
    history
        The coordinator's events, refreshed past the round's close.
    round_id
        The closed round.
    required_stake
        The round's required stake (``requiredStake``).
    outcome
        The finalized tuple; None for a failed round.

    Returns
    -------
    SlashPlan
        Every offence (slashed already or not) and the rotation of senders.
    """
    members = history.members()
    revealed = {e.node for e in history.revealed(round_id)}
    unrevealed = set(history.committed(round_id)) - revealed
    offences = [Offence(node, members[node].index, ()) for node in unrevealed]
    if outcome is not None:
        accepted = decode_bitmap(outcome.accepted_bitmap)
        rejected = {node for node in revealed if members[node].index not in accepted}
        offences += [Offence(node, members[node].index, ()) for node in rejected]
    else:
        stakes = history.attested_stakes(round_id)
        rejected = set()
        for node in revealed:
            tuples = rejecting_outcomes(stakes, members[node].index, required_stake)
            if tuples:
                rejected.add(node)
                offences.append(Offence(node, members[node].index, tuples))
    rotation = sorted(revealed - rejected, key=lambda node: members[node].index)
    return SlashPlan(tuple(sorted(offences, key=lambda o: o.index)), tuple(rotation))
