"""End to end on a real Anvil with real node processes and the shared embedded store.

Five honest nodes (torch thread counts 1 and 2, alternating) and one ALIE attacker train the
digits task, split by Dirichlet label skew (alpha = 0.5), for five rounds. The swarm is run once
per module; each test checks one property of that run against the chain's record. Most nodes
share one embedded store; one keeps its own and trades blocks with the others over the
trustless gateway, and one encrypts its updates for the members. The loner serves its store
with `--serve`; the shared store is served by the test for the whole run, as an organisation's
always-on store server would be. (Served by one of the sharing nodes, it would go down when
that node left after the last round, while the loner, which fetches over HTTP and so verifies
last, may still need the round's updates.)

The no-attacker baseline is the same computation run in-process: the honest members train from
the baseline's own checkpoints with exactly the seeds their nodes use, and the pure round
function (`combine_round`, the part of `compute_round` after verification) aggregates them.
Since the round computation is deterministic, that is the run the swarm would have made
without the attacker.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace

import pytest
import torch

from swarmchain.incentives.claims import load_reward_tree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import (
    Attested,
    ChainEvent,
    Claimed,
    Joined,
    Revealed,
    RoundFailed,
    RoundFinalized,
    RoundOpened,
    Slashed,
)
from swarmchain.node.chain.protocol import SlashReason, decode_bitmap
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.process import free_port
from swarmchain.node.devtools.swarm import LocalSwarm
from swarmchain.node.learning.data import load_npz, task_splits
from swarmchain.node.learning.training import evaluate
from swarmchain.node.protocol.checkpoint import Checkpoint, aggregate_of, decode_checkpoint
from swarmchain.node.protocol.document import fetch_task
from swarmchain.node.protocol.round import Contribution, RoundInputs, combine_round
from swarmchain.node.protocol.task import AggregationSpec, StepSpec, TaskSpec, default_task
from swarmchain.node.runtime.events import EventKind, NodeEvent
from swarmchain.node.runtime.local import local_update
from swarmchain.storage.cid import CID
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.envelope import is_encrypted
from swarmchain.storage.server import BlockServer

pytestmark = pytest.mark.integration

NODES = 6
ATTACKER = 5  # the last member runs `--attack alie:z=1.5`
LONER = 4  # keeps its own store, served to (and fetching from) the others over HTTP
ENCRYPTING = 3  # encrypts its updates for the round's members
ROUNDS = range(2, 7)  # round 1 opens with no members and fails at once
WINDOW_S = 60  # every window closes early once all members acted; this bounds a stall


def e2e_task() -> TaskSpec:
    """The digits MLP, set to converge within five rounds (so that two runs compare)."""
    spec = default_task()
    return replace(
        spec,
        encrypted_updates=True,  # one member encrypts
        train=replace(spec.train, lr=0.1, local_epochs=3),
        aggregation=AggregationSpec(
            "centered_clipping", {"tau": 3.0, "iterations": 3}, (StepSpec("bucketing", {"s": 2}),)
        ),
    )


@dataclass(frozen=True)
class Run:
    """What one swarm run left behind."""

    swarm: LocalSwarm
    spec: TaskSpec
    events: list[ChainEvent]  # the coordinator's whole record
    node_events: dict[int, list[NodeEvent]]  # by member position
    indices: dict[str, int]  # address -> chain member index
    checkpoints: dict[int, Checkpoint]  # finalized round -> checkpoint (0: genesis)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("swarm-e2e")
    spec = e2e_task()
    params = SwarmParams.windows(WINDOW_S)
    with Anvil() as anvil:
        swarm = LocalSwarm.create(anvil, workdir, spec, NODES, params=params, alpha=0.5)
        with swarm, EmbeddedStore(swarm.store) as blocks, BlockServer(blocks) as shared:
            common = ["--min-members", str(NODES), "--until-round", str(ROUNDS[-1])]
            loner = free_port()
            for i in range(NODES):
                extra = ["--threads", str(1 + i % 2)]
                if i == ATTACKER:
                    extra += ["--attack", "alie:z=1.5"]
                if i == ENCRYPTING:
                    extra += ["--encrypt"]
                if i == LONER:
                    extra += ["--serve", f"127.0.0.1:{loner}", "--peer", shared.url]
                    swarm.start(i, *common, *extra, store=workdir / "loner-store")
                else:
                    swarm.start(i, *common, *extra, "--peer", f"http://127.0.0.1:{loner}")
            for process in swarm.processes.values():
                assert process.wait(timeout=240) == 0, process.log_tail()
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        events = coordinator.events()
        with EmbeddedStore(swarm.store) as store:
            _, genesis = fetch_task(store, *coordinator.task_spec())
            checkpoints = {0: genesis}
            for e in events:
                if isinstance(e, RoundFinalized):
                    blob = store.get(e.outcome.checkpoint_cid)
                    checkpoints[e.round] = decode_checkpoint(
                        blob,
                        spec,
                        cid=e.outcome.checkpoint_cid,
                        expected_hash=e.outcome.checkpoint_hash,
                    )
    indices = {e.node: e.index for e in events if isinstance(e, Joined)}
    node_events = {i: list(p.events) for i, p in swarm.processes.items()}
    return Run(swarm, spec, events, node_events, indices, checkpoints)


def test_every_round_finalizes(run: Run) -> None:
    finalized = [e.round for e in run.events if isinstance(e, RoundFinalized)]
    failed = [e.round for e in run.events if isinstance(e, RoundFailed)]

    assert finalized == list(ROUNDS)
    assert failed == [1]  # the empty opening round only


def test_nodes_with_different_thread_counts_attest_identical_tuples(run: Run) -> None:
    finalized = {e.round: e for e in run.events if isinstance(e, RoundFinalized)}
    threads_attesting: dict[int, set[int]] = defaultdict(set)
    position = {m.address: m.index for m in run.swarm.members}
    for e in run.events:
        if isinstance(e, Attested) and e.round in finalized:
            assert e.outcome_key == finalized[e.round].outcome_key, f"{e.node} dissented"
            threads_attesting[e.round].add(1 + position[e.node] % 2)
    for r in ROUNDS:
        assert threads_attesting[r] == {1, 2}, f"round {r}"
        outcome = finalized[r].outcome
        for i in range(NODES):
            # An accepted node computes the tuple even when quorum finalized the round before
            # its own attestation went out (it needs the reward tree to claim).
            computed = {
                (e.data["checkpoint_hash"], e.data["rewards_root"])
                for e in run.node_events[i]
                if e.kind == EventKind.VERIFIED and e.round == r
            }
            expected = ("0x" + outcome.checkpoint_hash.hex(), "0x" + outcome.rewards_root.hex())
            if i == ATTACKER:  # it computes only if it got to attest, or was accepted
                assert computed <= {expected}, f"node {i}, round {r}"
            else:
                assert computed == {expected}, f"node {i}, round {r}"


def test_honest_nodes_hold_the_same_checkpoint(run: Run) -> None:
    last = run.checkpoints[ROUNDS[-1]]
    for i in range(NODES):
        held = [
            e.data["checkpoint_hash"]
            for e in run.node_events[i]
            if e.kind == EventKind.FINALIZED and e.round == ROUNDS[-1]
        ]
        assert held == ["0x" + last.hash.hex()], f"node {i}"


def test_the_attacker_is_slashed_whenever_it_is_rejected(run: Run) -> None:
    attacker = run.swarm.members[ATTACKER].address
    index = run.indices[attacker]
    slashed = {
        e.round
        for e in run.events
        if isinstance(e, Slashed) and e.node == attacker and e.reason == SlashReason.REJECTED
    }
    rejected = {
        e.round
        for e in run.events
        if isinstance(e, RoundFinalized) and index not in decode_bitmap(e.outcome.accepted_bitmap)
    }

    assert slashed == rejected
    honest = {m.address for m in run.swarm.members} - {attacker}
    assert not any(isinstance(e, Slashed) and e.node in honest for e in run.events)


def test_accuracy_is_within_three_points_of_the_run_without_the_attacker(run: Run) -> None:
    spec = run.spec
    reference = task_splits(spec)[1]
    seeds = {e.round: e.seed for e in run.events if isinstance(e, RoundOpened)}
    honest = [m for m in run.swarm.members if m.index != ATTACKER]
    data = {m.address: load_npz(m.data) for m in honest}
    states = {0: run.checkpoints[0]}
    base_of = {0: 0}
    base_round = 0
    for r in ROUNDS:
        base = states[base_round]
        contributions = [
            Contribution(
                run.indices[m.address],
                m.address,
                len(data[m.address]),
                local_update(spec, base.state, data[m.address], round_id=r, node=m.address).delta,
            )
            for m in honest
        ]
        step = None if base_round == 0 else aggregate_of(base, states[base_of[base_round]])
        inputs = RoundInputs(
            chain_id=run.swarm.deployment.chain_id,
            coordinator=run.swarm.deployment.coordinator,
            round=r,
            seed=seeds[r],
            reward=0,
            spec=spec,
            base=base,
            step=step,
            reference=reference,
            submissions=(),
        )
        states[r] = combine_round(inputs, contributions).checkpoint
        base_of[r] = base_round
        base_round = r
    cpu = torch.device("cpu")
    attacked = evaluate(spec, run.checkpoints[ROUNDS[-1]].state, run.swarm.test_set, device=cpu)
    baseline = evaluate(spec, states[ROUNDS[-1]].state, run.swarm.test_set, device=cpu)

    assert attacked.accuracy >= baseline.accuracy - 0.03, (attacked, baseline)
    assert baseline.accuracy > 0.8  # the task learns: the comparison means something


def test_every_accepted_member_claimed_what_the_round_allocated(run: Run) -> None:
    claimed = {(e.round, e.account): e.amount for e in run.events if isinstance(e, Claimed)}
    finalized = {e.round: e for e in run.events if isinstance(e, RoundFinalized)}
    for r in ROUNDS:
        accepted = decode_bitmap(finalized[r].outcome.accepted_bitmap)
        for member in run.swarm.members:
            tree = load_reward_tree(member.journal / "rewards", r)
            if run.indices[member.address] not in accepted:
                assert claimed.get((r, member.address), 0) == 0
                continue
            assert tree is not None, f"{member.index} kept no reward tree of round {r}"
            assert tree.root == finalized[r].outcome.rewards_root
            owed = tree.amount_of(member.address)
            assert claimed.get((r, member.address), 0) == owed


def test_a_node_with_its_own_store_trades_blocks_over_the_gateway(run: Run) -> None:
    loner = run.swarm.members[LONER].address
    reveals = [e for e in run.events if isinstance(e, Revealed)]
    own = [e.cid for e in reveals if e.node == loner]
    others = [e.cid for e in reveals if e.node != loner]
    with EmbeddedStore(run.swarm.workdir / "loner-store") as private:
        assert all(private.read_block(CID.parse(cid)) is not None for cid in others + own)
    with EmbeddedStore(run.swarm.store) as shared:
        assert all(shared.read_block(CID.parse(cid)) is not None for cid in own)


def test_an_encrypting_node_is_read_and_accepted_by_its_peers(run: Run) -> None:
    node = run.swarm.members[ENCRYPTING].address
    index = run.indices[node]
    with EmbeddedStore(run.swarm.store) as store:
        for e in run.events:
            if isinstance(e, Revealed) and e.node == node:
                manifest = json.loads(store.get(e.cid))["manifest"]
                assert is_encrypted(store.get(manifest["update_cid"]))
    for e in run.events:
        if isinstance(e, RoundFinalized):
            assert index in decode_bitmap(e.outcome.accepted_bitmap)
