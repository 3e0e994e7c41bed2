"""Time as a node sees it: the chain's clock, and where each round's wall time went."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from swarmchain.node.chain.coordinator import Coordinator, RoundInfo
from swarmchain.node.chain.protocol import Phase, RoundStatus


class ChainClock:
    """The time the next block will carry, at the latest: max(latest block, wall clock).

    The latest block's time is read at most once a second; between reads the wall clock carries
    it forward.
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self._block_time = 0  # the latest block's timestamp when last read
        self._block_read_at = 0.0  # wall-clock time of that read

    def now(self) -> int:
        """The chain's time now, in whole seconds."""
        wall = time.time()
        if wall - self._block_read_at >= 1.0:
            self._block_time = self.coordinator.timestamp()
            self._block_read_at = wall
        return max(self._block_time + int(wall - self._block_read_at), int(wall))


@dataclass
class RoundClock:
    """Where one round's wall time went, from this node's point of view: from when the node
    first saw the round open to when it first saw it closed."""

    seen: float = field(default_factory=time.monotonic)  # when the node first saw the round
    parts: dict[str, float] = field(default_factory=dict)  # seconds by part
    final: dict[str, float] | None = None  # the summary, frozen when the round closed

    def add(self, part: str, seconds: float) -> None:
        """Count seconds spent on a part (training, storage, chain, verification)."""
        if self.final is None:
            self.parts[part] = self.parts.get(part, 0.0) + seconds

    def stop(self) -> None:
        """Freeze the summary: the round is over (what the node does for it later is not)."""
        if self.final is None:
            self.final = self.summary()

    def summary(self) -> dict[str, float]:
        """Seconds by part, the round's total and the time spent waiting."""
        if self.final is not None:
            return self.final
        total = time.monotonic() - self.seen
        busy = {k: round(v, 4) for k, v in sorted(self.parts.items())}
        return {**busy, "round": round(total, 4), "waiting": round(total - sum(busy.values()), 4)}


def phase_at(info: RoundInfo, now: int) -> Phase:
    """The window `now` falls in (the chain's own rule, evaluated at the next block's time)."""
    if info.status != RoundStatus.OPEN or now >= info.attest_deadline:
        return Phase.ENDED
    if now < info.commit_deadline:
        return Phase.COMMIT
    if now < info.reveal_deadline:
        return Phase.REVEAL
    return Phase.ATTEST
