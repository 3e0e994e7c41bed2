"""Exact inner products and the Krum-family selections built on them."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from node.aggregation.fixed_point import MIN_DIRECT_BLOCK, exact_inner


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
