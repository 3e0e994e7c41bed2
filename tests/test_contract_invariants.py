"""A Hypothesis state machine drives random joins, exits, withdrawals, commits, reveals,
attestations, finalizations, failures, claims, slashes and clock jumps against a real
SwarmCoordinator, and checks after every step (Foundry-style handler with ghost variables):

- token conservation: supply == wallets + coordinator, and the coordinator holds exactly
  staked + pool + outstanding rewards;
- each member's stake equals its ghost (joins - slashes - withdrawals), and the stakes counted at
  the round's open add up to the round's snapshot;
- no double claim (a second claim reverts, and no Claimed event repeats), and the rewards paid
  equal what finalized rounds reserved minus what is still outstanding;
- what is outstanding is exactly what can still be claimed: the unclaimed leaves of the
  finalized trees (a round reserves its tree's total, never more);
- no finalization without quorum: a finalized tuple's stake is the ghost sum of the weights that
  attested it, and at least the required stake;
- a slash really decreases the stake by slashBps of it; in a failed round a revealed member is
  slashable exactly when attested tuples leaving it out hold the required stake together;
- no withdrawal before its unbonding ends.

Every call that reverts must revert with a named contract error, never a panic. Each example
starts from one finalized round (see `one_finalized_round`) and is rolled back afterwards.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from conftest import swarm_params
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from swarmchain.incentives.merkle import RewardTree
from swarmchain.node.chain.events import (
    Attested,
    ChainEvent,
    Claimed,
    Joined,
    Revealed,
    RoundFinalized,
    Slashed,
    Withdrawn,
)
from swarmchain.node.chain.protocol import (
    BPS,
    MemberStatus,
    Outcome,
    Phase,
    Reveal,
    SubmissionState,
    decode_bitmap,
    outcome_key,
    required_stake,
)
from swarmchain.node.chain.reverts import (
    AlreadyClaimed,
    CommitmentMismatch,
    ContractRevert,
    DeadlinePassed,
    NotCommitted,
    NotEligible,
    NotMember,
    PhaseNotStarted,
    UnbondingNotOver,
)
from swarmchain.node.chain.tx import Transaction
from swarmchain.node.devtools.harness import (
    HarnessMember,
    SwarmHarness,
    sample_outcome,
    sample_reveal,
)

pytestmark = pytest.mark.integration

MEMBERS = 5
FUNDS = 1_000  # tokens each pool account starts with
PARAMS = swarm_params(
    slash_bps=2000,
    # Windows far longer than an example's wall-clock time, so the seconds that pass between
    # blocks never move a deadline: a replayed example sees the same phases.
    commit_duration_s=600,
    reveal_duration_s=600,
    attest_duration_s=600,
    unbonding_delay_s=1500,
    reward_per_round=300,
    reward_pool=10_000,
    token_supply=10**7,
)
REWARD = 50  # per accepted member; at most 5 * 50 = 250 <= reward_per_round
MEMBER = st.integers(0, MEMBERS - 1)
SUBSETS = st.sets(MEMBER, min_size=1)
HONEST = st.sampled_from([True, True, True, False])  # mostly honest, so rounds finalize


@pytest.fixture(scope="module")
def pool(harness: SwarmHarness) -> list[HarnessMember]:
    return [harness.new_member(FUNDS, "fuzz") for _ in range(MEMBERS)]


class SwarmMachine(RuleBasedStateMachine):
    """Random valid and invalid actions of five accounts against one swarm."""

    def __init__(self, harness: SwarmHarness, pool: list[HarnessMember]) -> None:
        super().__init__()
        self.h = harness
        self.c = harness.deployer
        self.pool = pool
        self.snapshot = harness.rpc("evm_snapshot", [])
        self.supply = self.c.token.total_supply()
        self.wallets = [self.c.account, *(m.address for m in pool)]
        self.ghost_stake = {m.address: 0 for m in pool}
        self.reveals: dict[tuple[int, str], Reveal] = {}  # committed, by (round, node)
        self.revealed: set[tuple[int, str]] = set()
        self.weights: dict[tuple[int, bytes], int] = {}
        self.tuples: dict[tuple[int, bytes], Outcome] = {}  # attested, by (round, key)
        self.trees: dict[int, RewardTree] = {}
        self.claimed: set[tuple[int, str]] = set()
        self.paid = 0
        self.budgets = 0  # reserved by finalized rounds
        self.closed: list[int] = []
        self.failed: list[int] = []
        self.info = self.c.round_info()  # the open round, re-read after every step

    def teardown(self) -> None:
        self.h.rpc("evm_revert", [self.snapshot])

    # ---- sending and bookkeeping -------------------------------------------------------------

    def send(
        self, member: HarnessMember, function: str, *args: Any
    ) -> Transaction | ContractRevert:
        """Send without look-before-send; a revert must be a named contract error."""
        sender = member.client.sender
        assert sender is not None
        try:
            tx = sender.send(member.client.contract.functions[function](*args), function)
        except ContractRevert as err:
            return err
        self.record(tx.events)
        return tx

    def record(self, events: tuple[ChainEvent, ...]) -> None:
        for event in events:
            if isinstance(event, Joined):
                self.ghost_stake[event.node] += event.stake
            elif isinstance(event, Slashed):
                self.ghost_stake[event.node] -= event.amount
            elif isinstance(event, Revealed):
                self.revealed.add((event.round, event.node))
            elif isinstance(event, Withdrawn):
                self.ghost_stake[event.node] -= event.amount
            elif isinstance(event, Attested):
                key = (event.round, event.outcome_key)
                self.weights[key] = self.weights.get(key, 0) + event.weight
                self.tuples[key] = event.outcome
                assert event.outcome_stake == self.weights[key]
            elif isinstance(event, RoundFinalized):
                attested = self.weights.get((event.round, event.outcome_key), 0)
                assert event.outcome_stake == attested
                assert attested >= required_stake(event.stake_at_open, PARAMS.quorum_bps)
                self.closed.append(event.round)
                self.budgets += event.reward_budget
            elif isinstance(event, Claimed):
                assert (event.round, event.account) not in self.claimed, "double claim"
                self.claimed.add((event.round, event.account))
                self.paid += event.amount

    def outcome(self, round_id: int, honest: bool, rival: int = 0) -> tuple[Outcome, RewardTree]:
        """The tuple honest members attest (revealers accepted and paid), or one of two rival
        ones (nobody accepted), so that a failed round can hold quorum against a revealer."""
        revealers = [m.address for m in self.pool if (round_id, m.address) in self.revealed]
        if not honest or not revealers:
            return sample_outcome([], {}, label=f"rival {rival} {round_id}")
        indices = [self.c.member_info(address).index for address in revealers]
        return sample_outcome(indices, dict.fromkeys(revealers, REWARD), label=f"honest {round_id}")

    # ---- rules -------------------------------------------------------------------------------

    @initialize()
    def one_finalized_round(self) -> None:
        """Three members join; in their first round two reveal, the third never does, and the
        round finalizes: every example starts with a claimable tree and a slashable offence."""
        founders = self.pool[:3]
        for member in founders:
            member.client.token.ensure_allowance(self.c.address, 200)
            self.send(member, "join", 200, member.ed25519_key, member.x25519_key)
        self.h.advance_to(self.info.attest_deadline)
        self.fail_round()
        round_id = self.c.current_round()
        for member in founders:
            self.commit(member, round_id)
        for member in founders[:2]:
            self.reveal(member, round_id, honest=True)
        self.h.advance_to_phase(Phase.ATTEST)
        outcome = self.outcome(round_id, honest=True)[0].as_abi()
        for member in founders:
            self.send(member, "attest", round_id, outcome)
        self.finalize(round_id, honest=True)
        assert self.trees, "the founding round did not finalize"
        self.info = self.c.round_info()

    @rule(who=SUBSETS, honest=HONEST, advance=st.sampled_from([False, False, True]))
    def play(self, who: set[int], honest: bool, advance: bool) -> None:
        """The members in `who` do what the open window asks of them; then maybe time moves on
        to the next window. (One rule for the whole round lifecycle, so random runs finalize.)"""
        phase, round_id = self.info.phase, self.info.round
        for i in sorted(who):
            if phase == Phase.COMMIT:
                self.commit(self.pool[i], round_id)
            elif phase == Phase.REVEAL:
                self.reveal(self.pool[i], round_id, honest)
            elif phase == Phase.ATTEST:
                outcome = self.outcome(round_id, honest, rival=i % 2)[0]
                self.send(self.pool[i], "attest", round_id, outcome.as_abi())
        if phase >= Phase.ATTEST:
            self.finalize(round_id, honest)
        if phase == Phase.ENDED:
            self.fail_round()
        if advance:
            ends = (self.info.commit_deadline, self.info.reveal_deadline, self.info.attest_deadline)
            upcoming = [t for t in ends if t > self.h.timestamp()]
            self.h.advance_to(upcoming[0] if upcoming else self.h.timestamp() + 1)

    @rule(
        i=MEMBER, action=st.sampled_from(["join", "exit", "withdraw"]), stake=st.integers(50, 400)
    )
    def membership(self, i: int, action: str, stake: int) -> None:
        member = self.pool[i]
        if action == "join":
            member.client.token.ensure_allowance(self.c.address, stake)
            self.send(member, "join", stake, member.ed25519_key, member.x25519_key)
        elif action == "exit":
            self.send(member, "exit")
        else:
            self.withdraw(member)

    @rule(
        i=MEMBER,
        action=st.sampled_from(["claim", "slash", "slashRejected"]),
        pick=st.integers(0, 7),
    )
    def settle(self, i: int, action: str, pick: int) -> None:
        if action == "claim" and self.trees:
            rounds = sorted(self.trees)
            self.claim(self.pool[i], rounds[pick % len(rounds)])
        elif action == "slash" and self.closed:
            self.slash(self.pool[i], self.closed[pick % len(self.closed)])
        elif action == "slashRejected" and self.closed:
            self.slash_rejected(self.pool[i], self.closed[pick % len(self.closed)])

    @rule(
        i=MEMBER,
        action=st.sampled_from(["commit", "reveal", "attest", "wait"]),
        seconds=st.sampled_from([1, 2000]),
    )
    def disorder(self, i: int, action: str, seconds: int) -> None:
        """Out-of-window actions revert with the window's named error; or time jumps."""
        if action == "wait":
            self.h.advance(seconds)
            return
        wanted = {"commit": Phase.COMMIT, "reveal": Phase.REVEAL, "attest": Phase.ATTEST}[action]
        if self.info.phase == wanted:
            return
        # Anvil stamps a new block with the wall clock: on a slow machine the block that mines
        # this call could fall in the next window. Pin it to one second after the latest block,
        # and only send when no deadline falls in that second.
        at = self.h.timestamp() + 1
        info = self.info
        if at in (info.commit_deadline, info.reveal_deadline, info.attest_deadline):
            return
        self.h.rpc("evm_setNextBlockTimestamp", [at])
        member, round_id = self.pool[i], self.info.round
        reveal = sample_reveal(member.address, round_id)
        args: dict[str, tuple[Any, ...]] = {
            "commit": (round_id, member.client.commitment_for(reveal, round_id)),
            "reveal": (round_id, reveal.cid, reveal.content_hash, reveal.num_samples, reveal.salt),
            "attest": (round_id, self.outcome(round_id, True)[0].as_abi()),
        }
        result = self.send(member, action, *args[action])
        expected = PhaseNotStarted if self.info.phase < wanted else DeadlinePassed
        assert isinstance(result, expected | NotMember | NotEligible | NotCommitted), result

    # ---- actions -----------------------------------------------------------------------------

    def commit(self, member: HarnessMember, round_id: int) -> None:
        reveal = sample_reveal(member.address, round_id)
        commitment = member.client.commitment_for(reveal, round_id)
        if isinstance(self.send(member, "commit", round_id, commitment), Transaction):
            self.reveals[(round_id, member.address)] = reveal

    def reveal(self, member: HarnessMember, round_id: int, honest: bool) -> None:
        reveal = self.reveals.get((round_id, member.address))
        if reveal is None:
            reveal = sample_reveal(member.address, round_id)
        samples = reveal.num_samples + (0 if honest else 1)
        args = (round_id, reveal.cid, reveal.content_hash, samples, reveal.salt)
        result = self.send(member, "reveal", *args)
        if not honest:
            assert not isinstance(result, Transaction), "a forged reveal was accepted"
        if isinstance(result, CommitmentMismatch):
            assert not honest

    def finalize(self, round_id: int, honest: bool) -> None:
        for rival in (0, 1) if not honest else (0,):
            outcome, tree = self.outcome(round_id, honest, rival)
            sent = self.send(self.pool[0], "finalize", round_id, outcome.as_abi())
            if isinstance(sent, Transaction):
                self.trees[round_id] = tree
                return

    def fail_round(self) -> None:
        info = self.c.round_info()
        if isinstance(self.send(self.pool[0], "failRound", info.round), Transaction):
            assert info.leading_stake < info.required_stake
            self.closed.append(info.round)
            self.failed.append(info.round)
            for member in self.pool:  # whoever revealed may be slashable now
                if (info.round, member.address) in self.revealed:
                    self.slash_rejected(member, info.round)

    def withdraw(self, member: HarnessMember) -> None:
        ends = self.c.member_info(member.address).unbonding_ends
        result = self.send(member, "withdraw")
        if isinstance(result, Transaction):
            mined_at = self.h.w3.eth.get_block(result.block_number)["timestamp"]
            assert mined_at >= ends, "withdrawal before unbonding ended"
            assert self.c.member_info(member.address).stake == 0
        elif isinstance(result, UnbondingNotOver):
            assert self.h.timestamp() < ends

    def claim(self, claimer: HarnessMember, round_id: int) -> None:
        tree = self.trees[round_id]
        for account in (m.address for m in self.pool):
            if tree.amount_of(account) == 0:
                continue
            args = (round_id, account, tree.amount_of(account), tree.proof(account))
            already = (round_id, account) in self.claimed
            result = self.send(claimer, "claim", *args)  # anyone may claim for anyone
            if already:
                assert isinstance(result, AlreadyClaimed), "a second claim did not revert"

    def slash(self, member: HarnessMember, round_id: int) -> None:
        before = self.c.member_info(member.address).stake
        if isinstance(self.send(self.pool[0], "slash", round_id, member.address), Transaction):
            after = self.c.member_info(member.address).stake
            assert after == before - before * PARAMS.slash_bps // BPS
            assert before < 5 or after < before, "a slash left the stake unchanged"

    def slash_rejected(self, member: HarnessMember, round_id: int) -> None:
        """Offer every attested tuple that leaves the member out; it must be slashed exactly
        when the round failed, it revealed, and those tuples hold the required stake."""
        index = self.c.member_info(member.address).index
        stakes = {o: self.weights[(r, k)] for (r, k), o in self.tuples.items() if r == round_id}
        against = sorted(
            (o for o in stakes if index not in decode_bitmap(o.accepted_bitmap)), key=outcome_key
        )
        at_quorum = sum(stakes[o] for o in against) >= self.c.round_info(round_id).required_stake
        due = (
            round_id in self.failed
            and self.c.submission(round_id, member.address).state == SubmissionState.REVEALED
            and at_quorum
        )
        before = self.c.member_info(member.address).stake
        tuples = [o.as_abi() for o in against]
        result = self.send(self.pool[0], "slashRejected", round_id, member.address, tuples)
        assert isinstance(result, Transaction) == due, result
        if due:
            after = self.c.member_info(member.address).stake
            assert after == before - before * PARAMS.slash_bps // BPS

    # ---- invariants --------------------------------------------------------------------------

    @invariant()
    def accounts_add_up(self) -> None:
        token, coordinator = self.c.token.contract.functions, self.c.contract.functions
        totals = ["totalStaked", "rewardPool", "rewardsOutstanding", "activeStake"]
        holders = [self.c.address, *self.wallets]
        with self.h.w3.batch_requests() as batch:  # one round trip for every read of the step
            for address in holders:
                batch.add(token.balanceOf(address))
            for name in totals:
                batch.add(coordinator[name]())
            for member in self.pool:
                batch.add(coordinator.memberInfo(member.address))
            batch.add(coordinator.currentRound())
            replies = batch.execute()
        balances = replies[: len(holders)]
        staked, reward_pool, outstanding, active_stake = replies[len(holders) : -6]
        infos = [MemberInfoView(*info) for info in replies[-6:-1]]

        assert sum(balances) == self.supply, "tokens were created or destroyed"
        assert balances[0] == staked + reward_pool + outstanding
        assert self.budgets - outstanding == self.paid
        claimable = sum(
            entry.amount
            for r, tree in self.trees.items()
            for entry in tree.entries
            if (r, entry.account) not in self.claimed
        )
        assert outstanding == claimable, "reserved rewards nobody can claim"
        assert [i.stake for i in infos] == [self.ghost_stake[m.address] for m in self.pool]
        assert sum(i.stake for i in infos) == staked
        assert sum(i.stake for i in infos if i.status == MemberStatus.ACTIVE) == active_stake
        self.info = self.c.round_info(replies[-1])
        assert sum(i.stake_at_open for i in infos) == self.info.stake_at_open


class MemberInfoView(NamedTuple):
    """``memberInfo`` as the batch returns it (ABI order)."""

    status: int
    registered: bool
    index: int
    stake: int
    stake_at_open: int
    unbonding_ends: int
    last_commit_round: int
    last_attest_round: int
    ed25519_key: bytes
    x25519_key: bytes


def test_random_actions_keep_the_swarm_invariants(
    harness: SwarmHarness, pool: list[HarnessMember]
) -> None:
    run_state_machine_as_test(
        lambda: SwarmMachine(harness, pool),
        settings=settings(
            max_examples=4,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
