"""Mean and sample-weighted mean (FedAvg).

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017 (FederatedAveraging).

Neither rule is robust: one Byzantine input moves the result arbitrarily far. They are the
baselines the robust rules are measured against.
"""

from __future__ import annotations

import numpy as np

from node.aggregation.fixed_point import Batch, RuleOutput, div_round, exact_combine


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
