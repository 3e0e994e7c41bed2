"""Krum and Multi-Krum.

Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS 2017 (Krum); El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability
of Distributed Learning in Byzantium", ICML 2018 (Multi-Krum).

Each input's score is the sum of its squared distances to its ``n - f - 2`` nearest other inputs;
Krum returns the input with the lowest score, Multi-Krum the mean of the ``m`` lowest. Distances
are exact integers on the fixed-point grid and equal scores are ordered by content hash, so the
choice is the same on every machine and for every order of arrival. Where exact distances are
costly (large grid integers), certified float64 bounds decide first (`distance_bounds`); the
exact distances are computed only when the bounds leave a comparison open, and the choice is the
same either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarmchain.node.aggregation.distance_bounds import (
    DistanceBounds,
    certified_krum_order,
    cheap_bounds,
)
from swarmchain.node.aggregation.errors import ByzantineBoundError
from swarmchain.node.aggregation.fixed_point import Batch, RuleOutput, div_round, exact_combine


def _check_krum_bound(name: str, n: int, f: int) -> None:
    """Raise ByzantineBoundError unless ``f >= 0`` and ``n >= 2f + 3``."""
    if f < 0 or n < 2 * f + 3:
        raise ByzantineBoundError(name, "n >= 2f + 3", n, f)


def krum_scores(batch: Batch, f: int, rows: Sequence[int] | None = None) -> dict[int, int]:
    """Krum score of each row: the sum of its ``max(1, k - f - 2)`` smallest squared distances.

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.
    rows
        The ``k`` rows competing (all rows when omitted); distances to other rows are ignored.

    Returns
    -------
    dict[int, int]
        Row -> exact integer score.
    """
    among = list(range(batch.n)) if rows is None else list(rows)
    closest = max(1, len(among) - f - 2)
    dists = batch.sq_dists
    return {i: sum(sorted(dists[i][j] for j in among if j != i)[:closest]) for i in among}


def krum_ranking(
    batch: Batch,
    f: int,
    keep: int,
    rows: Sequence[int] | None = None,
    bounds: DistanceBounds | None = None,
) -> list[int]:
    """The ``keep`` rows with the lowest Krum scores, lowest first (ties by content hash).

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.
    keep
        How many rows to return.
    rows
        The rows competing (all rows when omitted).
    bounds
        Certified distance bounds of the batch, tried before the exact distances unless those
        are already known.

    Returns
    -------
    list[int]
        ``batch.rank(krum_scores(batch, f, rows))[:keep]``, whichever way it was found.
    """
    among = list(range(batch.n)) if rows is None else list(rows)
    if bounds is not None and not batch.gram_known:
        order = certified_krum_order(batch, bounds, f, among, keep)
        if order is not None:
            return order
    return batch.rank(krum_scores(batch, f, among))[:keep]


def krum(batch: Batch, *, f: int) -> RuleOutput:
    """The input whose ``n - f - 2`` nearest neighbours are closest (Krum).

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.

    Returns
    -------
    RuleOutput
        The chosen input itself; ``selected`` names it, every other input is screened out.

    Raises
    ------
    ByzantineBoundError
        Krum needs n >= 2f + 3.
    """
    _check_krum_bound("Krum", batch.n, f)
    best = krum_ranking(batch, f, 1, bounds=cheap_bounds(batch))[0]
    return RuleOutput(batch.values[best].astype(np.int64), (best,))


def multi_krum(batch: Batch, *, f: int, m: int | None = None) -> RuleOutput:
    """Mean of the ``m`` inputs with the lowest Krum scores (Multi-Krum).

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.
    m
        How many inputs to average; ``n - f`` when omitted.

    Returns
    -------
    RuleOutput
        The unweighted mean of the chosen inputs; ``selected`` lists them (lowest score first).

    Raises
    ------
    ByzantineBoundError
        Multi-Krum needs n >= 2f + 3 and 1 <= m <= n - f.
    """
    n = batch.n
    _check_krum_bound("Multi-Krum", n, f)
    keep = n - f if m is None else m
    if not 1 <= keep <= n - f:
        raise ByzantineBoundError("Multi-Krum", "1 <= m <= n - f", n, f, m=keep)
    chosen = krum_ranking(batch, f, keep, bounds=cheap_bounds(batch))
    coeffs = np.zeros((1, n), dtype=np.int64)
    coeffs[0, chosen] = 1
    total = exact_combine(batch.values, coeffs)[0]
    return RuleOutput(div_round(total, keep), tuple(chosen))
