"""Coordinate-wise median and coordinate-wise trimmed mean.

Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018.

Both act on each coordinate independently: the median takes the middle value (the mean of the
two middle values for even n); the trimmed mean drops the ``floor(beta * n)`` largest and
smallest values and averages the rest. Sorting integers has one answer, so both are exact.
"""

from __future__ import annotations

import numpy as np

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    RuleOutput,
    coordinate_blocks,
    div_round,
    sorted_columns,
)


def median(batch: Batch) -> RuleOutput:
    """Coordinate-wise median (mean of the two middle values when n is even, rounded).

    Parameters
    ----------
    batch
        The quantised updates.

    Returns
    -------
    RuleOutput
        The median; no input is screened.
    """
    n = batch.n
    out = np.empty(batch.dim, dtype=np.int64)
    low, high = (n - 1) // 2, n // 2
    for start, stop in coordinate_blocks(batch.values):
        cols = sorted_columns(batch.values, start, stop)  # (block, n), each row sorted
        pair = cols[:, low].astype(np.int64) + cols[:, high]
        out[start:stop] = div_round(pair, 2)
    return RuleOutput(out, None)


def trimmed_mean(batch: Batch, *, beta: float) -> RuleOutput:
    """Coordinate-wise mean after dropping the ``floor(beta * n)`` lowest and highest values.

    Parameters
    ----------
    batch
        The quantised updates.
    beta
        Fraction trimmed from each side, ``0 <= beta < 0.5``.

    Returns
    -------
    RuleOutput
        The trimmed mean; no input is screened.

    Raises
    ------
    ValueError
        If ``beta`` is outside ``[0, 0.5)`` (then nothing might remain).
    """
    n = batch.n
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"trimmed mean needs 0 <= beta < 0.5, got beta={beta}")
    cut = int(beta * n)  # beta < 0.5 keeps n - 2 * cut >= 1 values
    kept = n - 2 * cut
    out = np.empty(batch.dim, dtype=np.int64)
    for start, stop in coordinate_blocks(batch.values):
        cols = sorted_columns(batch.values, start, stop)
        out[start:stop] = div_round(cols[:, cut : n - cut].sum(axis=1, dtype=np.int64), kept)
    return RuleOutput(out, None)
