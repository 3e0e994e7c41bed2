"""Shapley estimators on games whose values are known, plus determinism, budgets and accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest

from swarmchain.incentives import (
    CoalitionUtility,
    RoundRng,
    ShapleyEstimate,
    ValuationConfig,
    estimate_shapley,
    exact_shapley,
    gtg_shapley,
    kernel_shapley,
    leave_one_out,
    quantise,
    tmc_shapley,
)

Game = Callable[[frozenset[int]], int]
SEED = bytes.fromhex("5eed" * 16)


def _symmetric(coalition: frozenset[int]) -> int:
    return 10 * len(coalition) ** 2


def _glove(coalition: frozenset[int]) -> int:
    # Players 0 and 1 hold a left glove each, player 2 the only right glove; a pair is worth 6.
    return 6 * min(len(coalition & {0, 1}), len(coalition & {2}))


AIRPORT_COSTS = (1, 3, 6, 10)


def _airport(coalition: frozenset[int]) -> int:
    # A runway long enough for the largest plane in the coalition.
    return max((AIRPORT_COSTS[i] for i in coalition), default=0)


def _with_dummy(coalition: frozenset[int]) -> int:
    # Player 3 never changes anything.
    others = coalition - {3}
    return len(others) ** 2 + 5 * (0 in others and 1 in others)


def _saturating_game(n: int, seed: bytes) -> Game:
    """A data-like game: utility grows with the members' weights and saturates, plus noise."""
    rng = RoundRng(seed, "test-game")
    weights = [1 + rng.randbelow(9) for _ in range(n)]
    noise: dict[frozenset[int], int] = {}

    def game(coalition: frozenset[int]) -> int:
        if coalition not in noise:
            noise[coalition] = rng.randbelow(2_001) - 1_000
        mass = sum(weights[i] for i in coalition)
        return quantise(1 - math.exp(-mass / 12)) + (noise[coalition] if coalition else 0)

    return game


def _max_rel_err(estimate: ShapleyEstimate, exact: ShapleyEstimate) -> Fraction:
    largest = max(abs(v) for v in exact.values)
    return max(abs(a - b) for a, b in zip(estimate.values, exact.values, strict=True)) / largest


def _estimators() -> list[Callable[[CoalitionUtility], ShapleyEstimate]]:
    return [
        exact_shapley,
        lambda u: tmc_shapley(u, SEED, max_permutations=300, truncation=Fraction(0)),
        lambda u: gtg_shapley(u, SEED, max_permutations=300, truncation=Fraction(0)),
    ]


def test_symmetric_game_splits_equally() -> None:
    values = exact_shapley(CoalitionUtility(5, _symmetric)).values

    assert values == (Fraction(50),) * 5


def test_glove_game_gives_the_scarce_right_glove_two_thirds() -> None:
    values = exact_shapley(CoalitionUtility(3, _glove)).values

    assert values == (Fraction(1), Fraction(1), Fraction(4))


def test_airport_game_shares_each_runway_segment_among_its_users() -> None:
    values = exact_shapley(CoalitionUtility(4, _airport)).values

    # Segment k (cost c_k - c_{k-1}) is shared equally by the n - k + 1 planes that need it.
    assert values == (Fraction(1, 4), Fraction(11, 12), Fraction(29, 12), Fraction(77, 12))


@pytest.mark.parametrize("estimator", _estimators(), ids=["exact", "tmc", "gtg"])
def test_dummy_player_gets_exactly_zero(
    estimator: Callable[[CoalitionUtility], ShapleyEstimate],
) -> None:
    values = estimator(CoalitionUtility(5, _with_dummy)).values

    assert values[3] == 0


def test_leave_one_out_of_dummy_is_zero_and_of_glove_is_the_marginal() -> None:
    assert leave_one_out(CoalitionUtility(5, _with_dummy)).values[3] == 0
    assert leave_one_out(CoalitionUtility(3, _glove)).values == (0, 0, 6)


@pytest.mark.parametrize("estimator", _estimators(), ids=["exact", "tmc", "gtg"])
def test_values_sum_to_grand_coalition_gain(
    estimator: Callable[[CoalitionUtility], ShapleyEstimate],
) -> None:
    utility = CoalitionUtility(7, _saturating_game(7, SEED))

    values = estimator(utility).values

    assert sum(values) == utility(range(7)) - utility([])


def test_exact_shapley_is_linear_in_the_game() -> None:
    both = exact_shapley(CoalitionUtility(4, lambda s: _airport(s) + 3 * _symmetric(s))).values
    airport = exact_shapley(CoalitionUtility(4, _airport)).values
    symmetric = exact_shapley(CoalitionUtility(4, _symmetric)).values

    assert both == tuple(a + 3 * s for a, s in zip(airport, symmetric, strict=True))


def test_values_of_masks_evaluates_each_new_coalition_once_and_together() -> None:
    batches: list[list[frozenset[int]]] = []

    def many(coalitions: Sequence[frozenset[int]]) -> list[int]:
        batches.append(list(coalitions))
        return [_airport(c) for c in coalitions]

    utility = CoalitionUtility(4, _airport, many)
    assert utility.values_of_masks([0b1010, 0b0001, 0b1010, 0]) == [10, 1, 10, 0]
    assert utility.value_of_mask(0b0001) == 1  # cached: no call
    assert utility.values_of_masks([0b0001, 0b0110]) == [1, 6]
    assert batches == [[frozenset({1, 3}), frozenset({0}), frozenset()], [frozenset({1, 2})]]
    assert utility.evaluations == 4
    assert exact_shapley(utility).values == exact_shapley(CoalitionUtility(4, _airport)).values
    with pytest.raises(ValueError, match="outside"):
        utility.values_of_masks([0b10000])


def test_values_of_masks_checks_what_the_game_returns() -> None:
    short = CoalitionUtility(3, _glove, lambda coalitions: [0] * (len(coalitions) - 1))
    with pytest.raises(TypeError, match="2 utilities for 3"):
        short.values_of_masks([1, 2, 3])
    floats = CoalitionUtility(3, _glove, lambda coalitions: [0.5 for _ in coalitions])
    with pytest.raises(TypeError, match="quantised int"):
        floats.values_of_masks([1])


def test_exact_shapley_refuses_more_than_twelve_players() -> None:
    with pytest.raises(ValueError, match="n <= 12"):
        exact_shapley(CoalitionUtility(13, _symmetric))


@pytest.mark.parametrize("method", ["tmc", "gtg"])
def test_sampling_estimators_approach_exact_values_on_a_random_game(method: str) -> None:
    n = 9
    exact = exact_shapley(CoalitionUtility(n, _saturating_game(n, SEED)))
    estimator = tmc_shapley if method == "tmc" else gtg_shapley

    estimate = estimator(CoalitionUtility(n, _saturating_game(n, SEED)), SEED, max_permutations=400)

    assert _max_rel_err(estimate, exact) <= Fraction(1, 10)


@pytest.mark.parametrize("method", ["tmc", "gtg"])
def test_same_seed_gives_identical_values_and_other_seed_differs(method: str) -> None:
    estimator = tmc_shapley if method == "tmc" else gtg_shapley
    game = _saturating_game(8, SEED)

    first = estimator(CoalitionUtility(8, game), SEED, max_permutations=20)
    again = estimator(CoalitionUtility(8, game), SEED, max_permutations=20)
    other = estimator(CoalitionUtility(8, game), b"another round", max_permutations=20)

    assert first == again
    assert first.values != other.values


def test_integer_seed_is_its_32_byte_big_endian_encoding() -> None:
    game = _saturating_game(6, SEED)

    from_int = tmc_shapley(CoalitionUtility(6, game), 7, max_permutations=5)
    from_bytes = tmc_shapley(CoalitionUtility(6, game), (7).to_bytes(32, "big"), max_permutations=5)

    assert from_int == from_bytes


@pytest.mark.parametrize("method", ["tmc", "gtg"])
def test_evaluation_budget_is_never_exceeded(method: str) -> None:
    estimator = tmc_shapley if method == "tmc" else gtg_shapley
    utility = CoalitionUtility(10, _saturating_game(10, SEED))

    estimate = estimator(utility, SEED, max_permutations=10_000, max_evaluations=150)

    assert estimate.evaluations <= 150
    assert utility.evaluations == estimate.evaluations
    assert estimate.permutations >= 1


def test_budget_too_small_for_one_permutation_is_an_error() -> None:
    utility = CoalitionUtility(10, _saturating_game(10, SEED))

    with pytest.raises(ValueError, match="budget ran out"):
        tmc_shapley(utility, SEED, max_evaluations=5, truncation=Fraction(0))


def test_truncation_saves_evaluations_on_a_saturating_game() -> None:
    def saturating(coalition: frozenset[int]) -> int:
        return min(len(coalition), 3) * 1_000

    full = tmc_shapley(CoalitionUtility(10, saturating), SEED, truncation=Fraction(0))
    truncated = tmc_shapley(CoalitionUtility(10, saturating), SEED, truncation=Fraction(1, 100))

    assert truncated.evaluations < full.evaluations
    assert sum(truncated.values) == 3_000


def test_gtg_skips_a_round_whose_gain_is_below_threshold() -> None:
    utility = CoalitionUtility(6, lambda s: 500_000 + (3 if len(s) == 6 else len(s) % 2))

    estimate = gtg_shapley(utility, SEED, skip_below=5)

    assert estimate.values == (0,) * 6
    assert estimate.evaluations == 2
    assert estimate.permutations == 0


def test_gtg_stops_once_converged() -> None:
    # An additive game: every permutation yields the exact values, so the estimate never moves.
    weights = (5, 1, 4, 2, 3)
    utility = CoalitionUtility(5, lambda s: sum(weights[i] for i in s))

    estimate = gtg_shapley(utility, SEED, max_permutations=1_000, truncation=Fraction(0))

    assert estimate.values == weights
    assert estimate.permutations == 2 * 5


def test_gtg_guided_sampling_lets_every_player_lead_once_per_cycle() -> None:
    leaders: list[int] = []

    def game(coalition: frozenset[int]) -> int:
        if len(coalition) == 1:
            leaders.extend(coalition)
        return len(coalition)

    gtg_shapley(
        CoalitionUtility(6, game),
        SEED,
        max_permutations=6,
        truncation=Fraction(0),
        antithetic=False,
    )

    assert sorted(leaders) == list(range(6))


def test_estimate_shapley_auto_is_exact_for_small_rounds_and_gtg_beyond() -> None:
    small = estimate_shapley(CoalitionUtility(5, _airport_extended), SEED)
    large = estimate_shapley(CoalitionUtility(14, _symmetric), SEED)
    capped = estimate_shapley(
        CoalitionUtility(14, _symmetric), SEED, ValuationConfig(max_evaluations=100)
    )

    assert small.method == "exact"
    assert large.method == "gtg"
    assert large.evaluations <= ValuationConfig().budget(14)
    assert capped.evaluations <= 100


@pytest.mark.parametrize(("n", "budget"), [(11, 256), (50, 300), (100, 600)])
def test_default_budget_is_six_per_player_and_at_least_256(n: int, budget: int) -> None:
    assert ValuationConfig().budget(n) == budget


def _airport_extended(coalition: frozenset[int]) -> int:
    return _airport(coalition & {0, 1, 2, 3}) + (4 in coalition)


def test_estimate_shapley_names_the_methods_when_one_is_unknown() -> None:
    with pytest.raises(ValueError, match="choose one of auto, exact, tmc, gtg, loo, kernel"):
        estimate_shapley(CoalitionUtility(3, _glove), SEED, ValuationConfig(method="banzhaf"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"truncation": Fraction(1)},
        {"truncation": Fraction(-1, 10)},
        {"max_permutations": 0},
        {"max_evaluations": 1},
    ],
)
def test_invalid_sampling_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        tmc_shapley(CoalitionUtility(3, _glove), SEED, **kwargs)  # type: ignore[arg-type]


def test_utility_evaluates_each_coalition_once_and_counts_it() -> None:
    calls: list[frozenset[int]] = []

    def game(coalition: frozenset[int]) -> int:
        calls.append(coalition)
        return len(coalition)

    utility = CoalitionUtility(3, game)
    assert utility([0, 2]) == 2
    assert utility([2, 0]) == 2
    assert utility.value_of_mask(0b101) == 2

    assert calls == [frozenset({0, 2})]
    assert utility.evaluations == 1


def test_utility_refuses_unquantised_values_and_unknown_players() -> None:
    utility = CoalitionUtility(2, lambda s: 0.5)  # type: ignore[arg-type, return-value]

    with pytest.raises(TypeError, match="quantise"):
        utility([0])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        CoalitionUtility(2, len)([2])


@pytest.mark.parametrize(
    ("metric", "expected"),
    [(0.9375, 937_500), (Fraction(1, 3), 333_333), (Fraction(5, 10**7), 0), (-0.25, -250_000)],
)
def test_quantise_rounds_half_to_even_on_the_exact_value(
    metric: float | Fraction, expected: int
) -> None:
    assert quantise(metric) == expected


@pytest.mark.parametrize("metric", [math.nan, math.inf])
def test_quantise_refuses_non_finite_metrics(metric: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        quantise(metric)


def _pairwise(coalition: frozenset[int]) -> int:
    # Solo worths plus pairwise synergies only: no interaction of three or more players.
    solo = (7, -2, 4, 9, 1, 3)
    synergy = {(0, 1): 5, (0, 3): -6, (2, 4): 8, (3, 5): 2, (1, 5): -3}
    return sum(solo[i] for i in coalition) + sum(
        w for (i, j), w in synergy.items() if i in coalition and j in coalition
    )


@pytest.mark.parametrize("method", ["tmc", "gtg"])
def test_one_antithetic_pair_is_exact_for_pairwise_games(method: str) -> None:
    estimator = tmc_shapley if method == "tmc" else gtg_shapley
    exact = exact_shapley(CoalitionUtility(6, _pairwise))

    pair = estimator(
        CoalitionUtility(6, _pairwise), SEED, max_permutations=2, truncation=Fraction(0)
    )
    single = estimator(
        CoalitionUtility(6, _pairwise),
        SEED,
        max_permutations=2,
        truncation=Fraction(0),
        antithetic=False,
    )

    assert pair.values == exact.values
    assert single.values != exact.values


def test_kernel_with_every_coalition_is_exact_shapley() -> None:
    game = _saturating_game(7, SEED)
    exact = exact_shapley(CoalitionUtility(7, game))

    fitted = kernel_shapley(CoalitionUtility(7, game), SEED, max_evaluations=1 << 7)

    assert fitted.values == exact.values
    assert fitted.evaluations == 1 << 7


def test_kernel_is_exact_for_additive_games_on_any_budget() -> None:
    weights = (5, -1, 4, 2, 3, 0, 7, 1, 1, 2)
    utility = CoalitionUtility(10, lambda s: sum(weights[i] for i in s))

    fitted = kernel_shapley(utility, SEED, max_evaluations=2 * 10 + 2)

    assert fitted.values == weights
    assert fitted.evaluations == 22


def test_kernel_stays_within_budget_and_is_reproducible() -> None:
    game = _saturating_game(10, SEED)

    first = kernel_shapley(CoalitionUtility(10, game), SEED, max_evaluations=150)
    again = kernel_shapley(CoalitionUtility(10, game), SEED, max_evaluations=150)
    exact = exact_shapley(CoalitionUtility(10, game))

    assert first == again
    assert first.evaluations <= 150
    assert sum(first.values) == sum(exact.values)
    assert _max_rel_err(first, exact) <= Fraction(15, 100)


def test_kernel_refuses_a_budget_below_every_singleton_and_leave_one_out() -> None:
    with pytest.raises(ValueError, match="2n \\+ 2 = 22"):
        kernel_shapley(CoalitionUtility(10, _symmetric), SEED, max_evaluations=21)
