"""The audit's findings: what the chain records for each round, and every check made on it.

An `AuditReport` holds the lineage (one `RoundReport` per round, oldest first) and the list of
`Check`s in the order they were made. The result is MATCH when every check passed; otherwise the
first failed check is the first MISMATCH. `AuditReport.to_json` is the ``--format json`` output
(its ``result`` key is the same one ``swarm demo --json`` carries under ``audit``);
`to_markdown` is the ``--format md`` output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TOKEN_DECIMALS = 18


class Result(StrEnum):
    """The audit's verdict."""

    MATCH = "MATCH"
    MISMATCH = "MISMATCH"


class CheckKind(StrEnum):
    """What a check compares."""

    TASK_DOCUMENT = "task_document"  # the task document blob against the on-chain hash
    GENESIS = "genesis"  # the genesis checkpoint blob against the task document
    REFERENCE = "reference"  # the reference set blob (a task whose reference is stored by CID)
    ENVELOPE = "envelope"  # an accepted update's envelope blob against its revealed hash
    UPDATE = "update"  # an accepted update's blob against its signed hash
    REPLAY = "replay"  # whether the round could be re-run at all
    ACCEPTED_BITMAP = "accepted_bitmap"  # re-derived accepted set against the finalized one
    CHECKPOINT_HASH = "checkpoint_hash"  # re-derived checkpoint hash against the finalized one
    CHECKPOINT_CID = "checkpoint_cid"  # re-derived checkpoint CID against the finalized one
    REWARDS_ROOT = "rewards_root"  # re-derived rewards root against the finalized one
    REWARD_TOTAL = "reward_total"  # re-derived reward total against the finalized one
    CHECKPOINT_BLOB = "checkpoint_blob"  # the stored checkpoint blob against its hash
    CLAIM = "claim"  # a claimed amount against the re-derived reward


@dataclass(frozen=True)
class Check:
    """One comparison between the chain's record and what the auditor derived or fetched."""

    round: int  # the round it concerns (0: the task and genesis)
    kind: CheckKind
    subject: str  # the CID, account or field it is about
    ok: bool
    expected: str = ""  # what the chain records
    actual: str = ""  # what the auditor found
    detail: str = ""  # why it failed, in words

    def describe(self) -> str:
        """The check in one line."""
        where = "task" if self.round == 0 else f"round {self.round}"
        verdict = "ok" if self.ok else "MISMATCH"
        text = f"{where}: {self.kind.value} {self.subject}: {verdict}"
        if not self.ok:
            text += f" (chain: {self.expected or '-'}, found: {self.actual or '-'})"
            if self.detail:
                text += f": {self.detail}"
        return text

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return {
            "round": self.round,
            "kind": self.kind.value,
            "subject": self.subject,
            "ok": self.ok,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class UpdateLine:
    """One revealed update."""

    index: int  # the member's bitmap index
    node: str
    cid: str  # the envelope CID
    content_hash: str  # 0x SHA-256 of the envelope, as revealed
    num_samples: int
    accepted: bool | None  # in the finalized bitmap (None: the round failed)
    reason: str | None = None  # why the re-run rejects it (None: accepted or not re-run)
    detail: str = ""


@dataclass(frozen=True)
class AttestationLine:
    """One attestation."""

    node: str
    weight: int  # the attester's stake at round open
    outcome_stake: int  # the tuple's stake after it
    checkpoint_hash: str  # the attested tuple's checkpoint hash
    final: bool  # whether it attested the finalized tuple


@dataclass(frozen=True)
class SlashLine:
    """One slash for an offence in the round."""

    node: str
    reason: str  # "not_revealed" or "rejected"
    amount: int


@dataclass(frozen=True)
class RoundReport:
    """One round of the lineage."""

    round: int
    base_round: int
    state: str  # "finalized", "failed" or "open"
    seed: str  # 0x round seed
    checkpoint_cid: str  # "" unless finalized
    checkpoint_hash: str  # "" unless finalized
    updates: tuple[UpdateLine, ...]
    attestations: tuple[AttestationLine, ...]
    slashes: tuple[SlashLine, ...]
    reward: int = 0  # the round's reward (what it could pay)
    rewards: dict[str, int] = field(default_factory=dict)  # re-derived reward per account
    claimed: dict[str, int] = field(default_factory=dict)  # claimed so far per account
    accuracy: float | None = None  # the checkpoint's accuracy on the task's reference set
    replayed: bool = False  # whether the auditor re-ran the round
    note: str = ""  # why a failed round failed, in words

    @property
    def accepted(self) -> int:
        """Updates in the finalized bitmap."""
        return sum(u.accepted is True for u in self.updates)

    @property
    def rejected(self) -> int:
        """Revealed updates left out of the finalized bitmap."""
        return sum(u.accepted is False for u in self.updates)

    def to_json(self) -> dict[str, Any]:
        """The round as a JSON object (token amounts as decimal strings of base units)."""
        return {
            "round": self.round,
            "base_round": self.base_round,
            "state": self.state,
            "seed": self.seed,
            "checkpoint_cid": self.checkpoint_cid,
            "checkpoint_hash": self.checkpoint_hash,
            "accuracy": self.accuracy,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "replayed": self.replayed,
            "note": self.note,
            "updates": [
                {
                    "index": u.index,
                    "node": u.node,
                    "cid": u.cid,
                    "content_hash": u.content_hash,
                    "num_samples": u.num_samples,
                    "accepted": u.accepted,
                    "reason": u.reason,
                    "detail": u.detail,
                }
                for u in self.updates
            ],
            "attestations": [
                {
                    "node": a.node,
                    "weight": str(a.weight),
                    "outcome_stake": str(a.outcome_stake),
                    "checkpoint_hash": a.checkpoint_hash,
                    "final": a.final,
                }
                for a in self.attestations
            ],
            "slashes": [
                {"node": s.node, "reason": s.reason, "amount": str(s.amount)} for s in self.slashes
            ],
            "reward": str(self.reward),
            "rewards": {node: str(amount) for node, amount in sorted(self.rewards.items())},
            "claimed": {node: str(amount) for node, amount in sorted(self.claimed.items())},
        }


@dataclass(frozen=True)
class AuditReport:
    """A checkpoint's lineage and every check the auditor made."""

    chain_id: int
    coordinator: str
    task_name: str  # "" when the task document could not be read
    task_cid: str
    task_hash: str
    genesis_cid: str
    genesis_hash: str
    genesis_accuracy: float | None
    checkpoint_round: int  # the finalized round that produced the audited checkpoint
    checkpoint_cid: str
    checkpoint_hash: str
    rounds: tuple[RoundReport, ...]  # the lineage, oldest first
    checks: tuple[Check, ...]  # in the order they were made

    @property
    def result(self) -> Result:
        """MATCH when every check passed."""
        return Result.MATCH if all(c.ok for c in self.checks) else Result.MISMATCH

    @property
    def first_mismatch(self) -> Check | None:
        """The first check that failed, if any."""
        return next((c for c in self.checks if not c.ok), None)

    @property
    def blobs_verified(self) -> int:
        """Blobs fetched and checked against their recorded hashes."""
        blobs = (
            CheckKind.TASK_DOCUMENT,
            CheckKind.GENESIS,
            CheckKind.REFERENCE,
            CheckKind.ENVELOPE,
            CheckKind.UPDATE,
            CheckKind.CHECKPOINT_BLOB,
        )
        return sum(c.ok and c.kind in blobs for c in self.checks)

    def summary(self) -> str:
        """The verdict in one line."""
        first = self.first_mismatch
        if first is None:
            return (
                f"MATCH: checkpoint of round {self.checkpoint_round} re-derived from genesis "
                f"over {sum(r.replayed for r in self.rounds)} round(s); "
                f"{self.blobs_verified} blobs and {len(self.checks)} checks passed"
            )
        failed = sum(not c.ok for c in self.checks)
        return f"MISMATCH ({failed} of {len(self.checks)} checks failed); first: {first.describe()}"

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON object."""
        first = self.first_mismatch
        return {
            "result": self.result.value,
            "summary": self.summary(),
            "first_mismatch": None if first is None else first.to_json(),
            "chain_id": self.chain_id,
            "coordinator": self.coordinator,
            "task": {
                "name": self.task_name,
                "cid": self.task_cid,
                "hash": self.task_hash,
                "genesis_cid": self.genesis_cid,
                "genesis_hash": self.genesis_hash,
                "genesis_accuracy": self.genesis_accuracy,
            },
            "checkpoint": {
                "round": self.checkpoint_round,
                "cid": self.checkpoint_cid,
                "hash": self.checkpoint_hash,
            },
            "blobs_verified": self.blobs_verified,
            "rounds": [r.to_json() for r in self.rounds],
            "checks": [c.to_json() for c in self.checks],
        }


def tokens(amount: int) -> str:
    """A token amount in whole tokens with up to 4 decimals (``12.5``)."""
    whole = amount / 10**TOKEN_DECIMALS
    return f"{whole:,.4f}".rstrip("0").rstrip(".")


def short(value: str, keep: int = 10) -> str:
    """A long hash, CID or address shortened for a table (``0x1234…abcd``)."""
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-4:]}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def to_markdown(report: AuditReport) -> str:
    """The report as Markdown: the verdict, the task, then one section per round.

    Parameters
    ----------
    report
        The audit's findings.

    Returns
    -------
    str
        The Markdown text.
    """
    lines = [
        f"# Provenance audit: checkpoint of round {report.checkpoint_round}",
        "",
        f"**Result: {report.result.value}** ({report.summary()})",
        "",
        f"- chain {report.chain_id}, coordinator `{report.coordinator}`",
        f"- task `{report.task_name}`: document `{report.task_cid}` (`{report.task_hash}`)",
        f"- genesis `{report.genesis_cid}` (`{report.genesis_hash}`), "
        f"accuracy {_percent(report.genesis_accuracy)}",
        f"- checkpoint `{report.checkpoint_cid}` (`{report.checkpoint_hash}`)",
        "",
    ]
    failed = [c for c in report.checks if not c.ok]
    if failed:
        lines += ["## Mismatches", ""]
        lines += [f"- {c.describe()}" for c in failed]
        lines.append("")
    for r in report.rounds:
        lines += _round_markdown(r)
    return "\n".join(lines)


def _round_markdown(r: RoundReport) -> list[str]:
    head = f"## Round {r.round} ({r.state}, from round {r.base_round})"
    lines = [head, ""]
    if r.note:
        lines += [r.note, ""]
    if r.checkpoint_cid:
        lines.append(
            f"Checkpoint `{r.checkpoint_cid}` (`{r.checkpoint_hash}`), "
            f"accuracy {_percent(r.accuracy)}, reward {tokens(r.reward)} tokens"
            + ("" if r.replayed else ", not re-run")
        )
        lines.append("")
    if r.updates:
        lines += [
            "| index | node | update CID | samples | verdict |",
            "|---:|---|---|---:|---|",
        ]
        for u in sorted(r.updates, key=lambda u: u.index):
            verdict = {True: "accepted", False: "rejected", None: "-"}[u.accepted]
            if u.reason:
                verdict += f" ({u.reason})"
            lines.append(f"| {u.index} | `{u.node}` | `{u.cid}` | {u.num_samples} | {verdict} |")
        lines.append("")
    if r.attestations:
        lines += ["| attester | stake | tuple | finalized tuple |", "|---|---:|---|---|"]
        for a in r.attestations:
            lines.append(
                f"| `{a.node}` | {tokens(a.weight)} | `{short(a.checkpoint_hash)}` | "
                f"{'yes' if a.final else 'no'} |"
            )
        lines.append("")
    if r.rewards or r.claimed:
        lines += ["| account | reward | claimed |", "|---|---:|---:|"]
        for node in sorted(set(r.rewards) | set(r.claimed)):
            lines.append(
                f"| `{node}` | {tokens(r.rewards.get(node, 0))} | "
                f"{tokens(r.claimed.get(node, 0))} |"
            )
        lines.append("")
    for s in r.slashes:
        lines.append(f"- slashed `{s.node}` ({s.reason}): {tokens(s.amount)} tokens")
    if r.slashes:
        lines.append("")
    return lines
