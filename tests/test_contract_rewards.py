"""SwarmCoordinator slashing and rewards on a real Anvil: lazy slashes against the finalized
record, settlement at the next commit, forced exits, Merkle claims and the per-round budget,
which is exactly what the round's tree pays."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import swarm_params

from swarmchain.incentives.merkle import RewardTree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.events import (
    Claimed,
    Committed,
    ExitRequested,
    RoundFinalized,
    Slashed,
    Transfer,
)
from swarmchain.node.chain.protocol import (
    MemberStatus,
    Outcome,
    Phase,
    SlashReason,
    SubmissionState,
)
from swarmchain.node.chain.reverts import (
    AlreadyClaimed,
    AlreadySlashed,
    InvalidProof,
    NotSlashable,
    RewardBudgetExceeded,
    RewardTotalTooHigh,
    RoundNotClosed,
    RoundNotFinalized,
    ZeroAmount,
)
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness, sample_outcome

pytestmark = pytest.mark.integration

STAKE = 1_000
BUDGET = 1_000
MEMBERS = 4  # joined by the `members` fixture
PARAMS = swarm_params(
    min_stake=950,  # one 10 % slash of a 1000 stake drops below it
    reward_per_round=BUDGET,
)


def run_round(
    harness: SwarmHarness,
    members: list[HarnessMember],
    *,
    revealers: list[HarnessMember],
    accepted: list[int],
    rewards: dict[str, int],
    total: int | None = None,
) -> tuple[int, Outcome, RewardTree]:
    """All members commit, `revealers` reveal, everyone attests `accepted`; finalized.
    `total` overrides the tuple's reward total (a tree whose total lies)."""
    c = harness.deployer
    round_id = c.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(revealers, reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    outcome, tree = sample_outcome(accepted, rewards, label=f"checkpoint {round_id}")
    if total is not None:
        outcome = replace(outcome, reward_total=total)
    harness.attest_all(members, outcome, round_id)
    c.finalize(round_id, outcome)
    return round_id, outcome, tree


@pytest.fixture
def finalized(
    harness: SwarmHarness, members: list[HarnessMember]
) -> tuple[int, Outcome, RewardTree]:
    """Round 2 finalized: member 0 never revealed, member 1 revealed but was rejected,
    members 2 and 3 were accepted and rewarded 300 and 700."""
    rewards = {members[2].address: 300, members[3].address: 700}
    return run_round(harness, members, revealers=members[1:], accepted=[2, 3], rewards=rewards)


# ---- slashing --------------------------------------------------------------------------------


def test_slash_of_a_non_revealer_moves_stake_to_the_pool(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    round_id = finalized[0]
    c = harness.deployer
    pool = c.totals().reward_pool

    tx = c.slash(round_id, members[0].address)

    assert tx is not None
    slashed, forced_exit = tx.events
    assert isinstance(slashed, Slashed) and isinstance(forced_exit, ExitRequested)
    assert (slashed.reason, slashed.amount, slashed.remaining_stake) == (
        SlashReason.NOT_REVEALED,
        100,
        900,
    )
    assert forced_exit.forced  # 900 < min stake 950
    assert c.member_info(members[0].address).stake == 900
    assert c.member_info(members[0].address).status == MemberStatus.EXITING
    assert c.totals().reward_pool == pool + 100
    assert c.submission(round_id, members[0].address).state == SubmissionState.SLASHED
    assert c.slash(round_id, members[0].address) is None


def test_slash_of_a_rejected_submitter(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    tx = harness.deployer.slash(finalized[0], members[1].address)
    assert tx is not None
    slashed = tx.events[0]
    assert isinstance(slashed, Slashed) and slashed.reason == SlashReason.REJECTED


def test_second_slash_reverts(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    c = harness.deployer
    c.slash(finalized[0], members[1].address)
    assert c.sender is not None
    fn = c.contract.functions.slash(finalized[0], members[1].address)
    with pytest.raises(AlreadySlashed):
        c.sender.send(fn, "slash")


def test_accepted_members_are_not_slashable(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    with pytest.raises(NotSlashable) as info:
        harness.deployer.slash(finalized[0], members[2].address)
    assert info.value.values["state"] == SubmissionState.REVEALED


def test_slash_in_an_open_round_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id = harness.deployer.current_round()
    harness.commit_all(members[:1], round_id)
    with pytest.raises(RoundNotClosed):
        harness.deployer.slash(round_id, members[0].address)


def test_a_failed_round_slashes_non_revealers_only(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id = c.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(members[1:], reveals, round_id)
    harness.advance_to_phase(Phase.ENDED)
    c.fail_round(round_id)
    with pytest.raises(NotSlashable):
        c.slash(round_id, members[1].address)
    tx = c.slash(round_id, members[0].address)
    assert tx is not None and isinstance(tx.events[0], Slashed)


def test_the_next_commit_settles_a_slash_nobody_applied(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    """Moving on to the next round cannot dodge a slash: committing applies it first."""
    member = members[1]
    round_id = harness.deployer.current_round()
    reveal_round = finalized[0]

    tx = member.client.commit(round_id, b"\x33" * 32)

    assert tx is not None
    slashed, committed = tx.events[0], tx.events[-1]
    assert isinstance(slashed, Slashed) and isinstance(committed, Committed)
    assert (slashed.round, slashed.reason) == (reveal_round, SlashReason.REJECTED)
    assert member.client.member_info().stake == 900


# ---- claims ----------------------------------------------------------------------------------


def test_claim_pays_once(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    round_id, _, tree = finalized
    c = harness.deployer
    winner = members[3].address
    balance = c.token.balance_of(winner)

    tx = c.claim(round_id, winner, 700, tree.proof(winner))  # anyone may send it

    assert tx is not None
    claimed, transfer = tx.events
    assert isinstance(claimed, Claimed) and (claimed.account, claimed.amount) == (winner, 700)
    assert isinstance(transfer, Transfer) and transfer.receiver == winner
    assert c.token.balance_of(winner) == balance + 700
    assert c.has_claimed(round_id, winner)
    assert c.round_info(round_id).reward_remaining == BUDGET - 700
    assert c.claim(round_id, winner, 700, tree.proof(winner)) is None
    assert c.sender is not None
    again = c.contract.functions.claim(round_id, winner, 700, tree.proof(winner))
    with pytest.raises(AlreadyClaimed):
        c.sender.send(again, "claim")


def test_claim_with_a_wrong_proof_reverts(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    round_id, _, tree = finalized
    winner, other = members[3].address, members[2].address
    with pytest.raises(InvalidProof):
        harness.deployer.claim(round_id, winner, 700, tree.proof(other))
    with pytest.raises(InvalidProof) as info:
        harness.deployer.claim(round_id, winner, 701, tree.proof(winner))
    assert info.value.values == {"round": round_id, "account": winner, "amount": 701}


def test_claims_cannot_exceed_the_round_budget(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    """A tuple whose total understates its tree pays first come, first served up to the total."""
    greedy = {members[2].address: BUDGET, members[3].address: 1}
    round_id, _, tree = run_round(
        harness, members, revealers=members, accepted=[0, 1, 2, 3], rewards=greedy, total=BUDGET
    )
    c = harness.deployer
    c.claim(round_id, members[2].address, BUDGET, tree.proof(members[2].address))
    with pytest.raises(RewardBudgetExceeded) as info:
        c.claim(round_id, members[3].address, 1, tree.proof(members[3].address))
    assert info.value.values["remaining"] == 0


def test_claim_before_finalization_reverts(harness: SwarmHarness) -> None:
    with pytest.raises(RoundNotFinalized):
        harness.deployer.claim(harness.deployer.current_round(), harness.deployer.account, 1, [])


def test_claim_of_zero_reverts(
    harness: SwarmHarness, finalized: tuple[int, Outcome, RewardTree]
) -> None:
    with pytest.raises(ZeroAmount):
        harness.deployer.claim(finalized[0], harness.deployer.account, 0, [])


def test_the_budget_is_capped_by_the_pool(harness: SwarmHarness) -> None:
    """With a nearly empty pool a finalized round reserves only what is left."""
    small = SwarmHarness.deploy(harness.anvil, replace(PARAMS, reward_pool=40))
    members = small.join_new(3, STAKE, "small")
    small.open_round()
    round_id, _, _ = run_round(
        small, members, revealers=members, accepted=[0, 1, 2], rewards={members[0].address: 40}
    )
    info = small.deployer.round_info(round_id)
    assert info.reward_remaining == 40
    totals = small.deployer.totals()
    assert totals.reward_pool == 0 and totals.rewards_outstanding == 40


# ---- the reserved budget is what the tree pays -------------------------------------------------


def unclaimed(c: Coordinator, finalized: dict[int, RewardTree]) -> int:
    """What the finalized trees still owe: the sum of their unclaimed leaves."""
    return sum(
        entry.amount
        for round_id, tree in finalized.items()
        for entry in tree.entries
        if not c.has_claimed(round_id, entry.account)
    )


def test_funding_mid_round_leaves_the_new_tokens_in_the_pool(harness: SwarmHarness) -> None:
    """The tree pays the pool at the open (400); the 600 funded mid-round stay in the pool."""
    small = SwarmHarness.deploy(harness.anvil, replace(PARAMS, reward_pool=400))
    members = small.join_new(3, STAKE, "funded")
    small.open_round()
    c = small.deployer
    rewards = {members[0].address: 150, members[1].address: 250}
    round_id = c.current_round()
    reveals = small.commit_all(members, round_id)
    small.advance_to_phase(Phase.REVEAL)
    small.reveal_all(members, reveals, round_id)
    c.fund_rewards(600)
    small.advance_to_phase(Phase.ATTEST)
    outcome, tree = sample_outcome([0, 1, 2], rewards, label="funded mid-round")
    small.attest_all(members, outcome, round_id)

    tx = c.finalize(round_id, outcome)

    assert tx is not None and isinstance(tx.events[0], RoundFinalized)
    assert tx.events[0].reward_budget == outcome.reward_total == 400
    totals = c.totals()
    assert (totals.reward_pool, totals.rewards_outstanding) == (600, 400)
    assert totals.rewards_outstanding == unclaimed(c, {round_id: tree})
    for member in members[:2]:
        c.claim(round_id, member.address, rewards[member.address], tree.proof(member.address))
    assert c.totals().rewards_outstanding == unclaimed(c, {round_id: tree}) == 0
    assert c.round_info(round_id).reward_remaining == 0


def test_a_round_that_pays_nobody_reserves_nothing(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    before = c.totals()

    round_id, outcome, tree = run_round(
        harness, members, revealers=members, accepted=[0, 1, 2, 3], rewards={}
    )

    after = c.totals()
    assert outcome.reward_total == tree.total == 0
    assert (after.reward_pool, after.rewards_outstanding) == (
        before.reward_pool,
        before.rewards_outstanding,
    )
    assert c.round_info(round_id).reward_remaining == 0


def test_outstanding_is_exactly_what_the_trees_still_owe(
    harness: SwarmHarness,
    members: list[HarnessMember],
    finalized: tuple[int, Outcome, RewardTree],
) -> None:
    c = harness.deployer
    first, _, first_tree = finalized
    second, _, second_tree = run_round(
        harness, members, revealers=members, accepted=[0, 1], rewards={members[0].address: 55}
    )
    trees = {first: first_tree, second: second_tree}
    assert c.totals().rewards_outstanding == unclaimed(c, trees) == 1_055

    c.claim(first, members[3].address, 700, first_tree.proof(members[3].address))

    assert c.totals().rewards_outstanding == unclaimed(c, trees) == 355


def test_attest_refuses_a_total_above_the_round_budget(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id = c.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(members, reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    outcome, _ = sample_outcome([0, 1, 2, 3], {members[0].address: BUDGET + 1})

    with pytest.raises(RewardTotalTooHigh) as info:
        members[0].client.attest(round_id, outcome)

    assert info.value.values == {"round": round_id, "rewardTotal": BUDGET + 1, "available": BUDGET}


def test_attest_refuses_a_total_above_the_pool(harness: SwarmHarness) -> None:
    """Refused at attest, a tuple no pool can pay never gathers stake, so it cannot leave a
    round that neither finalizes nor fails."""
    small = SwarmHarness.deploy(harness.anvil, replace(PARAMS, reward_pool=40))
    members = small.join_new(3, STAKE, "poor")
    small.open_round()
    round_id = small.deployer.current_round()
    reveals = small.commit_all(members, round_id)
    small.advance_to_phase(Phase.REVEAL)
    small.reveal_all(members, reveals, round_id)
    small.advance_to_phase(Phase.ATTEST)
    outcome, _ = sample_outcome([0, 1, 2], {members[0].address: 41})

    with pytest.raises(RewardTotalTooHigh) as info:
        members[0].client.attest(round_id, outcome)

    assert info.value.values["available"] == 40
