"""Shapley-value estimators over a quantised, cached coalition utility.

Every estimator is a pure function of the game and the round seed: utilities are integers, sampled
permutations come from `RoundRng` keyed by the round seed, every truncation or convergence test is
exact integer arithmetic, and the values come back as exact `Fraction`s in utility units. So every
honest node and every auditor computes bit-identical values from the same public inputs.

Estimators
----------
- `exact_shapley`: the definition, over all ``2**n`` coalitions (Shapley 1953); for n <= 12.
- `tmc_shapley`: truncated Monte Carlo over random permutations (Ghorbani & Zou, "Data Shapley:
  Equitable Valuation of Data for Machine Learning", ICML 2019).
- `gtg_shapley`: guided truncation (Liu, Chen, Huang, Yu, Yang & Shen, "GTG-Shapley: Efficient and
  Accurate Participant Contribution Evaluation in Federated Learning", ACM TIST 2022): a round whose
  total gain is negligible is skipped, permutations are truncated once the remaining gain is
  negligible, every player takes its turn at the first position, and sampling stops once the
  estimate has converged.
- `kernel_shapley`: the Shapley value as a weighted least-squares fit over sampled coalitions
  (KernelSHAP, Lundberg & Lee, NeurIPS 2017; paired sampling, Covert & Lee, AISTATS 2021).
- `leave_one_out`: ``v(N) - v(N \\ {i})``, the cheap baseline.

Both sampling estimators draw antithetic pairs by default: every permutation is followed by its
reverse (Mitchell, Cooper, Frank & Holmes, "Sampling Permutations for Shapley Value Estimation",
JMLR 2022). A pair's average marginal is exact for any game whose interactions are at most
pairwise, and a FedAvg-style utility is close to that, so pairs cut the estimator's error several
times over at the same budget (see `scripts/bench_shapley.py`).

Truncation tolerances are relative to the round's total gain ``|v(N) - v(∅)|`` rather than to
``v(N)`` itself: utilities here are metrics of a checkpoint that was already good before the
round, and only the round's gain is being shared.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from swarmchain.incentives.prng import RoundRng
from swarmchain.incentives.utility import CoalitionUtility, mask_members

MAX_EXACT_PLAYERS = 12
"""Exact Shapley evaluates every coalition: 2**12 = 4,096 utilities is the most we allow."""

MAX_KERNEL_PLAYERS = 50
"""Kernel Shapley solves an exact rational (n + 1)-square system: about 7 s of CPU at n = 50 with
600 coalitions, minutes at n = 100."""

_KERNEL_DRAWS_PER_EVALUATION = 64  # stop sampling when new coalitions have become this rare


@dataclass(frozen=True)
class ShapleyEstimate:
    """Values of every player from one estimator run."""

    method: str  # the estimator's registry name, e.g. "exact", "tmc"
    values: tuple[Fraction, ...]  # (n_players,) exact values, in quantised utility units
    evaluations: int  # distinct coalitions this run evaluated (cache hits are free)
    permutations: int  # permutations whose marginals were averaged; 0 for exact and LOO


@dataclass(frozen=True)
class ValuationConfig:
    """How a swarm values contributions; part of the task's public parameters."""

    method: str = "auto"  # "auto", or a name in ESTIMATORS; see `estimate_shapley`
    exact_max_players: int = 10  # auto: exact Shapley up to this many players (2**10 coalitions)
    evaluations_per_player: int = 6  # sampling budget: this many coalitions per player, ...
    min_evaluations: int = 256  # ... and at least this many, ...
    max_evaluations: int | None = None  # ... unless this absolute budget is given
    truncation: Fraction = Fraction(1, 100)  # stop a permutation within this share of the gain
    tolerance: Fraction = Fraction(1, 100)  # GTG: converged when the estimate moves less than this
    max_permutations: int = 100_000  # a hard stop, far above what the budget allows in practice
    antithetic: bool = True  # sample permutations in (order, reversed order) pairs

    def budget(self, n_players: int) -> int:
        """Most distinct coalitions a sampling estimator may evaluate for `n_players`.

        Every utility costs one robust aggregation over all n updates plus a forward pass, so the
        cost of a valuation grows with n times the budget. The default, 6 per player and at least
        256, keeps one valuation of a 50-member round of the default task (geometric median)
        within about a minute of one CPU core; see `scripts/bench_shapley.py`.
        """
        if self.max_evaluations is not None:
            return self.max_evaluations
        return max(self.evaluations_per_player * n_players, self.min_evaluations, 2 * n_players + 2)


class _Budget:
    """The evaluation allowance of one estimator run over a shared, cached utility."""

    def __init__(self, utility: CoalitionUtility, max_evaluations: int | None) -> None:
        if max_evaluations is not None and max_evaluations < 2:
            raise ValueError(
                f"max_evaluations must allow v(∅) and v(N) (at least 2), got {max_evaluations}"
            )
        self.utility = utility
        self.start = utility.evaluations
        self.end = None if max_evaluations is None else self.start + max_evaluations

    def allows(self, mask: int) -> bool:
        """Whether evaluating this coalition stays within the allowance."""
        return (
            self.end is None or self.utility.is_cached(mask) or self.utility.evaluations < self.end
        )

    @property
    def spent(self) -> int:
        """Distinct coalitions evaluated since the run started."""
        return self.utility.evaluations - self.start


def _check_truncation(truncation: Fraction) -> None:
    """Raise unless 0 <= truncation < 1."""
    if not 0 <= truncation < 1:
        raise ValueError(f"truncation must be in [0, 1), got {truncation}")


def _orders(rng: RoundRng, n: int, *, guided: bool, antithetic: bool) -> Iterator[list[int]]:
    """The endless sequence of permutations a sampling estimator walks.

    Guided: in each cycle of n draws every player leads once (leaders in shuffled order, the rest
    of each permutation shuffled). Antithetic: every permutation is followed by its reverse.
    """
    leaders: list[int] = []
    while True:
        if guided:
            if not leaders:
                leaders = rng.permutation(n)
            leader = leaders.pop()
            rest = [player for player in range(n) if player != leader]
            rng.shuffle(rest)
            order = [leader, *rest]
        else:
            order = rng.permutation(n)
        yield order
        if antithetic:
            yield order[::-1]


def _walk_permutation(
    budget: _Budget,
    order: Sequence[int],
    v_empty: int,
    v_grand: int,
    truncation: Fraction,
) -> list[int] | None:
    """Marginal contributions along one permutation, truncated; None if over budget.

    Once the running coalition is within ``truncation * |v(N) - v(∅)|`` of ``v(N)``, the remaining
    players' marginals are taken as 0 without evaluating them. A truncation of 0 never truncates.
    """
    utility = budget.utility
    marginals = [0] * utility.n_players
    gain = abs(v_grand - v_empty)
    mask = 0
    previous = v_empty
    for player in order:
        if (
            truncation.numerator > 0
            and abs(v_grand - previous) * truncation.denominator <= truncation.numerator * gain
        ):
            break
        mask |= 1 << player
        if not budget.allows(mask):
            return None
        current = utility.value_of_mask(mask)
        marginals[player] = current - previous
        previous = current
    return marginals


def exact_shapley(utility: CoalitionUtility) -> ShapleyEstimate:
    """Exact Shapley values by the definition, over all ``2**n`` coalitions.

    ``φ_i = Σ_{S ⊆ N \\ {i}} |S|! (n - |S| - 1)! / n! · (v(S + i) - v(S))``, summed in integers
    and divided once, so the result is exact.

    Parameters
    ----------
    utility
        The game; every coalition is evaluated once.

    Returns
    -------
    ShapleyEstimate
        Exact values; ``permutations`` is 0.

    Raises
    ------
    ValueError
        If the game has more than `MAX_EXACT_PLAYERS` players.
    """
    n = utility.n_players
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact Shapley needs n <= {MAX_EXACT_PLAYERS} (2**n utilities), got n={n}; "
            "use a sampling estimator such as gtg_shapley"
        )
    start = utility.evaluations
    table = utility.values_of_masks(range(1 << n))
    weight = [math.factorial(s) * math.factorial(n - s - 1) for s in range(n)]
    totals = [0] * n
    for mask, value in enumerate(table[:-1]):  # the grand coalition has no one left to add
        w = weight[mask.bit_count()]
        for player in range(n):
            bit = 1 << player
            if not mask & bit:
                totals[player] += w * (table[mask | bit] - value)
    denominator = math.factorial(n)
    return ShapleyEstimate(
        method="exact",
        values=tuple(Fraction(total, denominator) for total in totals),
        evaluations=utility.evaluations - start,
        permutations=0,
    )


def kernel_shapley(
    utility: CoalitionUtility,
    seed: bytes | int,
    *,
    max_evaluations: int,
) -> ShapleyEstimate:
    """KernelSHAP: Shapley values as a weighted least-squares fit (Lundberg & Lee, NeurIPS 2017).

    The Shapley values are the additive game ``v(∅) + Σ_{i∈S} φ_i`` closest to ``v`` in the
    Shapley-kernel-weighted least-squares sense, subject to ``Σ φ_i = v(N) - v(∅)``; every
    evaluated coalition informs every player's value at once. Coalition sizes carry kernel mass
    ``(n - 1) / (s (n - s))``. Whole size strata are evaluated from the outside in (sizes 1 and
    n - 1, then 2 and n - 2, ...) while the budget's kernel-proportional share covers them; the rest
    of the budget samples coalitions of the remaining sizes from the round seed, each together
    with its complement (paired sampling, Covert & Lee, "Improving KernelSHAP", AISTATS 2021).
    With a budget of all ``2**n`` coalitions the fit is the exact Shapley value. The fit is solved
    in exact rational arithmetic, so the values are the same everywhere.

    Parameters
    ----------
    utility
        The game.
    seed
        The round seed.
    max_evaluations
        Most distinct coalitions to evaluate; at least ``2n + 2`` (every singleton and every
        leave-one-out coalition, which make the fit well posed).

    Returns
    -------
    ShapleyEstimate
        The fitted values; ``permutations`` is 0.

    Raises
    ------
    ValueError
        If the budget is below ``2n + 2`` or the game has more than `MAX_KERNEL_PLAYERS` players.
    """
    n = utility.n_players
    if n > MAX_KERNEL_PLAYERS:
        raise ValueError(
            f"kernel Shapley solves an exact {n}x{n} system; it takes n <= {MAX_KERNEL_PLAYERS}"
        )
    start = utility.evaluations
    if max_evaluations >= 1 << n:
        return _kernel_fit(utility, _all_coalitions(n), start)
    if max_evaluations < 2 * n + 2:
        raise ValueError(f"kernel Shapley needs at least 2n + 2 = {2 * n + 2} evaluations")
    grand = utility.grand_mask
    mass = {size: Fraction(n - 1, size * (n - size)) for size in range(1, n)}
    weights: dict[int, Fraction] = {}
    left = max_evaluations - 2
    sizes = list(range(1, n))
    while sizes:
        stratum = sorted({sizes[0], sizes[-1]})
        count = sum(math.comb(n, size) for size in stratum)
        share = sum(mass[size] for size in stratum) / sum(mass[size] for size in sizes)
        # Sizes 1 and n - 1 always; inner strata while their kernel share of the budget covers them.
        if sizes[0] > 1 and (count > left or count > share * left):
            break
        for size in stratum:
            for members in itertools.combinations(range(n), size):
                weights[sum(1 << i for i in members)] = mass[size] / math.comb(n, size)
        left -= count
        sizes = sizes[1:-1]
    if sizes:
        rng = RoundRng(seed, "kernel")
        draws: dict[int, int] = {}
        total = 0
        scale = math.lcm(*(mass[size].denominator for size in sizes))
        tickets = [int(mass[size] * scale) for size in sizes]
        for _ in range(_KERNEL_DRAWS_PER_EVALUATION * max_evaluations):
            if left == 0:
                break
            ticket = rng.randbelow(sum(tickets))
            index = 0
            while ticket >= tickets[index]:
                ticket -= tickets[index]
                index += 1
            mask = sum(1 << i for i in rng.permutation(n)[: sizes[index]])
            pair = (mask, grand ^ mask)
            new = sum(1 for m in set(pair) if m not in draws and m not in weights)
            if new > left:
                break
            left -= new
            for m in pair:
                draws[m] = draws.get(m, 0) + 1
                total += 1
        remaining_mass = sum((mass[size] for size in sizes), Fraction(0))
        for m, times in draws.items():
            weights[m] = remaining_mass * Fraction(times, total)
    return _kernel_fit(utility, weights, start)


def _all_coalitions(n: int) -> dict[int, Fraction]:
    """Kernel weights of every proper, non-empty coalition of n players."""
    return {
        mask: Fraction(n - 1, math.comb(n, size) * size * (n - size))
        for mask in range(1, (1 << n) - 1)
        if (size := mask.bit_count())
    }


def _kernel_fit(
    utility: CoalitionUtility, weights: dict[int, Fraction], start: int
) -> ShapleyEstimate:
    """Solve the efficiency-constrained weighted least squares of `kernel_shapley` exactly."""
    n = utility.n_players
    v_empty, v_grand = utility.values_of_masks([0, utility.grand_mask, *sorted(weights)])[:2]
    gain = v_grand - v_empty
    # Normal equations with a Lagrange multiplier: [[A, 1], [1ᵀ, 0]] [φ, λ] = [b, gain].
    system = [[Fraction(0)] * (n + 2) for _ in range(n + 1)]
    for mask, weight in sorted(weights.items()):
        members = list(mask_members(mask))
        target = weight * (utility.value_of_mask(mask) - v_empty)
        for i in members:
            system[i][n + 1] += target
            for j in members:
                system[i][j] += weight
    for i in range(n):
        system[i][n] = system[n][i] = Fraction(1)
    system[n][n + 1] = Fraction(gain)
    values = _solve(system)
    return ShapleyEstimate(
        method="kernel",
        values=tuple(values[:n]),
        evaluations=utility.evaluations - start,
        permutations=0,
    )


def _solve(system: list[list[Fraction]]) -> list[Fraction]:
    """Gauss-Jordan elimination on an augmented, non-singular system, in exact fractions."""
    size = len(system)
    for col in range(size):
        pivot = next(row for row in range(col, size) if system[row][col] != 0)
        system[col], system[pivot] = system[pivot], system[col]
        lead = system[col][col]
        system[col] = [entry / lead for entry in system[col]]
        for row in range(size):
            factor = system[row][col]
            if row != col and factor != 0:
                system[row] = [
                    a - factor * b for a, b in zip(system[row], system[col], strict=True)
                ]
    return [system[row][size] for row in range(size)]


def leave_one_out(utility: CoalitionUtility) -> ShapleyEstimate:
    """Leave-one-out values ``v(N) - v(N \\ {i})``: n + 1 evaluations, no sampling.

    Parameters
    ----------
    utility
        The game.

    Returns
    -------
    ShapleyEstimate
        Each player's marginal to the rest of the grand coalition.
    """
    start = utility.evaluations
    grand = utility.grand_mask
    v_grand, *without = utility.values_of_masks(
        [grand, *(grand & ~(1 << player) for player in range(utility.n_players))]
    )
    values = tuple(Fraction(v_grand - v) for v in without)
    return ShapleyEstimate(
        method="loo", values=values, evaluations=utility.evaluations - start, permutations=0
    )


def tmc_shapley(
    utility: CoalitionUtility,
    seed: bytes | int,
    *,
    max_permutations: int = 1_000,
    max_evaluations: int | None = None,
    truncation: Fraction = Fraction(1, 100),
    antithetic: bool = True,
) -> ShapleyEstimate:
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019).

    Samples uniformly random permutations from the round seed, walks each one adding players, and
    averages every player's marginal contribution. A walk stops early (the remaining marginals count
    as 0) once the coalition is within ``truncation`` of the round's total gain from ``v(N)``.
    Sampling stops after `max_permutations`, or before the permutation that would exceed
    `max_evaluations` distinct utilities (a permutation cut short by the budget is discarded).
    With `antithetic`, every sampled permutation is followed by its reverse.

    Parameters
    ----------
    utility
        The game.
    seed
        The round seed; the same seed gives the same permutations everywhere.
    max_permutations
        Most permutations to sample; at least 1.
    max_evaluations
        Most distinct coalitions this run may evaluate (v(∅) and v(N) included); None: no limit.
    truncation
        Relative tolerance in [0, 1); 0 disables truncation.
    antithetic
        Follow every permutation with its reverse.

    Returns
    -------
    ShapleyEstimate
        The averaged marginals.

    Raises
    ------
    ValueError
        On an invalid parameter, or a budget that does not complete a single permutation.
    """
    _check_truncation(truncation)
    if max_permutations < 1:
        raise ValueError(f"max_permutations must be at least 1, got {max_permutations}")
    budget = _Budget(utility, max_evaluations)
    n = utility.n_players
    v_empty = utility.value_of_mask(0)
    v_grand = utility.value_of_mask(utility.grand_mask)
    orders = _orders(RoundRng(seed, "tmc"), n, guided=False, antithetic=antithetic)
    sums = [0] * n
    done = 0
    while done < max_permutations:
        marginals = _walk_permutation(budget, next(orders), v_empty, v_grand, truncation)
        if marginals is None:
            break
        for player, marginal in enumerate(marginals):
            sums[player] += marginal
        done += 1
    return _averaged("tmc", sums, done, budget)


def gtg_shapley(
    utility: CoalitionUtility,
    seed: bytes | int,
    *,
    max_permutations: int = 1_000,
    max_evaluations: int | None = None,
    truncation: Fraction = Fraction(1, 100),
    skip_below: int = 0,
    tolerance: Fraction = Fraction(1, 100),
    window: int | None = None,
    antithetic: bool = True,
) -> ShapleyEstimate:
    """GTG-Shapley: guided, truncated permutation sampling that stops once converged (Liu 2022).

    - Between-round truncation: if ``|v(N) - v(∅)| <= skip_below`` the round's gain is noise and
      every value is 0 (two evaluations).
    - Guided sampling: permutations come in cycles of n; in each cycle every player leads exactly
      one permutation (the leaders' order and the rest of each permutation are shuffled from the
      round seed), so every player's solo marginal ``v({i}) - v(∅)``, the most informative and the
      cheapest to cache, is always sampled. With `antithetic`, each permutation is followed by
      its reverse, in which the leader comes last and so also yields its leave-one-out marginal.
    - Within-round truncation: as in `tmc_shapley`, relative to the round's total gain.
    - Convergence: after each permutation ``k >= max(n, 2 * window)``, stop once the estimate moved
      by at most `tolerance` (L1 change relative to its L1 norm) over the last `window`
      permutations. Sampling also stops at `max_permutations` or before exceeding
      `max_evaluations`.

    Parameters
    ----------
    utility
        The game.
    seed
        The round seed.
    max_permutations
        Most permutations to sample; at least 1.
    max_evaluations
        Most distinct coalitions this run may evaluate; None: no limit.
    truncation
        Within-round relative tolerance in [0, 1); 0 disables it.
    skip_below
        Between-round threshold, in quantised utility units; at least 0.
    tolerance
        Convergence threshold, at least 0.
    window
        Permutations over which convergence is judged; default n.
    antithetic
        Follow every permutation with its reverse.

    Returns
    -------
    ShapleyEstimate
        The averaged marginals.

    Raises
    ------
    ValueError
        On an invalid parameter, or a budget that does not complete a single permutation.
    """
    _check_truncation(truncation)
    if max_permutations < 1:
        raise ValueError(f"max_permutations must be at least 1, got {max_permutations}")
    if skip_below < 0 or tolerance < 0:
        raise ValueError(f"skip_below and tolerance must be >= 0, got {skip_below}, {tolerance}")
    n = utility.n_players
    window = n if window is None else window
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    budget = _Budget(utility, max_evaluations)
    v_empty = utility.value_of_mask(0)
    v_grand = utility.value_of_mask(utility.grand_mask)
    if abs(v_grand - v_empty) <= skip_below:
        return ShapleyEstimate("gtg", (Fraction(0),) * n, budget.spent, 0)
    orders = _orders(RoundRng(seed, "gtg"), n, guided=True, antithetic=antithetic)
    sums = [0] * n
    history: list[list[int]] = []  # sums after each of the last `window` permutations
    done = 0
    while done < max_permutations:
        marginals = _walk_permutation(budget, next(orders), v_empty, v_grand, truncation)
        if marginals is None:
            break
        history.append(list(sums))
        for player, marginal in enumerate(marginals):
            sums[player] += marginal
        done += 1
        if len(history) > window:
            history.pop(0)
        if done >= max(n, 2 * window) and _converged(sums, done, history[0], window, tolerance):
            break
    return _averaged("gtg", sums, done, budget)


def _converged(
    sums: Sequence[int], done: int, earlier: Sequence[int], window: int, tolerance: Fraction
) -> bool:
    """Whether ``|φ_k - φ_{k-w}|_1 <= tolerance · |φ_k|_1`` with ``φ_k = sums / k``, exactly."""
    before = done - window
    # Multiply both sides by k·(k-w) to stay in integers: φ_k - φ_{k-w} = (S_k (k-w) - S_{k-w} k).
    change = sum(abs(now * before - then * done) for now, then in zip(sums, earlier, strict=True))
    size = sum(abs(now) for now in sums) * before
    return change * tolerance.denominator <= tolerance.numerator * size


def _averaged(method: str, sums: Sequence[int], done: int, budget: _Budget) -> ShapleyEstimate:
    """Per-player mean marginals over `done` permutations, or a budget error if there were none."""
    if done == 0:
        raise ValueError(
            f"{method}: the evaluation budget ran out before one permutation of "
            f"{budget.utility.n_players} players completed; raise max_evaluations"
        )
    return ShapleyEstimate(
        method=method,
        values=tuple(Fraction(total, done) for total in sums),
        evaluations=budget.spent,
        permutations=done,
    )


def estimate_shapley(
    utility: CoalitionUtility, seed: bytes | int, config: ValuationConfig | None = None
) -> ShapleyEstimate:
    """Value every player with the swarm's configured estimator: the one call a node makes.

    ``method="auto"`` computes exact values for up to ``config.exact_max_players`` players (at
    most `MAX_EXACT_PLAYERS`), and GTG-Shapley within ``config.budget(n)`` evaluations beyond.

    Parameters
    ----------
    utility
        The game.
    seed
        The round seed.
    config
        The swarm's valuation parameters; default `ValuationConfig()`.

    Returns
    -------
    ShapleyEstimate
        The values.

    Raises
    ------
    ValueError
        If the method is unknown or the parameters are invalid.
    """
    config = config or ValuationConfig()
    method = config.method
    if method == "auto":
        small = utility.n_players <= min(config.exact_max_players, MAX_EXACT_PLAYERS)
        method = "exact" if small else "gtg"
    estimator = ESTIMATORS.get(method)
    if estimator is None:
        raise ValueError(
            f"unknown valuation method {method!r}; choose one of auto, {', '.join(ESTIMATORS)}"
        )
    return estimator(utility, seed, config)


Estimator = Callable[[CoalitionUtility, bytes | int, ValuationConfig], ShapleyEstimate]

ESTIMATORS: dict[str, Estimator] = {
    "exact": lambda utility, _seed, _config: exact_shapley(utility),
    "tmc": lambda utility, seed, config: tmc_shapley(
        utility,
        seed,
        max_permutations=config.max_permutations,
        max_evaluations=config.budget(utility.n_players),
        truncation=config.truncation,
        antithetic=config.antithetic,
    ),
    "gtg": lambda utility, seed, config: gtg_shapley(
        utility,
        seed,
        max_permutations=config.max_permutations,
        max_evaluations=config.budget(utility.n_players),
        truncation=config.truncation,
        tolerance=config.tolerance,
        antithetic=config.antithetic,
    ),
    "loo": lambda utility, _seed, _config: leave_one_out(utility),
    "kernel": lambda utility, seed, config: kernel_shapley(
        utility, seed, max_evaluations=config.budget(utility.n_players)
    ),
}
"""Estimators by name, each called as ``estimator(utility, seed, config)``."""
