"""What a terminal shows of running nodes, built only from the runtime's `NodeEvent`s.

`NodeView` folds one node's events into what a person wants to see at a glance: the round, the
phase it is in, the last checkpoint's accuracy, the rewards earned, and the last thing that
happened. `swarm node join` shows its view live as a panel; `swarm demo` a progress bar per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.panel import Panel
from rich.table import Table

from swarmchain.node.audit.report import tokens
from swarmchain.node.runtime.events import EventKind, NodeEvent

# The phase a node is in once it reports each kind of event.
_PHASES = {
    EventKind.STARTED: "starting",
    EventKind.JOINED: "joined",
    EventKind.ROUND: "training",
    EventKind.TRAINED: "storing",
    EventKind.STORED: "committing",
    EventKind.COMMITTED: "committed",
    EventKind.REVEALED: "revealed",
    EventKind.VERIFIED: "attesting",
    EventKind.ATTESTED: "attested",
    EventKind.FINALIZE_SENT: "finalizing",
    EventKind.FINALIZED: "finalized",
    EventKind.FAILED: "round failed",
    EventKind.SKIPPED: "skipped",
    EventKind.RETRYING: "retrying",
    EventKind.STOPPED: "stopped",
}


@dataclass
class NodeView:
    """One node's progress as a display shows it."""

    name: str  # how the display names the node ("node 3 (attacker)")
    address: str = ""
    round: int = 0
    phase: str = "starting"
    accuracy: float | None = None  # the last finalized checkpoint's, on the reference set
    rewards: int = 0  # token base units this node was owed over the rounds it settled
    finalized: set[int] = field(default_factory=set)  # rounds it saw finalized
    failed: set[int] = field(default_factory=set)  # rounds it saw fail
    last: str = ""  # the latest event, in words

    def update(self, event: NodeEvent) -> None:
        """Fold in one event."""
        data = event.data
        if event.kind == EventKind.STARTED:
            self.address = str(data.get("node", ""))
        if event.round:
            self.round = max(self.round, event.round)
        self.phase = _PHASES.get(event.kind, self.phase)
        if event.kind == EventKind.FINALIZED:
            self.finalized.add(event.round)
            self.accuracy = float(data["accuracy"])
            self.rewards += int(data.get("reward", 0))
        elif event.kind == EventKind.FAILED:
            self.failed.add(event.round)
        self.last = _describe(event)

    @property
    def settled(self) -> int:
        """Rounds this node saw closed (finalized or failed)."""
        return len(self.finalized | self.failed)


def _describe(event: NodeEvent) -> str:
    data = event.data
    kind = event.kind
    if kind == EventKind.FINALIZED:
        return (
            f"round {event.round} finalized: accuracy {100 * float(data['accuracy']):.1f}%, "
            f"reward {tokens(int(data.get('reward', 0)))}"
        )
    if kind == EventKind.VERIFIED:
        rejected = data.get("rejected") or {}
        return f"round {event.round}: {data.get('accepted')} accepted, {len(rejected)} rejected"
    if kind in (EventKind.SKIPPED, EventKind.RETRYING, EventKind.STOPPED):
        why = data.get("reason") or data.get("error") or ""
        return f"{kind.value}: {why}"
    if kind == EventKind.TRAINED:
        return f"round {event.round}: trained on {data.get('num_samples')} examples"
    return f"round {event.round}: {kind.value}"


def node_panel(view: NodeView, title: str = "swarm node") -> Panel:
    """One node's view as a small panel of labelled lines."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("node", view.address or "-")
    grid.add_row("round", f"{view.round or '-'} ({view.phase})")
    grid.add_row("accuracy", "-" if view.accuracy is None else f"{100 * view.accuracy:.1f}%")
    grid.add_row("rewards", f"{tokens(view.rewards)} tokens")
    grid.add_row("rounds", f"{len(view.finalized)} finalized, {len(view.failed)} failed")
    grid.add_row("last", view.last or "-")
    return Panel(grid, title=title, expand=False)
