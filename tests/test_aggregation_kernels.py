"""The compiled kernels give the NumPy path's integers and floats, whatever the thread count, and
the fused mean/FedAvg path of `aggregate` gives the batch path's result, bit for bit."""

from __future__ import annotations

import math
import multiprocessing
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmchain.node.aggregation import kernels
from swarmchain.node.aggregation.fixed_point import (
    COMPILED_MIN,
    Layout,
    dequantise,
    div_round,
    exact_combine,
    quantise,
    quantised_mean,
)
from swarmchain.node.aggregation.parallel import MIN_PART, in_parallel, set_threads
from swarmchain.node.aggregation.pipeline import aggregate, aggregate_batch
from swarmchain.node.protocol.task import AggregationSpec, TaskSpec

F32_MAX = float(np.finfo(np.float32).max)


def edge_values(frac_bits: int) -> list[float]:
    """Values where quantising can go wrong: grid halves, the clamp bound, float32's extremes."""
    step = 2.0**-frac_bits
    bound = 2.0**30 * step
    return [
        0.0,
        -0.0,
        0.5 * step,
        1.5 * step,
        -2.5 * step,
        step * (2**23 + 0.5),
        bound,
        -bound,
        float(np.nextafter(np.float32(bound), np.float32(np.inf))),
        float(np.nextafter(np.float32(-bound), np.float32(-np.inf))),
        1e-45,  # the smallest float32 subnormal
        F32_MAX,
        -F32_MAX,
        math.inf,
        -math.inf,
    ]


@st.composite
def float_rows(draw: st.DrawFn) -> tuple[list[list[np.ndarray]], list[int], int]:
    """Small updates (rows of flat float32 tensors) mixing random and edge values."""
    frac_bits = draw(st.integers(min_value=1, max_value=30))
    n = draw(st.integers(min_value=1, max_value=5))
    sizes = draw(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=3))
    values = st.one_of(
        st.sampled_from(edge_values(frac_bits)),
        st.floats(allow_nan=False, width=32),
        st.floats(min_value=-(2.0**-frac_bits) * 64, max_value=2.0**-frac_bits * 64, width=32),
    )
    rows = [
        [np.array(draw(st.lists(values, min_size=s, max_size=s)), dtype=np.float32) for s in sizes]
        for _ in range(n)
    ]
    return rows, [0, *np.cumsum(sizes).tolist()], frac_bits


def as_updates(rows: list[list[np.ndarray]]) -> list[dict[str, torch.Tensor]]:
    """Rows of flat arrays as named tensors, in the order of the flat vector (sorted names)."""
    return [{f"t{s}": torch.from_numpy(a) for s, a in enumerate(row)} for row in rows]


def as_tensors(rows: list[list[np.ndarray]]) -> list[list[torch.Tensor]]:
    """Rows of flat arrays as the kernels take them: tensors sharing the arrays' memory."""
    return [[torch.from_numpy(a) for a in row] for row in rows]


@settings(max_examples=60, deadline=None)
@given(float_rows(), st.integers(min_value=1, max_value=3))
def test_compiled_quantise_gives_the_numpy_grid(
    case: tuple[list[list[np.ndarray]], list[int], int], workers: int
) -> None:
    rows, offsets, frac_bits = case
    # Small inputs: `quantise` takes the NumPy path, the reference.
    expected = quantise(as_updates(rows), [1] * len(rows), frac_bits).values
    values, nan = kernels.quantise_rows(as_tensors(rows), offsets, frac_bits, workers)
    assert values.dtype == np.dtype("<i4")
    np.testing.assert_array_equal(values, expected)
    assert not nan.any()


Mean = tuple[np.ndarray, dict[str, torch.Tensor]]


def mean_of_grid(values: np.ndarray, weights: list[int], layout: Layout, frac_bits: int) -> Mean:
    """The NumPy path's weighted mean of grid rows: on the grid, and dequantised."""
    grid = div_round(exact_combine(values, np.array([weights]))[0], sum(weights))
    return grid, dequantise(grid, layout, frac_bits)


def assert_same_mean(
    got: tuple[np.ndarray, list[np.ndarray], np.ndarray], expected: Mean, layout: Layout
) -> None:
    grid, flat, nan = got
    np.testing.assert_array_equal(grid, expected[0])
    assert not nan.any()
    for (name, shape, _, _), tensor in zip(layout.segments(), flat, strict=True):
        assert tensor.dtype == np.float32 and tensor.shape == (int(np.prod(shape)),)
        np.testing.assert_array_equal(tensor, expected[1][name].numpy().reshape(-1))


def flat_layout(offsets: list[int]) -> Layout:
    """The layout `as_updates` gives rows with these offsets."""
    sizes = np.diff(offsets).tolist()
    return Layout(tuple(f"t{s}" for s in range(len(sizes))), tuple((n,) for n in sizes))


@settings(max_examples=60, deadline=None)
@given(
    float_rows(),
    st.lists(st.integers(min_value=1, max_value=2**32 - 10), min_size=5, max_size=5),
)
def test_compiled_weighted_mean_is_the_rounded_mean_of_the_grid_values(
    case: tuple[list[list[np.ndarray]], list[int], int], draws: list[int]
) -> None:
    rows, offsets, frac_bits = case
    n = len(rows)
    # Weights up to the kernel's limit of 2**23 in total, and zeros.
    weights = [w % 4 if k % 2 else max(1, w % 2**23 // n) for k, w in enumerate(draws[:n])]
    layout = flat_layout(offsets)
    expected = quantise(as_updates(rows), [1] * n, frac_bits).values
    assert_same_mean(
        kernels.weighted_mean(as_tensors(rows), offsets, weights, frac_bits),
        mean_of_grid(expected, weights, layout, frac_bits),
        layout,
    )


def test_compiled_mean_rounds_half_to_even_at_the_grid_bound() -> None:
    # Grid values q and weights w whose mean sum(w q) / sum(w) is a tie, or lies next to one,
    # at the largest quotients (2**30) and totals (2**23) the kernel accepts.
    # (Quantised float32 has 24 significant bits: grid values beyond 2**24 are even.)
    bound, most = 2**30, 2**23
    cases = [
        ([1, 2], [1, 1]),  # 1.5 -> 2
        ([2, 3], [1, 1]),  # 2.5 -> 2
        ([-2, -3], [1, 1]),  # -2.5 -> -2
        ([bound, 1], [1, 1]),  # 2**29 + 0.5 -> 2**29
        ([-bound, -3], [1, 1]),  # -(2**29 + 1.5) -> -(2**29 + 2)
        ([bound, -bound], [most // 2, most // 2]),  # 0, from sums of +-2**52
        ([bound, bound], [most // 2, most // 2]),  # sums of 2**53
        ([-bound, 64 - bound], [most // 2, most // 2 - 1]),
        ([bound, 0], [most - 1, 1]),  # 2**30 * (1 - 2**-23) -> 2**30
        # Integer quotients q whose float64 estimate falls just below q (its floor is q - 1)...
        *(([q], [w]) for q, w in [(5337615, 8192370), (14969305, 4078334)]),
        # ... and a quotient 1/w below an integer whose estimate reaches it.
        ([bound, 5247], [8388566, 1]),
    ]
    for q, w in cases:
        rows = [[np.array([v * 2.0**-24], dtype=np.float32)] for v in q]
        grid, flat, _ = kernels.weighted_mean(as_tensors(rows), [0, 1], w, 24)
        exact = round(Fraction(sum(a * b for a, b in zip(q, w, strict=True)), sum(w)))
        assert grid.tolist() == [exact], (q, w)
        assert flat[0].tolist() == [float(np.float32(Fraction(exact, 2**24)))]
    with pytest.raises(ValueError, match="total in \\[1, 8388608\\]"):
        kernels.weighted_mean(as_tensors([[np.ones(1, np.float32)]] * 2), [0, 1], [most, 1], 24)


def test_fedavg_past_the_kernels_weight_limit_stays_exact() -> None:
    # Counts totalling past 2**23 sum in int64 instead: here float64 sums of 2**53 + odd would
    # round a tie the wrong way.
    q, counts = [2**30, 4193539], [2**23 + 5, 1]
    d = COMPILED_MIN // 2
    updates = [{"w": torch.full((d,), v * 2.0**-24)} for v in q]
    layout, grid, delta = quantised_mean(updates, counts, 24, weighted=True)
    exact = round(Fraction(sum(a * b for a, b in zip(q, counts, strict=True)), sum(counts)))
    assert layout.dim == d and set(grid.tolist()) == {exact}
    assert set(delta["w"].tolist()) == {float(np.float32(Fraction(exact, 2**24)))}


def test_kernels_report_every_tensor_that_holds_a_nan() -> None:
    rows = [[np.zeros(5, np.float32), np.zeros(3, np.float32)] for _ in range(3)]
    rows[1][1][2] = np.nan
    rows[2][0][0] = np.nan
    expected = [[False, False], [False, True], [True, False]]
    assert kernels.quantise_rows(as_tensors(rows), [0, 5, 8], 8)[1].tolist() == expected
    assert kernels.weighted_mean(as_tensors(rows), [0, 5, 8], [1, 2, 3], 8)[2].tolist() == expected


def test_kernels_give_the_same_integers_for_any_thread_count() -> None:
    # 7 x 120,000 values: three parts of at least MIN_PART values each, the thread pool's split.
    rng = np.random.default_rng(5)
    sizes = [70_001, 49_999]
    offsets = [0, 70_001, 120_000]
    rows = [[rng.normal(0, 0.01, s).astype(np.float32) for s in sizes] for _ in range(7)]
    for row in rows:  # edge values where the parts meet and where the tensors meet
        row[0][[0, 39_999, 40_000, 70_000]] = [0.5 * 2**-24, -math.inf, 1e30, -2.5 * 2**-24]
        row[1][[0, 10_000, 49_998]] = [math.inf, 64.0, -64.0]
    ranges: list[tuple[int, int]] = []
    in_parallel(lambda lo, hi: ranges.append((lo, hi)), 120_000, 7 * 120_000, 3)
    assert sorted(ranges) == [(0, 40_000), (40_000, 80_000), (80_000, 120_000)]
    expected = quantise(as_updates(rows), [1] * 7, 24).values  # 840,000 < COMPILED_MIN: NumPy
    weights = [3, 1, 4, 1, 5, 9, 2**23 - 23]  # the kernel's largest total
    layout = flat_layout(offsets)
    mean = mean_of_grid(expected, weights, layout, 24)
    for workers in (1, 2, 3):
        np.testing.assert_array_equal(
            kernels.quantise_rows(as_tensors(rows), offsets, 24, workers)[0], expected
        )
        got = kernels.weighted_mean(as_tensors(rows), offsets, weights, 24, workers)
        assert_same_mean(got, mean, layout)


@st.composite
def large_updates(draw: st.DrawFn) -> tuple[list[dict[str, torch.Tensor]], list[int], int]:
    """n updates of about COMPILED_MIN / n coordinates in three tensors, with edge values."""
    n = draw(st.integers(min_value=2, max_value=5))
    frac_bits = draw(st.integers(min_value=8, max_value=30))
    d = -(-COMPILED_MIN // n)
    sizes = {"a.weight": d // 2, "b.weight": d - d // 2 - 3, "c.bias": 3}
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32)))
    scale = 2.0 ** draw(st.integers(min_value=-frac_bits - 2, max_value=30 - frac_bits))
    updates = []
    for _ in range(n):
        flat = (rng.standard_normal(d) * scale).astype(np.float32)
        edits = draw(st.lists(st.sampled_from(edge_values(frac_bits)), max_size=6))
        flat[rng.integers(0, d, len(edits))] = edits
        parts = np.split(flat, np.cumsum(list(sizes.values()))[:-1])
        updates.append({k: torch.from_numpy(p) for k, p in zip(sizes, parts, strict=True)})
    # Sample counts sum to at most 2**23 (the kernel's limit) or 2**32 (beyond it: the batch).
    most = draw(st.sampled_from([2**23, 2**32])) // n
    counts = draw(st.lists(st.integers(min_value=1, max_value=most), min_size=n, max_size=n))
    return updates, counts, frac_bits


@settings(max_examples=12, deadline=None)
@given(large_updates(), st.sampled_from(["mean", "fedavg"]))
def test_fused_mean_and_fedavg_equal_the_batch_path(
    case: tuple[list[dict[str, torch.Tensor]], list[int], int], rule: str
) -> None:
    updates, counts, frac_bits = case
    spec = TaskSpec(
        aggregation=AggregationSpec(rule, {}, ()),
        fixed_point_bits=frac_bits,
        update_norm_bound=2.0 ** (30 - frac_bits),  # the most this grid allows
    )
    fused = aggregate(spec, updates, counts)  # n * d >= COMPILED_MIN: the compiled sum
    batch = aggregate_batch(quantise(updates, counts, frac_bits), spec.aggregation)
    np.testing.assert_array_equal(fused.grid, batch.grid)
    assert fused.grid.dtype == batch.grid.dtype
    assert fused.digest == batch.digest
    assert sorted(fused.delta) == sorted(batch.delta)
    for name, tensor in fused.delta.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, batch.delta[name])
    assert (fused.selected, fused.screened_out, fused.set_aside) == (
        batch.selected,
        batch.screened_out,
        batch.set_aside,
    )


@pytest.mark.parametrize("d", [8, COMPILED_MIN // 2])
def test_a_nan_is_named_by_update_and_tensor_on_every_path(d: int) -> None:
    updates = [{"a": torch.zeros(d), "b": torch.zeros(d)} for _ in range(3)]
    updates[2]["a"][d - 1] = math.nan
    updates[1]["b"][0] = math.nan
    for rule in ("mean", "fedavg", "median"):
        spec = TaskSpec(aggregation=AggregationSpec(rule, {}, ()))
        with pytest.raises(ValueError, match=r"^update 1 tensor 'b' contains NaN$"):
            aggregate(spec, updates, [1, 2, 3])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=-(2**30), max_value=2**30), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=30),
)
def test_dequantise_rounds_the_exact_value_once_to_float32(grid: list[int], frac_bits: int) -> None:
    vector = np.array([*grid, 2**30, -(2**30), 2**24 + 1, -(2**25) - 3], dtype=np.int64)
    layout = Layout(("a", "b"), ((2,), (len(vector) - 2,)))
    out = dequantise(vector, layout, frac_bits)
    expected = [
        np.float32(Fraction(int(v), 1 << frac_bits)) for v in vector.tolist()
    ]  # Fraction -> float64 is exact here, and float64 -> float32 rounds half to even
    assert torch.cat([out["a"], out["b"]]).tolist() == [float(e) for e in expected]


def test_div_round_of_a_long_vector_rounds_every_block_exactly() -> None:
    rng = np.random.default_rng(11)
    num = rng.integers(-(2**62), 2**62, 7 * 30_001, dtype=np.int64)  # 3+ blocks of 65,536
    num[:4] = [5, -5, 7, -7]  # ties at den=2: 2, -2, 4, -4
    for den in (2, 3, 50, 1 << 20, 12_345_678_901):
        out = div_round(num.reshape(7, -1), den)
        assert out.shape == (7, num.size // 7)
        np.testing.assert_array_equal(div_round(num.copy(), den, in_place=True), out.reshape(-1))
        flat = out.reshape(-1)
        for k in [*range(4), *rng.integers(0, num.size, 300).tolist(), 65_535, 65_536]:
            exact = Fraction(int(num[k]), den)
            assert flat[k] == round(exact), (den, k)  # round() of a Fraction: half to even


def _split_in_two() -> None:
    """Cover 2 * MIN_PART values in two ranges (run in a forked child)."""
    ranges: list[tuple[int, int]] = []
    in_parallel(lambda lo, hi: ranges.append((lo, hi)), 100, 2 * MIN_PART, 2)
    assert len(ranges) == 2


def test_set_threads_bounds_the_ranges_of_a_parallel_call() -> None:
    def ranges() -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        in_parallel(lambda lo, hi: seen.append((lo, hi)), 90, 8 * MIN_PART)
        return sorted(seen)

    try:
        set_threads(1)
        assert ranges() == [(0, 90)]
        set_threads(3)
        assert ranges() == [(0, 30), (30, 60), (60, 90)]
        with pytest.raises(ValueError, match=r"^thread count must be at least 1, not 0$"):
            set_threads(0)
    finally:
        set_threads(os.cpu_count() or 1)


def test_a_forked_child_gets_a_thread_pool_of_its_own() -> None:
    _split_in_two()  # the parent's pool threads are running
    child = multiprocessing.get_context("fork").Process(target=_split_in_two)
    child.start()
    child.join(timeout=20)
    if child.exitcode is None:  # waiting for threads that the fork did not copy
        child.kill()
    assert child.exitcode == 0


@pytest.mark.parametrize("d", [8, COMPILED_MIN // 4])
def test_lazy_negations_count_as_their_values_and_memoryless_tensors_are_refused(d: int) -> None:
    x = torch.full((d,), 0.25)
    spec = TaskSpec(aggregation=AggregationSpec("mean", {}, ()))
    negated = aggregate(spec, [{"w": torch._neg_view(x)}] * 4, [1] * 4)  # its memory holds +0.25
    assert set(negated.grid.tolist()) == {-(2**22)}
    assert aggregate_batch(quantise([{"w": -x}] * 4, [1] * 4, 24), spec.aggregation).digest == (
        negated.digest
    )
    for odd in (torch._efficientzerotensor((d,)), torch.zeros(d).to_sparse()):
        with pytest.raises(ValueError, match=r"^update 1 tensor 'w' must be dense, in memory$"):
            aggregate(spec, [{"w": x}, {"w": odd}, {"w": x}, {"w": x}], [1] * 4)
    with pytest.raises(ValueError, match="contiguous float32 values in memory"):
        kernels.weighted_mean([[torch._neg_view(x)]], [0, d], [1], 24)
