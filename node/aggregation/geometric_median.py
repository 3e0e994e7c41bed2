"""Geometric median by the smoothed Weiszfeld algorithm (RFA).

Pillutla, Kakade, Harchaoui, "Robust Aggregation for Federated Learning", IEEE Transactions on
Signal Processing 70, 2022 (arXiv:1912.13445).

Starting from the (weighted) mean, each iteration re-weights input ``i`` by
``alpha_i / max(nu, ||z - x_i||)`` (``alpha_i`` is 1, or the sample count when weighted) and moves
``z`` to the re-weighted mean. Distances are exact integer square roots of exact squared
distances, weights are integers normalised to sum to at most ``2**22``, and the iteration stops
early only when ``z`` stops changing exactly, so every machine runs the same iterations and
reaches the same point.
"""

from __future__ import annotations

import math

import numpy as np

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    IntArray,
    RuleOutput,
    div_round,
    exact_combine,
    exact_inner,
)

WEIGHT_BITS = 22  # normalised Weiszfeld weights sum to at most 2**22 (exact float64 sums)
_RATIO_BITS = 96  # precision of alpha_i / distance_i before normalisation


def distances_to(batch: Batch, point: IntArray) -> list[int]:
    """Exact ``floor(||x_i - point||)`` for every row, in grid units.

    Parameters
    ----------
    batch
        The quantised updates.
    point
        ``(d,)`` int64 grid vector within the coordinate bound.

    Returns
    -------
    list[int]
        One integer distance per row.
    """
    p = point.astype("<i4")[None, :]
    cross = exact_inner(batch.values, p)
    pp = exact_inner(p, p)[0][0]
    return [math.isqrt(sq - 2 * c[0] + pp) for sq, c in zip(batch.sq_norms, cross, strict=True)]


def geometric_median(
    batch: Batch, *, iterations: int = 8, nu: float = 1e-6, weighted: bool = False
) -> RuleOutput:
    """Approximate geometric median (smoothed Weiszfeld, as in RFA).

    Parameters
    ----------
    batch
        The quantised updates.
    iterations
        Most Weiszfeld steps (>= 1); stops earlier when the estimate no longer changes.
    nu
        Smoothing: distances below ``nu`` count as ``nu`` (in parameter units, > 0).
    weighted
        Weight input ``i`` by its sample count, as RFA does. Off by default: sample counts are
        self-reported, and one input claiming more than half of the total weight would be the
        weighted median.

    Returns
    -------
    RuleOutput
        The estimate; no input is screened.

    Raises
    ------
    ValueError
        If ``iterations < 1`` or ``nu <= 0``.
    """
    if iterations < 1 or not nu > 0:
        raise ValueError(
            f"geometric median needs iterations >= 1 and nu > 0, got {iterations}, {nu}"
        )
    nu_q = batch.to_grid(nu)
    alpha_row = batch.weights if weighted else np.ones(batch.n, dtype=np.int64)
    alpha = [int(a) for a in alpha_row]
    z = div_round(exact_combine(batch.values, alpha_row[None, :])[0], sum(alpha))
    for _ in range(iterations):
        dist = distances_to(batch, z)
        ratio = [(a << _RATIO_BITS) // max(nu_q, dz) for a, dz in zip(alpha, dist, strict=True)]
        total = sum(ratio)
        weights = np.array([(r << WEIGHT_BITS) // total for r in ratio], dtype=np.int64)
        nxt = div_round(exact_combine(batch.values, weights[None, :])[0], int(weights.sum()))
        if np.array_equal(nxt, z):
            break
        z = nxt
    return RuleOutput(z, None)
