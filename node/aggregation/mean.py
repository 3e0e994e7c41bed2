"""Mean and sample-weighted mean (FedAvg).

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017 (FederatedAveraging).

Neither rule is robust: one Byzantine input moves the result arbitrarily far. They are the
baselines the robust rules are measured against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    Layout,
    RuleOutput,
    Update,
    div_round,
    exact_combine,
    quantised_mean,
)


def mean(batch: Batch) -> RuleOutput:
    """Coordinate-wise arithmetic mean of the rows, rounded half to even.

    Parameters
    ----------
    batch
        The quantised updates.

    Returns
    -------
    RuleOutput
        The mean; no input is screened.
    """
    total = exact_combine(batch.values, np.ones((1, batch.n), dtype=np.int64))[0]
    return RuleOutput(div_round(total, batch.n), None)


def weighted_mean(batch: Batch) -> RuleOutput:
    """Mean weighted by each update's sample count (FedAvg), rounded half to even.

    Parameters
    ----------
    batch
        The quantised updates; ``batch.weights`` are the sample counts.

    Returns
    -------
    RuleOutput
        ``sum_i n_i x_i / sum_i n_i``; no input is screened.
    """
    total = exact_combine(batch.values, batch.weights[None, :])[0]
    return RuleOutput(div_round(total, int(batch.weights.sum())), None)


def mean_of_updates(
    updates: Sequence[Update], num_samples: Sequence[int], frac_bits: int, *, weighted: bool
) -> tuple[Layout, RuleOutput, dict[str, torch.Tensor]]:
    """`weighted_mean` (or `mean`) of the quantised updates, without building their batch.

    Parameters
    ----------
    updates, num_samples, frac_bits
        As for `fixed_point.quantise`.
    weighted
        FedAvg (weights are the sample counts); otherwise the plain mean.

    Returns
    -------
    tuple[Layout, RuleOutput, dict[str, torch.Tensor]]
        The updates' layout; what the rule returns on ``quantise(updates, num_samples,
        frac_bits)``, exactly; and its aggregate dequantised.
    """
    layout, grid, delta = quantised_mean(updates, num_samples, frac_bits, weighted=weighted)
    return layout, RuleOutput(grid, None), delta
