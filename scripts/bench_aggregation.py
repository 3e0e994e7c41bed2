"""Time every aggregation rule against Flower's implementation of the same rule, as JSON.

For n in {10, 50, 100} updates of d in {100k, 1M} float32 parameters (three named tensors), each
rule runs through the full deterministic pipeline (quantise, exact fixed-point rule, dequantise);
where Flower has the rule, its function from ``flwr.server.strategy.aggregate`` runs on the same
arrays, and ``max_abs_diff`` compares the two results. Times are medians over repeats (seven
times as many for calls under 0.1 s), after one untimed warm-up call each; ours and Flower's calls
alternate, so that a slow spell of the machine weighs on both. Both get the inputs in canonical
order (sorted by the hash of their fixed-point content), the order in which our rules break ties,
so that exact ties in Krum scores resolve alike.

Flower is optional and is NOT a project dependency. Installing ``flwr`` into the project's venv
would downgrade rich and typer, so install it, without dependencies, into a separate directory::

    .venv/bin/pip install --no-deps --target /tmp/flwr-only flwr==1.41.0 protobuf==6.33.6 \
        grpcio==1.85.1 cryptography==50.0.2 iterators
    FLWR_PATH=/tmp/flwr-only .venv/bin/python scripts/bench_aggregation.py

``input_read_s`` is the time NumPy takes on one thread to read every input coordinate once (one
sum per array): a single-threaded rule cannot beat it, so ``flower_s / input_read_s`` bounds the
speedup any such implementation could reach over Flower's (ours reads large inputs on every core).

Where a rule selects values rather than averaging them all (Bulyan averages the beta values
closest to the coordinate's median), ours decides on the fixed-point grid and Flower in float32,
so the two can pick differently where candidates are within rounding of a tie.
``coords_beyond_2_grid_steps`` counts the coordinates further apart than rounding explains, and
for Bulyan ``of_which_near_ties`` counts those where the last value kept and the first one left
out lie within two grid steps of the same distance to the median. Wherever some coordinates
differ so, ``finest_grid_max_abs_diff`` compares Flower's result with ours on the finest grid a
task allows (``2**-30``, about float32's own resolution for these inputs), where what differs is
float rounding alone.

Without Flower every ``flower_s`` is null. Flower's Krum and Bulyan compare all pairs in Python
loops (Bulyan once per selected update), so cells whose estimated Flower time exceeds
``--flower-budget-s`` are skipped and say so. On a busy machine set ``OPENBLAS_NUM_THREADS=1``:
a BLAS thread waiting for a core it cannot get slows every call by an order of magnitude.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from swarmchain.node.aggregation.fixed_point import quantise
from swarmchain.node.aggregation.limits import MAX_FRAC_BITS
from swarmchain.node.aggregation.pipeline import aggregate
from swarmchain.node.protocol.task import AggregationSpec, TaskSpec, default_task
from swarmchain.node.runtime.heap import keep_freed_heap

SIZES_N = (10, 50, 100)
SIZES_D = (100_000, 1_000_000)
RULES = (
    "mean",
    "fedavg",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "bulyan",
    "geometric_median",
    "centered_clipping",
)
BETA = 0.1  # trimmed mean: fraction cut from each side
PAIR_COST_S = 2.5e-9  # Flower's per-coordinate cost of one pairwise distance (for skipping)
# The finest grid a task allows, 2**-30, needs an update norm bound of at most 1 (the inputs have
# about 10, but aggregation does not check the bound: verification does).
FINEST = {"fixed_point_bits": MAX_FRAC_BITS, "update_norm_bound": 1.0}


def byzantine_f(n: int) -> int:
    """The largest f that Bulyan allows at n (n >= 4f + 3), used for Krum too."""
    return (n - 3) // 4


def make_inputs(n: int, d: int, seed: int) -> tuple[list[dict[str, torch.Tensor]], list[int]]:
    """n updates of three named float32 tensors totalling d coordinates, and sample counts."""
    rng = np.random.default_rng(seed)
    sizes = {"a.weight": d // 2, "b.weight": d - d // 2 - d // 100, "c.bias": d // 100}
    updates = [
        {k: torch.from_numpy(rng.normal(0.0, 0.01, s).astype(np.float32)) for k, s in sizes.items()}
        for _ in range(n)
    ]
    return updates, [int(c) for c in rng.integers(50, 500, n)]


def ours(rule: str, n: int) -> AggregationSpec:
    """Our pipeline for a rule, with the benchmark's parameters."""
    f = byzantine_f(n)
    params: dict[str, dict[str, Any]] = {
        "trimmed_mean": {"beta": BETA},
        "krum": {"f": f},
        "multi_krum": {"f": f, "m": n - f},
        "bulyan": {"f": f},
        "geometric_median": {"iterations": 4},
        "centered_clipping": {"tau": 0.5, "iterations": 3},
    }
    return AggregationSpec(rule, params.get(rule, {}), ())


def flower(rule: str, n: int, module: Any) -> tuple[Callable[..., Any], bool] | None:
    """Flower's function for a rule (and whether it takes the real sample counts), or None."""
    f = byzantine_f(n)
    table: dict[str, tuple[Callable[..., Any], bool]] = {
        "mean": (module.aggregate, False),  # FedAvg with equal counts is the plain mean
        "fedavg": (module.aggregate, True),
        "median": (module.aggregate_median, False),
        "trimmed_mean": (lambda r: module.aggregate_trimmed_avg(r, BETA), False),
        "krum": (lambda r: module.aggregate_krum(r, f, 0), False),
        # Flower's Multi-Krum averages by sample count; ours is unweighted: equal counts.
        "multi_krum": (lambda r: module.aggregate_krum(r, f, n - f), False),
        "bulyan": (
            lambda r: module.aggregate_bulyan(list(r), f, module.aggregate_krum, to_keep=0),
            False,
        ),
    }
    return table.get(rule)


def flower_estimate_s(rule: str, n: int, d: int) -> float:
    """Rough Flower time from its pairwise loops (Krum: n^2 pairs; Bulyan: n^2 per pick)."""
    if rule in ("krum", "multi_krum"):
        return n * n * d * PAIR_COST_S
    if rule == "bulyan":
        picks = n - 2 * byzantine_f(n)
        return sum(k * k for k in range(n - picks + 1, n + 1)) * d * PAIR_COST_S
    return 0.0


def bulyan_near_ties(
    arrays: list[list[np.ndarray]], selected: Sequence[int], where: np.ndarray, f: int, grid: float
) -> int:
    """How many of the coordinates in `where` are Bulyan near-ties: there, the beta-th and the
    next closest of the selected inputs lie within two grid steps of the same distance to their
    median (computed exactly, in float64, on the float32 inputs), so which of them Bulyan
    averages depends on rounding and tie-breaking, not on the rule."""
    picked = np.stack([np.concatenate([a.ravel() for a in arrays[i]])[where] for i in selected])
    values = picked.astype(np.float64)
    distance = np.sort(np.abs(values - np.median(values, axis=0)), axis=0)
    beta = len(selected) - 2 * f
    return int((distance[beta] - distance[beta - 1] <= 2 * grid).sum())


def flat(tensors: Sequence[Any]) -> np.ndarray:
    """Arrays or tensors as one float64 vector."""
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors])


def finest_grid_diff(
    spec: TaskSpec,
    updates: list[dict[str, torch.Tensor]],
    weights: list[int],
    flower_fn: Callable[..., Any],
    flower_inputs: list[tuple[list[np.ndarray], int]],
) -> float:
    """Largest difference between Flower's result and ours on the finest grid a task allows
    (``2**-30``, about float32's own resolution for these inputs), both given the inputs in that
    grid's canonical order (in which our rules break ties): what differs there is float rounding.
    """
    keys = quantise(updates, weights, MAX_FRAC_BITS)
    order = sorted(range(len(updates)), key=keys.content_key)
    fine = replace(spec, **FINEST)
    mine = aggregate(fine, [updates[i] for i in order], [weights[i] for i in order])
    theirs = flower_fn([flower_inputs[i] for i in order])
    return float(np.abs(flat([mine.delta[k] for k in sorted(mine.delta)]) - flat(theirs)).max())


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls, and the last result; with several repeats, one
    untimed call first (whichever implementation runs first would otherwise pay the page faults
    of fresh buffers in its median)."""
    (seconds, result), _ = timed_pair(fn, None, repeats)
    return seconds, result


def timed_pair(
    fn: Callable[[], Any], other: Callable[[], Any] | None, repeats: int
) -> tuple[tuple[float, Any], tuple[float, Any] | None]:
    """`timed` for ``fn`` and ``other`` at once, their calls alternating (each goes first every
    other time), so that a slow spell of the machine weighs on both medians alike."""
    fns = [fn] if other is None else [fn, other]
    times: list[list[float]] = [[] for _ in fns]
    results: list[Any] = [None for _ in fns]
    if repeats > 1 or other is not None:  # a pair is always warmed, both alike
        for f in fns:
            f()
    for k in range(repeats):
        for j in range(len(fns)) if k % 2 == 0 else reversed(range(len(fns))):
            start = time.perf_counter()
            results[j] = fns[j]()
            times[j].append(time.perf_counter() - start)
    out = [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]
    return out[0], (out[1] if other is not None else None)


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(SIZES_N))
    parser.add_argument("--d", type=int, nargs="+", default=list(SIZES_D))
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flower-budget-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    if os.environ.get("FLWR_PATH"):
        sys.path.insert(0, os.environ["FLWR_PATH"])
    try:
        fl: Any = importlib.import_module("flwr.server.strategy.aggregate")
        flower_version = importlib.import_module("flwr").__version__
    except ImportError as exc:
        fl, flower_version = None, f"not installed ({exc})"
    # As a node runs: freed blocks are reused, not page-faulted in anew (Flower's too).
    heap_kept = keep_freed_heap()
    base = default_task()
    grid = 2.0**-base.fixed_point_bits
    results = []
    for n in args.n:
        for d in args.d:
            updates, counts = make_inputs(n, d, seed=n * 7 + d)
            # Present inputs in the canonical order (by content hash) to both implementations:
            # equal Krum scores are then resolved alike (Flower takes the lowest index, ours the
            # lowest content hash), so results are comparable when Bulyan's last picks tie.
            keyed = quantise(updates, counts, base.fixed_point_bits)
            order = sorted(range(n), key=keyed.content_key)
            updates, counts = [updates[i] for i in order], [counts[i] for i in order]
            arrays = [[u[k].numpy() for k in sorted(u)] for u in updates]
            read_s, _ = timed(lambda a=arrays: [np.add.reduce(x) for row in a for x in row], 5)
            for rule in args.rules:
                spec = replace(base, aggregation=ours(rule, n))
                weights = counts if rule == "fedavg" else [1] * n
                run_ours = partial(aggregate, spec, updates, weights)
                # Calls of well under a second are timed many times: their medians are noisy.
                # (Two probes: the first compiled call of a run also loads the kernels.)
                probe = min(timed(run_ours, 1)[0], timed(run_ours, 1)[0])
                repeats = args.repeats if probe > 0.1 else 7 * args.repeats
                row: dict[str, Any] = {
                    "rule": rule,
                    "n": n,
                    "d": d,
                    "ours_s": None,
                    "flower_s": None,
                    "max_abs_diff": None,
                    "input_read_s": round(read_s, 4),
                }
                entry = None if fl is None else flower(rule, n, fl)
                estimate = flower_estimate_s(rule, n, d)
                if entry is not None and estimate > args.flower_budget_s:
                    row["flower_skipped"] = f"estimated {estimate:.0f} s > budget"
                    entry = None
                run_theirs = None
                if entry is not None:
                    fn, weighted = entry
                    res = [(a, c if weighted else 1) for a, c in zip(arrays, counts, strict=True)]
                    run_theirs = partial(fn, res)
                if run_theirs is not None and estimate > 10:  # Flower's runs once, after ours
                    ours_s, mine = timed(run_ours, repeats)
                    theirs_timed: tuple[float, Any] | None = timed(run_theirs, 1)
                else:
                    (ours_s, mine), theirs_timed = timed_pair(run_ours, run_theirs, repeats)
                row["ours_s"] = round(ours_s, 4)
                row["repeats"] = repeats
                if theirs_timed is not None:
                    flower_s, theirs = theirs_timed
                    ours_flat = flat([mine.delta[k] for k in sorted(mine.delta)])
                    their_flat = flat(theirs)
                    row["flower_s"] = round(flower_s, 4)
                    diff = np.abs(ours_flat - their_flat)
                    row["max_abs_diff"] = float(diff.max())
                    # Coordinates further apart than rounding explains: a rule that selects
                    # values (Bulyan's mean around the median) can pick a different one where two
                    # candidates lie within a grid step of a tie.
                    row["coords_beyond_2_grid_steps"] = int((diff > 2 * grid).sum())
                    if rule == "bulyan":
                        row["of_which_near_ties"] = bulyan_near_ties(
                            arrays, mine.selected, diff > 2 * grid, byzantine_f(n), grid
                        )
                    if row["coords_beyond_2_grid_steps"]:
                        row["finest_grid_max_abs_diff"] = finest_grid_diff(
                            spec, updates, weights, fn, res
                        )
                    row["speedup"] = round(flower_s / ours_s, 2)
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    report = {
        "results": results,
        "flower_version": flower_version,
        "grid_step": grid,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "cpu_count": os.cpu_count(),
        "freed_heap_kept": heap_kept,
        "note": "times are medians; max_abs_diff is in parameter units",
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
