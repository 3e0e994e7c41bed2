"""SwarmCoordinator rounds on a real Anvil: commit, reveal, attest, finalize, fail, and every
revert of those calls. One swarm of four members is deployed per module; every test starts from
round 2's commit window (the conftest snapshot/revert isolates tests)."""

from __future__ import annotations

import pytest
from conftest import raw, swarm_params

from swarmchain.node.chain.events import (
    Attested,
    Committed,
    Revealed,
    RoundFailed,
    RoundFinalized,
    RoundOpened,
)
from swarmchain.node.chain.protocol import (
    Outcome,
    Phase,
    Reveal,
    RoundStatus,
    SubmissionState,
    round_seed,
)
from swarmchain.node.chain.reverts import (
    AlreadyAttested,
    AlreadyCommitted,
    AlreadyRevealed,
    BitmapTooLong,
    CommitmentMismatch,
    DeadlinePassed,
    InvalidCid,
    InvalidCommitment,
    NotCommitted,
    NotEligible,
    NotMember,
    PhaseNotStarted,
    QuorumNotReached,
    QuorumReached,
    RoundAlreadyFinalized,
    RoundNotExpired,
    RoundNotFinalized,
    UnknownRound,
    WrongRound,
    ZeroHash,
    ZeroSamples,
)
from swarmchain.node.devtools.harness import (
    HarnessMember,
    SwarmHarness,
    sample_outcome,
    sample_reveal,
)

pytestmark = pytest.mark.integration

STAKE = 1_000
MEMBERS = 4  # joined by the `members` fixture
PARAMS = swarm_params()


@pytest.fixture(scope="module")
def stranger(harness: SwarmHarness, members: list[HarnessMember]) -> HarnessMember:
    """Funded, never joined."""
    return harness.new_member(STAKE, "stranger")


def committed_round(
    harness: SwarmHarness, members: list[HarnessMember]
) -> tuple[int, dict[str, Reveal]]:
    round_id = harness.deployer.current_round()
    return round_id, harness.commit_all(members, round_id)


def attest_phase(harness: SwarmHarness, members: list[HarnessMember]) -> tuple[int, Outcome]:
    round_id, reveals = committed_round(harness, members)
    harness.reveal_all(members, reveals, round_id)
    outcome, _ = sample_outcome(range(len(members)), {m.address: 10 for m in members})
    return round_id, outcome


# ---- the whole round -----------------------------------------------------------------------


def test_round_commits_reveals_attests_and_finalizes(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id, reveals = committed_round(harness, members)
    assert c.round_info().phase == Phase.REVEAL  # everyone committed: the window closed early
    harness.reveal_all(members, reveals, round_id)
    assert c.round_info().phase == Phase.ATTEST
    outcome, _ = sample_outcome([0, 1, 2, 3], {m.address: 100 for m in members})
    harness.attest_all(members[:3], outcome, round_id)
    assert c.outcome_stake(round_id, outcome) == 3 * STAKE

    tx = c.finalize(round_id, outcome)

    assert tx is not None
    finalized, opened = tx.events
    assert isinstance(finalized, RoundFinalized) and isinstance(opened, RoundOpened)
    assert finalized.outcome == outcome and finalized.outcome_stake == 3 * STAKE
    assert finalized.reward_budget == outcome.reward_total == 4 * 100  # what the tree pays
    assert c.finalized_outcome(round_id) == outcome
    assert c.round_info(round_id).status == RoundStatus.FINALIZED
    following = c.round_info()
    assert following.round == round_id + 1 and following.base_round == round_id
    assert opened.base_checkpoint_hash == outcome.checkpoint_hash
    assert opened.seed == following.seed == c.round_seed(round_id + 1)
    assert c.totals().last_finalized_round == round_id


def test_events_carry_what_an_auditor_needs(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    member = members[0]
    round_id = harness.deployer.current_round()
    reveal = sample_reveal(member.address, round_id)
    commitment = member.client.commitment_for(reveal, round_id)
    commit_tx = member.client.commit(round_id, commitment)
    harness.advance_to_phase(Phase.REVEAL)
    reveal_tx = member.client.reveal(round_id, reveal)
    harness.advance_to_phase(Phase.ATTEST)
    outcome, _ = sample_outcome([0], {member.address: 5})
    attest_tx = member.client.attest(round_id, outcome)

    assert commit_tx and reveal_tx and attest_tx
    assert commit_tx.events == (
        Committed(
            commit_tx.block_number, 0, commit_tx.tx_hash, round_id, member.address, commitment
        ),
    )
    (revealed,) = reveal_tx.events
    assert isinstance(revealed, Revealed)
    assert (revealed.cid, revealed.content_hash, revealed.num_samples, revealed.salt) == (
        reveal.cid,
        reveal.content_hash,
        reveal.num_samples,
        reveal.salt,
    )
    (attested,) = attest_tx.events
    assert isinstance(attested, Attested)
    assert attested.outcome == outcome and attested.outcome_key == outcome.key()
    assert attested.weight == attested.outcome_stake == STAKE


def test_writes_already_on_chain_are_not_sent_again(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, reveals = committed_round(harness, members)
    member = members[0]
    commitment = member.client.commitment_for(reveals[member.address], round_id)
    assert member.client.commit(round_id, commitment) is None
    harness.reveal_all(members, reveals, round_id)
    assert member.client.reveal(round_id, reveals[member.address]) is None
    outcome, _ = sample_outcome([0, 1, 2, 3], {member.address: 1})
    harness.attest_all(members, outcome, round_id)
    assert member.client.attest(round_id, outcome) is None
    assert harness.deployer.finalize(round_id, outcome) is not None
    assert harness.deployer.finalize(round_id, outcome) is None


# ---- commit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 2])
def test_commit_reverts_with_a_reserved_commitment(
    harness: SwarmHarness, members: list[HarnessMember], value: int
) -> None:
    with pytest.raises(InvalidCommitment):
        members[0].client.commit(harness.deployer.current_round(), value.to_bytes(32, "big"))


def test_double_commit_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id = harness.deployer.current_round()
    members[0].client.commit(round_id, b"\x11" * 32)
    with pytest.raises(AlreadyCommitted) as info:
        raw(members[0], "commit", round_id, b"\x22" * 32)
    assert info.value.values == {"round": round_id, "node": members[0].address}
    with pytest.raises(AlreadyCommitted):  # the client refuses before sending
        members[0].client.commit(round_id, b"\x22" * 32)


def test_commit_reverts_for_another_round(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id = harness.deployer.current_round()
    with pytest.raises(WrongRound) as info:
        members[0].client.commit(round_id + 1, b"\x11" * 32)
    assert info.value.values == {"round": round_id + 1, "currentRound": round_id}


def test_commit_reverts_after_its_deadline(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    info = harness.deployer.round_info()
    harness.advance_to(info.commit_deadline)
    with pytest.raises(DeadlinePassed) as error:
        members[0].client.commit(info.round, b"\x11" * 32)
    assert error.value.values["phase"] == Phase.COMMIT
    assert error.value.values["deadline"] == info.commit_deadline


def test_commit_reverts_for_a_stranger(
    harness: SwarmHarness, stranger: HarnessMember, members: list[HarnessMember]
) -> None:
    with pytest.raises(NotMember):
        stranger.client.commit(harness.deployer.current_round(), b"\x11" * 32)


def test_a_member_acts_only_from_the_round_after_it_joined(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    late = harness.join_new(1, STAKE, "late")[0]
    round_id = harness.deployer.current_round()
    assert late.client.stake_at_open() == 0
    with pytest.raises(NotEligible):
        late.client.commit(round_id, b"\x11" * 32)
    assert harness.deployer.round_info().active_at_open == len(members)


# ---- reveal ----------------------------------------------------------------------------------


def test_reveal_reverts_before_the_commit_window_ends(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, reveals = committed_round(harness, members[:1])
    with pytest.raises(PhaseNotStarted) as info:
        members[0].client.reveal(round_id, reveals[members[0].address])
    assert info.value.values["phase"] == Phase.REVEAL


def test_reveal_that_does_not_match_its_commit_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, reveals = committed_round(harness, members)
    honest = reveals[members[0].address]
    forged = Reveal(honest.cid, honest.content_hash, honest.num_samples + 1, honest.salt)
    with pytest.raises(CommitmentMismatch) as info:
        members[0].client.reveal(round_id, forged)
    assert info.value.values["committed"] == members[0].client.commitment_for(honest, round_id)


def test_double_reveal_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id, reveals = committed_round(harness, members)
    reveal = reveals[members[0].address]
    members[0].client.reveal(round_id, reveal)
    args = (round_id, reveal.cid, reveal.content_hash, reveal.num_samples, reveal.salt)
    with pytest.raises(AlreadyRevealed):
        raw(members[0], "reveal", *args)


def test_reveal_without_commit_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id, _ = committed_round(harness, members[1:])
    harness.advance_to_phase(Phase.REVEAL)
    with pytest.raises(NotCommitted):
        members[0].client.reveal(round_id, sample_reveal(members[0].address, round_id))


@pytest.mark.parametrize(
    ("cid", "digest", "samples", "error"),
    [
        ("", b"\x01" * 32, 1, InvalidCid),
        ("b" * 129, b"\x01" * 32, 1, InvalidCid),
        ("bafkok", b"\x00" * 32, 1, ZeroHash),
        ("bafkok", b"\x01" * 32, 0, ZeroSamples),
    ],
)
def test_reveal_rejects_malformed_input(
    harness: SwarmHarness,
    members: list[HarnessMember],
    cid: str,
    digest: bytes,
    samples: int,
    error: type[Exception],
) -> None:
    round_id, _ = committed_round(harness, members)
    with pytest.raises(error):
        members[0].client.reveal(round_id, Reveal(cid, digest, samples, b"\x00" * 32))


def test_reveal_reverts_after_its_deadline(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, reveals = committed_round(harness, members)
    harness.reveal_all(members[1:], reveals, round_id)
    harness.advance_to_phase(Phase.ATTEST)
    with pytest.raises(DeadlinePassed) as info:
        members[0].client.reveal(round_id, reveals[members[0].address])
    assert info.value.values["phase"] == Phase.REVEAL


# ---- attest ----------------------------------------------------------------------------------


def test_attest_reverts_before_the_reveal_window_ends(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, _ = committed_round(harness, members)
    outcome, _ = sample_outcome([0], {members[0].address: 1})
    with pytest.raises(PhaseNotStarted):
        members[0].client.attest(round_id, outcome)


def test_attestation_by_a_stranger_reverts(
    harness: SwarmHarness, members: list[HarnessMember], stranger: HarnessMember
) -> None:
    round_id, outcome = attest_phase(harness, members)
    with pytest.raises(NotMember):
        stranger.client.attest(round_id, outcome)


def test_attestation_after_its_deadline_reverts(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    harness.advance_to_phase(Phase.ENDED)
    with pytest.raises(DeadlinePassed) as info:
        members[0].client.attest(round_id, outcome)
    assert info.value.values["phase"] == Phase.ATTEST


def test_double_attestation_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id, outcome = attest_phase(harness, members)
    members[0].client.attest(round_id, outcome)
    with pytest.raises(AlreadyAttested):
        raw(members[0], "attest", round_id, outcome.as_abi())


@pytest.mark.parametrize(
    ("checkpoint_hash", "cid", "bitmap", "error"),
    [
        (b"\x00" * 32, "bafkok", b"", ZeroHash),
        (b"\x01" * 32, "", b"", InvalidCid),
        (b"\x01" * 32, "bafkok", b"\x0f\x00", BitmapTooLong),  # 4 members need 1 byte
    ],
)
def test_attest_rejects_malformed_outcomes(
    harness: SwarmHarness,
    members: list[HarnessMember],
    checkpoint_hash: bytes,
    cid: str,
    bitmap: bytes,
    error: type[Exception],
) -> None:
    round_id, _ = attest_phase(harness, members)
    with pytest.raises(error):
        members[0].client.attest(round_id, Outcome(checkpoint_hash, cid, bitmap, b"\x00" * 32, 0))


def test_attest_window_closes_once_everyone_attested(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members, outcome, round_id)
    assert harness.deployer.round_info().phase == Phase.ENDED


# ---- finalize and fail -----------------------------------------------------------------------


def test_finalize_reverts_without_quorum(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members[:2], outcome, round_id)  # 2000 of 4000 < 66.67 %
    with pytest.raises(QuorumNotReached) as info:
        harness.deployer.finalize(round_id, outcome)
    assert info.value.values["stake"] == 2 * STAKE
    assert info.value.values["required"] == 2_667


def test_split_attestations_do_not_add_up(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    other, _ = sample_outcome([0, 1], {members[0].address: 1}, label="other checkpoint")
    harness.attest_all(members[:2], outcome, round_id)
    harness.attest_all(members[2:], other, round_id)
    for candidate in (outcome, other):
        with pytest.raises(QuorumNotReached):
            harness.deployer.finalize(round_id, candidate)


def test_second_finalize_reverts(harness: SwarmHarness, members: list[HarnessMember]) -> None:
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members, outcome, round_id)
    harness.deployer.finalize(round_id, outcome)
    with pytest.raises(RoundAlreadyFinalized):
        raw(members[0], "finalize", round_id, outcome.as_abi())


def test_finalize_reverts_for_a_future_round(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    with pytest.raises(WrongRound):
        harness.deployer.finalize(round_id + 1, outcome)


def test_failed_round_is_retried_from_the_same_base(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members[:2], outcome, round_id)
    before = c.round_info()
    harness.advance_to_phase(Phase.ENDED)

    tx = c.fail_round(round_id)

    assert tx is not None
    failed, opened = tx.events
    assert isinstance(failed, RoundFailed) and isinstance(opened, RoundOpened)
    assert (failed.leading_stake, failed.required_stake) == (2 * STAKE, 2_667)
    assert opened.round == round_id + 1 and opened.base_round == before.base_round
    assert c.round_info(round_id).status == RoundStatus.FAILED
    assert c.round_seed(round_id + 1) != before.seed
    assert c.fail_round(round_id) is None


def test_fail_round_reverts_before_the_attest_window_ends(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, _ = attest_phase(harness, members)
    with pytest.raises(RoundNotExpired):
        harness.deployer.fail_round(round_id)


def test_fail_round_reverts_while_a_tuple_holds_quorum(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members[:3], outcome, round_id)
    harness.advance_to_phase(Phase.ENDED)
    with pytest.raises(QuorumReached):
        harness.deployer.fail_round(round_id)
    assert harness.deployer.finalize(round_id, outcome) is not None  # late, still final


# ---- views -----------------------------------------------------------------------------------


def test_round_seed_is_public_and_matches_python(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id, outcome = attest_phase(harness, members)
    harness.attest_all(members, outcome, round_id)
    c.finalize(round_id, outcome)
    info = c.round_info()
    expected = round_seed(
        c.deployment.chain_id,
        c.address,
        info.round,
        round_id,
        outcome.checkpoint_hash,
        info.opened_at,
    )
    assert info.base_round == round_id
    assert c.round_seed(info.round) == info.seed == expected


def test_views_of_unknown_and_open_rounds_revert(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    current = c.current_round()
    for bad in (0, current + 1):
        with pytest.raises(UnknownRound):
            c.round_info(bad)
    with pytest.raises(RoundNotFinalized):
        c.finalized_outcome(current)
    assert c.submission(current, members[0].address).state == SubmissionState.NONE
