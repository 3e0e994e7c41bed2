"""Which failures a node retries: the chain or the store was unreachable, nothing worse."""

from __future__ import annotations

from swarmchain.node.chain.reverts import ContractRevert
from swarmchain.node.errors import ChainError
from swarmchain.storage.errors import BlockNotFound, StoreTimeout, StoreUnavailable

MAX_BACKOFF_S = 5.0  # longest pause between two tries


def transient(err: Exception) -> bool:
    """Whether an error is worth retrying.

    Parameters
    ----------
    err
        The error an action raised.

    Returns
    -------
    bool
        True if the chain or the store was unreachable; False for a revert or anything else.
    """
    if isinstance(err, ContractRevert):
        return False
    return isinstance(err, ChainError | StoreUnavailable | StoreTimeout | BlockNotFound)
