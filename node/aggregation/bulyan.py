"""Bulyan.

El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in Byzantium",
ICML 2018.

Bulyan first selects ``theta = n - 2f`` inputs by applying Krum repeatedly to the inputs not yet
selected, then, coordinate by coordinate, averages the ``beta = theta - 2f`` selected values
closest to their median. It needs ``n >= 4f + 3``. Values at equal distance on both sides of the
median are taken lower side first, so the result is exact and the same on every machine.
"""

from __future__ import annotations

import numpy as np

from swarmchain.node.aggregation.distance_bounds import cheap_bounds
from swarmchain.node.aggregation.errors import ByzantineBoundError
from swarmchain.node.aggregation.fixed_point import (
    Batch,
    I32Array,
    IntArray,
    RuleOutput,
    coordinate_blocks,
    div_round,
    sorted_columns,
)
from swarmchain.node.aggregation.krum import krum_ranking


def bulyan_selection(batch: Batch, f: int) -> list[int]:
    """The ``n - 2f`` rows picked by iterated Krum, in the order they were picked.

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.

    Returns
    -------
    list[int]
        Selected row indices.
    """
    remaining = list(range(batch.n))
    chosen: list[int] = []
    bounds = cheap_bounds(batch)
    for _ in range(batch.n - 2 * f):
        best = krum_ranking(batch, f, 1, remaining, bounds)[0]
        chosen.append(best)
        remaining.remove(best)
    return chosen


def mean_around_median(values: I32Array, beta: int) -> IntArray:
    """Per coordinate, the mean of the ``beta`` values closest to the median (rounded).

    Parameters
    ----------
    values
        ``(theta, d)`` int32 grid rows.
    beta
        How many values to average, ``1 <= beta <= theta``.

    Returns
    -------
    numpy.ndarray
        ``(d,)`` int64. Values at equal distance on both sides of the median are taken lower
        side first.
    """
    theta = values.shape[0]
    if not 1 <= beta <= theta:
        raise ValueError(f"need 1 <= beta <= theta, got beta={beta}, theta={theta}")
    out = np.empty(values.shape[1], dtype=np.int64)
    for start, stop in coordinate_blocks(values):
        cols = sorted_columns(values, start, stop).astype(np.int64)  # (block, theta)
        median2 = cols[:, (theta - 1) // 2] + cols[:, theta // 2]  # twice the median
        twice = 2 * cols - median2[:, None]  # 2 * (value - median), exact
        # The key orders by distance to the median, lower side first, and encodes the value.
        keys = 2 * np.abs(twice) + (twice > 0)
        nearest = np.partition(keys, beta - 1, axis=1)[:, :beta]
        signed = np.where(nearest & 1, 1, -1) * (nearest >> 1)  # back to 2 * (value - median)
        total2 = beta * median2 + signed.sum(axis=1)  # twice the sum of the beta values
        out[start:stop] = div_round(total2, 2 * beta)
    return out


def bulyan(batch: Batch, *, f: int) -> RuleOutput:
    """Bulyan: iterated-Krum selection, then a coordinate-wise mean around the median.

    Parameters
    ----------
    batch
        The quantised updates.
    f
        Assumed number of Byzantine inputs.

    Returns
    -------
    RuleOutput
        The aggregate; ``selected`` lists the ``n - 2f`` inputs that passed the Krum stage.

    Raises
    ------
    ByzantineBoundError
        Bulyan needs n >= 4f + 3.
    """
    n = batch.n
    if f < 0 or n < 4 * f + 3:
        raise ByzantineBoundError("Bulyan", "n >= 4f + 3", n, f)
    chosen = bulyan_selection(batch, f)
    values = np.ascontiguousarray(batch.values[sorted(chosen)])
    return RuleOutput(mean_around_median(values, len(chosen) - 2 * f), tuple(chosen))
