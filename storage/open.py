"""Open the store a node was configured with: the Kubo RPC store or the embedded one.

The one place that knows both backends, so neither needs to import the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from swarmchain.storage.deadline import BLOB_DEADLINE_S, BLOCK_DEADLINE_S
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.kubo import KuboStore
from swarmchain.storage.store import DEFAULT_TIMEOUT_S, Store, default_store_path


def open_store(
    path: Path | str | None,
    ipfs_api: str | None = None,
    *,
    peers: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT_S,
    block_deadline_s: float = BLOCK_DEADLINE_S,
    blob_deadline_s: float = BLOB_DEADLINE_S,
) -> Store:
    """Open the store a node was configured with.

    Parameters
    ----------
    path
        The embedded store's directory; `default_store_path()` when None.
    ipfs_api
        A Kubo RPC URL (``http://127.0.0.1:5001``). When given, the daemon is the store and
        `path` and `peers` are not used.
    peers
        Trustless-gateway URLs the embedded store fetches missing blocks from.
    timeout
        Seconds to wait on the daemon or a peer for any one connect or read.
    block_deadline_s, blob_deadline_s
        Seconds one block's download, and one blob's in all, may take however slowly bytes
        arrive (see `EmbeddedStore` and `KuboStore`).

    Returns
    -------
    Store
        A `KuboStore` when `ipfs_api` is given, else an `EmbeddedStore`.
    """
    if ipfs_api is not None:
        return KuboStore(
            ipfs_api,
            timeout=timeout,
            block_deadline_s=block_deadline_s,
            blob_deadline_s=blob_deadline_s,
        )
    return EmbeddedStore(
        path or default_store_path(),
        peers=peers,
        timeout=timeout,
        block_deadline_s=block_deadline_s,
        blob_deadline_s=blob_deadline_s,
    )
