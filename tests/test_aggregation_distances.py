"""Exact inner products and the Krum-family selections built on them."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmchain.node.aggregation.bulyan import bulyan
from swarmchain.node.aggregation.distance_bounds import (
    certified_krum_order,
    cheap_bounds,
    distance_bounds,
)
from swarmchain.node.aggregation.fixed_point import Batch, Layout, RuleOutput, exact_inner
from swarmchain.node.aggregation.krum import krum, krum_scores, multi_krum
from swarmchain.node.aggregation.limits import COORD_BOUND, MIN_DIRECT_BLOCK


def python_inner(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Inner products of the rows in Python integers (the reference)."""
    rows_a, rows_b = a.tolist(), b.tolist()
    return [[sum(map(operator.mul, r, s)) for s in rows_b] for r in rows_a]


@pytest.mark.parametrize(
    ("top_a", "top_b", "d"),
    [
        (2**20, 2**20, 3 * 8192 + 5),  # unsplit blocks of 8192 columns whose sums reach 2**53
        (2**22, 2**23, MIN_DIRECT_BLOCK + 1),  # the narrowest blocks, and one of a single column
        (2**25, 2**25, 8),  # a few columns whose whole sum reaches 2**53: one block
        (2**22 - 1, 2**24, 50_000),  # blocks would be too narrow: one operand split, several blocks
        (2**30, 2**30, 300),  # too large for either: split in halves of 15 bits
    ],
)
def test_inner_products_are_exact_in_every_tier(top_a: int, top_b: int, d: int) -> None:
    rng = np.random.default_rng(11)
    a = rng.integers(-top_a, top_a + 1, size=(8, d)).astype("<i4")
    b = rng.integers(-top_b, top_b + 1, size=(8, d)).astype("<i4")
    a[0, :] = top_a  # worst case: every product at its bound, all of one sign
    a[1, :] = -top_a
    b[0, :] = -top_b
    # Odd values just below the bound: sums past 2**53 would lose their last bit.
    a[2, :] = top_a - 1 - 2 * rng.integers(0, 1 << 10, size=d)
    b[1, :] = top_b - 1 - 2 * rng.integers(0, 1 << 10, size=d)
    assert exact_inner(a, b) == python_inner(a, b)
    assert exact_inner(a, a) == python_inner(a, a)
    assert exact_inner(b, b) == python_inner(b, b)


# --- certified distance bounds and the Krum family ---------------------------------------------


def int_batch(rows: np.ndarray, exact: bool = False) -> Batch:
    """A batch holding grid integers directly; ``exact`` gives it its exact Gram matrix."""
    values = np.ascontiguousarray(rows, dtype="<i4")
    n, d = values.shape
    gram = exact_inner(values, values) if exact else None
    ones = np.ones(n, dtype=np.int64)
    return Batch(values, ones, Layout(("w",), ((d,),)), 24, tuple((i,) for i in range(n)), gram)


def exact_ranking(rows: np.ndarray, f: int, among: Sequence[int], keep: int) -> list[int]:
    """The exact path's ranking: exact scores, ties by content hash, then index."""
    batch = int_batch(rows, exact=True)
    return batch.rank(krum_scores(batch, f, among))[:keep]


def same_output(a: RuleOutput, b: RuleOutput) -> bool:
    return a.aggregate.tolist() == b.aggregate.tolist() and a.selected == b.selected


def large_rows(seed: int, n: int, d: int, top: int = COORD_BOUND) -> np.ndarray:
    """Rows of large grid integers, too large for the unsplit exact tier."""
    return np.random.default_rng(seed).integers(-top, top + 1, size=(n, d))


def test_bounds_hold_every_exact_distance_and_pin_identical_rows() -> None:
    rows = large_rows(1, 7, 300)
    rows[0, :] = COORD_BOUND  # extremes: the widest intervals
    rows[1, :] = -COORD_BOUND
    rows[5] = rows[2]  # identical rows: distance exactly 0
    rows[6] = rows[3]
    rows[6, 17] += 1  # distance exactly 1
    batch = int_batch(rows)
    bounds = distance_bounds(batch)
    exact = int_batch(rows, exact=True).sq_dists
    for i in range(7):
        for j in range(7):
            assert bounds.lower[i][j] <= exact[i][j] <= bounds.upper[i][j]
    assert (bounds.lower[2][5], bounds.upper[2][5]) == (0, 0)
    assert bounds.lower[3][6] == 1
    assert bounds.twin == [0, 1, 2, 3, 4, 2, 6]
    assert not batch.gram_known  # no exact product was needed


def test_bounds_are_used_only_where_exact_distances_cost_more() -> None:
    assert cheap_bounds(int_batch(large_rows(2, 5, 1000, top=2**20))) is None
    assert cheap_bounds(int_batch(large_rows(2, 5, 1000), exact=True)) is None
    assert cheap_bounds(int_batch(large_rows(2, 5, 1000))) is not None


def test_clear_krum_decisions_are_certified_without_exact_distances() -> None:
    # Six honest rows near a common point, three identical attackers far away.
    rng = np.random.default_rng(3)
    centre = rng.integers(-(2**28), 2**28, size=500)
    rows = centre + rng.integers(-(2**24), 2**24, size=(9, 500))
    rows[6:] = centre + 2**29
    for rule in (krum, multi_krum, bulyan):
        fast, slow = int_batch(rows), int_batch(rows, exact=True)
        out = rule(fast, f=1)
        assert same_output(out, rule(slow, f=1))
        assert not fast.gram_known
    assert set(multi_krum(int_batch(rows), f=2).selected or ()) == set(range(6)) | {6}


def test_identical_rows_rank_by_index_without_exact_distances() -> None:
    rows = large_rows(4, 7, 64)
    rows[[1, 4, 6]] = rows[2]  # four identical rows: the lowest scores, one tie among them
    batch = int_batch(rows)
    bounds = distance_bounds(batch)
    for keep in range(1, 8):
        order = certified_krum_order(batch, bounds, 1, range(7), keep)
        assert order == exact_ranking(rows, 1, range(7), keep)
    assert certified_krum_order(batch, bounds, 1, range(7), 4) == [1, 2, 4, 6]


def test_provably_equal_scores_are_ordered_by_content_hash() -> None:
    # Each score is one distance (n - f - 2 <= 1). Rows 0 and 1 are each other's nearest, so
    # both scores are their distance. Then rows 3 and 4 copy row 2 and 5 copies 1: their scores
    # are pinned to 0, and row 0's is the distance to row 1.
    x = 2**29
    pair = np.array([[x, 0], [x, 5], [-x, 0]])
    batch = int_batch(pair)
    assert certified_krum_order(batch, distance_bounds(batch), 0, range(3), 3) == exact_ranking(
        pair, 0, range(3), 3
    )
    copies = np.array([[x, 0], [x, 5], [-x, 0], [-x, 0], [-x, 0], [x, 5]])
    batch = int_batch(copies)
    order = certified_krum_order(batch, distance_bounds(batch), 3, range(6), 6)
    assert order == exact_ranking(copies, 3, range(6), 6)


def test_equal_scores_of_distinct_rows_fall_back_to_the_exact_path() -> None:
    # -x, 0 and +x: every Krum score is x**2; the content hash decides, exactly as before.
    x = 2**29
    rows = np.array([[-x, 3], [0, 3], [x, 3]])
    batch = int_batch(rows)
    assert certified_krum_order(batch, distance_bounds(batch), 0, range(3), 1) is None
    fast = int_batch(rows)
    assert same_output(krum(fast, f=0), krum(int_batch(rows, exact=True), f=0))
    assert fast.gram_known  # the exact Gram matrix was computed


def test_a_nearest_row_is_not_guessed_from_rounded_distances() -> None:
    # Row 0 lies 2**54.9 from row 1 and one less from rows 2 = 3: far below the bounds'
    # resolution. Taking row 1 as its nearest would tie rows 0 and 1 and order them by hash.
    rows = np.array([[5, -4], [182498921, -3], [-182498911, -4], [-182498911, -4]])
    batch = int_batch(rows)
    assert certified_krum_order(batch, distance_bounds(batch), 4, range(4), 4) is None
    assert same_output(bulyan(batch, f=0), bulyan(int_batch(rows, exact=True), f=0))


def test_scores_one_apart_are_told_apart_or_left_to_the_exact_path() -> None:
    # Distances of 2**60 and 2**60 + 1: far below the bounds' resolution at this magnitude.
    x = 2**30
    rows = np.array([[0, 0], [x, 0], [0, -x], [x, 1]])
    fast = int_batch(rows)
    for rule in (krum, multi_krum):
        assert same_output(rule(fast, f=0), rule(int_batch(rows, exact=True), f=0))
    assert fast.gram_known


def test_one_huge_row_among_small_ones_is_decided_by_the_bounds() -> None:
    rows = large_rows(5, 9, 2000, top=2**12)
    rows[4] = COORD_BOUND  # a scaling attacker makes every exact product need a split
    fast = int_batch(rows)
    assert cheap_bounds(fast) is not None
    for rule in (krum, multi_krum, bulyan):
        assert same_output(rule(int_batch(rows), f=1), rule(int_batch(rows, exact=True), f=1))


@st.composite
def krum_rows(draw: st.DrawFn) -> np.ndarray:
    """Small batches of large grid integers with duplicates, mirror images and near ties."""
    n = draw(st.integers(min_value=3, max_value=8))
    d = draw(st.integers(min_value=1, max_value=6))
    top = draw(st.sampled_from([COORD_BOUND, 2**27, 2**24, 3]))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rows = np.random.default_rng(seed).integers(-top, top + 1, size=(n, d))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        edit = draw(st.sampled_from(["copy", "mirror", "nudge", "extreme"]))
        if edit == "copy":
            rows[i] = rows[j]
        elif edit == "mirror":
            rows[i] = -rows[j]
        elif edit == "nudge":
            rows[i] = rows[j]
            rows[i, draw(st.integers(0, d - 1))] += draw(st.sampled_from([-1, 1]))
        else:
            rows[i] = draw(st.sampled_from([COORD_BOUND, -COORD_BOUND]))
    clipped: np.ndarray = np.clip(rows, -COORD_BOUND, COORD_BOUND)
    return clipped


@settings(max_examples=150, deadline=None)
@given(krum_rows(), st.data())
def test_certified_krum_order_is_the_exact_ranking_whenever_given(
    rows: np.ndarray, data: st.DataObject
) -> None:
    n = rows.shape[0]
    batch = int_batch(rows)
    bounds = distance_bounds(batch)
    among = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
    f = data.draw(st.integers(min_value=0, max_value=n))
    keep = data.draw(st.integers(min_value=1, max_value=len(among)))
    exact = int_batch(rows, exact=True).sq_dists
    for i in range(n):
        for j in range(n):
            assert bounds.lower[i][j] <= exact[i][j] <= bounds.upper[i][j]
    order = certified_krum_order(batch, bounds, f, among, keep)
    assert order is None or order == exact_ranking(rows, f, among, keep)


@settings(max_examples=60, deadline=None)
@given(krum_rows())
def test_krum_family_outputs_equal_the_exact_path(rows: np.ndarray) -> None:
    n = rows.shape[0]
    for f in range((n - 3) // 2 + 1):
        exact = int_batch(rows, exact=True)
        assert same_output(krum(int_batch(rows), f=f), krum(exact, f=f))
        for m in {1, n - f}:
            assert same_output(multi_krum(int_batch(rows), f=f, m=m), multi_krum(exact, f=f, m=m))
    for f in range((n - 3) // 4 + 1):
        assert same_output(bulyan(int_batch(rows), f=f), bulyan(int_batch(rows, exact=True), f=f))
