"""The store interface: what a node needs from a content-addressed store.

Every store names a blob by the CID that ``ipfs add --cid-version=1 --raw-leaves`` gives it, and
every `get` checks each block against its CID before returning a byte, so a store (or a peer) can
lose content but never alter it unnoticed. The backends, `swarmchain.storage.embedded.EmbeddedStore`
and `swarmchain.storage.kubo.KuboStore`, each implement `Store` alone;
`swarmchain.storage.open.open_store` picks one.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

STORE_ENV = "SWARM_STORE"
DEFAULT_TIMEOUT_S = 30.0  # seconds any one connect or read may take, on a daemon or a peer


class Store(Protocol):
    """What the node needs from a content-addressed store; CIDs are CIDv1 base32 strings."""

    def put(self, data: bytes) -> str:
        """Store and pin `data`; return its CID."""
        ...

    def get(self, cid: str, *, max_size: int | None = None) -> bytes:
        """Return the content of `cid`, every block checked against its CID."""
        ...

    def has(self, cid: str) -> bool:
        """Whether this store keeps `cid` (it was put or pinned here)."""
        ...

    def pin(self, cid: str) -> None:
        """Keep the whole content of `cid` in this store."""
        ...

    def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def default_store_path() -> Path:
    """The embedded store's directory: ``$SWARM_STORE``, else ``~/.swarmchain/store``."""
    override = os.environ.get(STORE_ENV)
    return Path(override) if override else Path.home() / ".swarmchain" / "store"
