"""Rewards end to end on a real Anvil: real updates verified and valued off-chain, the free-rider
rejected, unpaid and slashable, two rounds finalized with the reward root, and `swarm rewards
claim` (a real process) paying exactly the allocation of every unclaimed round, once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import swarm_params

from swarmchain.incentives.claims import ClaimStatus, claim_all, save_reward_tree
from swarmchain.incentives.freeriders import free_riders
from swarmchain.incentives.game import round_utility
from swarmchain.incentives.merkle import RewardTree
from swarmchain.incentives.settlement import RoundRewards, settle_round
from swarmchain.node.chain.deployment import save_deployment
from swarmchain.node.chain.protocol import Outcome, Phase, encode_bitmap
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness
from swarmchain.node.learning.data import task_splits
from swarmchain.node.learning.training import State, genesis_state, train_local
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import ValuationSpec, default_task
from swarmchain.node.runtime.session import REWARDS_DIR

pytestmark = pytest.mark.integration

STAKE = 1_000
REWARD = 1_000_003  # not a multiple of anything, so rounding has work to do
PARAMS = swarm_params(
    task_spec_hash="0x" + "cd" * 32,
    min_stake=STAKE,
    reward_per_round=REWARD,
    reward_pool=10 * REWARD,
)
SWARM = Path(sys.executable).parent / "swarm"


@dataclasses.dataclass(frozen=True)
class Settled:
    rounds: list[int]  # two finalized rounds paying the same allocation
    members: list[HarnessMember]  # three honest members, then the free-rider
    rewards: RoundRewards
    journal: Path  # holds the reward trees in journal/rewards, as a node keeps them
    deployment_file: Path


def _updates() -> tuple[list[State], list[int]]:
    """Three honest updates on digits and one free-rider sending the base model back."""
    spec = dataclasses.replace(default_task(), valuation=ValuationSpec(utility="neg_loss"))
    pool, _ = task_splits(spec)
    base = genesis_state(spec)
    updates, samples = [], []
    for i, size in enumerate([60, 90, 120]):
        part = pool.subset(np.arange(100 + 150 * i, 100 + 150 * i + size))
        update = train_local(spec, base, part, seed=i)
        updates.append(update.delta)
        samples.append(update.num_samples)
    updates.append({name: torch.zeros_like(t) for name, t in updates[0].items()})
    samples.append(100)
    return updates, samples


def _settle(harness: SwarmHarness, members: list[HarnessMember], round_id: int) -> RoundRewards:
    """Verify and value the round's updates as a node would: flag, reject, value, allocate."""
    spec = dataclasses.replace(default_task(), valuation=ValuationSpec(utility="neg_loss"))
    _, reference = task_splits(spec)
    updates, samples = _updates()
    flagged = free_riders(updates, spec.fixed_point_bits)
    accepted = [i for i in range(len(updates)) if i not in flagged]
    seed = harness.deployer.round_seed(round_id)
    utility = round_utility(
        spec,
        genesis_state(spec),
        [updates[i] for i in accepted],
        [samples[i] for i in accepted],
        reference,
        seed=int.from_bytes(seed, "big"),
    )
    return settle_round(
        utility,
        [members[i].address for i in accepted],
        seed=seed,
        reward=REWARD,
        rejected=[members[i].address for i in flagged],
    )


def _finalize(harness: SwarmHarness, members: list[HarnessMember], rewards: RoundRewards) -> int:
    """Run the current round on chain: everyone commits and reveals, the tuple finalizes."""
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(members, reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    accepted = [harness.deployer.member_info(account).index for account in rewards.values]
    outcome = Outcome(
        checkpoint_hash=content_hash(f"checkpoint {round_id}".encode()),
        checkpoint_cid=f"bafkreicheckpoint{round_id}",
        accepted_bitmap=encode_bitmap(accepted),
        rewards_root=rewards.root,
        reward_total=rewards.tree.total,
    )
    harness.attest_all(members, outcome, round_id)
    harness.deployer.finalize(round_id, outcome)
    return round_id


@pytest.fixture(scope="module")
def settled(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Settled:
    harness = SwarmHarness.deploy(anvil, PARAMS)
    members = harness.join_new(4, STAKE, label="incentives")
    rewards = _settle(harness, members, harness.open_round())
    rounds = [_finalize(harness, members, rewards) for _ in range(2)]
    journal = tmp_path_factory.mktemp("journal")
    for round_id in rounds:
        save_reward_tree(journal / REWARDS_DIR, round_id, rewards.tree)
    deployment_file = journal.parent / "deployment.json"
    save_deployment(harness.deployment, deployment_file)
    return Settled(rounds, members, rewards, journal, deployment_file)


def _claim_cli(anvil: Anvil, settled: Settled, member: HarnessMember) -> str:
    """Run `swarm rewards claim` as a separate process with the member's key."""
    done = subprocess.run(
        [
            str(SWARM),
            "rewards",
            "claim",
            "--deployment",
            str(settled.deployment_file),
            "--rpc",
            anvil.rpc_url,
            "--journal",
            str(settled.journal),
        ],
        env={"SWARM_NODE_KEY": member.private_key, "PATH": str(SWARM.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_claims_every_unclaimed_round_once(anvil: Anvil, settled: Settled) -> None:
    member = settled.members[0]
    amount = settled.rewards.amounts[member.address]
    before = member.client.token.balance_of(member.address)

    first = _claim_cli(anvil, settled, member)
    second = _claim_cli(anvil, settled, member)

    assert member.client.token.balance_of(member.address) - before == 2 * amount
    assert amount > 0
    for round_id in settled.rounds:
        assert f"round {round_id}: claimed {amount} (tx 0x" in first
        assert f"round {round_id}: {amount} already claimed" in second
    assert f"claimed {2 * amount} tokens over 2 round(s)" in first
    assert "claimed 0 tokens over 0 round(s)" in second


def test_every_honest_proof_verifies_in_the_contract(settled: Settled) -> None:
    honest = settled.members[:3]
    token = honest[0].client.token
    before = {m.address: token.balance_of(m.address) for m in honest}

    results = [claim_all(m.client, settled.journal / REWARDS_DIR) for m in honest]

    paid = {m.address: token.balance_of(m.address) - before[m.address] for m in honest}
    assert paid == {m.address: 2 * settled.rewards.amounts[m.address] for m in honest}
    assert sum(paid.values()) == 2 * REWARD
    assert all(r.status == ClaimStatus.CLAIMED for rs in results for r in rs)


def test_free_rider_is_rejected_paid_nothing_and_slashable(anvil: Anvil, settled: Settled) -> None:
    free_rider = settled.members[3]
    client = free_rider.client

    output = _claim_cli(anvil, settled, free_rider)
    # Its commit in the second round settled the first round's slash; the second is applied now.
    stake = client.member_info().stake
    client.slash(settled.rounds[1], free_rider.address)

    assert settled.rewards.amounts[free_rider.address] == 0
    assert free_rider.address not in settled.rewards.values
    assert all(f"round {r}: nothing owed" in output for r in settled.rounds)
    assert stake == STAKE - STAKE * PARAMS.slash_bps // 10_000
    assert client.member_info().stake == stake - stake * PARAMS.slash_bps // 10_000


def test_missing_or_foreign_trees_are_reported_not_claimed(
    settled: Settled, tmp_path: Path
) -> None:
    member = settled.members[1]
    foreign = RewardTree.from_amounts({member.address: REWARD})
    save_reward_tree(tmp_path, settled.rounds[0], foreign)

    results = claim_all(member.client, tmp_path)

    assert [(r.round, r.status) for r in results] == [
        (settled.rounds[0], ClaimStatus.ROOT_MISMATCH),
        (settled.rounds[1], ClaimStatus.NO_TREE),
    ]
    assert not member.client.has_claimed(settled.rounds[0], member.address)
