"""Benchmark exact evaluation against today's float32 evaluation and print JSON.

For each model (the default digits task's MLP, and the same task with the CNN), one state from
genesis is evaluated on the task's 300-example reference set by `evaluate` (float32 torch, on
the CPU) and by `exact_evaluate` (each backend asked for), interleaved, ``--repeats`` times;
the medians are reported with ``exact_s / float_s``. Torch and BLAS run on ``--threads``
threads, as a node's valuation does on one.

Usage: ``.venv/bin/python scripts/bench_exact_eval.py [--repeats 15] [--threads 1]
[--backends float64 int64]``.
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
from swarmchain.node.learning.training import evaluate, genesis_state
from swarmchain.node.protocol.exact_eval import Backend, exact_evaluate
from swarmchain.node.protocol.task import TaskSpec


def bench_model(arch: str, backends: list[Backend], repeats: int) -> dict[str, Any]:
    """Median seconds of one float and one exact evaluation of a genesis state."""
    spec = TaskSpec()
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, arch=arch))
    _, ref = task_splits(spec)
    state = genesis_state(spec)
    cpu = torch.device("cpu")
    runs: dict[str, list[float]] = {"float": [], **{b: [] for b in backends}}
    calls = {"float": lambda: evaluate(spec, state, ref, device=cpu)} | {
        b: (lambda b=b: exact_evaluate(state, ref.x, ref.y, backend=b)) for b in backends
    }
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
    }


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timed runs")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
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
            "setup": {"reference_examples": 300, "threads": args.threads, "repeats": args.repeats},
            "mlp": bench_model("mlp", args.backends, args.repeats),
            "cnn": bench_model("cnn", args.backends, args.repeats),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
