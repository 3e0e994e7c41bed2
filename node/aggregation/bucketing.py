"""Bucketing (pre-aggregation step).

Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing",
ICLR 2022.

The inputs are shuffled and split into buckets of ``s``; each bucket is replaced by the mean of
its members, which shrinks the heterogeneity that robust rules mistake for attacks. The shuffle
is a SHA-256 Fisher-Yates permutation of the inputs sorted by content hash, seeded by the round
seed, so every peer forms the same buckets whatever the order of arrival.
"""

from __future__ import annotations

import numpy as np

from swarmchain.node.aggregation.fixed_point import Batch, div_round, exact_combine
from swarmchain.node.aggregation.randomness import seeded_permutation


def bucketing(batch: Batch, *, s: int, seed: int) -> Batch:
    """Average the inputs in random buckets of ``s``.

    Parameters
    ----------
    batch
        The quantised updates.
    s
        Bucket size (>= 1); the last bucket holds the remainder when ``s`` does not divide n.
    seed
        Non-negative round seed shared by all peers.

    Returns
    -------
    Batch
        ``ceil(n / s)`` rows; each row's weight is the sum of its members' weights and its
        origin the union of theirs.

    Raises
    ------
    ValueError
        If ``s < 1`` or ``seed < 0``.
    """
    if s < 1:
        raise ValueError(f"bucketing needs s >= 1, got s={s}")
    canonical = sorted(range(batch.n), key=lambda i: (batch.content_key(i), i))
    order = [canonical[k] for k in seeded_permutation(batch.n, seed, "bucketing")]
    buckets = [order[k : k + s] for k in range(0, batch.n, s)]
    coeffs = np.zeros((len(buckets), batch.n), dtype=np.int64)
    for b, members in enumerate(buckets):
        coeffs[b, members] = 1
    sums = exact_combine(batch.values, coeffs)
    values = np.stack([div_round(sums[b], len(m)) for b, m in enumerate(buckets)]).astype("<i4")
    weights = np.array([int(batch.weights[m].sum()) for m in buckets], dtype=np.int64)
    origin = tuple(tuple(sorted(o for i in m for o in batch.origin[i])) for m in buckets)
    return batch.derive(values, weights, origin)
