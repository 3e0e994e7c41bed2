"""The coordinator's event record, read incrementally, with the queries a round needs.

`ChainHistory` keeps every coordinator event since deployment and fetches only new blocks on
`refresh`. A local chain restarted from an older state file can forget blocks a node already
read; the history notices (the last block it read is gone or has another hash) and reads the
record again from the deployment block, so it never reasons from events the chain no longer has.
"""

from __future__ import annotations

from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.events import Attested, ChainEvent, Committed, Revealed, RoundFinalized
from swarmchain.node.chain.protocol import Outcome
from swarmchain.node.chain.tx import json_rpc
from swarmchain.node.protocol import record
from swarmchain.node.protocol.record import MemberKeys
from swarmchain.node.protocol.verify import Submission


class ChainHistory:
    """Every coordinator event since deployment, kept current by `refresh`.

    Parameters
    ----------
    coordinator
        A client of the swarm (read-only is enough).
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.events: list[ChainEvent] = []
        self._next_block = coordinator.deployment.deploy_block
        self._last_hash: bytes | None = None

    def _block_hash(self, number: int) -> bytes | None:
        block = json_rpc(self.coordinator.w3, "eth_getBlockByNumber", [hex(number), False])
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            return None
        return bytes.fromhex(block["hash"][2:])

    def refresh(self) -> None:
        """Read the events of every block mined since the last refresh.

        Raises
        ------
        ChainError
            If the chain cannot be reached.
        """
        latest = int(json_rpc(self.coordinator.w3, "eth_blockNumber", []), 16)
        if self._last_hash is not None:
            last = self._next_block - 1
            if last > latest or self._block_hash(last) != self._last_hash:
                self.events = []
                self._next_block = self.coordinator.deployment.deploy_block
                self._last_hash = None
        if latest < self._next_block:
            return
        self.events.extend(self.coordinator.events(self._next_block, latest))
        self._next_block = latest + 1
        self._last_hash = self._block_hash(latest)

    def members(self) -> dict[str, MemberKeys]:
        """Every member that ever joined, by address, with its latest keys."""
        return record.members(self.events)

    def recipients(self, round_id: int) -> tuple[bytes, ...]:
        """Who an encrypted update of the round must be wrapped for (`record.recipients`)."""
        return record.recipients(self.events, round_id)

    def unreachable(self, round_id: int) -> list[str]:
        """Active members whose X25519 key can receive nothing (`record.unreachable`)."""
        return record.unreachable(self.events, round_id)

    def committed(self, round_id: int) -> list[str]:
        """Members that committed in the round, in chain order."""
        return [e.node for e in self.events if isinstance(e, Committed) and e.round == round_id]

    def revealed(self, round_id: int) -> list[Revealed]:
        """The round's reveals, in chain order."""
        return [e for e in self.events if isinstance(e, Revealed) and e.round == round_id]

    def submissions(self, round_id: int) -> tuple[Submission, ...]:
        """The round's revealed updates with their members' keys (`record.submissions`)."""
        return record.submissions(self.events, round_id)

    def attestations(self, round_id: int) -> list[Attested]:
        """The round's attestations, in chain order."""
        return [e for e in self.events if isinstance(e, Attested) and e.round == round_id]

    def attested_stakes(self, round_id: int) -> dict[Outcome, int]:
        """Each tuple attested in the round, with the stake behind it (``outcomeStake``).

        A tuple whose CID is not UTF-8 reads back altered (`swarmchain.node.chain.events`), so it
        could not be sent back to the contract under its key: it is left out.
        """
        stakes: dict[Outcome, int] = {}
        for e in self.attestations(round_id):
            if e.outcome.key() == e.outcome_key:
                stakes[e.outcome] = max(stakes.get(e.outcome, 0), e.outcome_stake)
        return stakes

    def finalized(self, round_id: int) -> RoundFinalized | None:
        """The round's finalization, if it happened."""
        for e in self.events:
            if isinstance(e, RoundFinalized) and e.round == round_id:
                return e
        return None
