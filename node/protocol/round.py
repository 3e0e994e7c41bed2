"""One round's outcome as a pure function of public inputs.

`compute_round` is what every node runs before attesting, what an auditor re-runs to check a
finalized round, and what an in-process simulation runs without any chain. Its inputs are all
public: the round's base checkpoint (and, for rules that take one, the step that produced it),
the revealed updates (read through a content-addressed `fetch`), the task spec, the reference
set, the round seed and the round's reward. Its output is the attested tuple
``(checkpointHash, checkpointCid, acceptedBitmap, rewardsRoot, rewardTotal)``, a verdict per
revealed update, the new checkpoint and the reward tree.

The steps, in order:

1. verify each revealed update (`swarmchain.node.protocol.verify`), in member-index order;
2. quantise the survivors once, and reject free-riders among them
   (`swarmchain.incentives.freeriders`);
3. aggregate the rest with the task's rule, in fixed point, seeded by the round seed; inputs the
   rule screens out are rejected, inputs it sets aside stay accepted (and are valued as usual);
4. the checkpoint is ``base + aggregate``, encoded canonically;
5. value the aggregated updates by Shapley on the reference set (`swarmchain.incentives.game`), then
   split the round's reward and build the Merkle tree (`swarmchain.incentives.settlement`); the
   tree's total is what finalization reserves (less than the reward, or 0, when nobody earns all of
   it);
6. the accepted bitmap holds every member whose update was neither rejected nor screened.

Valuation evaluates on one CPU thread so that the quantised utilities, and hence the rewards
root, never depend on the caller's thread count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from swarmchain.incentives.freeriders import free_riders_in
from swarmchain.incentives.game import batch_utility
from swarmchain.incentives.merkle import RewardTree
from swarmchain.incentives.settlement import settle_round
from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.aggregation.errors import AggregationBoundError
from swarmchain.node.aggregation.fixed_point import (
    Batch,
    IntArray,
    quantise,
    quantise_vector,
)
from swarmchain.node.aggregation.pipeline import aggregate_batch
from swarmchain.node.aggregation.randomness import derive_seed
from swarmchain.node.aggregation.registry import RULES
from swarmchain.node.chain.protocol import Outcome, encode_bitmap
from swarmchain.node.learning.data import Dataset
from swarmchain.node.learning.training import apply_delta
from swarmchain.node.protocol.checkpoint import Checkpoint, State, encode_checkpoint
from swarmchain.node.protocol.exact_eval import ExactBoundError
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.node.protocol.verify import (
    Decrypt,
    Fetch,
    Rejected,
    RejectReason,
    RoundFrame,
    Submission,
    verify_submission,
)

WITHHELD = "recorded as unavailable by the finalized round"  # a `withheld` verdict's detail


@dataclass(frozen=True)
class RoundInputs:
    """Everything a round's outcome depends on; all of it public."""

    chain_id: int
    coordinator: str  # checksummed coordinator address
    round: int  # the round id
    seed: bytes  # the round's public seed (``roundSeed``)
    reward: int  # tokens the round pays out (`swarmchain.node.protocol.record.reward_for_round`)
    spec: TaskSpec
    base: Checkpoint  # the round's base checkpoint
    # The step that produced `base` (None for the genesis): the centre of rules that take one,
    # and a public vector a replay would re-send.
    step: State | None
    reference: Dataset  # the task's reference set
    submissions: tuple[Submission, ...]  # the round's revealed updates, any order
    valuation: ValuationConfig = field(default_factory=ValuationConfig)  # the task document's
    recipients: tuple[bytes, ...] = ()  # `round_recipients`: who encrypted updates are for


@dataclass(frozen=True)
class Verdict:
    """What happened to one revealed update."""

    index: int  # the member's bitmap index
    node: str  # the member's address
    cid: str  # the revealed envelope CID
    reason: RejectReason | None  # None: accepted
    detail: str  # why, in words ("" when accepted, unless the rule set the update aside)

    @property
    def accepted(self) -> bool:
        """Whether the update is in the accepted bitmap."""
        return self.reason is None


@dataclass(frozen=True)
class RoundResult:
    """The round's outcome and how it was reached."""

    outcome: Outcome  # the tuple to attest
    checkpoint: Checkpoint  # base + aggregate
    verdicts: tuple[Verdict, ...]  # one per revealed update, in member-index order
    amounts: dict[str, int]  # reward per account (rejected and non-positive at 0)
    tree: RewardTree = field(compare=False)  # the reward tree; its root is in `outcome`


def aggregation_seed(seed: bytes) -> int:
    """The non-negative integer seed the aggregation rule gets from the round seed."""
    return derive_seed("swarmchain/aggregation", seed)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the caller's setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _verdict(
    index: int, node: str, cid: str, reason: RejectReason | None = None, detail: str = ""
) -> Verdict:
    return Verdict(index, node, cid, reason, detail)


@dataclass(frozen=True)
class Contribution:
    """A verified update, ready to aggregate."""

    index: int  # the member's bitmap index
    node: str  # the member's address
    num_samples: int  # its revealed sample count (the aggregation weight)
    delta: State  # float32 CPU tensors, sorted names
    cid: str = ""  # the revealed envelope CID ("" for in-process contributions)


def compute_round(
    inputs: RoundInputs,
    fetch: Fetch,
    decrypt: Decrypt | None = None,
    *,
    withheld: frozenset[int] = frozenset(),
    device: torch.device | None = None,
) -> RoundResult:
    """Verify, aggregate and value one round; return the tuple every honest node attests.

    Parameters
    ----------
    inputs
        The round's public inputs.
    fetch
        Reads CID-checked content from the store (``store.get``).
    decrypt
        Opens updates encrypted for the round's recipients with this node's key; None for a
        party with no key.
    withheld
        Member indices whose updates are taken as unavailable without fetching them: the ones
        a finalized round recorded as unavailable, when an auditor re-derives it.
    device
        Where valuation's exact evaluations run (see `combine_round`).

    Returns
    -------
    RoundResult
        The outcome, verdicts, checkpoint and rewards.

    Raises
    ------
    ValueError
        If two submissions share a member index (the chain never records that).
    CannotJudge
        If an update is encrypted for the round's members and this party is not one of them.
    """
    subs = sorted(inputs.submissions, key=lambda s: s.index)
    if len({s.index for s in subs}) != len(subs):
        raise ValueError("two submissions share a member index")
    frame = RoundFrame(
        inputs.chain_id,
        inputs.coordinator,
        inputs.round,
        inputs.base.cid,
        inputs.spec,
        inputs.recipients,
    )
    rejected: list[Verdict] = []
    contributions: list[Contribution] = []
    for sub in subs:
        if sub.index in withheld:
            rejected.append(
                _verdict(sub.index, sub.node, sub.cid, RejectReason.UNAVAILABLE, WITHHELD)
            )
            continue
        try:
            verified = verify_submission(sub, frame, fetch, decrypt)
        except Rejected as err:
            rejected.append(_verdict(sub.index, sub.node, sub.cid, err.reason, err.detail))
        else:
            contributions.append(
                Contribution(sub.index, sub.node, sub.num_samples, verified.delta, sub.cid)
            )
    return combine_round(inputs, contributions, rejected, device=device)


def combine_round(
    inputs: RoundInputs,
    contributions: Sequence[Contribution],
    rejected: Sequence[Verdict] = (),
    *,
    device: torch.device | None = None,
) -> RoundResult:
    """Aggregate and value verified updates: the part of `compute_round` after verification.

    An in-process simulation (or a baseline without some members) calls this directly with
    updates it trained itself; ``inputs.submissions`` is not read.

    Parameters
    ----------
    inputs
        The round's public inputs.
    contributions
        The updates that passed verification, with distinct member indices.
    rejected
        Verdicts of the updates verification already rejected.
    device
        Where valuation's exact evaluations run (the CPU when None); the result is the same.

    Returns
    -------
    RoundResult
        The outcome, verdicts (rejected ones included), checkpoint and rewards; a round whose
        updates miss a bound of the rule (`AggregationBoundError`, e.g. a `ByzantineBoundError`)
        keeps its base, pays nothing and accepts every valid update as "not aggregated"; one
        whose valuation exceeds a bound of exact evaluation (`ExactBoundError`) pays nothing.

    Raises
    ------
    Exception
        Whatever else the rule raises: a bug, never recorded as a round.
    """
    spec = inputs.spec
    players = sorted(contributions, key=lambda c: c.index)
    verdicts = {v.index: v for v in rejected}
    # One quantisation serves all: free riders compare its rows, the rule and the valuation
    # weigh the survivors' rows by their sample counts.
    quantised = (
        quantise([c.delta for c in players], [1] * len(players), spec.fixed_point_bits)
        if players
        else None
    )
    step_grid = (
        None
        if quantised is None or inputs.step is None
        else quantise_vector(inputs.step, quantised.layout, spec.fixed_point_bits)
    )
    riders = (
        {}
        if quantised is None
        else free_riders_in(quantised, None if step_grid is None else step_grid.astype(np.int32))
    )
    for position, why in riders.items():
        c = players[position]
        verdicts[c.index] = _verdict(c.index, c.node, c.cid, RejectReason.FREE_RIDER, why)
    kept = [position for position in range(len(players)) if position not in riders]
    players = [players[position] for position in kept]

    step: State | None = None
    valued: tuple[Batch, IntArray | None] | None = None  # the batch and centre aggregated
    seed = aggregation_seed(inputs.seed)
    samples = [c.num_samples for c in players]
    if players and quantised is not None:
        center = step_grid if RULES[spec.aggregation.rule].uses_center else None
        try:
            batch = quantised.as_inputs(kept, samples)
            result = aggregate_batch(batch, spec.aggregation, seed=seed, center=center)
        except AggregationBoundError as err:
            # A bound the valid updates cannot meet (e.g. Krum's n >= 2f + 3): nobody is at
            # fault, so the round keeps its base and pays nothing. Anything else is a bug.
            for c in players:
                verdicts[c.index] = _verdict(c.index, c.node, c.cid, None, f"not aggregated: {err}")
        else:
            step, valued = result.delta, (batch, center)
            for position in result.screened_out:
                c = players[position]
                verdicts[c.index] = _verdict(
                    c.index,
                    c.node,
                    c.cid,
                    RejectReason.SCREENED,
                    f"screened out by {spec.aggregation.rule}",
                )
            for position in result.set_aside:
                c = players[position]
                verdicts[c.index] = _verdict(
                    c.index, c.node, c.cid, None, "set aside: points against the round's consensus"
                )
    for c in players:
        verdicts.setdefault(c.index, _verdict(c.index, c.node, c.cid))

    checkpoint = (
        inputs.base if step is None else encode_checkpoint(apply_delta(inputs.base.state, step))
    )
    losers = [v.node for v in verdicts.values() if not v.accepted]
    settled = None
    if valued is not None:
        batch, center = valued
        utility = batch_utility(
            spec,
            inputs.base.state,
            batch,
            inputs.reference,
            seed=seed,
            center=center,
            device=device,
        )
        try:
            with one_thread():
                settled = settle_round(
                    utility,
                    [c.node for c in players],
                    seed=inputs.seed,
                    reward=inputs.reward,
                    rejected=losers,
                    config=inputs.valuation,
                )
        except ExactBoundError:
            # A coalition's model or the reference set beyond exact evaluation's bounds: every
            # node meets the same error, so the round keeps its checkpoint and pays nothing.
            settled = None
    if settled is not None:
        amounts, tree = settled.amounts, settled.tree
    else:
        amounts = dict.fromkeys(sorted({v.node for v in verdicts.values()}), 0)
        tree = RewardTree.from_amounts({})
    ordered = tuple(verdicts[index] for index in sorted(verdicts))
    outcome = Outcome(
        checkpoint_hash=checkpoint.hash,
        checkpoint_cid=checkpoint.cid,
        accepted_bitmap=encode_bitmap(v.index for v in ordered if v.accepted),
        rewards_root=tree.root,
        reward_total=tree.total,
    )
    return RoundResult(outcome, checkpoint, ordered, amounts, tree)
