"""Benchmark a full swarm round against a bare in-process FedAvg loop.

For each swarm size it starts a fresh Anvil, deploys a ready-to-run swarm, runs that many real
``swarm node join`` processes (sharing the embedded store, the machine's cores split among them)
for a warm-up round plus the measured rounds, and reads each node's own account of every round
(training, storage, chain, verification + aggregation + valuation, waiting). Beside it, a bare
loop trains the same nodes on the same data with the same local training, using all the machine's
cores, and averages the deltas (FedAvg): the limit a swarm could approach. The bare loop runs one
worker process per core, each training one node at a time on one torch thread. Bare and swarm
blocks alternate, ``--blocks`` swarms each between two bare blocks (bare, swarm, bare, swarm,
bare), because this kind of machine drifts by 20% within minutes: comparing the pooled medians of
interleaved blocks weighs a slow spell on both sides alike, where one bare block against one
swarm compares two moments. ``ratio_vs_fastest_bare_block`` also gives the swarm's median against
the fastest bare block alone, the harshest reading of the same runs. ``--sequential``
also times the nodes one after another in this process with torch on every core (slow: a small
model trains mostly in Python, so extra threads barely help); the faster of the two is the limit.
Like the bare loop's workers, the nodes take turns to train, one per core at a time
(``--train-slots``; 0 lets them all train at once, time-sliced by the kernel); time spent waiting
for a slot counts as waiting, not training.

The task's local training is calibrated first to take about ``--train-s`` seconds per node per
round on one core. Prints one JSON object; medians over nodes and measured rounds::

    {"results": [{"nodes": 8, "swarm_round_s": ..., "bare_round_s": ..., "ratio": ...,
                  "breakdown_s": {...}, "rss_mb_per_node": ...}], ...}

Run: ``.venv/bin/python scripts/bench_round.py [--nodes 4 8 16] [--rounds 3] [--blocks 2]
[--sequential]``
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.swarm import LocalSwarm, Member, NodeProcess
from swarmchain.node.learning.data import Dataset, load_npz, task_splits
from swarmchain.node.learning.training import (
    LocalUpdate,
    State,
    apply_delta,
    genesis_state,
    train_local,
    training_seed,
)
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.runtime.events import EventKind

WINDOW_S = 300  # windows close early once every node acted; this only bounds a stall
CALIBRATION_STEPS = 100
NORM_BOUND = 50.0  # the benchmark task's update norm bound (64 is the limit at 24 fraction bits)


def calibrated_task(train_s: float) -> TaskSpec:
    """The default task with `local_steps` set so one node's training takes ~`train_s` seconds
    (and an update norm bound that such long local training stays within)."""
    spec = default_task()
    probe = replace(spec, train=replace(spec.train, local_steps=CALIBRATION_STEPS))
    pool, _ = task_splits(spec)
    data = pool.subset(range(200))
    base = genesis_state(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_local(probe, base, data, seed=0, device=torch.device("cpu"))  # warm-up
        started = time.perf_counter()
        train_local(probe, base, data, seed=1, device=torch.device("cpu"))
        per_step = (time.perf_counter() - started) / CALIBRATION_STEPS
    finally:
        torch.set_num_threads(threads)
    steps = max(1, round(train_s / per_step))
    # Thousands of local steps move the weights further than the default bound allows.
    return replace(spec, train=replace(spec.train, local_steps=steps), update_norm_bound=NORM_BOUND)


def peak_rss_mb(process: NodeProcess) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    pid = process.pid
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def swarm_rounds(
    spec: TaskSpec,
    valuation: ValuationConfig,
    nodes: int,
    rounds: int,
    workdir: Path,
    before: Callable[[LocalSwarm], None],
    train_slots: int,
) -> tuple[list[dict[str, float]], float, LocalSwarm, float]:
    """Run a swarm; return each node's timings of each measured round, the mean peak RSS, the
    swarm, and the machine's 1-minute load as the nodes started.

    `before` runs once the swarm is deployed and its members' data written, before any node
    starts (the bare loop's first measurement). With ``train_slots`` > 0 the nodes take turns
    to train, that many at a time (``--train-slots``).
    """
    params = SwarmParams.windows(WINDOW_S)
    cores = os.cpu_count() or 1
    threads = max(1, cores // nodes)
    first = 2  # round 1 opens with no members; round 2 is the warm-up
    last = first + rounds
    slots = ("--train-slots", str(train_slots)) if train_slots > 0 else ()
    with Anvil() as anvil:
        swarm = LocalSwarm.create(
            anvil, workdir, spec, nodes, params=params, valuation=valuation, alpha=0.5
        )
        before(swarm)
        load = os.getloadavg()[0]
        with swarm:
            for i in range(nodes):
                swarm.start(
                    i,
                    "--min-members", str(nodes),
                    "--until-round", str(last),
                    "--threads", str(threads),
                    *slots,
                )  # fmt: skip
            processes = list(swarm.processes.values())
            for process in processes:
                process.wait_for(
                    lambda e: e.kind == EventKind.FINALIZED and e.round == last,
                    WINDOW_S * (rounds + 2),
                    f"round {last}",
                )
            rss = statistics.mean(peak_rss_mb(p) for p in processes)
            for process in processes:
                process.wait(timeout=120)
    timings = [
        dict(e.data["timings"])
        for p in processes
        for e in p.of_kind(EventKind.FINALIZED)
        if first < e.round <= last
    ]
    return timings, rss, swarm, load


@functools.cache
def _data(path: Path) -> Dataset:
    return load_npz(path)


_task: list[TaskSpec] = []  # the bare loop's task, in this process and (by fork) in its workers


def _train(base: State, round_id: int, member: Member) -> LocalUpdate:
    spec = _task[0]
    seed = training_seed(spec.train, round_id, member.address)
    return train_local(spec, base, _data(member.data), seed=seed, device=torch.device("cpu"))


def _worker(spec: TaskSpec) -> None:
    torch.set_num_threads(1)
    _task[:] = [spec]


def bare_rounds(spec: TaskSpec, swarm: LocalSwarm, rounds: int, *, pooled: bool) -> list[float]:
    """The same local training of the same nodes, then FedAvg, with no chain, store or peers.

    Either the nodes train one after another in this process with torch using every core
    (``pooled=False``), or one worker process per core trains them side by side on one torch
    thread each (``pooled=True``; processes, because training a small model is mostly Python and
    threads would queue on the GIL). The workers start and load their data before the timing.
    """
    cores = os.cpu_count() or 1
    torch.set_num_threads(1 if pooled else cores)
    state: State = genesis_state(spec)
    durations = []
    _task[:] = [spec]
    pool: Executor = (
        ProcessPoolExecutor(
            cores,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker,
            initargs=(spec,),
        )
        if pooled
        else ThreadPoolExecutor(1)
    )
    with pool:
        list(pool.map(_data, [m.data for m in swarm.members]))
        for r in range(2, 3 + rounds):
            started = time.perf_counter()
            updates = list(pool.map(partial(_train, state, r), swarm.members))
            total = sum(u.num_samples for u in updates)
            mean = {
                k: torch.stack([u.delta[k] * (u.num_samples / total) for u in updates]).sum(0)
                for k in state
            }
            state = apply_delta(state, mean)
            durations.append(time.perf_counter() - started)
    return durations[1:]  # the first round is the warm-up


def timed_bare(
    spec: TaskSpec,
    swarm: LocalSwarm,
    *,
    rounds: int,
    out: list[list[float]],
    loads: dict[str, float],
    when: str,
) -> None:
    """Append the bare loop's rounds to `out`, noting the machine's load as it began."""
    loads[f"bare_{when}"] = round(os.getloadavg()[0], 2)
    out.append(bare_rounds(spec, swarm, rounds, pooled=True))


def median_parts(timings: list[dict[str, float]]) -> dict[str, float]:
    """The median of each part over nodes and rounds."""
    parts = sorted({k for t in timings for k in t})
    return {k: round(statistics.median(t.get(k, 0.0) for t in timings), 3) for k in parts}


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per block")
    parser.add_argument(
        "--blocks",
        type=int,
        default=2,
        help="swarm blocks per size, each between two bare blocks",
    )
    parser.add_argument("--train-s", type=float, default=2.0, help="local training per node")
    parser.add_argument(
        "--valuation",
        default="auto",
        help="Shapley estimator of the swarm's task document (auto: exact up to 10 members)",
    )
    parser.add_argument(
        "--train-slots",
        type=int,
        default=os.cpu_count() or 1,
        help="nodes train this many at a time, like the bare loop's workers (0: all at once)",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="also time the bare loop one node at a time with torch on every core",
    )
    args = parser.parse_args()
    valuation = ValuationConfig(method=args.valuation)

    spec = calibrated_task(args.train_s)
    print(f"local_steps={spec.train.local_steps}", file=sys.stderr, flush=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp:
        for n in args.nodes:
            # Bare and swarm blocks alternate (bare, swarm, bare, ..., bare), so a slow spell of
            # the machine weighs on both sides; each side's rounds are pooled into one median.
            bare_blocks: list[list[float]] = []
            loads: dict[str, float] = {}
            bare = partial(timed_bare, spec, rounds=args.rounds, out=bare_blocks, loads=loads)
            timings: list[dict[str, float]] = []
            swarm_blocks: list[float] = []
            rss: list[float] = []
            for block in range(args.blocks):
                first = partial(bare, when="0") if block == 0 else (lambda _: None)
                block_timings, block_rss, swarm, load = swarm_rounds(
                    spec,
                    valuation,
                    n,
                    args.rounds,
                    Path(tmp) / f"n{n}-{block}",
                    first,
                    args.train_slots,
                )
                loads[f"swarm_{block}"] = round(load, 2)
                bare(swarm, when=str(block + 1))
                timings += block_timings
                swarm_blocks.append(statistics.median(t["round"] for t in block_timings))
                rss.append(block_rss)
            bare_s = statistics.median(r for rounds in bare_blocks for r in rounds)
            block_medians = [statistics.median(rounds) for rounds in bare_blocks]
            extra: dict[str, float] = {}
            if args.sequential:
                sequential = statistics.median(bare_rounds(spec, swarm, args.rounds, pooled=False))
                bare_s = min(sequential, bare_s)
                extra["bare_sequential_s"] = round(sequential, 3)
            breakdown = median_parts(timings)
            swarm_s = breakdown.pop("round")
            result = {
                "nodes": n,
                "swarm_round_s": swarm_s,
                "bare_round_s": round(bare_s, 3),
                **extra,
                "ratio": round(swarm_s / bare_s, 3),
                # the bare blocks' and swarm blocks' medians, in the order they ran
                "bare_blocks_s": [round(b, 3) for b in block_medians],
                "swarm_blocks_s": [round(b, 3) for b in swarm_blocks],
                # against the fastest bare block alone: the harshest reading of the same runs
                "ratio_vs_fastest_bare_block": round(swarm_s / min(block_medians), 3),
                "breakdown_s": breakdown,
                "rss_mb_per_node": round(statistics.mean(rss), 1),
                "threads_per_node": max(1, (os.cpu_count() or 1) // n),
                "train_slots": args.train_slots,
                "measured_rounds": args.rounds * args.blocks,
                # the machine's 1-minute load as each part began (other work skews a ratio)
                "load_at_start": loads,
            }
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)  # progress, size by size
    print(
        json.dumps(
            {
                "results": results,
                "local_steps": spec.train.local_steps,
                "target_train_s": args.train_s,
                "valuation": args.valuation,
                "cores": os.cpu_count(),
                "load_average": os.getloadavg(),
                "note": "breakdown: medians per node per round; verification includes "
                "aggregation and Shapley valuation; waiting is the rest of the round",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
