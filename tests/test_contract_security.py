"""Attacks on the contracts, on a real Anvil: reentrancy through token callbacks, unauthorised
calls, front-run commits and reveals, and replayed attestations. Every attack reverts with its
named error, and the books still balance afterwards (the coordinator holds exactly the staked,
pooled and reserved tokens).

The reentrancy tests deploy a coordinator over `tests/contracts/src/HookToken.sol`, a hostile
ERC-20 that calls sender and recipient on every transfer, and attack it from
`tests/contracts/src/Reenterer.sol`; both are compiled here and never shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import HOUR, raw, swarm_params
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3RPCError

from swarmchain.node.chain.abis import abi_of
from swarmchain.node.chain.deploy import deploy_swarm
from swarmchain.node.chain.protocol import MemberStatus, Outcome, Phase, Reveal, SubmissionState
from swarmchain.node.chain.reverts import (
    AlreadyAttested,
    AlreadyClaimed,
    AlreadyMember,
    CommitmentMismatch,
    ContractRevert,
    ERC20InsufficientAllowance,
    InvalidProof,
    NotActive,
    NotCommitted,
    NotEligible,
    NotExiting,
    NotMember,
    NotSlashable,
    QuorumNotReached,
    QuorumReached,
    RejectionBelowQuorum,
    RoundAlreadyFinalized,
    RoundNotClosed,
    RoundNotExpired,
    WrongRound,
    ZeroAmount,
    decode_revert,
)
from swarmchain.node.chain.solidity import compile_sources
from swarmchain.node.chain.tx import Sender, Transaction
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import (
    HarnessMember,
    SwarmHarness,
    sample_outcome,
    sample_reveal,
)

pytestmark = pytest.mark.integration

TEST_CONTRACTS = Path(__file__).parent / "contracts" / "src"
STAKE = 1_000
MEMBERS = 4  # joined by the `members` fixture
PARAMS = swarm_params()
# The coordinator's whole write surface. There is no owner, admin, pause or upgrade function:
# adding any write function makes this test fail until its attack tests exist.
WRITE_FUNCTIONS = {
    "join",
    "exit",
    "withdraw",
    "fundRewards",
    "commit",
    "reveal",
    "attest",
    "finalize",
    "failRound",
    "slash",
    "slashRejected",
    "claim",
}


def _assert_books_balance(harness: SwarmHarness) -> None:
    """The coordinator holds exactly the tokens its ledgers account for."""
    totals = harness.deployer.totals()
    held = harness.deployer.token.balance_of(harness.deployment.coordinator)
    assert held == totals.total_staked + totals.reward_pool + totals.rewards_outstanding


# ---- a swarm over the real SwarmToken ------------------------------------------------------------


@pytest.fixture(scope="module")
def stranger(harness: SwarmHarness, members: list[HarnessMember]) -> HarnessMember:
    """Funded with tokens and gas, never joined."""
    return harness.new_member(STAKE, "stranger")


def _finalize_round(
    harness: SwarmHarness, members: list[HarnessMember], rewards: dict[str, int]
) -> tuple[int, Outcome, Any]:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, tree = sample_outcome(range(len(members)), rewards, label=f"checkpoint {round_id}")
    harness.attest_all(members, outcome, round_id)
    harness.deployer.finalize(round_id, outcome)
    return round_id, outcome, tree


def test_the_coordinator_has_no_admin_surface() -> None:
    writes = {
        entry["name"]
        for entry in abi_of("SwarmCoordinator")
        if entry["type"] == "function" and entry["stateMutability"] not in ("view", "pure")
    }
    assert writes == WRITE_FUNCTIONS
    kinds = {entry["type"] for entry in abi_of("SwarmCoordinator")}
    assert not kinds & {"receive", "fallback"}  # ether sent to it bounces


def test_the_token_cannot_be_minted_after_deployment() -> None:
    writes = {
        entry["name"]
        for entry in abi_of("SwarmToken")
        if entry["type"] == "function" and entry["stateMutability"] not in ("view", "pure")
    }
    assert writes == {"approve", "transfer", "transferFrom"}


# Each row: who calls what, in which state, and the named error it must meet.
UNAUTHORISED: list[
    tuple[
        str, Callable[[SwarmHarness, list[HarnessMember], HarnessMember], Any], type[ContractRevert]
    ]
] = [
    ("stranger commits", lambda h, m, s: raw(s, "commit", 2, b"\x11" * 32), NotMember),
    ("stranger attests", lambda h, m, s: _attest_as(h, m, s), NotMember),
    ("stranger reveals a member's update", lambda h, m, s: _reveal_as(h, m, s), NotCommitted),
    ("stranger exits", lambda h, m, s: raw(s, "exit"), NotActive),
    ("stranger withdraws", lambda h, m, s: raw(s, "withdraw"), NotExiting),
    ("member withdraws without exiting", lambda h, m, s: raw(m[0], "withdraw"), NotExiting),
    ("newcomer commits in its joining round", lambda h, m, s: _newcomer_commits(h, s), NotEligible),
    (
        "anyone finalizes without quorum",
        lambda h, m, s: _finalize_unattested(h, m, s),
        QuorumNotReached,
    ),
    ("anyone fails a round early", lambda h, m, s: raw(s, "failRound", 2), RoundNotExpired),
    ("anyone fails a round at quorum", lambda h, m, s: _fail_at_quorum(h, m, s), QuorumReached),
    (
        "anyone slashes in an open round",
        lambda h, m, s: raw(s, "slash", 2, m[0].address),
        RoundNotClosed,
    ),
    ("anyone slashes an accepted member", lambda h, m, s: _slash_accepted(h, m, s), NotSlashable),
    (
        "a minority's tuple slashes a member of a failed round",
        lambda h, m, s: _slash_by_minority(h, m, s),
        RejectionBelowQuorum,
    ),
    ("stranger claims a member's reward", lambda h, m, s: _claim_stolen(h, m, s), InvalidProof),
    ("stranger funds nothing", lambda h, m, s: raw(s, "fundRewards", 0), ZeroAmount),
    (
        "stranger pulls a member's tokens",
        lambda h, m, s: _pull_tokens(h, m, s),
        ERC20InsufficientAllowance,
    ),
]


def _attest_as(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome([0], {who.address: 1_000})
    return raw(who, "attest", round_id, outcome.as_abi())


def _reveal_as(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    r = reveals[members[0].address]
    return raw(who, "reveal", round_id, r.cid, r.content_hash, r.num_samples, r.salt)


def _newcomer_commits(harness: SwarmHarness, who: HarnessMember) -> Any:
    who.client.join(STAKE, who.ed25519_key, who.x25519_key)
    return raw(who, "commit", harness.deployer.current_round(), b"\x11" * 32)


def _finalize_unattested(
    harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember
) -> Any:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome([0, 1, 2, 3], {who.address: 1_000})
    harness.attest_all(members[:2], outcome, round_id)  # half the stake: below the 2/3 quorum
    return raw(who, "finalize", round_id, outcome.as_abi())


def _fail_at_quorum(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome([0, 1, 2, 3], {})
    harness.attest_all(members[:3], outcome, round_id)
    harness.advance_to_phase(Phase.ENDED)
    return raw(who, "failRound", round_id)


def _slash_accepted(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    round_id, _, _ = _finalize_round(harness, members, {})
    return raw(who, "slash", round_id, members[0].address)


def _slash_by_minority(
    harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember
) -> Any:
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome(range(1, len(members)), {}, label="without member 0")
    harness.attest_all(members[1:2], outcome, round_id)  # a quarter of the stake
    harness.advance_to_phase(Phase.ENDED)
    harness.deployer.fail_round(round_id)
    return raw(who, "slashRejected", round_id, members[0].address, [outcome.as_abi()])


def _claim_stolen(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    round_id, _, tree = _finalize_round(harness, members, {members[0].address: 600})
    # The victim's proof, but paid to the thief: the leaf names the account, so it fails.
    return raw(who, "claim", round_id, who.address, 600, tree.proof(members[0].address))


def _pull_tokens(harness: SwarmHarness, members: list[HarnessMember], who: HarnessMember) -> Any:
    token = harness.deployer.token.contract
    assert who.client.sender is not None
    fn = token.functions.transferFrom(members[0].address, who.address, 1)
    return who.client.sender.send(fn, "transferFrom")


@pytest.mark.parametrize(
    ("attack", "error"),
    [(attack, error) for _, attack, error in UNAUTHORISED],
    ids=[name for name, _, _ in UNAUTHORISED],
)
def test_unauthorised_calls_revert_with_named_errors(
    harness: SwarmHarness,
    members: list[HarnessMember],
    stranger: HarnessMember,
    attack: Callable[[SwarmHarness, list[HarnessMember], HarnessMember], Any],
    error: type[ContractRevert],
) -> None:
    with pytest.raises(error):
        attack(harness, members, stranger)
    _assert_books_balance(harness)


def test_a_stolen_proof_still_pays_only_its_owner(
    harness: SwarmHarness, members: list[HarnessMember], stranger: HarnessMember
) -> None:
    victim = members[0]
    round_id, _, tree = _finalize_round(harness, members, {victim.address: 600})
    before = harness.deployer.token.balance_of(stranger.address)
    raw(stranger, "claim", round_id, victim.address, 600, tree.proof(victim.address))
    assert harness.deployer.token.balance_of(victim.address) == 600
    assert harness.deployer.token.balance_of(stranger.address) == before
    with pytest.raises(AlreadyClaimed):
        raw(victim, "claim", round_id, victim.address, 600, tree.proof(victim.address))


# ---- front-running -------------------------------------------------------------------------------


def _committed(
    harness: SwarmHarness, members: list[HarnessMember]
) -> tuple[int, dict[str, Reveal]]:
    round_id = harness.deployer.current_round()
    return round_id, harness.commit_all(members, round_id)


def test_a_copied_reveal_from_a_committed_member_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    victim, copier = members[0], members[1]
    round_id, reveals = _committed(harness, members)
    r = reveals[victim.address]
    # The copier saw the victim's reveal in the mempool and sends it first, from its account.
    with pytest.raises(CommitmentMismatch):
        raw(copier, "reveal", round_id, r.cid, r.content_hash, r.num_samples, r.salt)
    victim.client.reveal(round_id, r)
    assert harness.deployer.submission(round_id, victim.address).state == SubmissionState.REVEALED
    assert harness.deployer.submission(round_id, copier.address).state == SubmissionState.COMMITTED


def test_a_copied_reveal_from_a_non_committer_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    victim, copier = members[0], members[1]
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all([m for m in members if m is not copier], round_id)
    harness.advance_to_phase(Phase.REVEAL)
    r = reveals[victim.address]
    with pytest.raises(NotCommitted):
        raw(copier, "reveal", round_id, r.cid, r.content_hash, r.num_samples, r.salt)


def test_a_copied_commitment_cannot_be_revealed_and_is_slashed(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    victim, copier = members[0], members[1]
    round_id = harness.deployer.current_round()
    honest = [m for m in members if m is not copier]
    reveals = harness.commit_all(honest, round_id)
    stolen = harness.deployer.submission(round_id, victim.address).commitment
    assert stolen is not None
    copier.client.commit(round_id, stolen)  # accepted: a commitment is opaque
    r = reveals[victim.address]
    # ... but it binds the victim's address, so the free-rider can never open it.
    with pytest.raises(CommitmentMismatch):
        raw(copier, "reveal", round_id, r.cid, r.content_hash, r.num_samples, r.salt)
    harness.reveal_all(honest, reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    outcome, _ = sample_outcome([0, 2, 3], {})
    harness.attest_all(members, outcome, round_id)
    harness.deployer.finalize(round_id, outcome)
    stake = harness.deployer.member_info(copier.address).stake
    harness.deployer.slash(round_id, copier.address)
    assert harness.deployer.member_info(copier.address).stake == stake - stake // 10
    _assert_books_balance(harness)


def test_a_reveal_replayed_into_the_next_round_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    first, _, _ = _finalize_round(harness, members, {})
    old = sample_reveal(members[0].address, first)
    second, _ = _committed(harness, members)
    args = (old.cid, old.content_hash, old.num_samples, old.salt)
    with pytest.raises(CommitmentMismatch):  # the commitment binds the round
        raw(members[0], "reveal", second, *args)
    with pytest.raises(WrongRound):
        raw(members[0], "reveal", first, *args)


def test_a_commitment_copied_from_another_swarm_cannot_be_revealed(
    anvil: Anvil, harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    other = SwarmHarness.deploy(anvil, PARAMS)
    victim = other.join_new(1, STAKE, "elsewhere")[0]
    other.open_round()
    other_round = other.deployer.current_round()
    r = sample_reveal(victim.address, other_round)
    foreign = victim.client.commitment_for(r, other_round)
    copier = members[1]
    round_id = harness.deployer.current_round()
    honest = [m for m in members if m is not copier]
    harness.commit_all(honest, round_id)
    copier.client.commit(round_id, foreign)
    with pytest.raises(CommitmentMismatch):  # the commitment binds the coordinator too
        raw(copier, "reveal", round_id, r.cid, r.content_hash, r.num_samples, r.salt)


# ---- replayed attestations -----------------------------------------------------------------------


def _attest_phase(harness: SwarmHarness, members: list[HarnessMember]) -> tuple[int, Outcome]:
    round_id, reveals = _committed(harness, members)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome(range(len(members)), {}, label=f"checkpoint {round_id}")
    return round_id, outcome


def test_an_attestation_replayed_in_the_same_round_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = _attest_phase(harness, members)
    members[0].client.attest(round_id, outcome)
    with pytest.raises(AlreadyAttested):
        raw(members[0], "attest", round_id, outcome.as_abi())
    assert harness.deployer.outcome_stake(round_id, outcome) == STAKE


def test_a_signed_attestation_rebroadcast_is_refused_by_its_nonce(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = _attest_phase(harness, members)
    member = members[0]
    w3 = harness.w3
    fn = member.client.contract.functions.attest(round_id, outcome.as_abi())
    tx = fn.build_transaction(
        {
            "from": member.address,
            "nonce": w3.eth.get_transaction_count(member.address),
            "gas": 500_000,
            "chainId": w3.eth.chain_id,
        }
    )
    signed = Account.sign_transaction(tx, member.private_key)
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    with pytest.raises(Web3RPCError, match="nonce"):
        w3.eth.send_raw_transaction(signed.raw_transaction)
    assert harness.deployer.outcome_stake(round_id, outcome) == STAKE


def test_an_attestation_replayed_into_a_later_round_counts_nothing(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    first, outcome, _ = _finalize_round(harness, members, {})
    with pytest.raises(RoundAlreadyFinalized):
        raw(members[0], "finalize", first, outcome.as_abi())
    with pytest.raises(WrongRound):
        raw(members[0], "attest", first, outcome.as_abi())
    second, _ = _attest_phase(harness, members)
    # The same tuple in the next round starts from zero stake: last round's votes do not carry.
    assert harness.deployer.outcome_stake(second, outcome) == 0
    members[0].client.attest(second, outcome)
    with pytest.raises(QuorumNotReached):
        raw(members[0], "finalize", second, outcome.as_abi())


# ---- reentrancy through a hostile token ----------------------------------------------------------


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict[str, Any]]:
    return compile_sources(TEST_CONTRACTS)


def _deploy(w3: Web3, key: str, artifact: dict[str, Any], *args: Any) -> Contract:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    account = Account.from_key(key)
    tx = factory.constructor(*args).build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
    )
    signed = account.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


class Attacker:
    """A `Reenterer` contract and the account that drives it."""

    def __init__(self, harness: SwarmHarness, compiled: dict[str, dict[str, Any]]) -> None:
        self.harness = harness
        self.owner = harness.new_member(0, "attacker")
        key = self.owner.private_key
        self.contract = _deploy(
            harness.w3, key, compiled["Reenterer"], harness.deployment.coordinator
        )
        self.address = self.contract.address
        self.sender = Sender(harness.w3, key)
        self.coordinator = harness.deployer.contract
        self.token = harness.w3.eth.contract(
            address=harness.deployment.token, abi=compiled["HookToken"]["abi"]
        )
        self.execute(self.token, "registerHooks")

    def execute(self, target: Contract, function: str, *args: Any) -> Transaction:
        """Call `target.function(args)` as the attacker contract."""
        data = target.encode_abi(function, args=list(args))
        return self.sender.send(self.contract.functions.execute(target.address, data), function)

    def arm(self, function: str, *args: Any) -> None:
        """Re-enter the coordinator with `function(args)` from the next token callback."""
        data = self.coordinator.encode_abi(function, args=list(args))
        self.sender.send(self.contract.functions.arm(data), "arm")

    def reentry(self) -> ContractRevert:
        """The named error the re-entrant call met (fails if it was not sent, or succeeded)."""
        assert self.contract.functions.reentered().call()
        assert not self.contract.functions.reentrySucceeded().call()
        error = decode_revert(bytes(self.contract.functions.reentryResult().call()))
        assert isinstance(error, ContractRevert), error
        return error

    def join(self, *reentry: Any) -> None:
        """Get tokens, approve, arm `reentry` (a function name and its arguments) if given, and
        join; the stake transfer's callback then sends the armed call."""
        self.harness.deployer.token.transfer(self.address, STAKE)
        self.execute(self.token, "approve", self.coordinator.address, STAKE)
        if reentry:
            self.arm(*reentry)
        self.execute(self.coordinator, "join", STAKE, b"\x01" * 32, b"\x02" * 32)


@pytest.fixture(scope="module")
def hooked(anvil: Anvil, compiled: dict[str, dict[str, Any]]) -> SwarmHarness:
    """A swarm whose token calls back into every sender and recipient."""
    deployer = anvil.accounts[0]
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    token = _deploy(
        w3, deployer.private_key, compiled["HookToken"], deployer.address, PARAMS.token_supply
    )
    deployment = deploy_swarm(w3, deployer.private_key, PARAMS, token=token.address)
    return SwarmHarness(anvil, deployment, deployer.private_key)


@pytest.fixture(scope="module")
def hooked_members(hooked: SwarmHarness) -> list[HarnessMember]:
    joined = hooked.join_new(3, STAKE, "hooked")
    hooked.open_round()
    return joined


@pytest.fixture
def attacker(hooked: SwarmHarness, compiled: dict[str, dict[str, Any]]) -> Attacker:
    return Attacker(hooked, compiled)


def test_reentering_join_from_the_stake_transfer_reverts(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    attacker.join("join", STAKE, b"\x01" * 32, b"\x02" * 32)
    assert isinstance(attacker.reentry(), AlreadyMember)
    assert hooked.deployer.member_info(attacker.address).stake == STAKE
    _assert_books_balance(hooked)


def test_reentering_commit_from_the_stake_transfer_is_not_eligible(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    attacker.join("commit", hooked.deployer.current_round(), b"\x11" * 32)
    assert isinstance(attacker.reentry(), NotEligible)


def test_reentering_withdraw_from_the_payout_reverts(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    attacker.join()
    attacker.execute(attacker.coordinator, "exit")
    hooked.advance(2 * HOUR)
    attacker.arm("withdraw")
    attacker.execute(attacker.coordinator, "withdraw")
    assert isinstance(attacker.reentry(), NotExiting)
    assert hooked.deployer.token.balance_of(attacker.address) == STAKE  # paid once
    assert hooked.deployer.member_info(attacker.address).status == MemberStatus.NONE
    _assert_books_balance(hooked)


def test_reentering_claim_from_the_payout_reverts(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    round_id, _, tree = _finalize_round(hooked, hooked_members, {attacker.address: 700})
    proof = tree.proof(attacker.address)
    remaining = hooked.deployer.round_info(round_id).reward_remaining
    attacker.arm("claim", round_id, attacker.address, 700, proof)
    attacker.execute(attacker.coordinator, "claim", round_id, attacker.address, 700, proof)
    assert isinstance(attacker.reentry(), AlreadyClaimed)
    assert hooked.deployer.token.balance_of(attacker.address) == 700  # paid once
    assert hooked.deployer.round_info(round_id).reward_remaining == remaining - 700
    _assert_books_balance(hooked)


def test_reentering_withdraw_from_a_claim_payout_reverts(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    """An active member paid a reward tries to take its stake out in the same breath."""
    attacker.join()
    round_id, _, tree = _finalize_round(hooked, hooked_members, {attacker.address: 700})
    attacker.arm("withdraw")
    attacker.execute(
        attacker.coordinator, "claim", round_id, attacker.address, 700, tree.proof(attacker.address)
    )
    assert isinstance(attacker.reentry(), NotExiting)
    assert hooked.deployer.member_info(attacker.address).stake == STAKE
    _assert_books_balance(hooked)


def test_reentering_fund_rewards_only_adds_what_it_pays(
    hooked: SwarmHarness, hooked_members: list[HarnessMember], attacker: Attacker
) -> None:
    hooked.deployer.token.transfer(attacker.address, 300)
    attacker.execute(attacker.token, "approve", attacker.coordinator.address, 300)
    pool = hooked.deployer.totals().reward_pool
    attacker.arm("fundRewards", 100)
    attacker.execute(attacker.coordinator, "fundRewards", 200)
    assert attacker.contract.functions.reentrySucceeded().call()  # a second, paid-for deposit
    assert hooked.deployer.totals().reward_pool == pool + 300
    assert hooked.deployer.token.balance_of(attacker.address) == 0
    _assert_books_balance(hooked)
