"""Every aggregation rule and pre-aggregation step on tiny inputs you can check by hand."""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import torch

from swarmchain.node.aggregation.bucketing import bucketing
from swarmchain.node.aggregation.bulyan import bulyan, mean_around_median
from swarmchain.node.aggregation.centered_clipping import (
    centered_clipping,
    centered_clipping_coalitions,
)
from swarmchain.node.aggregation.errors import ByzantineBoundError
from swarmchain.node.aggregation.fixed_point import (
    Batch,
    dequantise,
    div_round,
    exact_combine,
    exact_inner,
    exact_sq_norms,
    quantise,
)
from swarmchain.node.aggregation.geometric_median import geometric_median
from swarmchain.node.aggregation.krum import krum, multi_krum
from swarmchain.node.aggregation.limits import COORD_BOUND
from swarmchain.node.aggregation.mean import mean, weighted_mean
from swarmchain.node.aggregation.median import median, trimmed_mean
from swarmchain.node.aggregation.nnm import nearest_neighbour_mixing
from swarmchain.node.aggregation.norm_clipping import norm_clipping
from swarmchain.node.aggregation.pipeline import aggregate
from swarmchain.node.aggregation.randomness import derive_seed, seeded_permutation
from swarmchain.node.aggregation.registry import RULES, STEPS, resolve_params
from swarmchain.node.aggregation.sample_cap import sample_cap
from swarmchain.node.protocol.task import AggregationSpec, StepSpec, TaskSpec


def batch_of(
    rows: Sequence[Sequence[float]], weights: Sequence[int] | None = None, bits: int = 1
) -> Batch:
    """A batch of one-tensor updates named 'w' (grid 2**-bits)."""
    updates = [{"w": torch.tensor(row, dtype=torch.float32)} for row in rows]
    return quantise(updates, weights or [1] * len(rows), bits)


def as_float(grid: np.ndarray, bits: int = 1) -> list[float]:
    return [float(v) / (1 << bits) for v in grid]


# --- fixed-point core -------------------------------------------------------------------------


def test_quantise_rounds_half_to_even_and_clamps() -> None:
    batch = batch_of([[0.25, 0.75, -0.25, 1e30, -math.inf]])
    assert batch.values[0].tolist() == [0, 2, 0, COORD_BOUND, -COORD_BOUND]


def test_quantise_rejects_nan_mismatched_shapes_and_bad_counts() -> None:
    good = {"w": torch.zeros(3)}
    with pytest.raises(ValueError, match="NaN"):
        quantise([good, {"w": torch.tensor([0.0, math.nan, 0.0])}], [1, 1], 8)
    with pytest.raises(ValueError, match="update 1 has tensors"):
        quantise([good, {"w": torch.zeros(4)}], [1, 1], 8)
    with pytest.raises(ValueError, match="float32"):
        quantise([{"w": torch.zeros(3, dtype=torch.float64)}], [1], 8)
    with pytest.raises(ValueError, match="positive integers"):
        quantise([good], [0], 8)
    with pytest.raises(ValueError, match="sum to <="):
        quantise([good, good], [2**31, 2**31 + 1], 8)
    with pytest.raises(ValueError, match="at least one update"):
        quantise([], [], 8)


def test_dequantise_inverts_quantise_on_the_grid() -> None:
    update = {"b": torch.tensor([0.5, -1.25]), "a": torch.tensor([[3.0, -0.125], [0.0, 2.5]])}
    batch = quantise([update], [1], 3)
    back = dequantise(batch.values[0].astype(np.int64), batch.layout, 3)
    assert list(back) == ["a", "b"]
    assert all(torch.equal(back[k], update[k]) for k in update)


def test_div_round_rounds_half_to_even() -> None:
    num = np.array([5, 7, -5, -7, 6, 1, -1], dtype=np.int64)
    assert div_round(num, 2).tolist() == [2, 4, -2, -4, 3, 0, 0]
    assert div_round(np.array([10, -10, 11]), 4).tolist() == [2, -2, 3]


def test_exact_inner_matches_python_integers_at_the_bounds() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(-COORD_BOUND, COORD_BOUND + 1, size=(3, 5000)).astype("<i4")
    a[0, :100] = COORD_BOUND
    a[1, :100] = -COORD_BOUND
    expected = [[sum(int(x) * int(y) for x, y in zip(r, s, strict=True)) for s in a] for r in a]
    assert exact_inner(a, a) == expected
    assert exact_sq_norms(a) == [expected[i][i] for i in range(3)]


def test_div_round_matches_exact_rounding_half_to_even() -> None:
    rng = np.random.default_rng(3)
    extremes = [-(2**63), -(2**62), -1, 0, 1, 2**62, 2**63 - 1]
    num = np.concatenate(
        [rng.integers(-(2**63), 2**63 - 1, size=200), rng.integers(-50, 50, size=100), extremes]
    ).astype(np.int64)
    for den in [1, 2, 3, 4, 7, 2**20, 8 << 20, 7 << 20, 2**31, 2**62 - 1, 2**62]:
        halves = np.arange(-6, 7, dtype=np.int64) * den // 2 if den < 2**40 else num[:0]
        for x in (num, halves):
            assert div_round(x, den).tolist() == [round(Fraction(int(v), den)) for v in x]


@pytest.mark.parametrize(
    ("top_a", "top_b", "d"),
    [
        (2**24, 2**24, 5000),  # a split in halves, float64 part-products up to 2**49.3
        (2**16, 2**16, 300_000),  # the same tier over several column blocks
        (2**10, 2**30, 2**20),  # too large for that: int64 products up to 2**60
    ],
)
def test_inner_products_of_moderate_rows_are_exact(top_a: int, top_b: int, d: int) -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(-top_a, top_a + 1, size=(3, d)).astype("<i4")
    b = rng.integers(-top_b, top_b + 1, size=(2, d)).astype("<i4")
    a[0, :] = top_a
    b[0, :] = -top_b
    rows_a, rows_b = a.tolist(), b.tolist()
    dot = [[sum(map(operator.mul, r, s)) for s in rows_b] for r in rows_a]
    assert exact_inner(a, b) == dot
    assert exact_inner(b, b) == [[sum(map(operator.mul, r, s)) for s in rows_b] for r in rows_b]
    assert exact_sq_norms(a) == [sum(x * x for x in r) for r in rows_a]


def test_exact_combine_matches_python_integers() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(-COORD_BOUND, COORD_BOUND + 1, size=(4, 300)).astype("<i4")
    coeffs = np.array([[2**31, 2**30, 2**30 - 1, 1], [-5, 0, 7, 3]], dtype=np.int64)
    out = exact_combine(values, coeffs)
    for k in range(2):
        expected = [
            sum(int(c) * int(v) for c, v in zip(coeffs[k], col, strict=True)) for col in values.T
        ]
        assert out[k].tolist() == expected
    with pytest.raises(ValueError, match="absolute value"):
        exact_combine(values, np.full((1, 4), 2**31, dtype=np.int64))


def test_subset_reuses_inner_products() -> None:
    batch = batch_of([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], weights=[4, 5, 6])
    gram = batch.gram
    sub = batch.subset([2, 0])
    assert sub.gram == [[gram[2][2], gram[2][0]], [gram[0][2], gram[0][0]]]
    assert sub.gram == exact_inner(sub.values, sub.values)
    assert sub.weights.tolist() == [6, 4]
    assert sub.origin == ((2,), (0,))
    with pytest.raises(ValueError, match="distinct"):
        batch.subset([0, 0])


def test_seeded_permutation_is_fixed_and_seed_dependent() -> None:
    perm = seeded_permutation(10, 7, "bucketing")
    assert sorted(perm) == list(range(10))
    assert perm == seeded_permutation(10, 7, "bucketing")
    assert perm != seeded_permutation(10, 8, "bucketing")
    assert derive_seed("a", 1) == derive_seed("a", 1) != derive_seed("a", 2)


# --- rules ------------------------------------------------------------------------------------


def test_mean_and_fedavg() -> None:
    batch = batch_of([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]], weights=[1, 1, 2])
    assert as_float(mean(batch).aggregate) == [3.0, 5.0]
    # (1*1 + 3*1 + 5*2) / 4 = 3.5 and (2 + 4 + 18) / 4 = 6
    assert as_float(weighted_mean(batch).aggregate) == [3.5, 6.0]
    assert mean(batch).selected is None


def test_median_odd_and_even() -> None:
    assert as_float(median(batch_of([[1.0], [5.0], [2.0]])).aggregate) == [2.0]
    assert as_float(median(batch_of([[1.0], [2.0], [4.0], [10.0]])).aggregate) == [3.0]


def test_trimmed_mean_drops_the_extremes() -> None:
    batch = batch_of([[1.0, -100.0], [2.0, 0.0], [4.0, 1.0], [100.0, 3.0]])
    assert as_float(trimmed_mean(batch, beta=0.25).aggregate) == [3.0, 0.5]
    # Untrimmed: 107 / 4 = 26.75 is 53.5 grid units of 1/2, rounded half to even to 54.
    assert as_float(trimmed_mean(batch, beta=0.0).aggregate) == [27.0, -24.0]
    with pytest.raises(ValueError, match=r"0 <= beta < 0\.5"):
        trimmed_mean(batch, beta=0.5)


def test_geometric_median_resists_an_outlier() -> None:
    # Four points symmetric about 0 and one at (1000, 0): the geometric median is (1/sqrt 3, 0)
    # (where the unit vectors to the points sum to zero), while the mean is (200, 0).
    rows = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1000.0, 0.0]]
    batch = batch_of(rows, bits=16)
    x, y = as_float(geometric_median(batch, iterations=200).aggregate, bits=16)
    assert x == pytest.approx(1 / math.sqrt(3), abs=1e-3)
    assert y == 0.0
    with pytest.raises(ValueError, match="iterations >= 1"):
        geometric_median(batch, iterations=0)


def test_weighted_geometric_median_follows_a_dominant_weight() -> None:
    # One input holding more than half of the total weight is the weighted geometric median,
    # which is why the robust default ignores the self-reported sample counts.
    batch = batch_of([[0.0], [1.0], [2.0], [100.0]], weights=[1, 1, 1, 10], bits=8)
    assert as_float(geometric_median(batch, iterations=100).aggregate, bits=8)[0] <= 2.0
    heavy = geometric_median(batch, iterations=100, weighted=True)
    assert as_float(heavy.aggregate, bits=8)[0] == pytest.approx(100.0, abs=0.05)


def test_krum_picks_the_most_central_input() -> None:
    # Scores with n - f - 2 = 2 neighbours: 0 -> 1 + 4, 1 -> 1 + 1, 2 -> 1 + 4, 100 -> huge.
    batch = batch_of([[0.0], [1.0], [2.0], [100.0]])
    out = krum(batch, f=0)
    assert as_float(out.aggregate) == [1.0]
    assert out.selected == (1,)
    with pytest.raises(ValueError, match="Krum needs n >= 2f \\+ 3, got n=4, f=1"):
        krum(batch, f=1)


def test_multi_krum_averages_the_best_m() -> None:
    batch = batch_of([[0.0], [1.0], [2.0], [100.0]])
    out = multi_krum(batch, f=0, m=3)
    assert as_float(out.aggregate) == [1.0]
    assert sorted(out.selected or ()) == [0, 1, 2]
    assert out.selected is not None and out.selected[0] == 1
    with pytest.raises(ValueError, match="Multi-Krum needs 1 <= m <= n - f, got n=4, f=0, m=5"):
        multi_krum(batch, f=0, m=5)


def test_a_violated_byzantine_bound_names_the_bound_and_carries_n_and_f() -> None:
    batch = batch_of([[float(i)] for i in range(7)])

    with pytest.raises(ByzantineBoundError) as caught:
        bulyan(batch, f=2)

    assert str(caught.value) == "Bulyan needs n >= 4f + 3, got n=7, f=2"
    assert (caught.value.rule, caught.value.n, caught.value.f) == ("Bulyan", 7, 2)
    assert isinstance(caught.value, ValueError)


def test_bulyan_screens_the_outlier_and_averages_around_the_median() -> None:
    # theta = 7 - 2 = 5 of the six inliers survive iterated Krum, the outlier never does.
    rows = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [90.0]]
    out = bulyan(batch_of(rows, bits=8), f=1)
    assert out.selected is not None and len(out.selected) == 5 and 6 not in out.selected
    assert 1.0 <= as_float(out.aggregate, bits=8)[0] <= 4.0
    with pytest.raises(ValueError, match="Bulyan needs n >= 4f \\+ 3, got n=7, f=2"):
        bulyan(batch_of(rows), f=2)


def test_mean_around_median_takes_the_lower_side_on_ties() -> None:
    # Median of {0, 2, 4, 5, 6} is 4; the 3 closest are 4, 5 and then 2 or 6 (both at 2): the
    # lower one, so (4 + 5 + 2) / 3.
    batch = batch_of([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0], [5.0, 1.0], [6.0, 1.0]], bits=8)
    out = mean_around_median(batch.values, 3)
    assert as_float(out, bits=8) == [pytest.approx(11 / 3, abs=1 / 256), 1.0]
    assert as_float(mean_around_median(batch.values, 5), bits=8) == [
        pytest.approx(3.4, abs=1 / 256),
        1.0,
    ]


def test_centered_clipping_clips_each_offset_to_tau() -> None:
    # From centre 0 with tau = 1: offsets 1, 2, 10 are clipped to 1, 1, 1; their mean is 1.
    batch = batch_of([[1.0], [2.0], [10.0]])
    assert as_float(centered_clipping(batch, tau=1.0, iterations=1).aggregate) == [1.0]
    # With a centre at 2, offsets -1, 0, 8 become -1, 0, 1: the centre stays at 2.
    start = np.array([4], dtype=np.int64)
    out = centered_clipping(batch, tau=1.0, iterations=1, center=start)
    assert as_float(out.aggregate) == [2.0]
    with pytest.raises(ValueError, match="tau > 0"):
        centered_clipping(batch, tau=0.0)
    with pytest.raises(ValueError, match="centre must be"):
        centered_clipping(batch, tau=1.0, center=np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("screen", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_centered_clipping_of_coalitions_is_each_zero_filled_batch_clipped(
    weighted: bool, screen: bool
) -> None:
    rng = np.random.default_rng(6)
    signs = np.array([1, 1, 1, -1, -1])[:, None]  # two rows pull against the other three
    rows = (signs * rng.normal(0, 1, size=40) + rng.normal(0, 0.5, size=(5, 40))).tolist()
    batch = batch_of(rows, weights=[3, 1, 4, 1, 5], bits=16)
    start = (rng.normal(0, 0.3, size=40) * 2**16).round().astype(np.int64)
    coalitions = [[i for i in range(5) if mask >> i & 1] for mask in range(32)]
    params = {"tau": 1.5, "iterations": 4, "weighted": weighted, "screen": screen}
    set_aside = 0
    for center in (None, start):
        together = centered_clipping_coalitions(batch, coalitions, **params, center=center)
        for k, coalition in enumerate(coalitions):
            values = batch.values.copy()
            values[[i for i in range(5) if i not in coalition]] = 0
            alone = batch.derive(values, batch.weights, batch.origin)
            out = centered_clipping(alone, **params, center=center)
            assert together[k].tolist() == out.aggregate.tolist()
            assert set(out.set_aside) <= set(coalition)
            set_aside += len(out.set_aside)
    assert (set_aside > 0) == screen  # the screened runs do set rows aside
    with pytest.raises(ValueError, match="coalition rows"):
        centered_clipping_coalitions(batch, [[0, 5]], tau=1.0)


def test_screened_centered_clipping_sets_aside_inputs_against_the_consensus() -> None:
    # Unweighted, tau = 10: the first pass is the mean (1 + 1 - 1) / 3 = 1/3; the third input
    # points against it, so it is set aside and the rule runs again on the other two.
    batch = batch_of([[1.0], [1.0], [-1.0]], weights=[1, 1, 6], bits=8)
    out = centered_clipping(batch, tau=10.0, iterations=1, screen=True)
    assert (as_float(out.aggregate, bits=8), out.selected, out.set_aside) == ([1.0], None, (2,))
    # Weighted, the second pass weighs what is left: (2 * 1 + 1 * 3) / 3 = 5/3.
    weighted = batch_of([[1.0], [3.0], [-1.0]], weights=[2, 1, 6], bits=8)
    out = centered_clipping(weighted, tau=10.0, iterations=1, weighted=True, screen=True)
    assert as_float(out.aggregate, bits=8) == [pytest.approx(5 / 3, abs=1 / 256)]
    assert out.set_aside == (2,)
    # Screening equals clipping the rows that are kept.
    rng = np.random.default_rng(8)
    signs = np.array([1] * 6 + [-1] * 3)[:, None]
    batch = batch_of((signs * rng.normal(0, 1, 30) + rng.normal(0, 1, (9, 30))).tolist(), bits=16)
    out = centered_clipping(batch, tau=0.8, iterations=3, screen=True)
    kept = [i for i in range(9) if i not in out.set_aside]
    assert 0 < len(out.set_aside) < 9
    again = centered_clipping(batch.subset(kept), tau=0.8, iterations=3)
    assert out.aggregate.tolist() == again.aggregate.tolist()


def test_screened_centered_clipping_keeps_the_first_pass_when_everything_opposes_it() -> None:
    # From centre -4 with tau = 1 the lone input 1 moves the centre to -3, which it opposes.
    batch = batch_of([[1.0]])
    start = np.array([-8], dtype=np.int64)
    out = centered_clipping(batch, tau=1.0, iterations=1, screen=True, center=start)
    assert (as_float(out.aggregate), out.set_aside) == ([-3.0], ())


def test_inputs_set_aside_are_neither_selected_nor_screened_out() -> None:
    spec = AggregationSpec("centered_clipping", {"tau": 10.0, "iterations": 1, "screen": True})
    task = TaskSpec(aggregation=spec, fixed_point_bits=8)
    updates = [{"w": torch.tensor([v])} for v in (1.0, 1.0, -1.0)]
    result = aggregate(task, updates, [1, 1, 1])
    assert (result.selected, result.screened_out, result.set_aside) == ((0, 1), (), (2,))


def test_weighted_centered_clipping_weighs_clipped_offsets_by_sample_count() -> None:
    # From centre 0 with tau = 4: offsets 2, 4, -8 are clipped to 2, 4, -4. Weighted 3, 1, 4:
    # (3*2 + 1*4 + 4*(-4)) / 8 = -0.75; unweighted: (2 + 4 - 4) / 3 = 2/3, 0.75 on the 2**-2 grid.
    batch = batch_of([[2.0], [4.0], [-8.0]], weights=[3, 1, 4], bits=2)
    heavy = centered_clipping(batch, tau=4.0, iterations=1, weighted=True)
    assert as_float(heavy.aggregate, bits=2) == [-0.75]
    assert as_float(centered_clipping(batch, tau=4.0, iterations=1).aggregate, bits=2) == [0.75]


def test_weighted_centered_clipping_gives_a_split_node_the_pull_of_the_whole() -> None:
    # One node's 4 samples sent as two identities of 2 samples each: the same aggregate, while
    # the unweighted rule lets the split pair pull twice.
    whole = batch_of([[3.0, 1.0], [-1.0, 0.0], [0.0, 2.0]], weights=[4, 2, 2], bits=4)
    split = batch_of([[3.0, 1.0], [3.0, 1.0], [-1.0, 0.0], [0.0, 2.0]], weights=[2] * 4, bits=4)
    kept = centered_clipping(whole, tau=1.5, iterations=3, weighted=True).aggregate
    assert centered_clipping(split, tau=1.5, iterations=3, weighted=True).aggregate.tolist() == (
        kept.tolist()
    )
    plain = centered_clipping(whole, tau=1.5, iterations=3).aggregate
    assert centered_clipping(split, tau=1.5, iterations=3).aggregate.tolist() != plain.tolist()


def test_weighted_centered_clipping_with_equal_counts_is_the_plain_rule() -> None:
    rng = random.Random(7)
    rows = [[rng.uniform(-2, 2) for _ in range(5)] for _ in range(8)]
    batch = batch_of(rows, weights=[5] * 8, bits=16)
    plain = centered_clipping(batch, tau=0.7, iterations=4).aggregate
    assert centered_clipping(batch, tau=0.7, iterations=4, weighted=True).aggregate.tolist() == (
        plain.tolist()
    )


# --- pre-aggregation steps -------------------------------------------------------------------


def test_norm_clipping_scales_long_rows_only() -> None:
    batch = batch_of([[3.0, 4.0], [0.3, 0.4]], bits=20)
    out = norm_clipping(batch, max_norm=1.0)
    first = [float(v) / 2**20 for v in out.values[0]]
    assert first == pytest.approx([0.6, 0.8], abs=1e-6)
    assert out.values[1].tolist() == batch.values[1].tolist()
    assert out.origin == batch.origin


def test_bucketing_averages_disjoint_buckets() -> None:
    batch = batch_of([[0.0], [2.0], [4.0], [8.0], [16.0]], weights=[1, 2, 3, 4, 5])
    out = bucketing(batch, s=2, seed=11)
    assert out.n == 3
    members = [set(o) for o in out.origin]
    assert sorted(len(m) for m in members) == [1, 2, 2]
    assert set().union(*members) == {0, 1, 2, 3, 4}
    rows = [[0.0], [2.0], [4.0], [8.0], [16.0]]
    for k, m in enumerate(out.origin):
        assert as_float(out.values[k]) == [sum(rows[i][0] for i in m) / len(m)]
        assert int(out.weights[k]) == sum(i + 1 for i in m)


def test_bucketing_ignores_arrival_order() -> None:
    rows = [[float(i), float(i * i)] for i in range(6)]
    order = [3, 0, 5, 1, 4, 2]
    first = bucketing(batch_of(rows), s=2, seed=5)
    second = bucketing(batch_of([rows[i] for i in order]), s=2, seed=5)
    as_set = lambda b: sorted(tuple(r) for r in b.values.tolist())  # noqa: E731
    assert as_set(first) == as_set(second)


def test_nnm_mixes_each_row_with_its_nearest_neighbours() -> None:
    batch = batch_of([[0.0], [1.0], [10.0]])
    out = nearest_neighbour_mixing(batch, f=1)
    assert [as_float(r)[0] for r in out.values] == [0.5, 0.5, 5.5]
    assert out.origin == ((0, 1), (0, 1), (1, 2))
    with pytest.raises(ValueError, match="NNM needs 0 <= f < n, got n=3, f=3"):
        nearest_neighbour_mixing(batch, f=3)


def test_sample_cap_limits_counts_to_a_multiple_of_the_median() -> None:
    batch = batch_of([[0.0], [1.0], [2.0], [3.0]], weights=[1, 2, 3, 100])
    out = sample_cap(batch, factor=2.0)  # median 2.5, cap floor(2 * 2.5) = 5
    assert out.weights.tolist() == [1, 2, 3, 5]
    assert out.values is batch.values and out.origin == batch.origin
    with pytest.raises(ValueError, match="factor >= 1"):
        sample_cap(batch, factor=0.5)


def test_sample_cap_stops_a_liar_taking_over_the_weighted_geometric_median() -> None:
    rows = [[0.0], [0.1], [-0.1], [0.2], [-0.2], [50.0]]
    updates = [{"w": torch.tensor(r)} for r in rows]
    claims = [10, 10, 10, 10, 10, 1000]  # the last update lies about its sample count
    weighted = AggregationSpec("geometric_median", {"weighted": True, "iterations": 50}, ())
    capped = AggregationSpec(
        "geometric_median",
        {"weighted": True, "iterations": 50},
        (StepSpec("sample_cap", {"factor": 2.0}),),
    )
    taken = aggregate(TaskSpec(aggregation=weighted), updates, claims)
    held = aggregate(TaskSpec(aggregation=capped), updates, claims)
    assert taken.delta["w"].item() == pytest.approx(50.0, abs=0.01)
    assert abs(held.delta["w"].item()) < 0.2


# --- registry and pipeline ----------------------------------------------------------------------


def test_registry_resolves_defaults_and_rejects_bad_params() -> None:
    assert resolve_params(RULES["trimmed_mean"].params, {}, "rule") == {"beta": 0.1}
    assert resolve_params(RULES["multi_krum"].params, {"f": 1}, "rule") == {"f": 1, "m": None}
    with pytest.raises(ValueError, match="needs parameter 'f'"):
        resolve_params(RULES["krum"].params, {}, "rule 'krum'")
    with pytest.raises(ValueError, match="has no parameter 'g'"):
        resolve_params(RULES["krum"].params, {"f": 1, "g": 2}, "rule 'krum'")
    with pytest.raises(ValueError, match="must be int"):
        resolve_params(RULES["krum"].params, {"f": 1.5}, "rule 'krum'")
    with pytest.raises(ValueError, match=r"must be > 0\.0"):
        resolve_params(RULES["centered_clipping"].params, {"tau": 0}, "rule")
    with pytest.raises(ValueError, match="must be bool"):
        resolve_params(RULES["geometric_median"].params, {"weighted": 1}, "rule")
    with pytest.raises(ValueError, match=r"must be > 0\.0"):
        resolve_params(STEPS["norm_clipping"].params, {"max_norm": math.inf}, "step")


def test_pipeline_reports_screened_inputs_by_original_index() -> None:
    spec = TaskSpec(aggregation=AggregationSpec("krum", {"f": 1}, ()))
    rows = [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [5.0, 5.0]]
    updates = [{"w": torch.tensor(r)} for r in rows]
    result = aggregate(spec, updates, [1] * 5)
    assert 4 in result.screened_out
    assert len(result.selected) == 1
    assert set(result.selected) | set(result.screened_out) == set(range(5))
    chosen = updates[result.selected[0]]["w"]
    assert torch.allclose(result.delta["w"], chosen, rtol=0, atol=2**-25)


def test_pipeline_with_bucketing_reports_no_individual_screening() -> None:
    spec = TaskSpec(
        aggregation=AggregationSpec("krum", {"f": 0}, (StepSpec("bucketing", {"s": 2}),))
    )
    updates = [{"w": torch.tensor([float(i)])} for i in range(6)]
    result = aggregate(spec, updates, [1] * 6, seed=3)
    assert result.screened_out == ()
    assert len(result.selected) == 2


def test_pipeline_centre_starts_centered_clipping() -> None:
    spec = TaskSpec(
        aggregation=AggregationSpec("centered_clipping", {"tau": 1.0, "iterations": 1}, ())
    )
    updates = [{"w": torch.tensor([v])} for v in (1.0, 2.0, 10.0)]
    from_zero = aggregate(spec, updates, [1, 1, 1])
    from_two = aggregate(spec, updates, [1, 1, 1], center={"w": torch.tensor([2.0])})
    # Clipping factors are integers out of 2**20, so 1/10 is rounded down by < 2**-20.
    assert from_zero.delta["w"].item() == pytest.approx(1.0, abs=1e-5)
    assert from_two.delta["w"].item() == pytest.approx(2.0, abs=1e-5)


def test_pipeline_is_invariant_to_input_order() -> None:
    spec = TaskSpec(aggregation=AggregationSpec("multi_krum", {"f": 1, "m": 3}, ()))
    rng = random.Random(4)
    rows = [[rng.uniform(-1, 1) for _ in range(7)] for _ in range(6)]
    rows[3] = rows[1][:]  # a byte-identical copy: ties must still not depend on order
    updates = [{"w": torch.tensor(r)} for r in rows]
    base = aggregate(spec, updates, [1] * 6)
    perm = [5, 3, 0, 4, 1, 2]
    shuffled = aggregate(spec, [updates[i] for i in perm], [1] * 6)
    assert shuffled.digest == base.digest

    def picked(ups: list[dict[str, torch.Tensor]], rows: tuple[int, ...]) -> list[list[float]]:
        return sorted(ups[i]["w"].tolist() for i in rows)

    assert picked([updates[i] for i in perm], shuffled.selected) == picked(updates, base.selected)
