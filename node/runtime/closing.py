"""Closed rounds: report each one once it closed, then settle it, maybe beside training.

`ClosedRounds` owns two cursors. `next_report` is the first round not yet reported (its clock
stopped, a missed commit named, its outcome told); `next_close` the first reported round not
yet settled (claimed, slashed, journaled closed). Settling may run on a second thread while
the node trains (`beside`): nothing in the open round depends on it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from swarmchain.node.chain.coordinator import RoundInfo
from swarmchain.node.runtime.checkpoints import CheckpointCache
from swarmchain.node.runtime.clock import RoundClock
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.outcomes import RoundOutcomes
from swarmchain.node.runtime.retry import transient
from swarmchain.node.runtime.session import Emit, Session
from swarmchain.node.runtime.settlement import Settlement


class ClosedRounds:
    """The rounds behind the open one, reported and settled in order.

    Parameters
    ----------
    session
        The node's session (its coordinator, and the journal it resumes from).
    settlement
        Reports and settles one round.
    outcomes, checkpoints
        Caches that forget a round once it is settled.
    clocks
        The node's round clocks; a reported round's clock stops, a settled one's is dropped.
    missed
        Names a round this node missed, called before the round is reported.
    emit
        The node's event sink.
    """

    def __init__(
        self,
        session: Session,
        settlement: Settlement,
        outcomes: RoundOutcomes,
        checkpoints: CheckpointCache,
        clocks: dict[int, RoundClock],
        missed: Callable[[RoundInfo], None],
        emit: Emit,
    ) -> None:
        self._coordinator = session.coordinator
        self._settlement = settlement
        self._outcomes = outcomes
        self._checkpoints = checkpoints
        self._clocks = clocks
        self._missed = missed
        self._emit = emit
        closed = session.journal.last("closed")
        self.next_close = session.first_round if closed is None else int(closed["round"]) + 1
        self.next_report = self.next_close

    def report(self, current: int) -> None:
        """Report every round that closed before ``current`` since the last look.

        Parameters
        ----------
        current
            The open round.
        """
        self.next_report = min(self.next_report, current)
        while self.next_report < current:
            r = self.next_report
            self._clocks.setdefault(r, RoundClock()).stop()
            info = self._coordinator.round_info(r)
            self._missed(info)
            self._settlement.report(info)
            self.next_report = r + 1

    def close(self, current: int) -> None:
        """Settle every reported round before ``current``: claim, slash, then journal it closed.

        Parameters
        ----------
        current
            The open round.
        """
        self.next_close = min(self.next_close, self.next_report, current)
        while self.next_close < min(self.next_report, current):
            r = self.next_close
            self._settlement.settle(self._coordinator.round_info(r))
            self._clocks.pop(r, None)
            self.next_close = r + 1
            # A long run keeps no results of closed rounds, nor their old checkpoints.
            self._outcomes.forget(r)
            self._checkpoints.forget(r)

    @contextlib.contextmanager
    def beside(self, current: int) -> Iterator[None]:
        """Settle the reported rounds before ``current`` on a second thread while the block runs.

        Training leaves this node's chain client, store and journal idle for seconds, and a
        claim mostly waits on the chain, so it goes out meanwhile instead of delaying the next
        phase. A transient failure leaves the rounds for a later step (reported as a retry).

        Parameters
        ----------
        current
            The open round.

        Raises
        ------
        Exception
            What settling raised, on the caller's thread after the block, unless transient.
        """
        if self.next_close >= min(self.next_report, current):
            yield
            return
        failed: list[Exception] = []

        def settle() -> None:
            try:
                self.close(current)
            except Exception as err:  # raised on the node's own thread, after the block
                failed.append(err)

        worker = threading.Thread(target=settle, name="settle", daemon=True)
        worker.start()
        try:
            yield
        finally:
            worker.join()
        for err in failed:
            if not transient(err):
                raise err
            self._emit(EventKind.RETRYING, current, error=str(err), delay=0.0)
