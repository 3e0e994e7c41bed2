"""Benchmark exact valuation against the float32 valuation it replaced, and print JSON.

For each model (the default digits task's MLP, and the same task with the CNN), one node values
a round of 8 contributors as it does in a swarm: `round_utility` + `settle_round` (exact
Shapley, 256 coalitions of the task's robust aggregation, each evaluated on the 300-example
reference set), once with exact evaluation (what nodes run, ``exact_s``) and once with the
float32 torch evaluation it replaced (``float_s``: the same game with `evaluate_many` and
a float utility in place of `exact_metrics` and `quantised_utility`), interleaved ``--repeats``
times with torch and BLAS on one thread, as a node values a round. Medians, and ``ratio = exact_s /
float_s`` (the target is at most 1.5 for the MLP). ``eval_*_s`` is one state's evaluation alone,
timed inside those runs. Where CUDA is present, ``cuda`` repeats both with evaluation on the GPU.

Usage: ``.venv/bin/python scripts/bench_exact_eval.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy.typing as npt
import torch
from threadpoolctl import threadpool_limits

from swarmchain.incentives import ValuationConfig
from swarmchain.incentives import game as game_module
from swarmchain.incentives.game import round_utility
from swarmchain.incentives.settlement import settle_round
from swarmchain.node.learning.data import Dataset, task_splits
from swarmchain.node.learning.training import (
    Metrics,
    apply_delta,
    evaluate_many,
    genesis_state,
    train_local,
)
from swarmchain.node.protocol.evaluation import exact_metrics
from swarmchain.node.protocol.round import one_thread
from swarmchain.node.protocol.task import ModelSpec, TaskSpec, ValuationSpec, default_task

SEED = 0x5EED
PLAYERS = 8


@dataclasses.dataclass(frozen=True)
class Round:
    """One round's inputs: the base checkpoint and each node's update."""

    spec: TaskSpec
    base: dict[str, torch.Tensor]
    updates: list[dict[str, torch.Tensor]]
    samples: list[int]
    reference: Dataset


def build_round(arch: str) -> Round:
    """8 nodes train 150 examples each from a warmed-up base."""
    spec = dataclasses.replace(default_task(), model=ModelSpec(arch=arch))
    pool, reference = task_splits(spec)
    genesis = genesis_state(spec)
    base = apply_delta(genesis, train_local(spec, genesis, pool.subset(range(200)), seed=1).delta)
    updates, samples = [], []
    for node in range(PLAYERS):
        data = pool.subset(range(200 + 150 * node, 350 + 150 * node))
        update = train_local(spec, base, data, seed=node)
        updates.append(update.delta)
        samples.append(update.num_samples)
    return Round(spec, base, updates, samples, reference)


def _float_metrics(
    spec: TaskSpec,
    states: Iterable[Mapping[str, torch.Tensor]] | Mapping[str, npt.NDArray[Any]],
    data: Dataset,
    *,
    device: torch.device | None = None,
) -> list[Metrics]:
    """The float32 evaluation valuation used before, through `evaluate_many`."""
    if not isinstance(states, Mapping):
        return evaluate_many(spec, states, data, device=device)
    stacked = states
    k = len(next(iter(stacked.values())))
    rows = ({n: torch.from_numpy(a[i]) for n, a in stacked.items()} for i in range(k))
    return evaluate_many(spec, rows, data, device=device)


def _float_utility(metrics: Metrics, valuation: ValuationSpec) -> int:
    """The float utility valuation used before: the metric over the quantum, rounded."""
    value = metrics.accuracy if valuation.utility == "accuracy" else -metrics.loss
    return round(value / valuation.quantum)


@contextlib.contextmanager
def float_valuation() -> Iterator[None]:
    """The game with float32 evaluation in place of exact evaluation, for the baseline."""
    saved = game_module.exact_metrics, game_module.quantised_utility
    game_module.exact_metrics = _float_metrics  # type: ignore[assignment]
    game_module.quantised_utility = _float_utility  # type: ignore[assignment]
    try:
        yield
    finally:
        game_module.exact_metrics, game_module.quantised_utility = saved


def value_round(rnd: Round, device: torch.device) -> bytes:
    """One node's valuation of the round: the rewards root."""
    utility = round_utility(
        rnd.spec, rnd.base, rnd.updates, rnd.samples, rnd.reference, seed=SEED, device=device
    )
    accounts = [f"0x{i + 1:040x}" for i in range(PLAYERS)]
    return settle_round(utility, accounts, seed=SEED, reward=1_000, config=ValuationConfig()).root


def _median_s(call: Callable[[], object], runs: list[float]) -> None:
    start = time.perf_counter()
    call()
    runs.append(time.perf_counter() - start)


def bench_model(arch: str, repeats: int, device: torch.device) -> dict[str, Any]:
    """Median seconds of exact and float valuation of one 8-contributor round."""
    rnd = build_round(arch)
    state = [dict(rnd.base)]
    runs: dict[str, list[float]] = {"float": [], "exact": [], "eval_float": [], "eval_exact": []}

    def floated() -> None:
        with float_valuation():
            value_round(rnd, device)

    value_round(rnd, device)  # warm-up: plan, tables, BLAS threads
    floated()
    for _ in range(repeats):
        _median_s(floated, runs["float"])
        _median_s(lambda: value_round(rnd, device), runs["exact"])
        _median_s(
            lambda: evaluate_many(rnd.spec, state, rnd.reference, device=device), runs["eval_float"]
        )
        _median_s(
            lambda: exact_metrics(rnd.spec, state, rnd.reference, device=device), runs["eval_exact"]
        )
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "float_s": round(medians["float"], 4),
        "exact_s": round(medians["exact"], 4),
        "ratio": round(medians["exact"] / medians["float"], 3),
        "eval_float_s": round(medians["eval_float"], 6),
        "eval_exact_s": round(medians["eval_exact"], 6),
    }


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    with threadpool_limits(1), one_thread():
        report: dict[str, Any] = {
            "setup": {
                "players": PLAYERS,
                "coalitions": 1 << PLAYERS,
                "reference_examples": 300,
                "threads": 1,
                "repeats": args.repeats,
            },
            "mlp": bench_model("mlp", args.repeats, cpu),
            "cnn": bench_model("cnn", args.repeats, cpu),
        }
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            report["cuda"] = {
                arch: bench_model(arch, args.repeats, cuda) for arch in ("mlp", "cnn")
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
