"""Settling a closed round: report it, claim this node's reward, slash offenders in its turn.

A finalized round's reward tree is the one this node saved when it attested, or recomputed
(and saved) when it did not; only a tree matching the finalized root is claimed against.
Slashes follow `swarmchain.node.runtime.slashing`'s plan, so one member sends each.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from swarmchain.incentives.claims import claim_due, load_reward_tree, save_reward_tree
from swarmchain.incentives.merkle import RewardTree
from swarmchain.node.chain.coordinator import RoundInfo
from swarmchain.node.chain.protocol import Outcome, RoundStatus, SubmissionState, decode_bitmap
from swarmchain.node.protocol.evaluation import exact_metrics
from swarmchain.node.protocol.round import RoundResult
from swarmchain.node.protocol.verify import CannotJudge
from swarmchain.node.runtime.checkpoints import CheckpointCache
from swarmchain.node.runtime.clock import RoundClock
from swarmchain.node.runtime.duty import Duties, Duty
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.session import Emit, Session
from swarmchain.node.runtime.slashing import slash_plan


class Settlement:
    """Claims and slashes of closed rounds.

    Parameters
    ----------
    session
        The node's session.
    duties
        Sends the transactions and records skips.
    result
        The round's outcome as this node computes it (for a round it did not attest).
    checkpoints
        Finalized checkpoints by round (a finalized round's is evaluated when reported).
    clock, emit
        Each round's clock (its timings are reported) and the node's event sink.
    """

    def __init__(
        self,
        session: Session,
        duties: Duties,
        result: Callable[[RoundInfo], RoundResult],
        checkpoints: CheckpointCache,
        clock: Callable[[int], RoundClock],
        emit: Emit,
    ) -> None:
        self.session = session
        self.duties = duties
        self.result = result
        self.checkpoints = checkpoints
        self.clock = clock
        self.emit = emit

    def report(self, info: RoundInfo) -> None:
        """Report a closed round: a finalized one's checkpoint, accuracy and this node's reward
        (loaded and evaluated here), or a failed one's stakes."""
        r = info.round
        if info.status == RoundStatus.FAILED:
            self.emit(
                EventKind.FAILED,
                r,
                leading_stake=str(info.leading_stake),
                required_stake=str(info.required_stake),
            )
        if info.status != RoundStatus.FINALIZED:
            return
        outcome = self.session.coordinator.finalized_outcome(r)
        checkpoint = self.checkpoints(r)
        tree = self.reward_tree(info, outcome)
        reward = 0 if tree is None else tree.amount_of(self.session.address)
        accuracy = exact_metrics(self.session.spec, [checkpoint.state], self.session.reference)[
            0
        ].accuracy
        self.emit(
            EventKind.FINALIZED,
            r,
            checkpoint_hash="0x" + outcome.checkpoint_hash.hex(),
            checkpoint_cid=outcome.checkpoint_cid,
            accepted=len(decode_bitmap(outcome.accepted_bitmap)),
            accuracy=accuracy,
            reward=str(reward),
            timings=self.clock(r).summary(),
        )

    def settle(self, info: RoundInfo) -> None:
        """Claim and slash what a reported round owes, then journal it closed."""
        r = info.round
        if info.status == RoundStatus.FINALIZED:
            outcome = self.session.coordinator.finalized_outcome(r)
            self.claim(info, outcome)
            self.slash(info, outcome)
        elif info.status == RoundStatus.FAILED:
            self.slash(info, None)
        self.session.journal.append("closed", round=r, status=info.status.name.lower())

    def reward_tree(self, info: RoundInfo, outcome: Outcome) -> RewardTree | None:
        """The finalized round's reward tree, if this node was accepted in it (recomputed and
        saved if this node did not attest); None, and a skipped claim, if none matches."""
        r = info.round
        if self.session.index not in decode_bitmap(outcome.accepted_bitmap):
            return None
        tree = load_reward_tree(self.session.rewards_dir, r)
        if tree is None or tree.root != outcome.rewards_root:
            tree = self._recomputed_tree(info, outcome)
        if tree is None:
            self.duties.skip(r, Duty.CLAIM, "no reward tree matches the finalized root")
        return tree

    def claim(self, info: RoundInfo, outcome: Outcome) -> None:
        """Claim this node's reward for a finalized round, if it is owed one."""
        r = info.round
        tree = self.reward_tree(info, outcome)
        me = self.session.address
        if tree is None or (amount := claim_due(tree, outcome.rewards_root, me)) == 0:
            return
        proof = tree.proof(me)
        coordinator = self.session.coordinator
        self.duties.send(
            Duty.CLAIM,
            r,
            lambda: coordinator.claim(r, me, amount, proof),
            amount=str(amount),
        )

    def _recomputed_tree(self, info: RoundInfo, outcome: Outcome) -> RewardTree | None:
        """Recompute a round this node did not attest (it was down): the tree if it matches."""
        try:
            result = self.result(info)
        except CannotJudge:
            return None
        if result.outcome.rewards_root != outcome.rewards_root:
            return None
        save_reward_tree(self.session.rewards_dir, info.round, result.tree)
        return result.tree

    def slash(self, info: RoundInfo, outcome: Outcome | None) -> None:
        """Slash the round's offenders (`swarmchain.node.runtime.slashing`) if it is this node's
        turn.

        Unrevealed and, when finalized, rejected submitters get ``slash``; in a failed round, a
        revealed member left out of attested tuples holding quorum stake gets ``slashRejected``.
        The turn rotates over the members whose reveal stood, so one node sends each slash; if
        that node is down, an unrevealed or finalized-rejected offender is slashed anyway when
        it next commits (a failed round's rejection only by a later turn or anyone's call).
        """
        r = info.round
        history, coordinator = self.session.history, self.session.coordinator
        history.refresh()
        plan = slash_plan(history, r, info.required_stake, outcome)
        if plan.sender(r) != self.session.address:
            return
        for offence in plan.offences:
            if coordinator.submission(r, offence.node).state == SubmissionState.SLASHED:
                continue
            call = (
                partial(coordinator.slash_rejected, r, offence.node, offence.rejected_by)
                if offence.rejected_by
                else partial(coordinator.slash, r, offence.node)
            )
            self.duties.send(Duty.SLASH, r, call, node=offence.node)
