"""Centered clipping.

Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust Optimization", ICML 2021.

Starting from a centre ``v`` (the previous aggregate when the caller has one, else zero), each
iteration moves ``v`` by the mean of the inputs' offsets from ``v``, each offset clipped to norm
``tau``::

    v <- v + (1/n) * sum_i (x_i - v) * min(1, tau / ||x_i - v||)

Weighted by sample counts ``w_i``, the mean becomes ``sum_i w_i c_i (x_i - v) / sum_i w_i`` (with
``c_i`` the clipping factor), so an identity's pull follows its data, not its count of identities.

With ``screen``, a first unweighted pass gives a consensus ``g``; every input with
``<x_i, g> < 0`` (one that pulls against it, as a sign flip does) is set aside, and the rule runs
again on the rest. A clipped input still moves the centre by up to ``tau / n`` per iteration;
setting it aside removes that drag, in the spirit of the cosine screening of FLTrust (Cao, Fang,
Liu, Gong, "FLTrust: Byzantine-robust Federated Learning via Trust Bootstrapping", NDSS 2021),
with the round's own consensus as the trusted direction. Set-aside inputs are not punished: an
honest update from a skewed shard can point away from the consensus.

Clipping factors are integers out of ``2**20`` computed from exact distances, and the update is
an exact integer sum, so every machine follows the same path.

`centered_clipping_coalitions` runs the rule for many coalitions of one batch at once (every row
outside a coalition read as a zero update, as the valuation game does): the same integers as one
call per coalition, in a few large array operations instead of many small ones.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from node.aggregation.fixed_point import (
    COORD_BOUND,
    Batch,
    IntArray,
    RuleOutput,
    div_round,
    exact_combine,
    exact_inner,
    exact_sq_norms,
)

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
    screen: bool = False,
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
    screen
        Set aside the inputs whose inner product with a first unweighted pass is negative, then
        clip the rest (when every input would be set aside, the first pass is the result).
    center
        ``(d,)`` int64 grid vector to start from, e.g. the previous round's aggregate; zero when
        omitted.

    Returns
    -------
    RuleOutput
        The final centre and the inputs set aside; no input is screened out.

    Raises
    ------
    ValueError
        If ``tau <= 0``, ``iterations < 1`` or the centre has the wrong shape or range.
    """
    (v,), (counted,) = _coalitions(
        batch, [range(batch.n)], tau, iterations, weighted=weighted, screen=screen, center=center
    )
    return RuleOutput(v, None, tuple(i for i in range(batch.n) if not counted[i]))


def centered_clipping_coalitions(
    batch: Batch,
    coalitions: Sequence[Collection[int]],
    *,
    tau: float,
    iterations: int = 3,
    weighted: bool = False,
    screen: bool = False,
    center: IntArray | None = None,
) -> IntArray:
    """Centered clipping of many coalitions of one batch, each with the others' rows at zero.

    Row ``k`` of the result is exactly ``centered_clipping(masked_k, ...).aggregate``, where
    ``masked_k`` is the batch with every row outside ``coalitions[k]`` replaced by zeros (its
    sample count kept): the zero-filled coalitions of `incentives.game`.

    Parameters
    ----------
    batch
        The quantised updates.
    coalitions
        Row indices of each coalition (any may be empty).
    tau, iterations, weighted, screen, center
        As for `centered_clipping`; a zero row is never set aside.

    Returns
    -------
    numpy.ndarray
        ``(len(coalitions), d)`` int64 final centres. The work holds a few arrays of this size,
        so callers pass as many coalitions as their memory allows.

    Raises
    ------
    ValueError
        As `centered_clipping`, or if a coalition names a row outside the batch.
    """
    return _coalitions(
        batch, coalitions, tau, iterations, weighted=weighted, screen=screen, center=center
    )[0]


def _coalitions(
    batch: Batch,
    coalitions: Sequence[Collection[int]],
    tau: float,
    iterations: int,
    *,
    weighted: bool,
    screen: bool,
    center: IntArray | None,
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """`centered_clipping_coalitions`, with the ``(K, n)`` mask of rows each result counts."""
    if not tau > 0 or iterations < 1:
        raise ValueError(
            f"centered clipping needs tau > 0 and iterations >= 1, got {tau}, {iterations}"
        )
    if center is None:
        start = np.zeros(batch.dim, dtype=np.int64)
    elif center.shape != (batch.dim,) or int(np.abs(center).max(initial=0)) > COORD_BOUND:
        raise ValueError(f"centre must be ({batch.dim},) within +-{COORD_BOUND} grid units")
    else:
        start = center.astype(np.int64)
    members = np.zeros((len(coalitions), batch.n), dtype=bool)  # (K, n)
    for k, coalition in enumerate(coalitions):
        rows = list(coalition)
        if any(not 0 <= i < batch.n for i in rows):
            raise ValueError(f"coalition rows must be in [0, {batch.n}), got {sorted(rows)}")
        members[k, rows] = True
    tau_q = batch.to_grid(tau)
    counted = np.ones_like(members)  # rows each coalition's rule runs on (zero rows included)
    if screen:
        first = _clip(batch, members, counted, start, tau_q, iterations, False)
        cross = exact_inner(batch.values, first.astype("<i4"))  # (n, K) <x_i, g_k>
        for k in range(len(coalitions)):
            opposed = [bool(members[k, i]) and cross[i][k] < 0 for i in range(batch.n)]
            if not all(opposed):
                counted[k] = np.logical_not(opposed)
        if counted.all() and not weighted:
            return first, counted
    return _clip(batch, members, counted, start, tau_q, iterations, weighted), counted


def _clip(
    batch: Batch,
    members: npt.NDArray[np.bool_],
    counted: npt.NDArray[np.bool_],
    start: IntArray,
    tau_q: int,
    iterations: int,
    weighted: bool,
) -> IntArray:
    """Iterate centered clipping for each coalition row of ``members`` ``(K, n)``, over the rows
    of ``counted`` ``(K, n)`` (each row has at least one; those outside ``members`` read as 0)."""
    full = 1 << CLIP_BITS
    # Each coalition's denominator, grouped: the rows of one group divide by the same integer.
    scales = (
        [1 << WEIGHTED_BITS] * len(members)
        if weighted
        else [int(c) << CLIP_BITS for c in counted.sum(axis=1)]
    )
    groups = {scale: [k for k, s in enumerate(scales) if s == scale] for scale in set(scales)}
    sq = batch.sq_norms
    inside = members.tolist()
    n = batch.n
    v = np.repeat(start[None, :], members.shape[0], axis=0)  # (K, d) one centre per coalition
    for iteration in range(iterations):
        # Every coalition starts from the same centre: one column of products serves them all.
        grid = (v[:1] if iteration == 0 else v).astype("<i4")  # within +-COORD_BOUND: exact
        cross = exact_inner(batch.values, grid)  # (n, K or 1) <x_i, v_k>
        norms = exact_sq_norms(grid)  # (K or 1,) ||v_k||^2
        column = [0] * len(inside) if iteration == 0 else range(len(inside))
        factors = np.array(
            [
                [
                    _factor(
                        math.isqrt(
                            sq[i] - 2 * cross[i][c] + norms[c] if inside[k][i] else norms[c]
                        ),
                        tau_q,
                        full,
                    )
                    for i in range(n)
                ]
                for k, c in enumerate(column)
            ],
            dtype=np.int64,
        )  # (K, n); a zero row lies at distance ||v_k|| from the centre
        factors *= counted
        if weighted:
            factors = np.array(
                [
                    _weighted(row, batch.weights * c)
                    for row, c in zip(factors, counted, strict=True)
                ],
                dtype=np.int64,
            )
        pulled = exact_combine(batch.values, factors * members)  # (K, d) sum_i c_i x_i
        offset = pulled - factors.sum(axis=1)[:, None] * v
        if len(groups) == 1:
            step = div_round(offset, scales[0])
        else:
            step = np.empty_like(offset)
            for scale, rows in groups.items():
                step[rows] = div_round(offset[rows], scale)
        if not step.any():
            break
        v += step
    return v


def _factor(distance: int, tau_q: int, full: int) -> int:
    """The clipping factor out of ``full``: ``min(1, tau / distance)``, rounded down."""
    return full if distance <= tau_q else (tau_q << CLIP_BITS) // distance


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
