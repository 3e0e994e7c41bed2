"""The one builder of a round's public inputs, shared by nodes, auditors and the demo.

`round_inputs` reads the round's seed, base, reward, submissions and recipients from the
coordinator's events (`swarmchain.node.protocol.record`) and its checkpoints through a caller's
lookup, so a node, an auditor and an in-process replay cannot assemble a round differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from swarmchain.node.chain.events import ChainEvent
from swarmchain.node.learning.data import Dataset
from swarmchain.node.protocol import record
from swarmchain.node.protocol.checkpoint import Checkpoint, State, aggregate_of
from swarmchain.node.protocol.document import TaskDocument
from swarmchain.node.protocol.round import RoundInputs

CheckpointOf = Callable[[int], Checkpoint]  # round id -> its finalized checkpoint (0: genesis)


def step_of(
    events: Sequence[ChainEvent], base_round: int, checkpoint_of: CheckpointOf
) -> State | None:
    """The step that produced a round's base checkpoint: ``checkpoint(base) - checkpoint(base's
    base)``; None for the genesis."""
    if base_round == 0:
        return None
    before = record.opened(events, base_round).base_round
    return aggregate_of(checkpoint_of(base_round), checkpoint_of(before))


def round_inputs(
    events: Sequence[ChainEvent],
    round_id: int,
    *,
    chain_id: int,
    coordinator: str,
    document: TaskDocument,
    checkpoint_of: CheckpointOf,
    reference: Dataset,
) -> RoundInputs:
    """The public inputs of a round, from the chain's record and the content store.

    Parameters
    ----------
    events
        The coordinator's events in chain order from its deployment block, at least up to the
        round's reveals.
    round_id
        The round.
    chain_id, coordinator
        The chain and the checksummed coordinator address (they bind envelopes to the swarm).
    document
        The task document (spec and valuation settings).
    checkpoint_of
        Returns a finalized round's checkpoint (0: the genesis); called for the base round and,
        for rules that take a centre, the base's own base.
    reference
        The task's reference set.

    Returns
    -------
    RoundInputs
        What `swarmchain.node.protocol.round.compute_round` needs besides the blobs themselves.

    Raises
    ------
    ValueError
        If the events lack the coordinator's configuration or the round's opening.
    """
    spec = document.spec
    opened = record.opened(events, round_id)
    per_round = record.configured(events).params.reward_per_round
    return RoundInputs(
        chain_id=chain_id,
        coordinator=coordinator,
        round=round_id,
        seed=opened.seed,
        reward=record.reward_for_round(events, round_id, per_round),
        spec=spec,
        base=checkpoint_of(opened.base_round),
        step=step_of(events, opened.base_round, checkpoint_of),
        reference=reference,
        submissions=record.submissions(events, round_id),
        valuation=document.valuation,
        recipients=record.recipients(events, round_id) if spec.encrypted_updates else (),
    )
