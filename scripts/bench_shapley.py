"""Benchmark the Shapley estimators on the real valuation game and print JSON.

The game is one round of the default digits task (MLP, the task's default robust rule, fixed
point): a base checkpoint after a warm-up round, n nodes that each train locally from it, and
``v(S)`` = the task's utility on the 300-example reference set of ``base + aggregate(S)`` (absent
members count as zero deltas, see `swarmchain.incentives.game`).

- ``n10``: 10 nodes with sizes spread from 20 to 240 examples, two of them with half their labels
  randomised (so some values are negative). Exact Shapley (all 1,024 coalitions) beside each
  estimator run at 15 % of that budget (153 evaluations), over several round seeds; the medians
  are quoted, the worst cases given beside them. Valued by negative loss (the smooth utility);
  ``n10_accuracy`` repeats it valued by accuracy.
- ``scale``: 50 and 100 nodes (the training pool split evenly, two in ten with noisy labels);
  wall and CPU time of one valuation per estimator at the default budget (`ValuationConfig`: 6
  evaluations per player, at least 256). Each evaluation runs the task's robust aggregation over
  all n rows, so its cost grows with n.
- ``round8``: what one node spends valuing a round of 8 contributors on the default task
  (``round_utility`` + ``settle_round``: exact Shapley, 256 coalitions), as a node runs it, with
  torch and BLAS on one thread each; median wall and CPU seconds over ``--repeats`` runs.

Usage: ``.venv/bin/python scripts/bench_shapley.py [--seeds 5] [--threads 1] [--parts scale]
[--repeats 7]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from swarmchain.incentives import (
    CoalitionUtility,
    ShapleyEstimate,
    ValuationConfig,
    estimate_shapley,
    exact_shapley,
)
from swarmchain.incentives.game import round_utility
from swarmchain.incentives.settlement import settle_round
from swarmchain.node.learning.data import Dataset, task_splits
from swarmchain.node.learning.training import State, apply_delta, genesis_state, train_local
from swarmchain.node.protocol.round import one_thread
from swarmchain.node.protocol.task import TaskSpec, ValuationSpec, default_task

N10_SIZES = (20, 35, 50, 70, 90, 115, 140, 170, 200, 240)
NOISY = (2, 6)  # indices of the n10 nodes whose labels are half randomised
EXACT_EVALUATIONS = 1 << 10
BUDGET = EXACT_EVALUATIONS * 15 // 100
ESTIMATORS = ("tmc", "gtg", "kernel", "loo")
TARGET_SPEARMAN = 0.95
TARGET_MAX_REL_ERR = 0.10
ROUND_SEED = 0x5EED
# TMC and GTG spend the same budget, so at n = 100 only the swarm's estimator (GTG) is timed;
# kernel Shapley stops at n = 50 (its exact solve grows as n**3 in big rationals).
PARTS = ("n10", "n10_accuracy", "scale", "round8")
SCALE = {50: ("gtg", "tmc", "kernel", "loo"), 100: ("gtg", "loo")}


@dataclasses.dataclass(frozen=True)
class Round:
    """One round's inputs: the base checkpoint and each node's update."""

    spec: TaskSpec
    base: State
    updates: list[State]
    samples: list[int]
    reference: Dataset

    def utility(self) -> CoalitionUtility:
        """A fresh (uncached) game over this round's updates."""
        return round_utility(
            self.spec, self.base, self.updates, self.samples, self.reference, seed=ROUND_SEED
        )


def build_round(utility: str, sizes: Sequence[int], noisy: Sequence[int]) -> Round:
    """Train every node of a round from a warmed-up base on its own slice of the pool."""
    spec = dataclasses.replace(default_task(), valuation=ValuationSpec(utility=utility))
    pool, reference = task_splits(spec)
    genesis = genesis_state(spec)
    base = apply_delta(genesis, train_local(spec, genesis, pool.subset(range(200)), seed=1).delta)
    rng = np.random.default_rng(0)
    order = rng.permutation(np.arange(200, len(pool)))
    bounds = np.cumsum([0, *sizes])
    updates, samples = [], []
    for node, (start, stop) in enumerate(itertools.pairwise(bounds)):
        data = pool.subset(np.sort(order[start:stop]))
        if node in noisy:
            labels = data.y.clone()
            flip = rng.random(len(labels)) < 0.5
            labels[torch.from_numpy(flip)] = torch.from_numpy(
                rng.integers(0, spec.data.num_classes, int(flip.sum()))
            )
            data = Dataset(data.x, labels)
        update = train_local(spec, base, data, seed=node)
        updates.append(update.delta)
        samples.append(update.num_samples)
    return Round(spec, base, updates, samples, reference)


def max_rel_err(estimate: Sequence[Fraction], exact: Sequence[Fraction]) -> float:
    """Largest absolute error relative to the largest exact value (in absolute terms)."""
    largest = max(abs(v) for v in exact)
    return float(max(abs(a - b) for a, b in zip(estimate, exact, strict=True)) / largest)


def timed(
    rnd: Round, method: str, seed: int, config: ValuationConfig
) -> tuple[ShapleyEstimate, float, float]:
    """One valuation on a fresh game: the estimate, wall seconds and CPU seconds, both counting
    every utility evaluation (CPU time shows the cost on a machine shared with other work)."""
    utility = rnd.utility()
    wall, cpu = time.perf_counter(), time.process_time()
    estimate = estimate_shapley(utility, seed, dataclasses.replace(config, method=method))
    return estimate, time.perf_counter() - wall, time.process_time() - cpu


def bench_n10(utility: str, seeds: int) -> dict[str, Any]:
    """Exact values and every estimator at 15 % of the exact budget, over `seeds` round seeds."""
    rnd = build_round(utility, N10_SIZES, NOISY)
    wall, cpu = time.perf_counter(), time.process_time()
    exact = exact_shapley(rnd.utility())
    out: dict[str, Any] = {
        "exact": {
            "evaluations": exact.evaluations,
            "seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3),
            "values": [float(v) for v in exact.values],
        }
    }
    config = ValuationConfig(max_evaluations=BUDGET)
    for method in ESTIMATORS:
        _progress(f"n10 {utility} {method}")
        runs = [timed(rnd, method, seed, config) for seed in range(seeds)]
        spearman = [float(spearmanr(_floats(e.values), _floats(exact.values))[0]) for e, *_ in runs]
        errors = [max_rel_err(e.values, exact.values) for e, *_ in runs]
        out[method] = {
            "spearman": round(statistics.median(spearman), 4),
            "max_rel_err": round(statistics.median(errors), 4),
            "evaluations": int(statistics.median(e.evaluations for e, *_ in runs)),
            "seconds": round(statistics.median(wall for _, wall, _ in runs), 3),
            "cpu_seconds": round(statistics.median(cpu for *_, cpu in runs), 3),
            "spearman_worst": round(min(spearman), 4),
            "max_rel_err_worst": round(max(errors), 4),
            "meets_targets": statistics.median(spearman) >= TARGET_SPEARMAN
            and statistics.median(errors) <= TARGET_MAX_REL_ERR,
        }
    return out


def bench_scale(n: int, methods: Sequence[str]) -> dict[str, Any]:
    """Wall time of one valuation of an n-node round per estimator, at the default budget."""
    pool_size = 1_497 - 200
    sizes = [pool_size // n] * n
    rnd = build_round("neg_loss", sizes, [i for i in range(n) if i % 10 in (2, 6)])
    out: dict[str, Any] = {}
    for method in methods:
        _progress(f"scale n={n} {method}")
        estimate, wall, cpu = timed(rnd, method, 0, ValuationConfig())
        out[method] = {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "evaluations": estimate.evaluations,
            "permutations": estimate.permutations,
        }
    return out


def bench_round8(repeats: int) -> dict[str, Any]:
    """Median seconds of one node's valuation of an 8-contributor round on the default task."""
    utility = ValuationSpec().utility
    rnd = build_round(utility, [150] * 8, [])
    accounts = [f"0x{i + 1:040x}" for i in range(8)]
    walls, cpus = [], []
    with threadpool_limits(1, user_api="blas"), one_thread():
        for _ in range(repeats + 1):  # the first run warms caches and is not counted
            wall, cpu = time.perf_counter(), time.process_time()
            rewards = settle_round(
                rnd.utility(), accounts, seed=ROUND_SEED, reward=1_000, config=ValuationConfig()
            )
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {
        "players": 8,
        "utility": utility,
        "evaluations": rewards.estimate.evaluations,
        "repeats": repeats,
        "seconds": round(statistics.median(walls[1:]), 4),
        "cpu_seconds": round(statistics.median(cpus[1:]), 4),
        "rewards_root": "0x" + rewards.root.hex(),
    }


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _floats(values: Sequence[Fraction]) -> list[float]:
    return [float(v) for v in values]


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="round seeds per n10 estimator")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="sections to run"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of round8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "setup": {
            "task": "default digits task",
            "aggregation": json.loads(default_task().canonical_bytes())["aggregation"],
            "reference_examples": 300,
            "budget_n10": BUDGET,
            "seeds_n10": args.seeds,
            "torch_threads": args.threads,
            "default_budget": {str(n): ValuationConfig().budget(n) for n in SCALE},
        },
    }
    if "n10" in args.parts:
        report["n10"] = bench_n10("neg_loss", args.seeds)
    if "n10_accuracy" in args.parts:
        report["n10_accuracy"] = bench_n10("accuracy", args.seeds)
    if "scale" in args.parts:
        report["scale"] = {str(n): bench_scale(n, methods) for n, methods in SCALE.items()}
    if "round8" in args.parts:
        _progress("round8")
        report["round8"] = bench_round8(args.repeats)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
