"""Centered clipping of coalitions against a plain Python-integer statement of the rule.

`centered_clipping_coalitions` computes in float64 where its bounds prove every value exact and
falls back to split integer products elsewhere; both must give the integers of the rule itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmchain.node.aggregation.centered_clipping import (
    CLIP_BITS,
    WEIGHTED_BITS,
    _isqrt,
    centered_clipping_coalitions,
)
from swarmchain.node.aggregation.fixed_point import Batch, Layout
from swarmchain.node.aggregation.limits import COORD_BOUND


def clip_reference(
    rows: list[list[int]],
    weights: list[int],
    counted: list[bool],
    start: list[int],
    tau_q: int,
    iterations: int,
    weighted: bool,
) -> list[int]:
    """The rule on Python integers, for one zero-filled coalition (absent rows already zero)."""
    v = list(start)
    for _ in range(iterations):
        factors = []
        for row, keep in zip(rows, counted, strict=True):
            distance = math.isqrt(sum((x - c) ** 2 for x, c in zip(row, v, strict=True)))
            full = 1 << CLIP_BITS
            factor = full if distance <= tau_q else (tau_q << CLIP_BITS) // distance
            factors.append(factor if keep else 0)
        if weighted:
            kept = [w if keep else 0 for w, keep in zip(weights, counted, strict=True)]
            factors = [
                (w * c << (WEIGHTED_BITS - CLIP_BITS)) // sum(kept)
                for w, c in zip(kept, factors, strict=True)
            ]
            scale = 1 << WEIGHTED_BITS
        else:
            scale = sum(counted) << CLIP_BITS
        total = sum(factors)
        step = [
            round(
                Fraction(
                    sum(c * row[j] for c, row in zip(factors, rows, strict=True)) - total * v[j],
                    scale,
                )
            )
            for j in range(len(v))
        ]
        v = [a + b for a, b in zip(v, step, strict=True)]
    return v


def rule_reference(
    rows: list[list[int]],
    weights: list[int],
    coalition: list[int],
    start: list[int],
    tau_q: int,
    iterations: int,
    weighted: bool,
    screen: bool,
) -> list[int]:
    """Screened (or not) centered clipping of one zero-filled coalition, on Python integers."""
    n = len(rows)
    masked = [row if i in coalition else [0] * len(row) for i, row in enumerate(rows)]
    everyone = [True] * n
    if not screen:
        return clip_reference(masked, weights, everyone, start, tau_q, iterations, weighted)
    first = clip_reference(masked, weights, everyone, start, tau_q, iterations, False)
    opposed = [
        i in coalition and sum(a * b for a, b in zip(rows[i], first, strict=True)) < 0
        for i in range(n)
    ]
    counted = everyone if all(opposed) else [not o for o in opposed]
    if all(counted) and not weighted:
        return first
    return clip_reference(masked, weights, counted, start, tau_q, iterations, weighted)


magnitudes = st.sampled_from([3, 1 << 10, 1 << 21, 1 << 24, 1 << 27, COORD_BOUND])


@st.composite
def clipping_cases(draw: st.DrawFn) -> tuple[Batch, list[int] | None, int, int, bool, bool]:
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    top = draw(magnitudes)
    coords = st.integers(-top, top) | st.sampled_from([0, top, -top])
    rows = draw(st.lists(st.lists(coords, min_size=d, max_size=d), min_size=n, max_size=n))
    most = (1 << 32) // n
    weights = draw(st.lists(st.integers(1, 1000) | st.just(most), min_size=n, max_size=n))
    start = draw(st.none() | st.lists(st.integers(-top, top), min_size=d, max_size=d))
    tau_q = draw(st.integers(1, 4 * top) | st.sampled_from([1, 1 << 45, 1 << 70]))
    iterations = draw(st.integers(1, 4))
    layout = Layout(("w",), ((d,),))
    batch = Batch(
        np.array(rows, dtype="<i4"),
        np.array(weights, dtype=np.int64),
        layout,
        24,
        tuple((i,) for i in range(n)),
    )
    return batch, start, tau_q, iterations, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=150, deadline=None)
@given(clipping_cases())
def test_coalitions_match_the_rule_on_python_integers(
    case: tuple[Batch, list[int] | None, int, int, bool, bool],
) -> None:
    batch, start, tau_q, iterations, weighted, screen = case
    n, d = batch.values.shape
    coalitions = [[i for i in range(n) if mask >> i & 1] for mask in range(1 << n)]
    center = None if start is None else np.array(start, dtype=np.int64)
    tau = tau_q / (1 << batch.frac_bits)  # to_grid gives tau_q back
    assert batch.to_grid(tau) == tau_q
    out = centered_clipping_coalitions(
        batch,
        coalitions,
        tau=tau,
        iterations=iterations,
        weighted=weighted,
        screen=screen,
        center=center,
    )
    rows = batch.values.tolist()
    weights = batch.weights.tolist()
    origin = [0] * d if start is None else start
    for k, coalition in enumerate(coalitions):
        expected = rule_reference(
            rows, weights, coalition, origin, tau_q, iterations, weighted, screen
        )
        assert out[k].tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.integers(0, (1 << 62) - 1) | st.integers(0, 1 << 31).map(lambda r: r * r),
        min_size=1,
        max_size=20,
    )
)
def test_integer_square_roots_are_exact(squares: list[int]) -> None:
    near = [max(0, min((1 << 62) - 1, s + delta)) for s in squares for delta in (-1, 0, 1)]
    roots = _isqrt(np.array(near, dtype=np.int64))
    assert roots.tolist() == [math.isqrt(s) for s in near]
