"""Audit a checkpoint: verify every blob of its lineage and re-derive every round from genesis.

The auditor holds no node's private state: it reads the coordinator's events (`SwarmRecord`)
and fetches content by CID from a store. For the task and then for each finalized round of the
checkpoint's lineage, oldest first, it checks:

1. the task document against the hash fixed on-chain, and the genesis checkpoint against the
   document;
2. the envelope and update blobs of every update the round accepted, against the revealed and
   the signed SHA-256 (a rejected update's blobs may be missing or wrong: that is why it was
   rejected, and the re-run confirms it);
3. the round re-run through `swarmchain.node.protocol.round.compute_round`, the very function every
   node ran before attesting, on the inputs the chain records (base checkpoint, revealed updates,
   seed, reward): its accepted bitmap, checkpoint hash, checkpoint CID, rewards root and reward
   total against the finalized tuple;
4. the stored checkpoint blob against the finalized hash;
5. every claimed reward against the re-derived amount.

A failed check does not stop the audit: later rounds start from the re-derived checkpoint when
the stored one is missing or wrong, so one report lists every mismatch, first one first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swarmchain.node.audit.record import RoundRecord, RoundState, SwarmRecord
from swarmchain.node.audit.report import (
    AttestationLine,
    AuditReport,
    Check,
    CheckKind,
    RoundReport,
    SlashLine,
    UpdateLine,
    tokens,
)
from swarmchain.node.chain.deployment import Deployment
from swarmchain.node.chain.protocol import SlashReason, decode_bitmap
from swarmchain.node.errors import ConfigError, StorageError, VerificationError
from swarmchain.node.learning.data import MAX_DATA_BYTES, Dataset, load_npz, task_splits
from swarmchain.node.protocol.checkpoint import Checkpoint, decode_checkpoint, max_blob_bytes
from swarmchain.node.protocol.document import MAX_DOCUMENT_BYTES, TaskDocument
from swarmchain.node.protocol.evaluation import exact_metrics
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.inputs import round_inputs
from swarmchain.node.protocol.record import reward_for_round
from swarmchain.node.protocol.round import WITHHELD, RoundResult, compute_round
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.node.protocol.verify import ENCRYPTION_OVERHEAD, CannotJudge, RejectReason
from swarmchain.storage.envelope import MAX_ENVELOPE_BYTES, Manifest, open_envelope
from swarmchain.storage.errors import BlockNotFound, TamperedBlock
from swarmchain.storage.store import Store

Progress = Callable[[int, int], None]  # (rounds done, rounds in the lineage)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass
class _Task:
    """The task as far as it could be read and checked."""

    document: TaskDocument | None = None
    genesis: Checkpoint | None = None
    reference: Dataset | None = None


class Auditor:
    """Audits checkpoints of one swarm against its chain record and a content store.

    Parameters
    ----------
    record
        The coordinator's events, grouped (`SwarmRecord.of`).
    deployment
        The deployment file's record (chain id and coordinator address).
    store
        Where the task, updates and checkpoints are fetched by CID.
    """

    def __init__(self, record: SwarmRecord, deployment: Deployment, store: Store) -> None:
        self.record = record
        self.deployment = deployment
        self.store = store
        self.checks: list[Check] = []

    # ---- entry point -------------------------------------------------------------------------

    def audit(self, checkpoint: str = "latest", progress: Progress | None = None) -> AuditReport:
        """Audit the checkpoint a finalized round produced, back to the genesis.

        Parameters
        ----------
        checkpoint
            ``latest``, a finalized round id, a checkpoint CID, or its 0x SHA-256.
        progress
            Called after each round of the lineage with (rounds done, rounds in all).

        Returns
        -------
        AuditReport
            Every check made, the lineage and the re-derived rewards; its ``result`` is MATCH
            when every check passed.

        Raises
        ------
        ConfigError
            If no finalized round produced `checkpoint`.
        """
        self.checks = []
        target = self.record.round_of_checkpoint(checkpoint)
        lineage = self.record.lineage(target)
        task = self._task()
        checkpoints: dict[int, Checkpoint] = {} if task.genesis is None else {0: task.genesis}
        rounds: list[RoundReport] = []
        for done, rec in enumerate(lineage, start=1):
            rounds.append(self._round(rec, task, checkpoints))
            if progress is not None:
                progress(done, len(lineage))
        configured = self.record.configured
        final = self.record.rounds[target].finalized
        assert final is not None  # round_of_checkpoint returns finalized rounds only
        document = task.document
        return AuditReport(
            chain_id=self.deployment.chain_id,
            coordinator=self.deployment.coordinator,
            task_name="" if document is None else document.spec.name,
            task_cid=configured.task_spec_cid,
            task_hash=_hex(configured.task_spec_hash),
            genesis_cid="" if document is None else document.genesis_cid,
            genesis_hash="" if document is None else _hex(document.genesis_hash),
            genesis_accuracy=self._accuracy(task, task.genesis),
            checkpoint_round=target,
            checkpoint_cid=final.outcome.checkpoint_cid,
            checkpoint_hash=_hex(final.outcome.checkpoint_hash),
            rounds=tuple(rounds),
            checks=tuple(self.checks),
        )

    def _check(self, round_id: int, kind: CheckKind, subject: str, ok: bool, **what: str) -> bool:
        self.checks.append(Check(round_id, kind, subject, ok, **what))
        return ok

    def _get(self, round_id: int, kind: CheckKind, cid: str, max_size: int) -> bytes | None:
        """Fetch a blob by CID; a failure is a failed check naming the CID."""
        try:
            return self.store.get(cid, max_size=max_size)
        except TamperedBlock as err:
            detail = f"the stored content does not match its CID: {err}"
        except BlockNotFound as err:
            detail = f"the content is not in the store: {err}"
        except StorageError as err:
            detail = str(err)
        self._check(round_id, kind, cid, False, expected=cid, actual="", detail=detail)
        return None

    # ---- the task ----------------------------------------------------------------------------

    def _task(self) -> _Task:
        """Fetch and check the task document, the genesis checkpoint and the reference set."""
        task = _Task()
        configured = self.record.configured
        cid, expected = configured.task_spec_cid, configured.task_spec_hash
        blob = self._get(0, CheckKind.TASK_DOCUMENT, cid, MAX_DOCUMENT_BYTES)
        if blob is None:
            return task
        digest = content_hash(blob)
        if not self._check(
            0, CheckKind.TASK_DOCUMENT, cid, digest == expected,
            expected=_hex(expected), actual=_hex(digest),
        ):  # fmt: skip
            return task
        try:
            task.document = TaskDocument.from_bytes(blob)
        except VerificationError as err:
            self._check(0, CheckKind.TASK_DOCUMENT, cid, False, detail=str(err))
            return task
        spec = task.document.spec
        genesis_cid = task.document.genesis_cid
        genesis_blob = self._get(0, CheckKind.GENESIS, genesis_cid, max_blob_bytes(spec))
        if genesis_blob is not None:
            task.genesis = self._decode(
                0, CheckKind.GENESIS, genesis_blob, spec, genesis_cid, task.document.genesis_hash
            )
        task.reference = self._reference(spec)
        return task

    def _decode(
        self, round_id: int, kind: CheckKind, blob: bytes, spec: TaskSpec, cid: str, digest: bytes
    ) -> Checkpoint | None:
        """Check a checkpoint blob against its recorded hash and decode it."""
        try:
            checkpoint = decode_checkpoint(blob, spec, cid=cid, expected_hash=digest)
        except VerificationError as err:
            self._check(
                round_id, kind, cid, False,
                expected=_hex(digest), actual=_hex(content_hash(blob)), detail=str(err),
            )  # fmt: skip
            return None
        self._check(round_id, kind, cid, True, expected=_hex(digest), actual=_hex(digest))
        return checkpoint

    def _reference(self, spec: TaskSpec) -> Dataset | None:
        """The task's reference set: a bundled holdout, or an .npz fetched by CID."""
        if spec.reference.source == "holdout":
            return task_splits(spec)[1]
        cid = spec.reference.cid
        blob = self._get(0, CheckKind.REFERENCE, cid, MAX_DATA_BYTES)
        if blob is None:
            return None
        try:
            reference = load_npz(blob)
        except ConfigError as err:
            self._check(0, CheckKind.REFERENCE, cid, False, detail=str(err))
            return None
        self._check(0, CheckKind.REFERENCE, cid, True, expected=cid, actual=cid)
        return reference

    # ---- one round ---------------------------------------------------------------------------

    def _round(
        self, rec: RoundRecord, task: _Task, checkpoints: dict[int, Checkpoint]
    ) -> RoundReport:
        """Check one round of the lineage and describe it."""
        final = rec.finalized
        accepted = None if final is None else decode_bitmap(final.outcome.accepted_bitmap)
        result: RoundResult | None = None
        if final is not None and accepted is not None:
            self._check_blobs(rec, accepted, task)
            result = self._replay(rec, task, checkpoints)
            self._compare(rec, result)
            stored = self._stored_checkpoint(rec, task)
            if stored is not None:
                checkpoints[rec.round] = stored
            elif result is not None and result.outcome == final.outcome:
                checkpoints[rec.round] = result.checkpoint
            self._check_claims(rec, result)
        verdicts = {} if result is None else {v.index: v for v in result.verdicts}
        updates = []
        for sub in rec.submissions():
            verdict = verdicts.get(sub.index)
            updates.append(
                UpdateLine(
                    index=sub.index,
                    node=sub.node,
                    cid=sub.cid,
                    content_hash=_hex(sub.content_hash),
                    num_samples=sub.num_samples,
                    accepted=None if accepted is None else sub.index in accepted,
                    reason=None
                    if verdict is None or verdict.reason is None
                    else verdict.reason.value,
                    detail="" if verdict is None else verdict.detail,
                )
            )
        final_key = None if final is None else final.outcome_key
        return RoundReport(
            round=rec.round,
            base_round=rec.base_round,
            state=rec.state.value,
            seed=_hex(rec.opened.seed),
            checkpoint_cid="" if final is None else final.outcome.checkpoint_cid,
            checkpoint_hash="" if final is None else _hex(final.outcome.checkpoint_hash),
            updates=tuple(updates),
            attestations=tuple(
                AttestationLine(
                    a.node,
                    a.weight,
                    a.outcome_stake,
                    _hex(a.outcome.checkpoint_hash),
                    a.outcome_key == final_key,
                )
                for a in rec.attestations
            ),
            slashes=tuple(
                SlashLine(
                    s.node,
                    "rejected" if s.reason == SlashReason.REJECTED else "not_revealed",
                    s.amount,
                )
                for s in rec.slashes
            ),
            reward=self._reward(rec),
            rewards={} if result is None else dict(result.amounts),
            claimed=_claimed(rec),
            accuracy=self._accuracy(task, checkpoints.get(rec.round))
            if rec.state == RoundState.FINALIZED
            else None,
            replayed=result is not None,
            note=_note(rec, result),
        )

    def _reward(self, rec: RoundRecord) -> int:
        params = self.record.configured.params
        return reward_for_round(self.record.events, rec.round, params.reward_per_round)

    def _check_blobs(self, rec: RoundRecord, accepted: frozenset[int], task: _Task) -> None:
        """Check the envelope and update blobs of every accepted update against their hashes."""
        limit = MAX_ENVELOPE_BYTES
        for sub in rec.submissions():
            if sub.index not in accepted:
                continue
            envelope = self._get(rec.round, CheckKind.ENVELOPE, sub.cid, limit)
            if envelope is None:
                continue
            digest = content_hash(envelope)
            if not self._check(
                rec.round, CheckKind.ENVELOPE, sub.cid, digest == sub.content_hash,
                expected=_hex(sub.content_hash), actual=_hex(digest),
            ):  # fmt: skip
                continue
            manifest = self._manifest(rec, envelope, sub.signer, sub.cid)
            if manifest is None or task.document is None:
                continue
            bound = max_blob_bytes(task.document.spec) + ENCRYPTION_OVERHEAD
            blob = self._get(rec.round, CheckKind.UPDATE, manifest.update_cid, bound)
            if blob is None:
                continue
            digest = content_hash(blob)
            if not self._check(
                rec.round, CheckKind.UPDATE, manifest.update_cid,
                _hex(digest) == manifest.content_hash,
                expected=manifest.content_hash, actual=_hex(digest),
            ):  # fmt: skip
                continue

    def _manifest(
        self, rec: RoundRecord, envelope: bytes, signer: bytes, cid: str
    ) -> Manifest | None:
        try:
            return open_envelope(
                envelope,
                signer=signer,
                chain_id=self.deployment.chain_id,
                coordinator=self.deployment.coordinator,
                round=rec.round,
            )
        except VerificationError as err:
            self._check(rec.round, CheckKind.ENVELOPE, cid, False, detail=str(err))
            return None

    def _replay(
        self, rec: RoundRecord, task: _Task, checkpoints: dict[int, Checkpoint]
    ) -> RoundResult | None:
        """Re-run the round with the runtime's pure round function."""
        base = checkpoints.get(rec.base_round)
        if task.document is None or task.reference is None or base is None:
            self._check(
                rec.round, CheckKind.REPLAY, f"round {rec.round}", False,
                detail="the task, its reference set or the base checkpoint is unavailable",
            )  # fmt: skip
            return None
        inputs = round_inputs(
            self.record.events,
            rec.round,
            chain_id=self.deployment.chain_id,
            coordinator=self.deployment.coordinator,
            document=task.document,
            checkpoint_of=checkpoints.__getitem__,
            reference=task.reference,
        )

        def fetch(cid: str, size: int) -> bytes:
            return self.store.get(cid, max_size=size)

        try:
            result = compute_round(inputs, fetch)
            late = _published_late(rec, result)
            if late:
                # The record says these were unavailable during the round; the auditor cannot
                # disprove that, so it re-derives the round the nodes computed without them.
                result = compute_round(inputs, fetch, withheld=late)
        except CannotJudge as err:
            self._check(
                rec.round, CheckKind.REPLAY, f"round {rec.round}", False,
                detail=f"{err}: updates encrypted for the swarm's members cannot be re-derived "
                "by an outside auditor",
            )  # fmt: skip
            return None
        return result

    def _compare(self, rec: RoundRecord, result: RoundResult | None) -> None:
        """Compare the re-derived tuple with the finalized one, field by field."""
        final = rec.finalized
        if result is None or final is None:
            return
        chain, mine = final.outcome, result.outcome
        r = rec.round
        on_chain = decode_bitmap(chain.accepted_bitmap)
        derived = decode_bitmap(mine.accepted_bitmap)
        differ = [
            f"{s.cid} (member {s.index}: chain {'accepts' if s.index in on_chain else 'rejects'})"
            for s in rec.submissions()
            if (s.index in on_chain) != (s.index in derived)
        ]
        self._check(
            r, CheckKind.ACCEPTED_BITMAP, "accepted updates", on_chain == derived,
            expected=_hex(chain.accepted_bitmap), actual=_hex(mine.accepted_bitmap),
            detail="verdicts differ for " + ", ".join(differ) if differ else "",
        )  # fmt: skip
        self._check(
            r, CheckKind.CHECKPOINT_HASH, chain.checkpoint_cid,
            chain.checkpoint_hash == mine.checkpoint_hash,
            expected=_hex(chain.checkpoint_hash), actual=_hex(mine.checkpoint_hash),
        )  # fmt: skip
        self._check(
            r, CheckKind.CHECKPOINT_CID, chain.checkpoint_cid,
            chain.checkpoint_cid == mine.checkpoint_cid,
            expected=chain.checkpoint_cid, actual=mine.checkpoint_cid,
        )  # fmt: skip
        self._check(
            r, CheckKind.REWARDS_ROOT, "rewards root", chain.rewards_root == mine.rewards_root,
            expected=_hex(chain.rewards_root), actual=_hex(mine.rewards_root),
        )  # fmt: skip
        self._check(
            r, CheckKind.REWARD_TOTAL, "reward total", chain.reward_total == mine.reward_total,
            expected=str(chain.reward_total), actual=str(mine.reward_total),
        )  # fmt: skip

    def _stored_checkpoint(self, rec: RoundRecord, task: _Task) -> Checkpoint | None:
        """Fetch the finalized checkpoint blob and check it against the finalized hash."""
        final = rec.finalized
        if final is None or task.document is None:
            return None
        spec = task.document.spec
        cid, digest = final.outcome.checkpoint_cid, final.outcome.checkpoint_hash
        blob = self._get(rec.round, CheckKind.CHECKPOINT_BLOB, cid, max_blob_bytes(spec))
        if blob is None:
            return None
        return self._decode(rec.round, CheckKind.CHECKPOINT_BLOB, blob, spec, cid, digest)

    def _check_claims(self, rec: RoundRecord, result: RoundResult | None) -> None:
        """Every claimed amount must be the re-derived reward of its account."""
        if result is None:
            return
        for claim in rec.claims:
            owed = result.amounts.get(claim.account, 0)
            self._check(
                rec.round, CheckKind.CLAIM, claim.account, claim.amount == owed,
                expected=str(claim.amount), actual=str(owed),
            )  # fmt: skip

    def _accuracy(self, task: _Task, checkpoint: Checkpoint | None) -> float | None:
        """A checkpoint's exact accuracy on the task's reference set."""
        if checkpoint is None or task.document is None or task.reference is None:
            return None
        return exact_metrics(task.document.spec, [checkpoint.state], task.reference)[0].accuracy


def _published_late(rec: RoundRecord, result: RoundResult) -> frozenset[int]:
    """Members whose update verifies now but that the finalized round left out before any
    content check could: it was unavailable then (withheld, or served only later)."""
    if rec.finalized is None:
        return frozenset()
    recorded = decode_bitmap(rec.finalized.outcome.accepted_bitmap)
    return frozenset(v.index for v in result.verdicts if v.accepted and v.index not in recorded)


def _note(rec: RoundRecord, result: RoundResult | None = None) -> str:
    """Why a failed round failed, or which updates a finalized one recorded as unavailable."""
    if rec.failed is None:
        late = sorted(
            v.index
            for v in (() if result is None else result.verdicts)
            if v.reason == RejectReason.UNAVAILABLE and v.detail == WITHHELD
        )
        if not late:
            return ""
        members = ", ".join(str(index) for index in late)
        return (
            f"Member(s) {members}: unavailable during the round by its record (their content "
            "verifies now: withheld, or published late)."
        )
    if rec.opened.active_at_open == 0:
        return "Failed: no member was active when it opened."
    return (
        f"Failed: no tuple reached quorum (the leading one had {tokens(rec.failed.leading_stake)}"
        f" of the {tokens(rec.failed.required_stake)} tokens of stake needed)."
    )


def _claimed(rec: RoundRecord) -> dict[str, int]:
    out: dict[str, int] = {}
    for claim in rec.claims:
        out[claim.account] = out.get(claim.account, 0) + claim.amount
    return out
