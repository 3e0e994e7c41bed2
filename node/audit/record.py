"""The coordinator's events grouped by round: what the chain says happened, nothing more.

`SwarmRecord.of` reads a list of coordinator events (in chain order) into the swarm's
configuration, its members' registrations and one `RoundRecord` per round. `lineage` follows a
checkpoint's rounds back to the genesis through each round's base. Everything here is a pure
function of the events, so an auditor needs only an RPC URL to build it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from swarmchain.node.chain.events import (
    Attested,
    ChainEvent,
    Claimed,
    Committed,
    Joined,
    Revealed,
    RoundFailed,
    RoundFinalized,
    RoundOpened,
    Slashed,
    SwarmConfigured,
)
from swarmchain.node.errors import ConfigError
from swarmchain.node.protocol.record import submissions_by_round
from swarmchain.node.protocol.verify import Submission


class RoundState(StrEnum):
    """How a round ended, as the chain records it."""

    OPEN = "open"
    FINALIZED = "finalized"
    FAILED = "failed"


@dataclass
class RoundRecord:
    """Every event of one round, in chain order."""

    opened: RoundOpened
    commits: list[Committed] = field(default_factory=list)
    reveals: list[Revealed] = field(default_factory=list)
    attestations: list[Attested] = field(default_factory=list)
    finalized: RoundFinalized | None = None
    failed: RoundFailed | None = None
    slashes: list[Slashed] = field(default_factory=list)  # for offences in this round
    claims: list[Claimed] = field(default_factory=list)
    submitted: tuple[Submission, ...] = ()  # the reveals with their keys (`record.submissions`)

    @property
    def round(self) -> int:
        """The round id."""
        return self.opened.round

    @property
    def base_round(self) -> int:
        """The round whose checkpoint this one starts from (0: the genesis)."""
        return self.opened.base_round

    @property
    def state(self) -> RoundState:
        """Finalized, failed, or still open."""
        if self.finalized is not None:
            return RoundState.FINALIZED
        if self.failed is not None:
            return RoundState.FAILED
        return RoundState.OPEN

    def submissions(self) -> tuple[Submission, ...]:
        """The round's revealed updates with the index and signing key each member had."""
        return self.submitted


@dataclass(frozen=True)
class SwarmRecord:
    """A swarm's configuration, members and rounds, read from its coordinator's events."""

    configured: SwarmConfigured
    members: dict[str, Joined]  # address -> latest registration
    rounds: dict[int, RoundRecord]  # round id -> record
    events: tuple[ChainEvent, ...]  # the whole record, in chain order

    @classmethod
    def of(cls, events: Sequence[ChainEvent]) -> SwarmRecord:
        """Group a coordinator's events (in chain order, from its deployment block).

        Raises
        ------
        ConfigError
            If the events lack the coordinator's `SwarmConfigured` (the scan started too late
            or the address is not a coordinator).
        """
        configured: SwarmConfigured | None = None
        members: dict[str, Joined] = {}
        rounds: dict[int, RoundRecord] = {}
        for e in events:
            if isinstance(e, SwarmConfigured):
                configured = e
            elif isinstance(e, Joined):
                members[e.node] = e
            elif isinstance(e, RoundOpened):
                rounds[e.round] = RoundRecord(e)
            elif (rec := rounds.get(getattr(e, "round", -1))) is not None:
                _file(rec, e)
        if configured is None:
            raise ConfigError(
                "the coordinator's events hold no SwarmConfigured",
                hint="check the deployment file's coordinator address and deploy_block",
            )
        for round_id, subs in submissions_by_round(events).items():
            if round_id in rounds:
                rounds[round_id].submitted = subs
        return cls(configured, members, rounds, tuple(events))

    def finalized_rounds(self) -> list[int]:
        """Ids of the finalized rounds, oldest first."""
        return [r for r, rec in sorted(self.rounds.items()) if rec.finalized is not None]

    def round_of_checkpoint(self, checkpoint: str) -> int:
        """The finalized round that produced a checkpoint.

        Parameters
        ----------
        checkpoint
            ``latest``, a round id, a checkpoint CID, or its 0x SHA-256.

        Raises
        ------
        ConfigError
            If no finalized round matches.
        """
        finalized = self.finalized_rounds()
        if checkpoint == "latest":
            if not finalized:
                raise ConfigError("no round of this swarm is finalized yet")
            return finalized[-1]
        if checkpoint.isdigit() and int(checkpoint) in finalized:
            return int(checkpoint)
        wanted = checkpoint.lower()
        for r in finalized:
            outcome = self.rounds[r].finalized.outcome  # type: ignore[union-attr]
            if wanted in (outcome.checkpoint_cid.lower(), "0x" + outcome.checkpoint_hash.hex()):
                return r
        raise ConfigError(
            f"no finalized round produced checkpoint {checkpoint!r}",
            hint="pass `latest`, a finalized round id, a checkpoint CID or its 0x hash",
        )

    def lineage(self, round_id: int) -> list[RoundRecord]:
        """The rounds from the genesis to `round_id`, oldest first.

        Every finalized round on the path from the genesis to the checkpoint, with the failed
        attempts that retried from the same base in between.
        """
        path: list[int] = []
        r = round_id
        while r != 0:
            path.append(r)
            r = self.rounds[r].base_round
        path.reverse()
        on_path = set(path)
        return [
            rec
            for rid, rec in sorted(self.rounds.items())
            if rid in on_path
            or (rec.state == RoundState.FAILED and rid < round_id and _retries_on(rec, on_path))
        ]


def _retries_on(rec: RoundRecord, on_path: set[int]) -> bool:
    return rec.base_round == 0 or rec.base_round in on_path


def _file(rec: RoundRecord, e: ChainEvent) -> None:
    """Add one round-scoped event to its round's record."""
    if isinstance(e, Committed):
        rec.commits.append(e)
    elif isinstance(e, Revealed):
        rec.reveals.append(e)
    elif isinstance(e, Attested):
        rec.attestations.append(e)
    elif isinstance(e, RoundFinalized):
        rec.finalized = e
    elif isinstance(e, RoundFailed):
        rec.failed = e
    elif isinstance(e, Slashed):
        rec.slashes.append(e)
    elif isinstance(e, Claimed):
        rec.claims.append(e)
