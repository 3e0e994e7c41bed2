"""The round outcomes a node computes: once per round and seed, from the one input builder.

`RoundOutcomes.result` builds a round's inputs (`swarmchain.node.protocol.inputs.round_inputs`) from
the node's event record, verifies, aggregates and values them (`compute_round`) with the node's key
for encrypted updates, stores the new checkpoint, and keeps the result until its round is settled.
`outcome_fields` is the journal's ``outcome`` record of a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from swarmchain.incentives.claims import save_reward_tree
from swarmchain.node.chain.coordinator import RoundInfo
from swarmchain.node.chain.protocol import Outcome, RoundStatus
from swarmchain.node.protocol.inputs import round_inputs
from swarmchain.node.protocol.round import RoundInputs, RoundResult, compute_round
from swarmchain.node.runtime.checkpoints import CheckpointCache, PatientFetch
from swarmchain.node.runtime.clock import ChainClock, RoundClock
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.session import Emit, Session
from swarmchain.storage.envelope import decrypt_blob

FETCH_PATIENCE_S = 10.0  # how long a blob a peer may still be serving is retried
OUTCOME_KEYS = ("checkpoint_hash", "checkpoint_cid", "bitmap", "rewards_root", "reward_total")


class RoundOutcomes:
    """This node's result for each round, computed once per (round, seed).

    Parameters
    ----------
    session
        The node's session.
    checkpoints, fetch
        The checkpoint cache and the patient blob reader verification uses.
    chain, clock
        The chain's time (a verification must end before the attest deadline) and each
        round's clock (verification time is counted).
    emit
        Reports ``VERIFIED``.
    """

    def __init__(
        self,
        session: Session,
        checkpoints: CheckpointCache,
        fetch: PatientFetch,
        chain: ChainClock,
        clock: Callable[[int], RoundClock],
        emit: Emit,
    ) -> None:
        self.session = session
        self.checkpoints = checkpoints
        self.fetch = fetch
        self.chain = chain
        self.clock = clock
        self.emit = emit
        self._results: dict[tuple[int, bytes], RoundResult] = {}  # by (round, seed)

    def known(self, info: RoundInfo) -> RoundResult | None:
        """The round's result if this node computed it already."""
        return self._results.get((info.round, info.seed))

    def at_quorum(self, info: RoundInfo) -> Outcome | None:
        """The tuple holding quorum: this node's own if it does, else read from attestations."""
        s = self.session
        mine = self.known(info)
        if mine is not None and (
            s.coordinator.outcome_stake(info.round, mine.outcome) >= info.required_stake
        ):
            return mine.outcome
        s.history.refresh()
        for event in s.history.attestations(info.round):
            if event.outcome_stake >= info.required_stake:
                return event.outcome
        return None

    def inputs(self, info: RoundInfo) -> RoundInputs:
        """The public inputs of a round whose reveal window is over."""
        s = self.session
        s.history.refresh()
        return round_inputs(
            s.history.events,
            info.round,
            chain_id=s.deployment.chain_id,
            coordinator=s.coordinator.address,
            document=s.document,
            checkpoint_of=self.checkpoints,
            reference=s.reference,
        )

    def result(self, info: RoundInfo) -> RoundResult:
        """The round's outcome, computed once per (round, seed).

        Raises
        ------
        CannotJudge
            If an update is encrypted for the round's members and this node is not one.
        """
        key = (info.round, info.seed)
        if key not in self._results:
            left = FETCH_PATIENCE_S  # a closed round has no deadline to keep
            if info.status == RoundStatus.OPEN:
                margin = self.session.config.deadline_margin_s + 2
                left = min(left, info.attest_deadline - self.chain.now() - margin)
            self.fetch.be_patient(left)
            inputs = self.inputs(info)
            keys, store = self.session.keys, self.session.store
            started = time.monotonic()
            result = compute_round(
                inputs,
                self.fetch,
                lambda blob, to: decrypt_blob(blob, keys, to),
                device=self.session.device,  # exact: the node's GPU gives the CPU's bytes
            )
            seconds = time.monotonic() - started
            self.clock(info.round).add("verification", seconds)
            if not store.has(result.checkpoint.cid):
                store.put(result.checkpoint.blob)
            self._results[key] = result
            self.checkpoints.computed(info.round, result.checkpoint)
            self.emit(
                EventKind.VERIFIED,
                info.round,
                accepted=sum(v.accepted for v in result.verdicts),
                rejected={str(v.index): v.reason.value for v in result.verdicts if v.reason},
                checkpoint_hash="0x" + result.outcome.checkpoint_hash.hex(),
                rewards_root="0x" + result.outcome.rewards_root.hex(),
                seconds=round(seconds, 4),
            )
        return self._results[key]

    def journal(self, round_id: int, result: RoundResult) -> None:
        """Save the reward tree and journal the outcome, unless the journal holds it already."""
        fields = outcome_fields(round_id, result)
        last = self.session.journal.last("outcome", round_id)
        if last is None or any(last.get(k) != fields[k] for k in OUTCOME_KEYS):
            save_reward_tree(self.session.rewards_dir, round_id, result.tree)
            self.session.journal.append("outcome", **fields)

    def forget(self, closed: int) -> None:
        """Drop the results of rounds up to a closed one."""
        self._results = {k: v for k, v in self._results.items() if k[0] > closed}


def outcome_fields(round_id: int, result: RoundResult) -> dict[str, Any]:
    """The journal's ``outcome`` record of a result: its tuple and every verdict."""
    outcome = result.outcome
    return {
        "round": round_id,
        "checkpoint_hash": "0x" + outcome.checkpoint_hash.hex(),
        "checkpoint_cid": outcome.checkpoint_cid,
        "bitmap": "0x" + outcome.accepted_bitmap.hex(),
        "rewards_root": "0x" + outcome.rewards_root.hex(),
        "reward_total": str(outcome.reward_total),
        "verdicts": [
            {
                "index": v.index,
                "node": v.node,
                "cid": v.cid,
                "reason": None if v.reason is None else v.reason.value,
                "detail": v.detail,
            }
            for v in result.verdicts
        ],
    }
