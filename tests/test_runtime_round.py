"""The pure round computation: every rejection reason, the bitmap, rewards and determinism."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from eth_utils.address import to_checksum_address
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from swarmchain.incentives.merkle import EMPTY_ROOT
from swarmchain.node.aggregation import fixed_point
from swarmchain.node.aggregation import krum as krum_module
from swarmchain.node.aggregation.fixed_point import RuleOutput, Update
from swarmchain.node.aggregation.limits import MAX_SAMPLES
from swarmchain.node.chain.events import RewardsFunded, RoundFinalized, RoundOpened, Slashed
from swarmchain.node.chain.protocol import Outcome, SlashReason, encode_bitmap
from swarmchain.node.learning.data import Dataset, task_splits
from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.record import reward_for_round
from swarmchain.node.protocol.round import (
    Contribution,
    RoundInputs,
    RoundResult,
    combine_round,
    compute_round,
)
from swarmchain.node.protocol.task import AggregationSpec, TaskSpec, default_task
from swarmchain.node.protocol.verify import CannotJudge, Fetch, RejectReason, Submission
from swarmchain.storage.cid import CID, RAW
from swarmchain.storage.codec import encode_update
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.envelope import (
    ENCRYPTED_MAGIC,
    Manifest,
    decrypt_blob,
    encrypt_blob,
    sign_manifest,
)
from swarmchain.storage.keys import NodeKeys

CHAIN_ID = 31337
COORDINATOR = to_checksum_address("0x" + "ab" * 20)
ROUND = 5
SEED = bytes(range(32))
REWARD = 1_000


def keys_of(i: int) -> NodeKeys:
    return NodeKeys(SigningKey(bytes([i + 1]) * 32), PrivateKey(bytes([i + 1]) * 32))


def address_of(i: int) -> str:
    return to_checksum_address(f"0x{i + 1:040x}")


def delta_like(base: Checkpoint, seed: int, scale: float = 0.01) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(v.shape, generator=gen) for k, v in base.state.items()}


def inputs_without_submissions(spec: TaskSpec, base: Checkpoint, reference: Dataset) -> RoundInputs:
    """A round's inputs for `combine_round`, which does not read the submissions."""
    return RoundInputs(CHAIN_ID, COORDINATOR, ROUND, SEED, REWARD, spec, base, None, reference, ())


class Round:
    """A round under construction: a store, a base checkpoint and published submissions."""

    def __init__(self, store: EmbeddedStore, spec: TaskSpec, base: Checkpoint) -> None:
        self.store = store
        self.spec = spec
        self.base = base
        self.subs: list[Submission] = []

    def publish(
        self,
        i: int,
        *,
        delta: dict[str, torch.Tensor] | None = None,
        blob: bytes | None = None,
        signer: NodeKeys | None = None,
        **manifest_fields: object,
    ) -> Submission:
        """Publish member i's update and envelope; return its submission as the chain shows it."""
        if blob is None:
            blob = encode_update(delta if delta is not None else delta_like(self.base, i))
        fields: dict[str, object] = {
            "chain_id": CHAIN_ID,
            "coordinator": COORDINATOR,
            "round": ROUND,
            "node": address_of(i),
            "base_cid": self.base.cid,
            "update_cid": self.store.put(blob),
            "content_hash": "0x" + content_hash(blob).hex(),
            "num_samples": 40 + i,
        }
        fields.update(manifest_fields)
        envelope = sign_manifest(Manifest(**fields), signer or keys_of(i))  # type: ignore[arg-type]
        sub = Submission(
            index=i,
            node=address_of(i),
            cid=self.store.put(envelope),
            content_hash=content_hash(envelope),
            num_samples=40 + i,
            signer=keys_of(i).signing_public,
        )
        self.subs.append(sub)
        return sub

    def inputs(self, reference: Dataset, subs: list[Submission] | None = None) -> RoundInputs:
        return RoundInputs(
            chain_id=CHAIN_ID,
            coordinator=COORDINATOR,
            round=ROUND,
            seed=SEED,
            reward=REWARD,
            spec=self.spec,
            base=self.base,
            step=None,
            reference=reference,
            submissions=tuple(self.subs if subs is None else subs),
        )

    def compute(self, reference: Dataset, **kwargs: object) -> RoundResult:
        return compute_round(
            self.inputs(reference),
            lambda cid, limit: self.store.get(cid, max_size=limit),
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def spec() -> TaskSpec:
    return default_task()


@pytest.fixture(scope="module")
def reference(spec: TaskSpec) -> Dataset:
    return task_splits(spec)[1]


@pytest.fixture(scope="module")
def base(spec: TaskSpec) -> Checkpoint:
    return encode_checkpoint(genesis_state(spec))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(tmp_path / "store") as s:
        yield s


def reasons(result: RoundResult) -> dict[int, RejectReason | None]:
    return {v.index: v.reason for v in result.verdicts}


def test_honest_updates_are_accepted_and_the_outcome_ignores_arrival_order(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(4):
        rnd.publish(i)
    fetch = lambda cid, limit: store.get(cid, max_size=limit)  # noqa: E731

    forward = compute_round(rnd.inputs(reference), fetch)
    backward = compute_round(rnd.inputs(reference, rnd.subs[::-1]), fetch)

    assert reasons(forward) == dict.fromkeys(range(4))
    assert forward.outcome == backward.outcome
    assert forward.outcome.accepted_bitmap == encode_bitmap(range(4))
    assert sum(forward.amounts.values()) in (0, REWARD)
    assert forward.tree.root == forward.outcome.rewards_root
    assert forward.outcome.reward_total == forward.tree.total == sum(forward.amounts.values())


def test_each_hostile_update_is_rejected_with_its_named_reason(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)
    shapes = {k: v.shape for k, v in base.state.items()}
    first = sorted(shapes)[0]

    rnd.publish(3, signer=keys_of(99))  # signed by a key the member never registered
    rnd.publish(4, round=ROUND - 1)  # an envelope replayed from an earlier round
    rnd.publish(5, base_cid=store.put(b"another checkpoint"))
    rnd.publish(6, blob=pickle.dumps({"weights": [1.0, 2.0]}))
    wrong_shape = delta_like(base, 7)
    wrong_shape[first] = torch.zeros(3, 3)
    rnd.publish(7, delta=wrong_shape)
    wrong_dtype = delta_like(base, 8)
    wrong_dtype[first] = wrong_dtype[first].to(torch.int32)  # same size, another dtype
    rnd.publish(8, delta=wrong_dtype)
    finite = encode_update(delta_like(base, 9))
    (header_length,) = struct.unpack_from("<Q", finite)
    nan = struct.pack("<f", float("nan"))
    rnd.publish(9, blob=finite[: 8 + header_length] + nan + finite[8 + header_length + 4 :])
    rnd.publish(10, delta=delta_like(base, 10, scale=1.0))  # norm far beyond the bound of 10
    rnd.publish(11, delta={k: torch.zeros(v) for k, v in shapes.items()})  # the base sent back
    rnd.publish(12)
    rnd.subs[-1] = replace(rnd.subs[-1], content_hash=bytes(32))  # revealed hash differs
    rnd.publish(13)
    rnd.subs[-1] = replace(rnd.subs[-1], cid="bafkreinotacid")
    rnd.publish(14)
    rnd.subs[-1] = replace(rnd.subs[-1], cid=str(CID.of(RAW, b"never stored")))
    tampered = rnd.publish(15)
    cid = CID.parse(tampered.cid)
    (store.path / "blocks" / cid.digest[:1].hex() / str(cid)).write_bytes(b"tampered")
    stranger = keys_of(77).encryption_public
    rnd.publish(16, blob=encrypt_blob(encode_update(delta_like(base, 16)), [stranger]))
    rnd.publish(17, delta={k: v.double() for k, v in delta_like(base, 17).items()})  # too large

    result = rnd.compute(reference)

    assert reasons(result) == {
        0: None,
        1: None,
        2: None,
        3: RejectReason.BAD_SIGNATURE,
        4: RejectReason.BAD_ENVELOPE,
        5: RejectReason.WRONG_BASE,
        6: RejectReason.MALFORMED,
        7: RejectReason.WRONG_SHAPE,
        8: RejectReason.WRONG_SHAPE,
        9: RejectReason.NON_FINITE,
        10: RejectReason.NORM_EXCEEDED,
        11: RejectReason.FREE_RIDER,
        12: RejectReason.HASH_MISMATCH,
        13: RejectReason.CID_MISMATCH,
        14: RejectReason.UNAVAILABLE,
        15: RejectReason.CID_MISMATCH,
        16: RejectReason.ENCRYPTION_DISABLED,
        17: RejectReason.MALFORMED,
    }
    assert result.outcome.accepted_bitmap == encode_bitmap([0, 1, 2])
    rejected = {v.node for v in result.verdicts if not v.accepted}
    assert all(result.amounts[node] == 0 for node in rejected)


def test_a_round_that_aggregates_nothing_pays_and_reserves_nothing(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    rnd.publish(0, blob=b"not an update")

    result = rnd.compute(reference)

    assert reasons(result) == {0: RejectReason.MALFORMED}
    assert result.outcome.reward_total == result.tree.total == 0
    assert result.outcome.rewards_root == EMPTY_ROOT


def test_copied_updates_are_rejected_as_free_riders(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)
    rnd.publish(3, delta=delta_like(base, 0))  # member 3 sends member 0's update

    result = rnd.compute(reference)

    assert reasons(result) == {
        0: RejectReason.FREE_RIDER,
        1: None,
        2: None,
        3: RejectReason.FREE_RIDER,
    }


def test_an_update_the_rule_screens_out_is_rejected(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    krum = replace(spec, aggregation=AggregationSpec("multi_krum", {"f": 1, "m": 4}, ()))
    rnd = Round(store, krum, base)
    for i in range(4):
        rnd.publish(i)
    outlier = {k: v + 0.05 for k, v in delta_like(base, 4).items()}
    rnd.publish(4, delta=outlier)

    result = rnd.compute(reference)

    assert reasons(result)[4] == RejectReason.SCREENED
    assert result.outcome.accepted_bitmap == encode_bitmap(range(4))


def _encrypting_round(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, recipients: list[bytes]
) -> Round:
    """Members 0-2 publish plain updates, member 3 an encrypted one, in a swarm allowing it."""
    rnd = Round(store, replace(spec, encrypted_updates=True), base)
    for i in range(3):
        rnd.publish(i)
    rnd.publish(3, blob=encrypt_blob(encode_update(delta_like(base, 3)), recipients))
    return rnd


def _as(verifier: NodeKeys) -> Callable[[bytes, Sequence[bytes]], bytes]:
    return lambda blob, to: decrypt_blob(blob, verifier, to)


def test_an_encrypted_update_is_accepted_by_every_recipient_alike(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    verifiers = [keys_of(50), keys_of(51)]
    recipients = [v.encryption_public for v in verifiers]
    rnd = _encrypting_round(store, spec, base, recipients)

    results = [
        compute_round(
            replace(rnd.inputs(reference), recipients=tuple(recipients)),
            lambda cid, limit: store.get(cid, max_size=limit),
            _as(verifier),
        )
        for verifier in verifiers
    ]

    assert reasons(results[0]) == dict.fromkeys(range(4))
    assert results[0].outcome == results[1].outcome


def test_a_wrap_spoiled_for_one_recipient_is_rejected_by_every_recipient(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    # The split attack: the key wrapped properly for verifier 50, garbage for verifier 51.
    verifiers = [keys_of(50), keys_of(51)]
    recipients = [v.encryption_public for v in verifiers]
    rnd = Round(store, replace(spec, encrypted_updates=True), base)
    for i in range(3):
        rnd.publish(i)
    sealed = bytearray(encrypt_blob(encode_update(delta_like(base, 3)), recipients))
    sealed[len(ENCRYPTED_MAGIC) + 32 + 2 + (32 + 48) + 32 + 7] ^= 1
    rnd.publish(3, blob=bytes(sealed))

    results = [
        compute_round(
            replace(rnd.inputs(reference), recipients=tuple(recipients)),
            lambda cid, limit: store.get(cid, max_size=limit),
            _as(verifier),
        )
        for verifier in verifiers
    ]

    assert reasons(results[0])[3] == reasons(results[1])[3] == RejectReason.UNDECRYPTABLE
    assert results[0].outcome == results[1].outcome


def test_a_party_that_is_no_recipient_cannot_judge_the_round(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    recipients = [keys_of(50).encryption_public]
    rnd = _encrypting_round(store, spec, base, recipients)
    inputs = replace(rnd.inputs(reference), recipients=tuple(recipients))
    fetch: Fetch = lambda cid, limit: store.get(cid, max_size=limit)  # noqa: E731

    with pytest.raises(CannotJudge):
        compute_round(inputs, fetch, _as(keys_of(60)))
    with pytest.raises(CannotJudge):
        compute_round(inputs, fetch)


def test_encrypted_updates_are_rejected_where_the_task_does_not_allow_them(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    verifier = keys_of(50)
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)
    rnd.publish(
        3, blob=encrypt_blob(encode_update(delta_like(base, 3)), [verifier.encryption_public])
    )

    with_key = rnd.compute(reference, decrypt=_as(verifier))
    without = rnd.compute(reference)

    assert reasons(with_key)[3] == reasons(without)[3] == RejectReason.ENCRYPTION_DISABLED
    assert with_key.outcome == without.outcome


def test_withheld_updates_are_unavailable_without_a_fetch(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(4):
        rnd.publish(i)
    fetched: list[str] = []

    def fetch(cid: str, limit: int) -> bytes:
        fetched.append(cid)
        return store.get(cid, max_size=limit)

    result = compute_round(rnd.inputs(reference), fetch, withheld=frozenset({2}))

    assert reasons(result)[2] == RejectReason.UNAVAILABLE
    assert rnd.subs[2].cid not in fetched
    assert result.outcome.accepted_bitmap == encode_bitmap([0, 1, 3])


def test_checkpoint_is_the_canonical_encoding_of_base_plus_aggregate(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)

    result = rnd.compute(reference)
    checkpoint = result.checkpoint

    assert result.outcome.checkpoint_hash == content_hash(checkpoint.blob)
    again = decode_checkpoint(
        checkpoint.blob, spec, cid=checkpoint.cid, expected_hash=checkpoint.hash
    )
    assert encode_checkpoint(again.state).cid == checkpoint.cid
    assert any(not torch.equal(checkpoint.state[k], base.state[k]) for k in base.state)


def test_the_outcome_does_not_depend_on_the_torch_thread_count(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(5):
        rnd.publish(i, delta=delta_like(base, i, scale=0.05))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = rnd.compute(reference)
        torch.set_num_threads(2)
        two = rnd.compute(reference)
    finally:
        torch.set_num_threads(threads)

    assert one.outcome == two.outcome
    assert one.amounts == two.amounts


def test_combine_round_matches_compute_round_on_the_same_updates(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)
    contributions = [
        Contribution(i, address_of(i), 40 + i, delta_like(base, i), rnd.subs[i].cid)
        for i in range(3)
    ]

    assert combine_round(rnd.inputs(reference), contributions) == rnd.compute(reference)


def test_too_few_updates_for_the_rule_leave_the_round_unpaid(
    spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    krum = replace(spec, aggregation=AggregationSpec("krum", {"f": 1}, ()))
    contributions = [Contribution(i, address_of(i), 40 + i, delta_like(base, i)) for i in range(3)]
    result = combine_round(inputs_without_submissions(krum, base, reference), contributions)

    assert [v.reason for v in result.verdicts] == [None, None, None]
    assert {v.detail for v in result.verdicts} == {
        "not aggregated: Krum needs n >= 2f + 3, got n=3, f=1"
    }
    assert result.checkpoint == base
    assert result.outcome.reward_total == 0 and result.outcome.rewards_root == EMPTY_ROOT


def test_sample_counts_too_heavy_to_sum_leave_the_round_unpaid(
    spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    # A revealed count is any uint64: one too heavy for exact sums is nobody's bug here.
    contributions = [
        Contribution(i, address_of(i), 2**40 if i == 0 else 40, delta_like(base, i))
        for i in range(3)
    ]

    result = combine_round(inputs_without_submissions(spec, base, reference), contributions)

    assert [v.reason for v in result.verdicts] == [None, None, None]
    assert all(v.detail.startswith("not aggregated: sample counts") for v in result.verdicts)
    assert result.checkpoint == base and result.outcome.reward_total == 0


def test_a_round_quantises_its_updates_once(
    monkeypatch: pytest.MonkeyPatch, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    reads: list[int] = []
    read_updates = fixed_point._read_updates

    def counted(updates: Sequence[Update], *args: object) -> object:
        reads.append(len(updates))
        return read_updates(updates, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fixed_point, "_read_updates", counted)
    contributions = [Contribution(i, address_of(i), 40 + i, delta_like(base, i)) for i in range(4)]
    contributions.append(Contribution(4, address_of(4), 44, delta_like(base, 0)))  # a copy

    result = combine_round(inputs_without_submissions(spec, base, reference), contributions)

    assert reasons(result) == {
        0: RejectReason.FREE_RIDER,
        1: None,
        2: None,
        3: None,
        4: RejectReason.FREE_RIDER,
    }
    assert result.outcome.reward_total > 0  # aggregated and valued
    assert reads == [5]


@pytest.mark.parametrize("bug", [ValueError("bug"), ZeroDivisionError("bug")])
def test_a_bug_in_the_rule_is_raised_not_recorded_as_a_round(
    monkeypatch: pytest.MonkeyPatch,
    spec: TaskSpec,
    base: Checkpoint,
    reference: Dataset,
    bug: Exception,
) -> None:
    def broken(batch: object, **params: object) -> RuleOutput:
        raise bug

    monkeypatch.setattr(krum_module, "krum", broken)
    krum = replace(spec, aggregation=AggregationSpec("krum", {"f": 1}, ()))
    contributions = [Contribution(i, address_of(i), 40 + i, delta_like(base, i)) for i in range(5)]

    with pytest.raises(type(bug), match=r"^bug$"):
        combine_round(inputs_without_submissions(krum, base, reference), contributions)


def test_reward_is_the_smaller_of_the_per_round_reward_and_the_pool_at_opening() -> None:
    where = {"block_number": 1, "log_index": 0, "tx_hash": "0x"}
    node = address_of(0)
    finalized = RoundFinalized(
        **where,
        round=2,
        caller=node,
        outcome_key=b"",
        outcome=Outcome(b"", "", b"", b"", 700),
        outcome_stake=0,
        stake_at_open=0,
    )

    def opened(round_id: int) -> RoundOpened:
        return RoundOpened(
            **where,
            round=round_id,
            base_round=0,
            base_checkpoint_hash=b"",
            seed=b"",
            stake_at_open=0,
            active_at_open=0,
            commit_deadline=0,
        )

    slashed = Slashed(
        **where, round=2, node=node, reason=SlashReason.REJECTED, amount=50, remaining_stake=0
    )
    events = [
        opened(1),
        RewardsFunded(**where, round=1, funder=node, amount=1_000, pool=1_000),
        opened(2),
        slashed,
        finalized,
        opened(3),
    ]

    assert reward_for_round(events, 2, 700) == 700
    assert reward_for_round(events, 3, 700) == 350
    assert reward_for_round(events, 1, 700) == 0
    with pytest.raises(ValueError, match="round 4"):
        reward_for_round(events, 4, 700)


def test_an_update_claiming_more_samples_than_one_may_carry_is_rejected(
    store: EmbeddedStore, spec: TaskSpec, base: Checkpoint, reference: Dataset
) -> None:
    # 2**32 samples alone would push the round past the exact weight bound, and the round would
    # go unaggregated for everyone: the claim is refused, the others are aggregated.
    rnd = Round(store, spec, base)
    for i in range(3):
        rnd.publish(i)
    rnd.publish(3, num_samples=MAX_SAMPLES + 1)
    rnd.subs[-1] = replace(rnd.subs[-1], num_samples=MAX_SAMPLES + 1)

    result = rnd.compute(reference)

    assert reasons(result) == {0: None, 1: None, 2: None, 3: RejectReason.BAD_ENVELOPE}
    assert result.checkpoint.hash != base.hash
