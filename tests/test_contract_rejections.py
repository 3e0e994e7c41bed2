"""`slashRejected` on a real Anvil: in a failed round, a revealed member whom attested tuples
holding quorum stake together all leave out is slashed once; anything short of that reverts with a
named error. The node's own reading of the record (`swarmchain.node.runtime.slashing`) finds the
same."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import swarm_params
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from swarmchain.node.chain.events import Slashed
from swarmchain.node.chain.protocol import (
    Outcome,
    Phase,
    RoundStatus,
    SlashReason,
    SubmissionState,
    outcome_key,
    rejecting_outcomes,
)
from swarmchain.node.chain.reverts import (
    AlreadySlashed,
    NotSlashable,
    RejectionBelowQuorum,
    RoundNotFailed,
    TupleAcceptsNode,
    TupleNotAttested,
    TuplesNotSorted,
)
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness, sample_outcome
from swarmchain.node.runtime.history import ChainHistory
from swarmchain.node.runtime.slashing import Offence, slash_plan

pytestmark = pytest.mark.integration

STAKE = 1_000
PARAMS = swarm_params(
    quorum_bps=6000,  # 1,800 of 3,000: two members' tuples reach it together, neither alone
    min_stake=500,
)


def play(
    harness: SwarmHarness,
    members: list[HarnessMember],
    tuples: Sequence[Outcome],
    *,
    revealers: int = 3,
) -> int:
    """Everyone commits, the first `revealers` reveal, member i attests ``tuples[i]``."""
    round_id = harness.deployer.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(members[:revealers], reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    for member, outcome in zip(members, tuples, strict=False):
        member.client.attest(round_id, outcome)
    return round_id


def tuples_of(round_id: int) -> tuple[Outcome, Outcome, Outcome]:
    """Two rival tuples that reject member 2, and the one member 2 attests (accepting itself)."""
    first = sample_outcome([0, 1], {}, label=f"first {round_id}")[0]
    second = sample_outcome([0], {}, label=f"second {round_id}")[0]
    own = sample_outcome([0, 1, 2], {}, label=f"own {round_id}")[0]
    return first, second, own


@pytest.fixture
def failed(harness: SwarmHarness, members: list[HarnessMember]) -> tuple[int, list[Outcome]]:
    """A failed round: members 0 and 1 attest two different tuples that both leave member 2 out
    (2,000 of the 1,800 required together, 1,000 each), member 2 attests its own; the two
    rejecting tuples, in key order."""
    round_id = harness.deployer.current_round()
    first, second, own = tuples_of(round_id)
    play(harness, members, [first, second, own])
    harness.advance_to_phase(Phase.ENDED)
    harness.deployer.fail_round(round_id)
    return round_id, sorted([first, second], key=outcome_key)


def send(who: HarnessMember, round_id: int, node: str, tuples: Sequence[Outcome]) -> object:
    """slashRejected without the client's look-before-send."""
    c = who.client
    assert c.sender is not None
    fn = c.contract.functions.slashRejected(round_id, node, [t.as_abi() for t in tuples])
    return c.sender.send(fn, "slashRejected")


def test_tuples_holding_quorum_together_slash_the_member_they_reject(
    harness: SwarmHarness, members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    c = harness.deployer
    target = members[2].address
    pool = c.totals().reward_pool
    assert c.round_info(round_id).status == RoundStatus.FAILED

    tx = c.slash_rejected(round_id, target, tuples)

    assert tx is not None
    (slashed,) = tx.events
    assert isinstance(slashed, Slashed)
    assert (slashed.round, slashed.node, slashed.reason) == (round_id, target, SlashReason.REJECTED)
    assert (slashed.amount, slashed.remaining_stake) == (100, 900)
    assert c.totals().reward_pool == pool + 100
    assert c.submission(round_id, target).state == SubmissionState.SLASHED
    assert c.slash_rejected(round_id, target, tuples) is None  # look before you send


def test_a_second_slash_reverts(
    harness: SwarmHarness, members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    harness.deployer.slash_rejected(round_id, members[2].address, tuples)
    with pytest.raises(AlreadySlashed):
        send(members[0], round_id, members[2].address, tuples)
    with pytest.raises(AlreadySlashed):
        send(members[0], round_id, members[2].address, tuples[:1])
    assert members[0].client.sender is not None
    with pytest.raises(AlreadySlashed):
        slash = members[0].client.contract.functions.slash(round_id, members[2].address)
        members[0].client.sender.send(slash, "slash")


def test_one_tuple_below_quorum_reverts(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    with pytest.raises(RejectionBelowQuorum) as info:
        send(members[0], round_id, members[2].address, tuples[:1])
    assert info.value.values == {
        "round": round_id,
        "node": members[2].address,
        "stake": STAKE,
        "required": 1_800,
    }
    with pytest.raises(RejectionBelowQuorum):
        send(members[0], round_id, members[2].address, [])


def test_a_repeated_tuple_reverts(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    with pytest.raises(TuplesNotSorted) as info:
        send(members[0], round_id, members[2].address, [tuples[0], tuples[0]])
    assert info.value.values["position"] == 1
    assert info.value.values["outcomeKey"] == info.value.values["previousKey"]


def test_unsorted_tuples_revert(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    with pytest.raises(TuplesNotSorted) as info:
        send(members[0], round_id, members[2].address, tuples[::-1])
    assert info.value.values["outcomeKey"] == tuples[0].key()


def test_a_tuple_that_accepts_the_member_reverts(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    own = tuples_of(round_id)[2]
    with pytest.raises(TupleAcceptsNode) as info:
        send(members[0], round_id, members[2].address, sorted([*tuples, own], key=outcome_key))
    assert info.value.values["outcomeKey"] == own.key() and info.value.values["index"] == 2


def test_an_unattested_tuple_reverts(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    made_up = sample_outcome([], {}, label="nobody attested this")[0]
    with pytest.raises(TupleNotAttested):
        send(members[0], round_id, members[2].address, sorted([*tuples, made_up], key=outcome_key))


def test_a_member_no_tuple_rejects_is_not_slashable(
    members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    round_id, tuples = failed
    with pytest.raises(TupleAcceptsNode):
        send(members[2], round_id, members[0].address, tuples)


def test_a_finalized_round_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id = harness.deployer.current_round()
    first, _, _ = tuples_of(round_id)
    play(harness, members, [first, first, first])
    harness.deployer.finalize(round_id, first)
    with pytest.raises(RoundNotFailed) as info:
        send(members[0], round_id, members[2].address, [first])
    assert info.value.values["status"] == RoundStatus.FINALIZED
    with pytest.raises(RoundNotFailed):
        send(members[0], round_id + 1, members[2].address, [first])  # still open


def test_an_unrevealed_member_is_slashed_by_slash_instead(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id = harness.deployer.current_round()
    first, second, own = tuples_of(round_id)
    play(harness, members, [first, second, own], revealers=2)
    harness.advance_to_phase(Phase.ENDED)
    harness.deployer.fail_round(round_id)
    tuples = sorted([first, second], key=outcome_key)
    with pytest.raises(NotSlashable) as info:
        send(members[0], round_id, members[2].address, tuples)
    assert info.value.values["state"] == SubmissionState.COMMITTED
    tx = harness.deployer.slash(round_id, members[2].address)
    assert tx is not None and isinstance(tx.events[0], Slashed)
    assert tx.events[0].reason == SlashReason.NOT_REVEALED


def test_the_nodes_plan_finds_the_same_slash(
    harness: SwarmHarness, members: list[HarnessMember], failed: tuple[int, list[Outcome]]
) -> None:
    """What a node reads from the record after a failed round: member 2 is the offence, with
    both rejecting tuples in key order, and members 0 and 1 take turns to send it."""
    round_id, tuples = failed
    history = ChainHistory(harness.deployer)
    history.refresh()
    required = harness.deployer.round_info(round_id).required_stake

    plan = slash_plan(history, round_id, required, None)

    assert plan.offences == (Offence(members[2].address, 2, tuple(tuples)),)
    assert plan.rotation == (members[0].address, members[1].address)
    assert plan.sender(round_id) == plan.rotation[round_id % 2]
    stakes = history.attested_stakes(round_id)
    assert rejecting_outcomes(stakes, 0, required) == ()
    tx = harness.deployer.slash_rejected(round_id, members[2].address, plan.offences[0].rejected_by)
    assert tx is not None and isinstance(tx.events[0], Slashed)


def test_a_tuple_that_reads_back_altered_is_left_out_of_the_plan(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    """A tuple whose CID is not UTF-8 decodes with U+FFFD, so its key cannot be sent back: the
    plan leaves it out instead of sending a slash that reverts (here: no quorum without it)."""
    round_id = harness.deployer.current_round()
    first, _, own = tuples_of(round_id)
    play(harness, members, [first])
    garbled = (first.checkpoint_hash, b"bafk\xff", first.accepted_bitmap, bytes(32), 0)
    selector = keccak(text="attest(uint64,(bytes32,string,bytes,bytes32,uint256))")[:4]
    data = selector + encode(
        ["uint64", "(bytes32,bytes,bytes,bytes32,uint256)"], [round_id, garbled]
    )
    harness.rpc("anvil_impersonateAccount", [members[1].address])
    tx = {"from": members[1].address, "to": harness.deployment.coordinator, "data": data.hex()}
    harness.w3.eth.wait_for_transaction_receipt(harness.rpc("eth_sendTransaction", [tx]))
    members[2].client.attest(round_id, own)
    harness.advance_to_phase(Phase.ENDED)
    harness.deployer.fail_round(round_id)
    history = ChainHistory(harness.deployer)
    history.refresh()
    assert len(history.attestations(round_id)) == 3

    plan = slash_plan(history, round_id, 1_800, None)

    assert set(history.attested_stakes(round_id)) == {first, own}
    assert plan.offences == ()
