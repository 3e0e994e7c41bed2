"""Final test accuracy of every aggregation rule under every attack, as JSON.

A simulated swarm (swarmchain.node.learning.simulation) of 10 nodes, 2 of them Byzantine, trains the
default digits task on a Dirichlet(0.5) split for a number of rounds; each (rule, attack) cell is
the test accuracy after the last round, averaged over seeds. The rule with the best worst case over
all attacks is reported as ``default_rule``, with whether it reaches the target: under every attack
at least 97% of what plain mean aggregation reaches with no attack.

    nice .venv/bin/python scripts/bench_robustness.py --workers 2   # full table: ~1 h, 2 busy cores
    .venv/bin/python scripts/bench_robustness.py --rules mean centered_clipping+bucketing \
        --attacks none alie --seeds 1 --rounds 10            # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import torch

from swarmchain.node.learning.attacks import ATTACKS
from swarmchain.node.learning.simulation import simulate
from swarmchain.node.protocol.task import AggregationSpec, StepSpec, default_task

NUM_NODES = 10
NUM_BYZANTINE = 2
TARGET = 0.97

# Each entry: a rule with the parameters it would get in a swarm of 10 with f = 2.
PIPELINES: dict[str, AggregationSpec] = {
    "mean": AggregationSpec("mean", {}, ()),
    "fedavg": AggregationSpec("fedavg", {}, ()),
    "median": AggregationSpec("median", {}, ()),
    "trimmed_mean": AggregationSpec("trimmed_mean", {"beta": 0.2}, ()),
    "geometric_median": AggregationSpec("geometric_median", {"iterations": 8}, ()),
    "geometric_median_weighted": AggregationSpec(
        "geometric_median", {"iterations": 8, "weighted": True}, ()
    ),
    "geometric_median_weighted+sample_cap": AggregationSpec(
        "geometric_median",
        {"iterations": 8, "weighted": True},
        (StepSpec("sample_cap", {"factor": 2.0}),),
    ),
    "krum": AggregationSpec("krum", {"f": NUM_BYZANTINE}, ()),
    "multi_krum": AggregationSpec("multi_krum", {"f": NUM_BYZANTINE}, ()),
    "bulyan": AggregationSpec("bulyan", {"f": NUM_BYZANTINE}, ()),
    "centered_clipping": AggregationSpec("centered_clipping", {"tau": 0.2, "iterations": 3}, ()),
    "centered_clipping+bucketing": AggregationSpec(
        "centered_clipping", {"tau": 0.2, "iterations": 3}, (StepSpec("bucketing", {"s": 2}),)
    ),
    "centered_clipping_weighted+sample_cap": AggregationSpec(
        "centered_clipping",
        {"tau": 0.2, "iterations": 3, "weighted": True},
        (StepSpec("sample_cap", {"factor": 2.0}),),
    ),
    "centered_clipping_screened_weighted+sample_cap": AggregationSpec(
        "centered_clipping",
        {"tau": 0.2, "iterations": 3, "weighted": True, "screen": True},
        (StepSpec("sample_cap", {"factor": 1.5}),),
    ),
}
ATTACK_NAMES = ["none", *ATTACKS]


def run_cell(name: str, attack: str, seed: int, rounds: int, alpha: float) -> float | str:
    """Final test accuracy of one simulated swarm, or the rule's error message."""
    torch.set_num_threads(1)  # tiny models: one thread per worker, and the machine is shared
    spec = replace(default_task(), aggregation=PIPELINES[name])
    try:
        result = simulate(
            spec,
            attack=None if attack == "none" else attack,
            num_nodes=NUM_NODES,
            num_byzantine=NUM_BYZANTINE,
            rounds=rounds,
            alpha=alpha,
            seed=seed,
            device=torch.device("cpu"),
        )
    except ValueError as exc:  # a Byzantine bound the rule cannot meet at n=10, f=2
        return str(exc)
    return result.accuracy[-1]


def main(argv: list[str] | None = None) -> int:
    """Run the table and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    parser.add_argument("--attacks", nargs="+", default=ATTACK_NAMES, choices=ATTACK_NAMES)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (averaged)")
    parser.add_argument("--rounds", type=int, default=50, help="rounds per simulated swarm")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew")
    parser.add_argument("--workers", type=int, default=1, help="processes running cells")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cells = [(r, a, s) for r in args.rules for a in args.attacks for s in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {cell: pool.submit(run_cell, *cell, args.rounds, args.alpha) for cell in cells}
        finals = {}
        for cell, future in futures.items():
            finals[cell] = future.result()
            print(f"{cell[0]:28s} {cell[1]:11s} seed {cell[2]}: {finals[cell]}", file=sys.stderr)
    accuracy: dict[str, dict[str, float | None]] = {}
    spread: dict[str, dict[str, float | None]] = {}
    errors: dict[str, str] = {}
    for name in args.rules:
        accuracy[name], spread[name] = {}, {}
        for attack in args.attacks:
            runs = [finals[(name, attack, seed)] for seed in range(args.seeds)]
            numbers = [r for r in runs if isinstance(r, float)]
            if len(numbers) < len(runs):
                errors[name] = next(str(r) for r in runs if isinstance(r, str))
                accuracy[name][attack] = spread[name][attack] = None
                continue
            accuracy[name][attack] = round(statistics.fmean(numbers), 4)
            spread[name][attack] = round(statistics.pstdev(numbers), 4)
    print(json.dumps(_report(args, accuracy, spread, errors, started), indent=2))
    return 0


def _report(
    args: argparse.Namespace,
    accuracy: dict[str, dict[str, float | None]],
    spread: dict[str, dict[str, float | None]],
    errors: dict[str, str],
    started: float,
) -> dict[str, Any]:
    """The JSON report: table, chosen default rule and whether it meets the target."""
    worst = {
        name: min(v for v in cells.values() if v is not None)
        for name, cells in accuracy.items()
        if cells and all(v is not None for v in cells.values())
    }
    default = max(worst, key=lambda name: worst[name]) if worst else None
    baseline = accuracy.get("mean", {}).get("none")
    return {
        "default_rule": default,
        "accuracy": accuracy,
        "std_over_seeds": spread,
        "worst_case": worst,
        "errors": errors,
        "target": None if baseline is None else round(TARGET * baseline, 4),
        "default_meets_target": (
            None if baseline is None or default is None else worst[default] >= TARGET * baseline
        ),
        "default_aggregation": None if default is None else _aggregation_json(default),
        "config": {
            "nodes": NUM_NODES,
            "byzantine": NUM_BYZANTINE,
            "dirichlet_alpha": args.alpha,
            "rounds": args.rounds,
            "seeds": args.seeds,
            "task": json.loads(default_task().canonical_bytes()),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _aggregation_json(name: str) -> Any:
    """The ``aggregation`` section of a task spec using pipeline ``name``."""
    spec = replace(default_task(), aggregation=PIPELINES[name])
    return json.loads(spec.canonical_bytes())["aggregation"]


if __name__ == "__main__":
    sys.exit(main())
