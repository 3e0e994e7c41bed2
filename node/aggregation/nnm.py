"""Nearest-neighbour mixing (pre-aggregation step).

Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A Recipe for Optimal
Byzantine ML under Heterogeneity", AISTATS 2023.

Each input is replaced by the mean of its ``n - f`` nearest inputs (itself included), measured
by exact squared distance with ties broken by content hash; a robust rule then aggregates the
mixed inputs.
"""

from __future__ import annotations

import numpy as np

from swarmchain.node.aggregation.errors import ByzantineBoundError
from swarmchain.node.aggregation.fixed_point import Batch, div_round, exact_combine


def nearest_neighbour_mixing(batch: Batch, *, f: int) -> Batch:
    """Replace each row by the mean of its ``n - f`` nearest rows.

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.

    Returns
    -------
    Batch
        n mixed rows with the original weights; each origin is the union of the neighbours'.

    Raises
    ------
    ByzantineBoundError
        NNM needs 0 <= f < n.
    """
    n = batch.n
    if not 0 <= f < n:
        raise ByzantineBoundError("NNM", "0 <= f < n", n, f)
    keep = n - f
    dists = batch.sq_dists
    coeffs = np.zeros((n, n), dtype=np.int64)
    neighbours = []
    for i in range(n):
        near = batch.rank(dict(enumerate(dists[i])))[:keep]
        coeffs[i, near] = 1
        neighbours.append(near)
    values = div_round(exact_combine(batch.values, coeffs), keep).astype("<i4")
    origin = tuple(tuple(sorted({o for j in near for o in batch.origin[j]})) for near in neighbours)
    return batch.derive(values, batch.weights, origin)
