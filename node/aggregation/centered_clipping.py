"""Centered clipping.

Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust Optimization", ICML 2021.

Starting from a centre ``v`` (the previous aggregate when the caller has one, else zero), each
iteration moves ``v`` by the mean of the inputs' offsets from ``v``, each offset clipped to norm
``tau``::

    v <- v + (1/n) * sum_i (x_i - v) * min(1, tau / ||x_i - v||)

Weighted by sample counts ``w_i``, the mean becomes ``sum_i w_i c_i (x_i - v) / sum_i w_i`` (with
``c_i`` the clipping factor), so an identity's pull follows its data, not its count of identities.

Clipping factors are integers out of ``2**20`` computed from exact distances, and the update is
an exact integer sum, so every machine follows the same path.
"""

from __future__ import annotations

import numpy as np

from node.aggregation.fixed_point import (
    COORD_BOUND,
    Batch,
    IntArray,
    RuleOutput,
    div_round,
    exact_combine,
)
from node.aggregation.geometric_median import distances_to

CLIP_BITS = 20  # clipping factors are integers out of 2**20
# With n <= MAX_INPUTS = 2**11 the factors sum to at most 2**31, so sum_i c_i x_i and C * v are
# each at most 2**61 in magnitude and their difference fits in int64.
WEIGHTED_BITS = 31  # weighted coefficients floor(2**31 * w_i c_i / (2**20 * W)) sum to <= 2**31


def centered_clipping(
    batch: Batch,
    *,
    tau: float,
    iterations: int = 3,
    weighted: bool = False,
    center: IntArray | None = None,
) -> RuleOutput:
    """Iterated centered clipping around ``center``.

    Parameters
    ----------
    batch
        The quantised updates.
    tau
        Clipping radius in parameter units (> 0).
    iterations
        Clipping iterations (>= 1); stops earlier when the centre no longer changes.
    weighted
        Weight input ``i``'s clipped offset by its sample count ``w_i``. Off by default: counts
        are self-reported, so pair it with the ``sample_cap`` step. On, splitting one node's data
        over several identities no longer multiplies its pull.
    center
        ``(d,)`` int64 grid vector to start from, e.g. the previous round's aggregate; zero when
        omitted.

    Returns
    -------
    RuleOutput
        The final centre; no input is screened.

    Raises
    ------
    ValueError
        If ``tau <= 0``, ``iterations < 1`` or the centre has the wrong shape or range.
    """
    if not tau > 0 or iterations < 1:
        raise ValueError(
            f"centered clipping needs tau > 0 and iterations >= 1, got {tau}, {iterations}"
        )
    n = batch.n
    if center is None:
        v = np.zeros(batch.dim, dtype=np.int64)
    elif center.shape != (batch.dim,) or int(np.abs(center).max(initial=0)) > COORD_BOUND:
        raise ValueError(f"centre must be ({batch.dim},) within +-{COORD_BOUND} grid units")
    else:
        v = center.astype(np.int64)
    tau_q = batch.to_grid(tau)
    full = 1 << CLIP_BITS
    scale = 1 << WEIGHTED_BITS if weighted else n << CLIP_BITS
    for _ in range(iterations):
        dist = distances_to(batch, v)
        factors = np.array(
            [full if dv <= tau_q else (tau_q << CLIP_BITS) // dv for dv in dist], dtype=np.int64
        )
        if weighted:
            factors = _weighted(factors, batch.weights)
        pulled = exact_combine(batch.values, factors[None, :])[0]  # sum_i c_i x_i
        step = div_round(pulled - int(factors.sum()) * v, scale)
        if not step.any():
            break
        v = v + step
    return RuleOutput(v, None)


def _weighted(factors: IntArray, weights: IntArray) -> IntArray:
    """Coefficients ``floor(2**31 * w_i c_i / (2**20 * sum_j w_j))``: they sum to at most 2**31."""
    total = int(weights.sum())
    return np.array(
        [
            (int(w) * int(c) << (WEIGHTED_BITS - CLIP_BITS)) // total
            for w, c in zip(weights, factors, strict=True)
        ],
        dtype=np.int64,
    )
