"""Benchmark exact evaluation against today's float32 evaluation and print JSON.

For each model (the default digits task's MLP, and the same task with the CNN), one state from
genesis is evaluated on the task's 300-example reference set by `evaluate` (float32 torch, on
the CPU) and by `exact_evaluate` (each backend asked for), interleaved, ``--repeats`` times;
the medians are reported with ``exact_s / float_s``. ``*_many_s`` is the same per state when
``--states`` states go through `evaluate_many` and `exact_evaluate_many` at once, as valuation
evaluates its coalitions. Torch and BLAS run on ``--threads`` threads, as a node's valuation
does on one.

Usage: ``.venv/bin/python scripts/bench_exact_eval.py [--repeats 15] [--threads 1]
[--states 16] [--backends float64 int64]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from swarmchain.node.learning.data import task_splits
from swarmchain.node.learning.training import evaluate, evaluate_many, genesis_state
from swarmchain.node.protocol.exact_eval import Backend, exact_evaluate, exact_evaluate_many
from swarmchain.node.protocol.task import TaskSpec


def bench_model(arch: str, backends: list[Backend], repeats: int, k: int) -> dict[str, Any]:
    """Median seconds of float and exact evaluations of genesis states (one, and ``k``)."""
    spec = TaskSpec()
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, arch=arch))
    _, ref = task_splits(spec)
    state = genesis_state(spec)
    cpu = torch.device("cpu")
    states = [{n: v * (1 + i / k) for n, v in state.items()} for i in range(k)]
    calls = {
        "float": lambda: evaluate(spec, state, ref, device=cpu),
        "float_many": lambda: evaluate_many(spec, states, ref, device=cpu),
        "exact_many": lambda: exact_evaluate_many(states, ref.x, ref.y, backend=backends[0]),
    } | {b: (lambda b=b: exact_evaluate(state, ref.x, ref.y, backend=b)) for b in backends}
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up: caches, tables, BLAS threads
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            runs[name].append(time.perf_counter() - start)
    float_s = statistics.median(runs["float"])
    exact = {b: statistics.median(runs[b]) for b in backends}
    return {
        "float_s": float_s,
        "exact_s": exact[backends[0]],
        "ratio": exact[backends[0]] / float_s,
        "exact_s_by_backend": exact,
        "float_many_s": statistics.median(runs["float_many"]) / k,
        "exact_many_s": statistics.median(runs["exact_many"]) / k,
        "ratio_many": statistics.median(runs["exact_many"]) / statistics.median(runs["float_many"]),
    }


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timed runs")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--states", type=int, default=16, help="states per *_many call")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["float64", "int64", "torch"],
        default=["float64", "int64", "torch"],
        help="exact backends; the first is reported as exact_s",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        report = {
            "setup": {
                "reference_examples": 300,
                "threads": args.threads,
                "repeats": args.repeats,
                "states": args.states,
            },
            "mlp": bench_model("mlp", args.backends, args.repeats, args.states),
            "cnn": bench_model("cnn", args.backends, args.repeats, args.states),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
