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
an exact integer sum, so every machine follows the same path. The centres are kept as float64
integers: every centre is a rounded convex combination of the previous one, the rows and zero,
so it stays within ``bound = max(max|x|, max|start|)``. Each iteration computes in float64 only
what is proven exact, whatever order BLAS adds in: inner products with the rows split into
parts of ``b`` bits, ``2**b * bound * d <= 2**53``; squared norms that come out below ``2**53``;
and the step when every product, partial sum and the offset stay within ``2**53`` (``2**52``
for a denominator that is not a power of two), checked from the iteration's coefficients.
Elsewhere it takes the split integer products of `swarmchain.node.aggregation.fixed_point`.

`centered_clipping_coalitions` runs the rule for many coalitions of one batch at once (every row
outside a coalition read as a zero update, as the valuation game does): the same integers as one
call per coalition, in a few large array operations instead of many small ones.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import numpy.typing as npt

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    F64Array,
    I32Array,
    IntArray,
    RuleOutput,
    div_round,
    exact_combine,
    exact_inner,
    exact_sq_norms,
)
from swarmchain.node.aggregation.limits import COORD_BOUND

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
    sample count kept): the zero-filled coalitions of `swarmchain.incentives.game`.

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
    # Each centre is a convex combination of the previous one, the rows and zero, rounded to an
    # integer, so every centre coordinate stays within +-bound.
    bound = max(batch.max_abs, int(np.abs(start).max(initial=0)))
    scales = (
        np.full(len(members), 1 << WEIGHTED_BITS, dtype=np.int64)
        if weighted
        else counted.sum(axis=1).astype(np.int64) << CLIP_BITS
    )  # (K,) each coalition's denominator
    # Quotients through float64 are exact below 2**53 for powers of two, else below 2**52.
    powers = not np.any(scales & (scales - 1))
    quotient_limit = 1 << 53 if powers else (1 << 52) - 1
    divisors = scales[:, None].astype(np.float64)  # (K, 1)
    rows = batch.values.astype(np.float64)  # (n, d)
    # Below 2**62, int64 holds every squared distance, norm and inner product the distances need.
    small = (batch.max_abs + bound) ** 2 * batch.dim < 1 << 62
    parts = _row_parts(batch.values, batch.max_abs, bound) if small else None
    inside = members.astype(np.int64)
    reach = min(tau_q, 1 << 62)  # distances are below 2**43: the same comparison, within int64
    # Every coalition starts from the same centre, so the first iteration's distances are one
    # row; the centres are exact integers in float64 from then on, updated in place.
    v: F64Array = start[None, :].astype(np.float64)  # (1, d), then (K, d)
    centres = np.empty((len(members), batch.dim))
    step = np.empty_like(centres)
    work = np.empty_like(centres)
    for _ in range(iterations):
        distances = _distances(batch, members, v, bound, parts)  # (K, n)
        factors = np.where(distances <= reach, 1 << CLIP_BITS, _clipped(tau_q, distances))
        factors = factors * counted  # (K, n)
        if weighted:
            factors = _weighted_rows(factors, batch.weights * counted)
        totals = factors.sum(axis=1)  # (K,)
        coeffs = factors * inside  # a zero row lies at distance ||v_k|| and pulls towards 0
        reach_v = max(int(v.max(initial=0)), -int(v.min(initial=0)))  # max|v_k| over k
        pull = int(coeffs.sum(axis=1).max()) * batch.max_abs  # bounds |sum_i c_i x_i|
        if pull + int(totals.max()) * reach_v <= quotient_limit:
            # With C the coefficients' sum, every product c_i x_i and partial sum (at most
            # `pull`), C v and the offset itself are integers of at most
            # pull + C * max|v| <= 2**53 in magnitude: exact in float64. Dividing by a power of
            # two (multiplying by its exact inverse) is exact, and IEEE rint rounds half to even
            # as `div_round` does. Another scale s: a non-half-integer a / s lies at least
            # 1 / (2s) from every half-integer, and float64 division errs by at most
            # |a / s| * 2**-53 < 1 / (2s) when |a| < 2**52, so rint again picks div_round's
            # integer (a half-integer quotient is itself exact).
            np.matmul(coeffs.astype(np.float64), rows, out=step)
            np.multiply(v, totals[:, None].astype(np.float64), out=work)
            step -= work
            if powers:
                step *= 1.0 / divisors
            else:
                step /= divisors
            np.rint(step, out=step)
        else:
            offset = exact_combine(batch.values, coeffs) - totals[:, None] * v.astype(np.int64)
            for scale in np.unique(scales).tolist():
                group = scales == scale
                step[group] = div_round(offset[group], scale)
        # A zero step would leave the centre, and so every later step, unchanged: no early exit.
        np.add(v, step, out=centres)
        v = centres
    return v.astype(np.int64)


def _distances(
    batch: Batch,
    members: npt.NDArray[np.bool_],
    centres: F64Array,
    bound: int,
    parts: tuple[F64Array, int] | None,
) -> IntArray:
    """``isqrt(||x_i - v_k||^2)`` ``(K, n)`` for the rows of ``members``, ``isqrt(||v_k||^2)`` for
    the zero rows; ``centres`` ``(K or 1, d)`` holds exact integers within +-``bound``, ``parts``
    is `_row_parts` when ``(max|x| + bound)**2 * d < 2**62``, else None."""
    if parts is None:
        grid = centres.astype("<i4")
        products = exact_inner(batch.values, grid)  # (n, K) <x_i, v_k>
        lengths = exact_sq_norms(grid)
        own = batch.sq_norms
        far = [
            [math.isqrt(own[i] - 2 * products[i][k] + lengths[k]) for i in range(batch.n)]
            for k in range(len(lengths))
        ]
        # Every distance is at most sqrt(d) * 2**31 <= 2**42.5: int64 holds them.
        return np.where(
            members,
            np.array(far, dtype=np.int64),
            np.array([math.isqrt(v) for v in lengths], dtype=np.int64)[:, None],
        )
    # Every squared distance, norm and inner product is under (max|x| + bound)**2 * d < 2**62.
    split, bits = parts
    dots = centres @ split.T  # (K, P * n) exact, see `_row_parts`
    n = batch.n
    cross_rows = np.zeros((len(centres), n), dtype=np.int64)
    for p in range(split.shape[0] // n):
        # Wrapping int64 arithmetic is exact modulo 2**64 and the true sum is < 2**62.
        cross_rows += dots[:, p * n : (p + 1) * n].astype(np.int64) << (p * bits)
    approx = np.einsum("ij,ij->i", centres, centres)
    if approx.max(initial=0) < 1 << 53:
        # A float64 sum of squares that comes out below 2**53 is exact in any order, fused or
        # not: rounding is monotone and each partial sum and square is at most the result, so
        # each is an integer below 2**53, which float64 holds.
        norms = approx.astype(np.int64)
    else:
        grid = centres.astype(np.int64)
        norms = np.einsum("ij,ij->i", grid, grid)
    sq = np.array(batch.sq_norms, dtype=np.int64)
    apart = _isqrt(sq[None, :] - 2 * cross_rows + norms[:, None])
    return np.where(members, apart, _isqrt(norms)[:, None])


def _row_parts(values: I32Array, top: int, bound: int) -> tuple[F64Array, int]:
    """The rows split into ``P`` float64 parts of ``b`` bits, stacked ``(P * n, d)``, with ``b``:
    ``x = sum_p part_p * 2**(p * b)``, low parts in ``[0, 2**b)``, the top part signed.

    Every part is at most ``2**b`` in magnitude and ``2**b * bound * d <= 2**53``, so each
    partial sum of ``part * v`` over a centre ``v`` within +-``bound`` is an exact float64
    integer, whatever order BLAS adds in. Needs ``bound >= top`` and ``bound**2 * d < 2**62``,
    so that ``b >= 9`` (with ``d <= 2**23``).
    """
    d = values.shape[1]
    bits = 53 - (max(1, bound * d) - 1).bit_length()  # largest b with 2**b * bound * d <= 2**53
    count = max(1, -(-top.bit_length() // bits))  # top < 2**(P * b): the top part is <= 2**b
    wide = values.astype(np.int64)
    split = [(wide >> (p * bits)) & ((1 << bits) - 1) for p in range(count - 1)]
    split.append(wide >> ((count - 1) * bits))
    return np.concatenate(split).astype(np.float64), bits


def _isqrt(squares: IntArray) -> IntArray:
    """``math.isqrt`` of each int64 in ``[0, 2**62)``, exactly."""
    # sqrt of the float64 nearest each square is within 2**-20 of the true root (< 2**31), so
    # its floor is off by at most one, and one integer check each way corrects it; (r + 1)**2
    # stays below 2**63.
    roots = np.sqrt(squares.astype(np.float64)).astype(np.int64)
    roots -= roots * roots > squares
    roots += (roots + 1) * (roots + 1) <= squares
    return roots


def _clipped(tau_q: int, distances: IntArray) -> IntArray:
    """``(tau_q << CLIP_BITS) // distance``, the factor of a distance beyond ``tau_q``.

    Entries at or within ``tau_q`` are not meaningful (the caller keeps the full factor there).
    Distances are below ``2**43``, so one beyond ``tau_q`` has ``tau_q < 2**43``, and the
    numerator stays within int64.
    """
    numerator = min(tau_q, (1 << 43) - 1) << CLIP_BITS
    quotient: IntArray = numerator // np.maximum(distances, 1)
    return quotient


def _weighted_rows(factors: IntArray, weights: IntArray) -> IntArray:
    """Coefficients ``floor(2**31 * w_i c_i / (2**20 * sum_j w_j))`` of each row ``(K, n)``: each
    row sums to at most 2**31."""
    totals = weights.sum(axis=1, keepdims=True)  # (K, 1), each >= 1
    if int(weights.max()) < 1 << 32:  # w * c * 2**11 < 2**32 * 2**31 = 2**63
        coeffs: IntArray = (weights * factors << (WEIGHTED_BITS - CLIP_BITS)) // totals
        return coeffs
    return np.array(
        [
            [
                (int(w) * int(c) << (WEIGHTED_BITS - CLIP_BITS)) // int(total)
                for w, c in zip(row_w, row_c, strict=True)
            ]
            for row_w, row_c, total in zip(weights, factors, totals[:, 0], strict=True)
        ],
        dtype=np.int64,
    )
