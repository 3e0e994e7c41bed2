"""Certified bounds on squared distances from one float64 product: Krum's fast path.

Krum, Multi-Krum and Bulyan only compare sums of squared distances. When rows hold large grid
integers, `exact_inner` must split them and multiply several times; instead one float64 Gram
matrix of the integers, with a proven error bound, gives an interval for every distance, and
those intervals usually settle every comparison that the rule makes. Where they do not, the rule
computes the exact distances and decides as before, so the outcome is always the exact one.

Error bound. Grid integers are exact in float64. BLAS forms each ``G_ij = sum_k q_ik q_jk`` as
a sum of products in some order (here column blocks, then the blocks added), so every product
passes through at most ``m = d + 2`` roundings, and whatever the order (fused multiply-adds
only remove roundings; Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1)::

    |fl(G_ij) - G_ij| <= gamma * sum_k |q_ik q_jk| <= gamma * sqrt(N_i N_j),
    gamma = m u / (1 - m u),  u = 2**-53,  N_i = ||q_i||**2.

This assumes that BLAS multiplies by sums of products, as OpenBLAS, BLIS and MKL do (no
Strassen-type algorithm). The estimate ``fl(G_ii) + fl(G_jj) - 2 fl(G_ij)`` of
``D_ij = ||q_i - q_j||**2``, added exactly in Python integers (the floats are integers), is off
by at most ``gamma * (sqrt N_i + sqrt N_j)**2 <= 2 gamma (N_i + N_j)``, and
``N_i <= fl(G_ii) / (1 - gamma)``; as ``m u < 2**-29``, the radius
``4 m u (fl(G_ii) + fl(G_jj))`` covers both. ``D_ij`` is a non-negative integer, zero exactly
when the two rows are identical: pairs whose interval reaches 0 are compared byte for byte.

Decisions. A Krum score is the sum of the ``k`` smallest distances of a row, so it lies between
the sums of the ``k`` smallest lower and upper bounds. Some scores are provably equal: those of
identical rows, those the bounds pin to one value, and, when ``k = 1``, those of two rows that
are each other's settled nearest neighbour (both scores are their distance; this happens at
the end of every Bulyan selection with ``f <= 2``). The certified ranking groups such rows,
orders each group as the exact ranking breaks ties (content hash, then index), and accepts an
order of groups only if each group that reaches the first places lies strictly below the next:
then it is the exact ranking (score, then content hash, then index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarmchain.node.aggregation.fixed_point import Batch, direct_width

_BLOCK_CELLS = 1 << 19  # float64 cells per column block of the product (4 MiB)


@dataclass(frozen=True)
class DistanceBounds:
    """Intervals that hold the exact squared distances between the rows of a batch."""

    lower: list[list[int]]  # (n, n) D_ij >= lower[i][j]
    upper: list[list[int]]  # (n, n) D_ij <= upper[i][j]
    twin: list[int]  # (n,) lowest index of the rows byte-identical to each row


def distance_bounds(batch: Batch) -> DistanceBounds:
    """Bound every squared distance between the rows of ``batch`` from one float64 product.

    Parameters
    ----------
    batch
        The quantised updates.

    Returns
    -------
    DistanceBounds
        ``lower[i][j] <= ||q_i - q_j||**2 <= upper[i][j]``, exact for identical rows.
    """
    values = batch.values
    n, d = values.shape
    acc = np.zeros((n, n), dtype=np.float64)
    step = max(1, _BLOCK_CELLS // n)
    for start in range(0, d, step):
        block = values[:, start : start + step].astype(np.float64)
        acc += block @ block.T
    g = [[int(x) for x in row] for row in acc.tolist()]
    m = d + 2
    lower = [[0] * n for _ in range(n)]
    upper = [[0] * n for _ in range(n)]
    near: list[tuple[int, int]] = []
    for i in range(n):
        for j in range(i + 1, n):
            size = g[i][i] + g[j][j]
            estimate = size - 2 * g[i][j]
            radius = ((m * size) >> 51) + 1  # ceil(4 m u size), u = 2**-53
            lower[i][j] = lower[j][i] = max(0, estimate - radius)
            upper[i][j] = upper[j][i] = estimate + radius
            if estimate <= radius:
                near.append((i, j))
    twin = _twins(batch, sorted({i for pair in near for i in pair}))
    for i, j in near:
        if twin[i] == twin[j]:
            lower[i][j] = lower[j][i] = upper[i][j] = upper[j][i] = 0
        else:  # distinct integer rows are at squared distance 1 or more
            lower[i][j] = lower[j][i] = 1
            upper[i][j] = upper[j][i] = max(1, upper[i][j])
    return DistanceBounds(lower, upper, twin)


def _twins(batch: Batch, rows: Sequence[int]) -> list[int]:
    """For each row, the lowest index among ``rows`` byte-identical to it (itself otherwise)."""
    twin = list(range(batch.n))
    by_key: dict[bytes, list[int]] = {}
    for i in rows:
        by_key.setdefault(batch.content_key(i), []).append(i)
    for group in by_key.values():
        while group:  # equal hashes are confirmed byte for byte
            first = group[0]
            same = [i for i in group if np.array_equal(batch.values[i], batch.values[first])]
            for i in same:
                twin[i] = first
            group = [i for i in group if i not in same]
    return twin


def cheap_bounds(batch: Batch) -> DistanceBounds | None:
    """Distance bounds when exact distances would cost more, else None.

    Parameters
    ----------
    batch
        The quantised updates.

    Returns
    -------
    DistanceBounds | None
        None when the exact Gram matrix is already known or takes one unsplit float64 product
        (`direct_width`), which costs what the bounds do.
    """
    top = batch.max_abs
    if batch.gram_known or direct_width(batch.n, batch.n, batch.dim, top, top):
        return None
    return distance_bounds(batch)


def certified_krum_order(
    batch: Batch, bounds: DistanceBounds, f: int, among: Sequence[int], keep: int
) -> list[int] | None:
    """The first ``keep`` rows of the exact Krum ranking, when the bounds settle it.

    Parameters
    ----------
    batch
        The quantised updates (their content hashes break ties between equal scores).
    bounds
        Distance bounds of the batch.
    f
        Assumed number of Byzantine inputs; each score sums ``max(1, k - f - 2)`` distances.
    among
        The ``k`` rows competing; distances to other rows are ignored.
    keep
        How many leading rows of the ranking are wanted.

    Returns
    -------
    list[int] | None
        The rows in the order of `Batch.rank` over the exact Krum scores, or None when some
        comparison that decides them cannot be settled from the bounds.
    """
    closest = max(1, len(among) - f - 2)
    by_twin: dict[int, list[int]] = {}
    for i in among:
        by_twin.setdefault(bounds.twin[i], []).append(i)
    groups: dict[tuple[int, ...], tuple[int, int, list[int]]] = {}
    for members in by_twin.values():
        # Identical rows have the same distances: they share the first one's key.
        key, low, high = _score(bounds, members[0], among, closest)
        for i in members[1:]:
            _, other_low, other_high = _score(bounds, i, among, closest)
            low, high = max(low, other_low), min(high, other_high)
        known_low, known_high, rows = groups.get(key, (low, high, []))
        groups[key] = (max(low, known_low), min(high, known_high), rows + members)
    ranked = sorted(groups.values(), key=lambda group: group[:2])
    order: list[int] = []
    for t, (_, high, rows) in enumerate(ranked):
        if t + 1 < len(ranked) and not high < ranked[t + 1][0]:
            return None
        if len(rows) > 1:  # equal scores: the exact ranking's tie-break
            rows = sorted(rows, key=lambda i: (batch.content_key(i), i))
        order.extend(rows)
        if len(order) >= keep:
            break
    return order[:keep]


def _score(
    bounds: DistanceBounds, i: int, among: Sequence[int], closest: int
) -> tuple[tuple[int, ...], int, int]:
    """Bounds on row ``i``'s Krum score, and a key shared only by rows whose scores are equal.

    The key is ``(0, score)`` when the bounds pin the score exactly; ``(1, a, b)`` when the score
    is the distance between twin classes ``a`` and ``b`` (one nearest row, settled by the
    bounds: mutual nearest rows share it); otherwise ``(2, twin class of i)``.
    """
    others = [j for j in among if j != i]
    low = sum(sorted(bounds.lower[i][j] for j in others)[:closest])
    high = sum(sorted(bounds.upper[i][j] for j in others)[:closest])
    if low == high:
        return (0, low), low, high
    twin = bounds.twin
    if closest == 1:
        classes: dict[int, list[int]] = {}
        for j in others:
            classes.setdefault(twin[j], []).append(j)
        near = sorted(
            (max(bounds.lower[i][j] for j in rows), min(bounds.upper[i][j] for j in rows), c)
            for c, rows in classes.items()  # identical rows: one exact distance, two bounds
        )
        if len(near) == 1 or near[0][1] < near[1][0]:
            c = near[0][2]
            return (1, min(twin[i], c), max(twin[i], c)), low, high
    return (2, twin[i]), low, high
