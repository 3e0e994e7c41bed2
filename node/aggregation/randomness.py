"""Seeded randomness that is identical on every machine and library version.

Consensus-critical random choices (which updates share a bucket, which digits form the reference
set) must not depend on NumPy's or PyTorch's generator streams, which may change between
releases. These helpers derive every draw from SHA-256 instead.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str | bytes) -> int:
    """A 63-bit seed from any sequence of integers, strings and bytes.

    Parameters
    ----------
    *parts
        Values that together identify the draw (a round seed, a node address, a purpose).

    Returns
    -------
    int
        ``SHA-256(parts)`` truncated to 63 bits, usable as a `torch` or `numpy` seed.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = b"b" + part
        elif isinstance(part, str):
            data = b"s" + part.encode()
        else:
            data = b"i" + str(int(part)).encode()
        h.update(len(data).to_bytes(8, "big") + data)
    return int.from_bytes(h.digest()[:8], "big") >> 1


def seeded_permutation(n: int, seed: int, domain: str) -> list[int]:
    """A permutation of ``range(n)`` from a Fisher-Yates shuffle driven by SHA-256.

    Parameters
    ----------
    n
        Length of the permutation.
    seed
        Non-negative integer seed (e.g. the round seed from chain state).
    domain
        What the permutation is for, so that different uses of one seed are independent.

    Returns
    -------
    list[int]
        The permuted indices.
    """
    if n < 0 or seed < 0:
        raise ValueError(f"seeded_permutation needs n >= 0 and seed >= 0, got n={n}, seed={seed}")
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        digest = hashlib.sha256(f"{domain}|{seed}|{i}".encode()).digest()
        j = int.from_bytes(digest, "big") % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm
