"""What a node does for a round: its duties by name, and how it sends or skips them.

A duty's name is the string the journal and the events carry (``skipped`` records' ``phase``,
``sent`` records' ``action``), so `Duty` is a `StrEnum` whose values never change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from swarmchain.node.chain.reverts import (
    AlreadyAttested,
    AlreadyClaimed,
    AlreadyCommitted,
    AlreadyRevealed,
    AlreadySlashed,
    ContractRevert,
    NotSlashable,
    QuorumReached,
    RoundAlreadyFinalized,
    RoundNotExpired,
    WrongRound,
)
from swarmchain.node.chain.tx import Transaction
from swarmchain.node.runtime.clock import RoundClock
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.journal import Journal


class Duty(StrEnum):
    """A node's duty in a round; the value is what the journal and the events record."""

    COMMIT = "commit"  # train, publish and commit an update
    REVEAL = "reveal"  # reveal the committed update
    ATTEST = "attest"  # verify, aggregate, value and attest the round's tuple
    FINALIZE = "finalize"  # finalize a tuple at quorum (anyone may)
    FAIL = "fail"  # fail a round whose windows ended without quorum (anyone may)
    CLAIM = "claim"  # claim this node's reward in a finalized round
    SLASH = "slash"  # slash the round's offenders, in this node's turn
    MEMBERSHIP = "membership"  # take part at all (skipped once the account is no member)


# Reverts that mean "someone else already did it", by duty.
BENIGN: dict[Duty, tuple[type[ContractRevert], ...]] = {
    Duty.COMMIT: (AlreadyCommitted,),
    Duty.REVEAL: (AlreadyRevealed,),
    Duty.ATTEST: (AlreadyAttested, WrongRound),  # others reached quorum and finalized first
    Duty.FINALIZE: (RoundAlreadyFinalized, WrongRound),
    Duty.FAIL: (RoundAlreadyFinalized, WrongRound, QuorumReached, RoundNotExpired),
    Duty.SLASH: (AlreadySlashed, NotSlashable),
    Duty.CLAIM: (AlreadyClaimed,),
}
SENT_EVENT = {  # the event a sent transaction is reported as
    Duty.COMMIT: EventKind.COMMITTED,
    Duty.REVEAL: EventKind.REVEALED,
    Duty.ATTEST: EventKind.ATTESTED,
    Duty.FINALIZE: EventKind.FINALIZE_SENT,
    Duty.FAIL: EventKind.FAIL_SENT,
    Duty.SLASH: EventKind.SLASH_SENT,
    Duty.CLAIM: EventKind.CLAIMED,
}
STAGGER_SLOTS = 16  # duties anyone may do go to members in turns of this many indices
Emit = Callable[..., None]  # (kind, round, **data): report a `NodeEvent`


class Duties:
    """Which duties this node skipped, whose turn a shared duty is, and sending transactions.

    Parameters
    ----------
    journal
        Records every skip and every sent transaction.
    emit
        Reports ``SKIPPED`` and the sent events.
    chain_now
        The chain's time (`ChainClock.now`).
    clock
        The round's clock (transactions count as ``chain`` time).
    margin_s, stagger_s, index
        The deadline safety margin, the stagger step, and this member's bitmap index.
    """

    def __init__(
        self,
        journal: Journal,
        emit: Emit,
        chain_now: Callable[[], int],
        clock: Callable[[int], RoundClock],
        *,
        margin_s: float,
        stagger_s: float,
        index: int,
    ) -> None:
        self.journal = journal
        self.emit = emit
        self.chain_now = chain_now
        self.clock = clock
        self.margin_s = margin_s
        self.stagger_s = stagger_s
        self.index = index
        self._skipped: set[tuple[int, Duty]] = set()
        self._seen: dict[tuple[int, Duty], float] = {}  # when a shared duty was first seen due

    def skipped(self, round_id: int, duty: Duty) -> bool:
        """Whether this node gave up a duty in the round."""
        return (round_id, duty) in self._skipped

    def skip(self, round_id: int, duty: Duty, reason: str) -> None:
        """Give up a duty in the round (journaled and reported once)."""
        if (round_id, duty) in self._skipped:
            return
        self._skipped.add((round_id, duty))
        self.journal.append("skipped", round=round_id, phase=duty, reason=reason)
        self.emit(EventKind.SKIPPED, round_id, phase=duty, reason=reason)

    def in_time(self, round_id: int, duty: Duty, deadline: int) -> bool:
        """Whether a duty's transaction may still be sent; records a skip if not."""
        if self.chain_now() + self.margin_s < deadline:
            return True
        self.skip(round_id, duty, f"deadline {deadline} passed")
        return False

    def due(self, round_id: int, duty: Duty) -> bool:
        """Whether this node's turn at a duty anyone may do has come (staggered by index)."""
        key = (round_id, duty)
        if key in self._skipped:
            return False
        first = self._seen.setdefault(key, time.monotonic())
        return time.monotonic() - first >= self.stagger_s * (self.index % STAGGER_SLOTS + 1)

    def send(
        self, duty: Duty, round_id: int, call: Callable[[], Transaction | None], **data: Any
    ) -> Transaction | None:
        """Send one transaction (the call reads the chain first), journal and report it."""
        started = time.monotonic()
        try:
            tx = call()
        except BENIGN[duty]:
            return None
        except ContractRevert as err:
            # A passed deadline, a round that closed meanwhile, or a state this node did not
            # foresee: the chain refused, nothing was sent, and the step is not retried.
            self.skip(round_id, duty, str(err))
            return None
        finally:
            self.clock(round_id).add("chain", time.monotonic() - started)
        if tx is None:
            return None
        self.journal.append(
            "sent", round=round_id, action=duty, tx=tx.tx_hash, block=tx.block_number, **data
        )
        self.emit(SENT_EVENT[duty], round_id, tx=tx.tx_hash, **data)
        return tx
