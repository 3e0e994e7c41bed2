"""Blobs a node reads while a round's deadline runs, and the finalized checkpoints it keeps.

`PatientFetch` retries a blob a peer may still be writing or serving until a deadline the node
sets before each verification, so an update that stays unavailable is rejected in time rather
than stalling the round. `CheckpointCache` returns a finalized round's checkpoint: the one this
node computed when its hash matches the chain's, else fetched and checked, and keeps only the
last few.
"""

from __future__ import annotations

import time

from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.protocol.checkpoint import Checkpoint, decode_checkpoint
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.storage.errors import BlockNotFound, StoreTimeout, StoreUnavailable
from swarmchain.storage.store import Store

KEEP_CHECKPOINTS = 3  # finalized checkpoints kept in memory (a base, its base, one spare)


class PatientFetch:
    """Read CID-checked blobs, retrying missing ones until a deadline (`be_patient`).

    Parameters
    ----------
    store
        The node's content store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._until = 0.0  # monotonic time until which missing blobs are retried

    def be_patient(self, seconds: float) -> None:
        """Retry missing blobs for `seconds` from now (none when not positive)."""
        self._until = time.monotonic() + max(0.0, seconds)

    def __call__(self, cid: str, max_bytes: int) -> bytes:
        """Read a blob, retrying while a peer may still be writing or serving it.

        Raises
        ------
        BlockNotFound, StoreUnavailable, StoreTimeout
            If the blob is still missing when the patience runs out.
        """
        delay = 0.1
        while True:
            try:
                return self.store.get(cid, max_size=max_bytes)
            except (BlockNotFound, StoreUnavailable, StoreTimeout):
                if time.monotonic() + delay > self._until:
                    raise
                time.sleep(delay)
                delay = min(1.0, delay * 2)


class CheckpointCache:
    """Finalized checkpoints by round, computed here or fetched and checked against the chain.

    Parameters
    ----------
    coordinator
        Reads each finalized round's outcome.
    spec, genesis
        The task spec (to decode checkpoints) and the genesis checkpoint (round 0).
    fetch
        Reads checkpoint blobs.
    """

    def __init__(
        self, coordinator: Coordinator, spec: TaskSpec, genesis: Checkpoint, fetch: PatientFetch
    ) -> None:
        self.coordinator = coordinator
        self.spec = spec
        self.genesis = genesis
        self.fetch = fetch
        self._kept: dict[tuple[int, bytes], Checkpoint] = {}  # (round, hash) -> checkpoint
        self._computed: dict[tuple[int, bytes], Checkpoint] = {}  # this node's own results

    def computed(self, round_id: int, checkpoint: Checkpoint) -> None:
        """Remember a checkpoint this node computed for a round (used if it is finalized)."""
        self._computed = {**self._computed, (round_id, checkpoint.hash): checkpoint}

    def __call__(self, round_id: int) -> Checkpoint:
        """The checkpoint a finalized round produced (0: the genesis), fetched if needed.

        Raises
        ------
        StorageError
            If the blob cannot be fetched in time.
        VerificationError
            If it does not match the finalized hash or the task's shapes.
        """
        if round_id == 0:
            return self.genesis
        outcome = self.coordinator.finalized_outcome(round_id)
        key = (round_id, outcome.checkpoint_hash)
        cached = self._kept.get(key)
        if cached is None:
            cached = self._computed.get(key)
        if cached is None:
            blob = self.fetch(outcome.checkpoint_cid, len(self.genesis.blob))
            cached = decode_checkpoint(
                blob, self.spec, cid=outcome.checkpoint_cid, expected_hash=outcome.checkpoint_hash
            )
        self._kept[key] = cached
        return cached

    def forget(self, closed: int) -> None:
        """Drop this node's results up to a closed round and all but the last few checkpoints."""
        self._computed = {k: v for k, v in self._computed.items() if k[0] > closed}
        keep = sorted({r for r, _ in self._kept})[-KEEP_CHECKPOINTS:]
        self._kept = {k: v for k, v in self._kept.items() if k[0] in keep}
