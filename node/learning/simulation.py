"""An in-process swarm for experiments: n nodes, f of them Byzantine, no chain and no store.

Each round every honest node trains from the current checkpoint on its own partition; each
Byzantine node trains too (on flipped labels for a data attack) and then forges its update and
its claimed sample count with the chosen attack, seeing the honest updates of the round; the
task's aggregation combines all n updates with the round seed and, for rules that take one, the
previous aggregate as centre.
`scripts/bench_robustness.py` runs this for every rule and attack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from swarmchain.node.aggregation.pipeline import aggregate
from swarmchain.node.aggregation.randomness import derive_seed
from swarmchain.node.aggregation.registry import RULES
from swarmchain.node.learning.attacks import ATTACKS, AttackContext, flip_labels
from swarmchain.node.learning.data import Dataset, holdout_split, task_splits
from swarmchain.node.learning.partition import dirichlet_partition
from swarmchain.node.learning.training import (
    State,
    apply_delta,
    evaluate,
    genesis_state,
    train_local,
    training_seed,
)
from swarmchain.node.protocol.task import TaskSpec


@dataclass(frozen=True)
class SimulationResult:
    """Test accuracy after every round of one simulated swarm."""

    accuracy: tuple[float, ...]  # test accuracy after each round
    screened_byzantine: int  # Byzantine updates screened out, over all rounds
    screened_honest: int  # honest updates screened out, over all rounds
    set_aside_byzantine: int = 0  # Byzantine updates set aside (left out, not rejected)
    set_aside_honest: int = 0  # honest updates set aside


def simulate(
    spec: TaskSpec,
    *,
    attack: str | None,
    num_nodes: int = 10,
    num_byzantine: int = 2,
    rounds: int = 20,
    alpha: float = 0.5,
    test_size: int = 300,
    seed: int = 0,
    device: torch.device | None = None,
) -> SimulationResult:
    """Run a swarm on the task's digits training pool, split by Dirichlet(alpha).

    Parameters
    ----------
    spec
        The task (model, training, aggregation); its reference set is left out of the data.
    attack
        A key of `swarmchain.node.learning.attacks.ATTACKS`, or None for an honest swarm.
    num_nodes, num_byzantine
        n and f; nodes ``0 .. f-1`` are Byzantine.
    rounds
        Rounds to run.
    alpha
        Dirichlet concentration of the label skew.
    test_size
        Examples of the pool held out for testing (seeded by ``seed``).
    seed
        Seeds the test split, the partition, the genesis weights and every node's shuffling.
    device
        Where nodes train and the model is evaluated.

    Returns
    -------
    SimulationResult
        Per-round test accuracy and screening counts.
    """
    if attack is not None and attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r} (known: {sorted(ATTACKS)})")
    pool, _ = task_splits(spec)
    train_pool, test = holdout_split(pool, test_size, seed)
    parts = dirichlet_partition(
        train_pool.y.numpy(), num_nodes, alpha, seed, min_size=spec.train.batch_size // 2
    )
    nodes = [train_pool.subset(p) for p in parts]
    byzantine = set(range(num_byzantine if attack is not None else 0))
    chosen = ATTACKS[attack] if attack is not None else None
    if chosen is not None and chosen.flips_labels:
        nodes = [
            Dataset(d.x, flip_labels(d.y, spec.data.num_classes)) if i in byzantine else d
            for i, d in enumerate(nodes)
        ]
    uses_center = RULES[spec.aggregation.rule].uses_center
    state = genesis_state(_reseeded(spec, seed))
    previous: State | None = None
    accuracy: list[float] = []
    screened = {True: 0, False: 0}
    aside = {True: 0, False: 0}
    for r in range(rounds):
        updates = [
            train_local(
                spec, state, data, seed=training_seed(spec.train, r, f"{seed}/{i}"), device=device
            )
            for i, data in enumerate(nodes)
        ]
        deltas = [u.delta for u in updates]
        if chosen is not None and chosen.forge is not None:
            honest = [deltas[i] for i in range(num_nodes) if i not in byzantine]
            for i in sorted(byzantine):
                ctx = AttackContext(deltas[i], honest, num_byzantine, num_nodes, seed * 1000 + r)
                deltas[i] = chosen.forge(ctx)
        factor = 1 if chosen is None else chosen.sample_factor
        claims = [u.num_samples * (factor if i in byzantine else 1) for i, u in enumerate(updates)]
        result = aggregate(
            spec,
            deltas,
            claims,
            seed=derive_seed("round", seed, r),
            center=previous if uses_center else None,
        )
        for i in result.screened_out:
            screened[i in byzantine] += 1
        for i in result.set_aside:
            aside[i in byzantine] += 1
        previous = result.delta
        state = apply_delta(state, result.delta)
        accuracy.append(evaluate(spec, state, test, device=device).accuracy)
    return SimulationResult(
        tuple(accuracy), screened[True], screened[False], aside[True], aside[False]
    )


def _reseeded(spec: TaskSpec, seed: int) -> TaskSpec:
    """The task with its training seed replaced (a different genesis per experiment)."""
    return replace(spec, train=replace(spec.train, seed=seed))
