"""This node's part in each round: whether it could take part, and what the chain shows done.

`Participation` reads the member record once per round and the node's submission until it
shows a commit, and remembers what it saw, so the loop asks the chain only what it does not
know yet. It also names a round the node missed, seen only once the round had closed.
"""

from __future__ import annotations

from swarmchain.node.chain.coordinator import Coordinator, RoundInfo
from swarmchain.node.chain.protocol import MemberStatus, SubmissionState
from swarmchain.node.runtime.duty import Duties, Duty


class Participation:
    """Per round: eligible, committed, revealed, attested.

    Parameters
    ----------
    coordinator
        The swarm's contract, with this node's key.
    duties
        Records the skips this unit finds.
    """

    def __init__(self, coordinator: Coordinator, duties: Duties) -> None:
        self._coordinator = coordinator
        self._duties = duties
        self._eligibility: dict[int, bool] = {}
        self.committed: set[int] = set()  # rounds the chain showed this node's commit in
        self.revealed: set[int] = set()  # rounds with nothing (more) to reveal
        self.attested: set[int] = set()  # rounds this node attested in

    def eligible(self, round_id: int) -> bool:
        """Whether this node held stake when the round opened (read once per round).

        Parameters
        ----------
        round_id
            The round.

        Returns
        -------
        bool
            True if the node had stake at the round's opening; a node that is no longer an
            active member also gets its skip recorded.
        """
        if round_id not in self._eligibility:
            me = self._coordinator.member_info()
            self._eligibility[round_id] = me.stake_at_open > 0
            if me.last_attest_round == round_id:
                self.attested.add(round_id)
            if me.status != MemberStatus.ACTIVE:
                reason = f"this account is {me.status.name.lower()}, no longer an active member"
                self._duties.skip(round_id, Duty.MEMBERSHIP, reason)
        return self._eligibility[round_id]

    def submitted(self, round_id: int) -> bool:
        """Whether this node committed in the round (remembered once the chain shows it).

        Parameters
        ----------
        round_id
            The round.

        Returns
        -------
        bool
            True if the chain holds a submission of this node's in the round.
        """
        if round_id not in self.committed:
            if self._coordinator.submission(round_id).state == SubmissionState.NONE:
                return False
            self.committed.add(round_id)
        return True

    def missed(self, info: RoundInfo) -> None:
        """Name a closed round this node missed because it did not run through the commit window.

        A node stalled or suspended sees such a round only once it closed.

        Parameters
        ----------
        info
            The closed round.
        """
        r = info.round
        if self._duties.skipped(r, Duty.COMMIT) or info.active_at_open == 0:
            return
        eligible = self._eligibility.get(r)
        if eligible is None:  # never seen open: a member now, it was one then (no rejoin unseen)
            eligible = (
                any(self._eligibility.values())
                and self._coordinator.member_info().status == MemberStatus.ACTIVE
            )
        if eligible and not self.submitted(r):
            self._duties.skip(r, Duty.COMMIT, "the round closed before this node committed")
