"""Contribution valuation (Shapley estimators), reward allocation and Merkle reward trees.

The node runtime and the auditor use this package in three steps, all pure functions of public
inputs (the round's accepted updates, the reference set, the task spec and the round seed):

1. wrap the round's game in a `CoalitionUtility` (a quantised, cached ``v(S)``);
2. value every accepted contributor with `estimate_shapley`;
3. split the round's reward with `allocate_rewards` and build the claim tree with
   `RewardTree.from_amounts`; its `root` goes into the attestation.
"""

from swarmchain.incentives.allocation import allocate_rewards, canonical_address
from swarmchain.incentives.merkle import (
    EMPTY_ROOT,
    RewardEntry,
    RewardTree,
    leaf_hash,
    process_proof,
    verify_proof,
)
from swarmchain.incentives.prng import RoundRng
from swarmchain.incentives.shapley import (
    ESTIMATORS,
    MAX_EXACT_PLAYERS,
    ShapleyEstimate,
    ValuationConfig,
    estimate_shapley,
    exact_shapley,
    gtg_shapley,
    kernel_shapley,
    leave_one_out,
    tmc_shapley,
)
from swarmchain.incentives.utility import UTILITY_SCALE, CoalitionUtility, quantise

__all__ = [
    "EMPTY_ROOT",
    "ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "UTILITY_SCALE",
    "CoalitionUtility",
    "RewardEntry",
    "RewardTree",
    "RoundRng",
    "ShapleyEstimate",
    "ValuationConfig",
    "allocate_rewards",
    "canonical_address",
    "estimate_shapley",
    "exact_shapley",
    "gtg_shapley",
    "kernel_shapley",
    "leaf_hash",
    "leave_one_out",
    "process_proof",
    "quantise",
    "tmc_shapley",
    "verify_proof",
]
