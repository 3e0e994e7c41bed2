"""Content hashes: SHA-256 of the exact blob bytes, as recorded on-chain in reveals and tuples."""

from __future__ import annotations

import hashlib


def content_hash(blob: bytes) -> bytes:
    """SHA-256 of the exact blob bytes: the content hash recorded on-chain.

    Parameters
    ----------
    blob
        The stored bytes (an envelope, an update, a checkpoint, a task document).

    Returns
    -------
    bytes
        The 32-byte digest.
    """
    return hashlib.sha256(blob).digest()
