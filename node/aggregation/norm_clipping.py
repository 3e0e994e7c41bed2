"""Norm clipping (pre-aggregation step).

Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated Learning?", NeurIPS 2019
workshop (arXiv:1911.07963): scaling every update down to a fixed norm bound limits what one
participant can contribute.

Each row whose exact norm exceeds ``max_norm`` is scaled by an integer factor out of ``2**30``
(computed from the exact integer square root of its squared norm) and rounded half to even.
"""

from __future__ import annotations

import math

import numpy as np

from swarmchain.node.aggregation.fixed_point import Batch, div_round

SCALE_BITS = 30  # factor = (max_norm << 30) // norm <= 2**30, so |x * factor| <= 2**60


def norm_clipping(batch: Batch, *, max_norm: float) -> Batch:
    """Scale each row down to Euclidean norm at most ``max_norm``.

    Parameters
    ----------
    batch
        The quantised updates.
    max_norm
        The norm bound in parameter units (> 0).

    Returns
    -------
    Batch
        Same rows, weights and origins; rows above the bound scaled down.

    Raises
    ------
    ValueError
        If ``max_norm <= 0``.
    """
    if not max_norm > 0:
        raise ValueError(f"norm clipping needs max_norm > 0, got {max_norm}")
    bound = batch.to_grid(max_norm)
    values = batch.values.copy()
    for i, sq in enumerate(batch.sq_norms):
        if sq > bound * bound:
            factor = (bound << SCALE_BITS) // math.isqrt(sq)
            scaled = div_round(values[i].astype(np.int64) * factor, 1 << SCALE_BITS)
            values[i] = scaled.astype("<i4")
    return batch.derive(values, batch.weights, batch.origin)
