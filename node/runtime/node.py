"""The swarm node: a resumable state machine driven by chain state and a local journal.

There is no leader and no coordinator process. Every `SwarmNode` looks at the chain whenever the
coordinator emits an event (a log subscription, `swarmchain.node.chain.watch`) and at least every
`poll_s`, and does whatever the current round still needs from it. A node that has committed and
only waits for the others' training needs no clock until the commit window would close: while
subscribed it looks only when woken (at least every `QUIET_WAIT_S`), leaving the cores to the nodes
that train.

========  ==================================================================================
phase     what the node does (each step only if the chain does not show it done already)
========  ==================================================================================
commit    train from the round's base checkpoint, encode, (encrypt,) store the update and its
          signed envelope, journal the secret, then commit
reveal    reveal the journaled update whose commitment the chain holds
attest    fetch and verify every revealed update, aggregate, value, save the reward tree,
          journal the outcome, then attest; finalize at once if that attestation made quorum
ended     finalize a tuple at quorum (any node may), or fail the round once its windows are over
closed    load the new checkpoint, claim this node's reward, slash offenders when it is this
          node's turn (lazily: an offender is also slashed at its own next commit); done on a
          second thread while the node trains in the next round (else while it waits for the
          others' training, or on leaving), so that no phase waits for it
========  ==================================================================================

Look before you send: each transaction follows a read showing that the chain still needs it,
and the journal keeps the secrets behind a commitment before the commitment is sent, so a node
killed at any instant and restarted resumes without sending anything twice or losing a reward.
A phase whose deadline (less a safety margin) has passed is skipped. Chain and store failures
are retried with backoff, so a restarted chain (or store) only pauses the node.

Every decision about a round's outcome is `swarmchain.node.protocol.round.compute_round`, a pure
function of public inputs, so every honest node attests the identical tuple.

`SwarmNode` is the loop; its units live beside it: `session` (set up once), `duty` (skips,
turns, sending), `participation` (what this node did in each round), `slots` (turns to train),
`publish` (train, encode, encrypt, store, sign), `outcomes` (compute and journal a round's
result), `checkpoints` (patient fetches, finalized checkpoints), `closing` (closed rounds in
order, settled beside training), `settlement` (report, claim, slash) and `retry` (which
failures are retried).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from swarmchain.node.chain.coordinator import RoundInfo
from swarmchain.node.chain.events import Attested
from swarmchain.node.chain.protocol import Phase, RoundStatus, SubmissionState
from swarmchain.node.chain.reverts import UnknownRound
from swarmchain.node.errors import ChainError, StorageError
from swarmchain.node.protocol.checkpoint import Checkpoint
from swarmchain.node.protocol.round import RoundInputs
from swarmchain.node.protocol.verify import CannotJudge
from swarmchain.node.runtime.checkpoints import CheckpointCache, PatientFetch
from swarmchain.node.runtime.clock import ChainClock, RoundClock, phase_at
from swarmchain.node.runtime.closing import ClosedRounds
from swarmchain.node.runtime.config import NodeConfig
from swarmchain.node.runtime.duty import Duties, Duty
from swarmchain.node.runtime.events import EventKind, EventSink, NodeEvent
from swarmchain.node.runtime.journal import Record
from swarmchain.node.runtime.outcomes import RoundOutcomes
from swarmchain.node.runtime.participation import Participation
from swarmchain.node.runtime.publish import Publisher, reveal_of
from swarmchain.node.runtime.retry import MAX_BACKOFF_S, transient
from swarmchain.node.runtime.session import Handles, open_session
from swarmchain.node.runtime.settlement import Settlement
from swarmchain.node.runtime.slots import StopWaiting, TrainingSlots, turn

QUIET_WAIT_S = 5.0  # longest wait of a node that only waits for the others' training


class NodeStopped(Exception):
    """Raised inside the loop when the stop event is set during a wait."""


class SwarmNode:
    """One member of a swarm, running rounds until stopped.

    Parameters
    ----------
    config
        Where the swarm is and how to run.
    on_event
        Called with every `NodeEvent` (from the node's thread).
    """

    def __init__(self, config: NodeConfig, on_event: EventSink | None = None) -> None:
        self.config = config
        self._sink = on_event
        self._stop = threading.Event()
        self._handles = Handles()
        self._slots = None if config.train_slots is None else TrainingSlots(config.train_slots)
        self._clocks: dict[int, RoundClock] = {}
        self._announced: set[int] = set()
        self._round = 0  # the open round last seen
        self._quiet_until = 0.0  # monotonic time the commit window closes, while only waiting
        self.index = -1  # this member's bitmap index, known once it joined

    # ---- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current step and return."""
        self._stop.set()

    def run(self) -> None:
        """Join the swarm (if needed) and run rounds until stopped or `until_round` is settled.

        Raises
        ------
        ConfigError
            For a bad deployment, key, data or task document, or too few tokens to stake.
        VerificationError
            If the task document or genesis checkpoint fails its checks.
        """
        try:
            self._retrying(self._setup)
            reason = "stopped"
            while not self._stop.is_set():
                if self._retrying(self.step):
                    reason = f"round {self.config.until_round} settled"
                    break
                self._wait()
            # Leaving cleanly settles what was reported: the claims this node is owed go out now.
            self._retrying(partial(self.closed.close, self.closed.next_report))
            self._emit(EventKind.STOPPED, 0, reason=reason)
        except (NodeStopped, StopWaiting):
            self._emit(EventKind.STOPPED, 0, reason="stopped")
        finally:
            self.close()

    def close(self) -> None:
        """Release the chain subscription, the store, the block server and the journal."""
        self._handles.close()

    def _retrying(self, action: Callable[[], Any]) -> Any:
        """Run `action`, retrying transient chain and store failures with backoff."""
        delay = self.config.poll_s
        while True:
            try:
                return action()
            except (ChainError, StorageError) as err:
                if not transient(err):
                    raise
                self._emit(EventKind.RETRYING, 0, error=str(err), delay=round(delay, 3))
                if self._stop.wait(delay):
                    raise NodeStopped from err
                delay = min(MAX_BACKOFF_S, delay * 2)

    def _emit(self, kind: EventKind, round_id: int, **data: Any) -> None:
        if self._sink is not None:
            self._sink(NodeEvent(kind, round_id, data))

    def _setup(self) -> None:
        """Open the session and the units the loop works with."""
        s = self.session = open_session(self.config, self._handles, self._emit)
        self.coordinator, self.journal, self.index = s.coordinator, s.journal, s.index
        self.chain = ChainClock(s.coordinator)
        self.fetch = PatientFetch(s.store)
        self.checkpoints = CheckpointCache(s.coordinator, s.spec, s.genesis, self.fetch)
        self.duties = Duties(
            s.journal,
            self._emit,
            self.chain.now,
            self._clock,
            margin_s=self.config.deadline_margin_s,
            stagger_s=self.config.stagger_s,
            index=s.index,
        )
        self.part = Participation(s.coordinator, self.duties)
        self.publisher = Publisher(s, self._clock, self._emit)
        self.outcomes = RoundOutcomes(
            s, self.checkpoints, self.fetch, self.chain, self._clock, self._emit
        )
        self.settlement = Settlement(
            s, self.duties, self.outcomes.result, self.checkpoints, self._clock, self._emit
        )
        self.closed = ClosedRounds(
            s,
            self.settlement,
            self.outcomes,
            self.checkpoints,
            self._clocks,
            self.part.missed,
            self._emit,
        )

    @property
    def next_report(self) -> int:
        """The first closed round not yet reported."""
        return self.closed.next_report

    @property
    def next_close(self) -> int:
        """The first reported round not yet settled."""
        return self.closed.next_close

    # ---- the loop ----------------------------------------------------------------------------

    def step(self) -> bool:
        """Look at the chain once and do what the current round needs from this node.

        Returns
        -------
        bool
            True once `until_round` is closed and settled (the node should exit).
        """
        self._quiet_until = 0.0
        info = self._current_info()
        current = info.round
        self.closed.report(current)
        until = self.config.until_round
        if until is not None and current > until:
            self.closed.close(current)
            return self.closed.next_close > until
        waiting = self._act(info)
        # Closed rounds are settled (claimed, slashed, journaled) beside this node's training
        # (`_prepare`), else when it only waits for others to train, or at the latest once a
        # second round closed: nothing in the open round depends on that.
        if waiting or self.closed.next_close < current - 1:
            self.closed.close(current)
        return False

    def _act(self, info: RoundInfo) -> bool:
        """Do what the open round needs from this node in its current phase.

        Returns
        -------
        bool
            Whether the node only waits for the others' training (the open round's commit
            window is open and this node committed, or cannot commit in it).
        """
        current = info.round
        now = self.chain.now()
        phase = phase_at(info, now)
        if info.active_at_open == 0:
            self.part.eligible(current)  # reports this account's exit, if that is why
            if (
                phase == Phase.ENDED
                and self._opens_first_round()
                and self.duties.due(info.round, Duty.FAIL)
            ):
                self.duties.send(Duty.FAIL, current, lambda: self.coordinator.fail_round(current))
            return True
        eligible = self.part.eligible(current)
        self._announce(info, eligible)
        if phase == Phase.COMMIT and eligible:
            self._commit(info)
        elif (
            eligible
            and not self.duties.skipped(current, Duty.COMMIT)
            and not self.part.submitted(current)
        ):
            self.duties.skip(
                current, Duty.COMMIT, "the commit window closed before this node committed"
            )
        if phase == Phase.REVEAL:
            self._reveal(info)
        elif phase == Phase.ATTEST and eligible and current not in self.part.attested:
            self._attest(info)
        if phase in (Phase.ATTEST, Phase.ENDED):
            self._finish(info, phase)
        waiting = phase == Phase.COMMIT and (not eligible or current in self.part.committed)
        if waiting:
            # Training may have taken seconds since `now` was read.
            self._quiet_until = time.monotonic() + (info.commit_deadline - self.chain.now())
        return waiting

    def _wait(self) -> None:
        """Wait until a coordinator event, or at most `poll_s`, before looking again.

        A node that only waits for the others' training, with a subscription that will wake
        it when they commit, waits longer: until a second before the commit window would close
        by the clock (chain time is read in whole seconds), at most `QUIET_WAIT_S`. A stop
        request, or a subscription that drops, still ends the wait within `poll_s`.
        """
        until = time.monotonic() + self.config.poll_s
        if self.session.watch.subscribed:
            until = max(until, min(self._quiet_until - 1.0, time.monotonic() + QUIET_WAIT_S))
        while not self._stop.is_set():
            left = until - time.monotonic()
            if left <= 0 or self.session.watch.wait(min(left, self.config.poll_s)):
                return
            if not self.session.watch.subscribed:
                return

    def _current_info(self) -> RoundInfo:
        """The open round: the last one seen while it stays open (one read per look)."""
        if self._round:
            with contextlib.suppress(UnknownRound):  # a chain restarted from an older state
                info = self.coordinator.round_info(self._round)
                if info.status == RoundStatus.OPEN:
                    return info
        self._round = self.coordinator.current_round()
        return self.coordinator.round_info(self._round)

    def _opens_first_round(self) -> bool:
        return self.coordinator.totals().active_members >= self.config.min_members

    def _announce(self, info: RoundInfo, eligible: bool) -> None:
        if info.round in self._announced:
            return
        self._announced.add(info.round)
        self._clocks.setdefault(info.round, RoundClock())
        self._emit(
            EventKind.ROUND,
            info.round,
            base_round=info.base_round,
            eligible=eligible,
            members=info.active_at_open,
            commit_deadline=info.commit_deadline,
        )

    def _clock(self, round_id: int) -> RoundClock:
        return self._clocks.setdefault(round_id, RoundClock())

    # ---- commit and reveal -------------------------------------------------------------------

    def _commit(self, info: RoundInfo) -> None:
        r = info.round
        if self.duties.skipped(r, Duty.COMMIT) or self.part.submitted(r):
            return
        base = self.checkpoints(info.base_round)
        record = self.journal.last("update", r)
        if record is None or record["base_cid"] != base.cid:
            record = self._prepare(info, base)
        if record is None or not self.duties.in_time(r, Duty.COMMIT, info.commit_deadline):
            return
        reveal = reveal_of(record)
        commitment = self.coordinator.commitment_for(reveal, r)
        self.duties.send(Duty.COMMIT, r, lambda: self.coordinator.commit(r, commitment))

    def _prepare(self, info: RoundInfo, base: Checkpoint) -> Record | None:
        """Train, publish and journal this node's update for the round (None: the commit
        window closed while the node waited for a training slot)."""
        r = info.round
        with self.closed.beside(r), turn(self._slots, self._stop) as waited:
            if self._slots is not None and not self.duties.in_time(
                r, Duty.COMMIT, info.commit_deadline
            ):
                return None
            update, seconds = self.publisher.train(r, base, info.active_at_open)
        self.publisher.trained(r, update, seconds, waited)
        return self.publisher.publish(r, base, update)

    def _reveal(self, info: RoundInfo) -> None:
        r = info.round
        if self.duties.skipped(r, Duty.REVEAL) or r in self.part.revealed:
            return
        mine = self.coordinator.submission(r)
        if mine.state != SubmissionState.COMMITTED or mine.commitment is None:
            if mine.state != SubmissionState.NONE:
                self.part.revealed.add(r)
            return
        stored = "0x" + mine.commitment.hex()
        records = [rec for rec in self.journal.of_kind("update", r) if rec["commitment"] == stored]
        if not records:
            self.duties.skip(
                r, Duty.REVEAL, "the journal holds no secret for the commitment on chain"
            )
            return
        if not self.duties.in_time(r, Duty.REVEAL, info.reveal_deadline):
            return
        reveal = reveal_of(records[-1])
        self.duties.send(Duty.REVEAL, r, lambda: self.coordinator.reveal(r, reveal))
        self.part.revealed.add(r)

    # ---- attest and finish ------------------------------------------------------------------

    def _attest(self, info: RoundInfo) -> None:
        r = info.round
        if self.duties.skipped(r, Duty.ATTEST):
            return
        try:
            result = self.outcomes.result(info)
        except CannotJudge as err:
            # Not a recipient of an encrypted update: it cannot know the tuple, so it abstains.
            self.duties.skip(r, Duty.ATTEST, str(err))
            return
        self.outcomes.journal(r, result)
        if not self.duties.in_time(r, Duty.ATTEST, info.attest_deadline):
            return
        tx = self.duties.send(
            Duty.ATTEST,
            r,
            lambda: self.coordinator.attest(r, result.outcome),
            checkpoint_hash="0x" + result.outcome.checkpoint_hash.hex(),
            accepted=sum(v.accepted for v in result.verdicts),
        )
        self.part.attested.add(r)
        # The attestation that carried the tuple over the quorum finalizes at once; the others
        # wait their staggered turn, by when it is normally done.
        if tx is not None and any(
            isinstance(e, Attested)
            and e.outcome_stake - e.weight < info.required_stake <= e.outcome_stake
            for e in tx.events
        ):
            self.duties.send(Duty.FINALIZE, r, lambda: self.coordinator.finalize(r, result.outcome))

    def _finish(self, info: RoundInfo, phase: Phase) -> None:
        """Finalize a tuple at quorum, or fail a round whose windows are over without one."""
        r = info.round
        if info.status != RoundStatus.OPEN:
            return
        if info.leading_stake >= info.required_stake:
            outcome = self.outcomes.at_quorum(info)
            if outcome is not None and self.duties.due(info.round, Duty.FINALIZE):
                self.duties.send(Duty.FINALIZE, r, lambda: self.coordinator.finalize(r, outcome))
        elif phase == Phase.ENDED and self.duties.due(info.round, Duty.FAIL):
            self.duties.send(Duty.FAIL, r, lambda: self.coordinator.fail_round(r))

    def round_inputs(self, info: RoundInfo) -> RoundInputs:
        """The public inputs of a round whose reveal window is over."""
        return self.outcomes.inputs(info)
