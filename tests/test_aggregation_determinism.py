"""The aggregate is bit-identical whatever the thread count and the order of arrival.

Each run happens in a fresh interpreter whose torch, OpenMP, MKL and OpenBLAS thread counts are
fixed before anything is imported; one run uses 1 thread and the inputs in order, the other 2
threads and the inputs shuffled. Both print the SHA-256 of every rule's fixed-point aggregate.
The inputs are large enough for the compiled kernels (their own thread count is covered in
test_aggregation_kernels.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys
import numpy as np
import torch

threads, shuffle = int(sys.argv[1]), sys.argv[2] == "shuffle"
torch.set_num_threads(threads)
from swarmchain.node.aggregation.fixed_point import COMPILED_MIN
from swarmchain.node.aggregation.pipeline import aggregate
from swarmchain.node.protocol.task import AggregationSpec, StepSpec, TaskSpec

pipelines = [
    AggregationSpec("mean", {}, ()),
    AggregationSpec("fedavg", {}, ()),
    AggregationSpec("median", {}, ()),
    AggregationSpec("trimmed_mean", {"beta": 0.2}, ()),
    AggregationSpec("geometric_median", {"iterations": 3}, ()),
    AggregationSpec("krum", {"f": 2}, ()),
    AggregationSpec("multi_krum", {"f": 2, "m": 4}, ()),
    AggregationSpec("bulyan", {"f": 1}, ()),
    AggregationSpec("centered_clipping", {"tau": 0.05, "iterations": 2}, ()),
    AggregationSpec("centered_clipping", {"tau": 0.05}, (StepSpec("bucketing", {"s": 2}),)),
    AggregationSpec(
        "centered_clipping", {"tau": 0.05, "weighted": True}, (StepSpec("sample_cap", {}),)
    ),
    AggregationSpec("krum", {"f": 1}, (StepSpec("nnm", {"f": 2}),)),
    AggregationSpec("median", {}, (StepSpec("norm_clipping", {"max_norm": 0.5}),)),
]
rng = np.random.default_rng(2024)
n = 9
shapes = {"a.weight": (300, 400), "a.bias": (300,), "b.weight": (10, 300)}  # 123,300 coordinates
# 9 x 123,300 values: quantising runs compiled on the thread pool, mean/FedAvg take the fused sum.
assert n * sum(int(np.prod(s)) for s in shapes.values()) >= COMPILED_MIN
updates = [
    {k: torch.from_numpy((rng.standard_normal(s) * 10.0 ** rng.uniform(-4, -1)).astype(np.float32))
     for k, s in shapes.items()}
    for _ in range(n)
]
weights = [int(w) for w in rng.integers(1, 500, n)]
order = list(rng.permutation(n)) if shuffle else list(range(n))
out = {}
for p in pipelines:
    spec = TaskSpec(aggregation=p)
    r = aggregate(spec, [updates[i] for i in order], [weights[i] for i in order], seed=99)
    key = p.rule + "+" + ",".join(s.name for s in p.pre)
    out[key] = [r.digest, sorted(int(order[i]) for i in r.selected)]
print(json.dumps(out))
"""


def _run(threads: int, mode: str) -> dict[str, list[object]]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads), mode],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    result: dict[str, list[object]] = json.loads(done.stdout)
    return result


def test_aggregate_is_identical_across_thread_counts_and_arrival_order() -> None:
    one = _run(1, "ordered")
    two = _run(2, "shuffle")
    assert len(one) == 13
    assert one == two
