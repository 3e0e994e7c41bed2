"""Hypothesis properties of the aggregation rules: order does not matter, coordinate-wise rules
stay inside the honest range, Krum picks an honest input when f < (n - 2) / 2."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmchain.node.aggregation.fixed_point import quantise
from swarmchain.node.aggregation.krum import krum
from swarmchain.node.aggregation.median import median, trimmed_mean
from swarmchain.node.aggregation.pipeline import aggregate
from swarmchain.node.protocol.task import AggregationSpec, StepSpec, TaskSpec

PIPELINES = [
    AggregationSpec("mean", {}, ()),
    AggregationSpec("fedavg", {}, ()),
    AggregationSpec("median", {}, ()),
    AggregationSpec("trimmed_mean", {"beta": 0.2}, ()),
    AggregationSpec("geometric_median", {"iterations": 4}, ()),
    AggregationSpec("krum", {"f": 2}, ()),
    AggregationSpec("multi_krum", {"f": 2, "m": 3}, ()),
    AggregationSpec("bulyan", {"f": 1}, ()),
    AggregationSpec("centered_clipping", {"tau": 0.5, "iterations": 2}, ()),
    AggregationSpec("centered_clipping", {"tau": 0.5}, (StepSpec("bucketing", {"s": 2}),)),
    AggregationSpec(
        "centered_clipping",
        {"tau": 0.5, "weighted": True},
        (StepSpec("sample_cap", {"factor": 2.0}),),
    ),
    AggregationSpec("krum", {"f": 1}, (StepSpec("nnm", {"f": 2}),)),
    AggregationSpec("median", {}, (StepSpec("norm_clipping", {"max_norm": 1.0}),)),
]
SPECS = [TaskSpec(aggregation=p) for p in PIPELINES]

coordinate = st.floats(min_value=-8, max_value=8, allow_nan=False, width=32)


@st.composite
def updates_and_order(draw: st.DrawFn) -> tuple[list[list[float]], list[int], list[int]]:
    n = draw(st.integers(min_value=7, max_value=9))
    d = draw(st.integers(min_value=1, max_value=4))
    rows = [draw(st.lists(coordinate, min_size=d, max_size=d)) for _ in range(n)]
    if draw(st.booleans()):
        rows[-1] = list(rows[0])  # a byte-identical copy
    weights = draw(st.lists(st.integers(min_value=1, max_value=50), min_size=n, max_size=n))
    order = draw(st.permutations(range(n)))
    return rows, weights, list(order)


@settings(max_examples=20, deadline=None)
@given(updates_and_order(), st.integers(min_value=0, max_value=2**32))
def test_every_rule_ignores_the_order_of_arrival(
    case: tuple[list[list[float]], list[int], list[int]], seed: int
) -> None:
    rows, weights, order = case
    updates = [{"w": torch.tensor(r, dtype=torch.float32)} for r in rows]
    for spec in SPECS:
        base = aggregate(spec, updates, weights, seed=seed)
        moved = aggregate(spec, [updates[i] for i in order], [weights[i] for i in order], seed=seed)
        assert moved.digest == base.digest, spec.aggregation.rule
        # Rows equal on the grid are the same input to every rule: compare what was picked there.
        grid = quantise(updates, weights, spec.fixed_point_bits).values.tolist()
        picked = sorted(grid[order[i]] for i in moved.selected)
        assert picked == sorted(grid[i] for i in base.selected), spec.aggregation.rule


@st.composite
def honest_and_byzantine(draw: st.DrawFn) -> tuple[list[list[float]], list[list[float]]]:
    d = draw(st.integers(min_value=1, max_value=5))
    n_honest = draw(st.integers(min_value=3, max_value=8))
    f = draw(st.integers(min_value=0, max_value=(n_honest - 1)))
    honest = [draw(st.lists(coordinate, min_size=d, max_size=d)) for _ in range(n_honest)]
    wild = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
    byzantine = [draw(st.lists(wild, min_size=d, max_size=d)) for _ in range(f)]
    return honest, byzantine


def _grid_range(honest: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    grid = quantise([{"w": torch.tensor(r)} for r in honest], [1] * len(honest), 24).values
    return grid.min(axis=0), grid.max(axis=0)


@settings(max_examples=40, deadline=None)
@given(honest_and_byzantine())
def test_median_stays_within_the_honest_range(
    case: tuple[list[list[float]], list[list[float]]],
) -> None:
    honest, byzantine = case
    rows = honest + byzantine  # f < n / 2 because f < n_honest
    out = median(quantise([{"w": torch.tensor(r)} for r in rows], [1] * len(rows), 24))
    low, high = _grid_range(honest)
    assert (low <= out.aggregate).all() and (out.aggregate <= high).all()


@settings(max_examples=40, deadline=None)
@given(honest_and_byzantine())
def test_trimmed_mean_stays_within_the_honest_range(
    case: tuple[list[list[float]], list[list[float]]],
) -> None:
    honest, byzantine = case
    rows = honest + byzantine
    n, f = len(rows), len(byzantine)
    beta = (f + 0.5) / n  # trims floor(beta * n) = f values on each side
    if beta >= 0.5:
        beta = f / n
    out = trimmed_mean(quantise([{"w": torch.tensor(r)} for r in rows], [1] * n, 24), beta=beta)
    low, high = _grid_range(honest)
    assert (low <= out.aggregate).all() and (out.aggregate <= high).all()


@st.composite
def krum_case(draw: st.DrawFn) -> tuple[list[list[float]], int]:
    d = draw(st.integers(min_value=1, max_value=5))
    n = draw(st.integers(min_value=5, max_value=11))
    f = draw(st.integers(min_value=0, max_value=(n - 3) // 2))  # f < (n - 2) / 2
    unit = st.floats(min_value=-1, max_value=1, allow_nan=False, width=32)
    far = st.floats(min_value=100, max_value=1e4, allow_nan=False, width=32)
    honest = [draw(st.lists(unit, min_size=d, max_size=d)) for _ in range(n - f)]
    byzantine = []
    for _ in range(f):
        row = draw(
            st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=d, max_size=d)
        )
        row[draw(st.integers(0, d - 1))] = draw(far) * draw(st.sampled_from([-1, 1]))
        byzantine.append(row)
    order = draw(st.permutations(range(n)))
    rows = honest + byzantine
    return [rows[i] for i in order], f


@settings(max_examples=40, deadline=None)
@given(krum_case())
def test_krum_picks_an_honest_input(case: tuple[list[list[float]], int]) -> None:
    # Honest inputs lie in [-1, 1]^d; each Byzantine one is >= 99 away from all of them in one
    # coordinate. With f < (n - 2) / 2 a Byzantine score includes >= 1 honest distance (>= 99**2)
    # while an honest score is at most (n - f - 2) * 4d < 99**2.
    rows, f = case
    out = krum(quantise([{"w": torch.tensor(r)} for r in rows], [1] * len(rows), 24), f=f)
    assert out.selected is not None
    (chosen,) = out.selected
    assert max(abs(v) for v in rows[chosen]) <= 1
