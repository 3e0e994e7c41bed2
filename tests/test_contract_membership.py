"""SwarmCoordinator membership on a real Anvil: join, exit, withdraw, fundRewards, the
constructor's parameter checks, and every revert of those calls."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import swarm_params

from swarmchain.node.chain.deploy import deploy_contract
from swarmchain.node.chain.events import (
    ExitRequested,
    Joined,
    RewardsFunded,
    Slashed,
    Transfer,
    Withdrawn,
)
from swarmchain.node.chain.protocol import MemberStatus, Phase, SlashReason
from swarmchain.node.chain.reverts import (
    AlreadyMember,
    ERC20InsufficientAllowance,
    InvalidCid,
    InvalidParameter,
    InvalidPublicKey,
    NotActive,
    NotExiting,
    RoundStillOpen,
    StakeBelowMinimum,
    UnbondingNotOver,
    ZeroAmount,
    ZeroHash,
)
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness
from swarmchain.storage.envelope import valid_x25519_key

pytestmark = pytest.mark.integration

STAKE = 1_000
PARAMS = swarm_params()


@pytest.fixture(scope="module")
def newcomer(harness: SwarmHarness, members: list[HarnessMember]) -> HarnessMember:
    """Funded with 2 * STAKE, not joined."""
    return harness.new_member(2 * STAKE, "newcomer")


def test_join_escrows_the_stake_and_registers_keys(
    harness: SwarmHarness, newcomer: HarnessMember
) -> None:
    c = newcomer.client
    before = harness.deployer.totals()

    tx = c.join(STAKE, newcomer.ed25519_key, newcomer.x25519_key)

    assert tx is not None
    joined, transfer = tx.events
    assert isinstance(joined, Joined) and isinstance(transfer, Transfer)
    assert (joined.node, joined.index, joined.stake) == (newcomer.address, 3, STAKE)
    assert (joined.ed25519_key, joined.x25519_key) == (newcomer.ed25519_key, newcomer.x25519_key)
    assert (transfer.receiver, transfer.value) == (c.address, STAKE)
    me = c.member_info()
    assert (me.status, me.index, me.stake, me.stake_at_open) == (MemberStatus.ACTIVE, 3, STAKE, 0)
    assert c.member_at(3) == newcomer.address and c.member_count() == 4 and c.member_index() == 3
    after = harness.deployer.totals()
    assert after.active_stake == before.active_stake + STAKE
    assert after.total_staked == before.total_staked + STAKE
    assert c.join(STAKE, newcomer.ed25519_key, newcomer.x25519_key) is None


def test_join_below_the_minimum_stake_reverts(newcomer: HarnessMember) -> None:
    with pytest.raises(StakeBelowMinimum) as info:
        newcomer.client.join(99, newcomer.ed25519_key, newcomer.x25519_key)
    assert info.value.values == {"stake": 99, "minimum": 100}


def test_join_with_a_zero_key_reverts(newcomer: HarnessMember) -> None:
    with pytest.raises(InvalidPublicKey):
        newcomer.client.join(STAKE, b"\x00" * 32, newcomer.x25519_key)


SMALL_ORDER = [  # libsodium's list of X25519 points of small order, little-endian
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes([0xEC]) + b"\xff" * 30 + b"\x7f",  # p - 1
    bytes([0xED]) + b"\xff" * 30 + b"\x7f",  # p
    bytes([0xEE]) + b"\xff" * 30 + b"\x7f",  # p + 1
]


@pytest.mark.parametrize("high_bit", [False, True])
@pytest.mark.parametrize("key", SMALL_ORDER, ids=range(len(SMALL_ORDER)))
def test_join_with_a_small_order_x25519_key_reverts(
    newcomer: HarnessMember, key: bytes, high_bit: bool
) -> None:
    # X25519 ignores bit 255, so the key with it set is the same point.
    key = key[:31] + bytes([key[31] | 0x80]) if high_bit else key
    assert not valid_x25519_key(key)  # the nodes' own check agrees
    with pytest.raises(InvalidPublicKey):
        newcomer.client.join(STAKE, newcomer.ed25519_key, key)


def test_join_accepts_an_x25519_key_that_only_looks_unusual(newcomer: HarnessMember) -> None:
    # p + 2 encodes the point u = 2 non-canonically: of large order, so a usable key.
    key = bytes([0xEF]) + b"\xff" * 30 + b"\x7f"
    assert valid_x25519_key(key)
    newcomer.client.join(STAKE, newcomer.ed25519_key, key)
    assert newcomer.client.member_info().x25519_key == key


def test_join_twice_reverts(members: list[HarnessMember]) -> None:
    member = members[0]
    with pytest.raises(AlreadyMember) as info:
        member.client.join(STAKE, b"\x01" * 32, b"\x02" * 32)  # other keys: the client sends
    assert info.value.values["status"] == MemberStatus.ACTIVE


def test_join_without_allowance_reverts_with_the_token_error(newcomer: HarnessMember) -> None:
    c = newcomer.client
    assert c.sender is not None
    fn = c.contract.functions.join(STAKE, newcomer.ed25519_key, newcomer.x25519_key)
    with pytest.raises(ERC20InsufficientAllowance) as info:
        c.sender.send(fn, "join")
    assert info.value.values == {"spender": c.address, "allowance": 0, "needed": STAKE}


def test_exit_leaves_the_active_set_but_keeps_the_stake_escrowed(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[0]
    before = harness.deployer.totals()

    tx = member.client.exit()

    assert tx is not None
    (event,) = tx.events
    assert isinstance(event, ExitRequested) and not event.forced
    assert event.unbonding_ends == harness.timestamp() + PARAMS.unbonding_delay_s
    me = member.client.member_info()
    assert me.status == MemberStatus.EXITING and me.stake == STAKE
    assert me.stake_at_open == STAKE  # it still counts in the round it exited in
    after = harness.deployer.totals()
    assert after.active_stake == before.active_stake - STAKE
    assert after.total_staked == before.total_staked
    assert after.active_members == before.active_members - 1
    assert member.client.exit() is None


def test_exit_of_a_non_member_reverts(newcomer: HarnessMember) -> None:
    with pytest.raises(NotActive) as info:
        newcomer.client.exit()
    assert info.value.values["status"] == MemberStatus.NONE


def test_withdraw_before_unbonding_ends_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[0]
    member.client.exit()
    ends = member.client.member_info().unbonding_ends
    harness.advance_to(ends - 10)
    with pytest.raises(UnbondingNotOver) as info:
        member.client.withdraw()
    assert info.value.values["unbondingEnds"] == ends


def test_withdraw_without_exit_reverts(members: list[HarnessMember]) -> None:
    with pytest.raises(NotExiting) as info:
        members[0].client.withdraw()
    assert info.value.values["status"] == MemberStatus.ACTIVE


def test_withdraw_after_unbonding_returns_the_stake(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[0]
    balance = member.client.token.balance_of(member.address)
    member.client.exit()
    harness.advance_to(member.client.member_info().unbonding_ends)

    tx = member.client.withdraw()

    assert tx is not None
    withdrawn, transfer = tx.events
    assert isinstance(withdrawn, Withdrawn) and withdrawn.amount == STAKE
    assert isinstance(transfer, Transfer) and transfer.receiver == member.address
    assert member.client.token.balance_of(member.address) == balance + STAKE
    me = member.client.member_info()
    assert me.status == MemberStatus.NONE and me.stake == 0 and me.registered
    assert member.client.withdraw() is None


def test_withdraw_waits_for_the_committed_round_to_close(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[0]
    round_id = harness.deployer.current_round()
    harness.commit_all([member], round_id)
    member.client.exit()
    harness.advance_to(member.client.member_info().unbonding_ends)
    with pytest.raises(RoundStillOpen) as info:
        member.client.withdraw()
    assert info.value.values == {"round": round_id}


def test_withdraw_applies_a_slash_still_due(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    """A member that committed, never revealed, and left cannot escape its slash."""
    member = members[0]
    round_id = harness.deployer.current_round()
    harness.commit_all([member], round_id)
    member.client.exit()
    harness.advance_to_phase(Phase.ENDED)
    harness.deployer.fail_round(round_id)
    harness.advance_to(member.client.member_info().unbonding_ends)

    tx = member.client.withdraw()

    assert tx is not None
    slashed, withdrawn, _ = tx.events
    assert isinstance(slashed, Slashed) and isinstance(withdrawn, Withdrawn)
    assert (slashed.round, slashed.reason, slashed.amount) == (
        round_id,
        SlashReason.NOT_REVEALED,
        STAKE // 10,
    )
    assert withdrawn.amount == STAKE - STAKE // 10


def test_rejoin_after_withdraw_keeps_the_member_index(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[1]
    member.client.exit()
    harness.advance_to(member.client.member_info().unbonding_ends)
    member.client.withdraw()
    tx = member.client.join(STAKE, b"\x05" * 32, b"\x06" * 32)
    assert tx is not None
    (joined, _) = tx.events
    assert isinstance(joined, Joined) and joined.index == 1
    assert member.client.member_info().ed25519_key == b"\x05" * 32
    assert harness.deployer.member_count() == 3


def test_fund_rewards_grows_the_pool(harness: SwarmHarness) -> None:
    before = harness.deployer.totals().reward_pool
    tx = harness.deployer.fund_rewards(500)
    events = [e for e in tx.events if isinstance(e, RewardsFunded)]
    assert events and events[0].amount == 500 and events[0].pool == before + 500
    assert harness.deployer.totals().reward_pool == before + 500


def test_fund_rewards_of_zero_reverts(harness: SwarmHarness) -> None:
    with pytest.raises(ZeroAmount):
        harness.deployer.fund_rewards(0)


@pytest.mark.parametrize(
    ("change", "error", "name"),
    [
        ({"quorum_bps": 5000}, InvalidParameter, "quorumBps"),
        ({"quorum_bps": 10001}, InvalidParameter, "quorumBps"),
        ({"slash_bps": 10001}, InvalidParameter, "slashBps"),
        ({"commit_duration": 0}, InvalidParameter, "commitDuration"),
        ({"reveal_duration": 0}, InvalidParameter, "revealDuration"),
        ({"attest_duration": 0}, InvalidParameter, "attestDuration"),
        ({"unbonding_delay": 3650 * 86400 + 1}, InvalidParameter, "unbondingDelay"),
        ({"min_stake": 0}, InvalidParameter, "minStake"),
        ({"reward_per_round": 2**128}, InvalidParameter, "rewardPerRound"),
    ],
)
def test_constructor_rejects_out_of_range_parameters(
    harness: SwarmHarness, change: dict[str, int], error: type[InvalidParameter], name: str
) -> None:
    params = replace(PARAMS.coordinator_params(), **change)
    with pytest.raises(error) as info:
        deploy_contract(
            harness.w3,
            harness.deployer_key,
            "SwarmCoordinator",
            harness.deployment.token,
            "bafkspec",
            b"\x01" * 32,
            params.as_abi(),
        )
    assert info.value.values["name"] == name


@pytest.mark.parametrize(
    ("cid", "digest", "error"),
    [("", b"\x01" * 32, InvalidCid), ("bafkspec", b"\x00" * 32, ZeroHash)],
)
def test_constructor_rejects_a_missing_task_spec(
    harness: SwarmHarness, cid: str, digest: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        deploy_contract(
            harness.w3,
            harness.deployer_key,
            "SwarmCoordinator",
            harness.deployment.token,
            cid,
            digest,
            PARAMS.coordinator_params().as_abi(),
        )
