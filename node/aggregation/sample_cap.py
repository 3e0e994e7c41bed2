"""Sample-count capping (pre-aggregation step).

Sample counts are self-reported. A rule that weighs inputs by them (FedAvg, the weighted geometric
median) gives a liar who claims a huge count as much pull as it likes: the weighted geometric
median breaks down once the adversary holds half of the total weight (Lopuhaä, Rousseeuw,
"Breakdown Points of Affine Equivariant Estimators of Multivariate Location and Covariance
Matrices", Annals of Statistics 19(1), 1991). Capping every count at ``factor`` times the median
count keeps honest size differences while the median, set by the honest majority, bounds what f
liars can claim: at most ``f * factor`` median counts in all.
"""

from __future__ import annotations

import math

import numpy as np

from swarmchain.node.aggregation.fixed_point import Batch


def sample_cap(batch: Batch, *, factor: float) -> Batch:
    """Cap each row's weight at ``floor(factor * median weight)`` (at least 1).

    Parameters
    ----------
    batch
        The quantised updates and their sample counts.
    factor
        Cap as a multiple of the median count (>= 1).

    Returns
    -------
    Batch
        Same rows and origins; weights capped.

    Raises
    ------
    ValueError
        If ``factor < 1``.
    """
    if not factor >= 1:
        raise ValueError(f"sample cap needs factor >= 1, got {factor}")
    ordered = sorted(int(w) for w in batch.weights)
    n = len(ordered)
    median2 = ordered[(n - 1) // 2] + ordered[n // 2]  # twice the median, exact
    cap = max(1, math.floor(factor * median2 / 2))
    return batch.derive(batch.values, np.minimum(batch.weights, cap), batch.origin)
