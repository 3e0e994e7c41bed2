"""Coalition utilities: a game `v(S)` over players ``0..n-1``, quantised, cached and counted.

A valuation is only as reproducible as the utilities it is built from. Every value that feeds an
estimator is therefore an `int` (an exact metric quantised by the task's quantum, see
`swarmchain.node.protocol.evaluation`), so every decision an estimator takes (truncation,
convergence) is exact integer arithmetic. Each distinct coalition is evaluated
once; `CoalitionUtility.evaluations` counts those real evaluations, the cost an estimator pays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction

UTILITY_SCALE = 1_000_000
"""Default quantisation: metrics are kept to 6 decimal places (accuracy 0.9375 -> 937500)."""


def quantise(value: float | Fraction, scale: int = UTILITY_SCALE) -> int:
    """Quantise a metric to an integer number of ``1/scale`` units, rounding half to even.

    The rounding is done on the exact rational value of the input, so the same float gives the same
    integer on every machine.

    Parameters
    ----------
    value
        A finite metric, e.g. an accuracy in [0, 1] or a negative loss.
    scale
        Units per 1.0; a positive integer.

    Returns
    -------
    int
        ``round(value * scale)``, computed exactly.

    Raises
    ------
    ValueError
        If the value is NaN or infinite, or the scale is not positive.
    """
    if scale <= 0:
        raise ValueError(f"quantisation scale must be positive, got {scale}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot quantise a non-finite metric: {value}")
    return round(Fraction(value) * scale)


def mask_members(mask: int) -> Iterator[int]:
    """The player indices whose bits are set in a coalition bitmask, in increasing order."""
    index = 0
    while mask:
        if mask & 1:
            yield index
        mask >>= 1
        index += 1


class CoalitionUtility:
    """A cached, counted game over players ``0..n_players-1``.

    Parameters
    ----------
    n_players
        Number of players; at least 1.
    evaluate
        The game: maps a coalition (a frozenset of player indices) to its quantised utility, an
        `int`. It is called at most once per distinct coalition.
    evaluate_many
        Optionally, the same game for many coalitions at once (their utilities, in order), when
        that is cheaper than one call each; `values_of_masks` uses it.

    Raises
    ------
    ValueError
        If `n_players` is not positive.
    """

    def __init__(
        self,
        n_players: int,
        evaluate: Callable[[frozenset[int]], int],
        evaluate_many: Callable[[Sequence[frozenset[int]]], Sequence[int]] | None = None,
    ) -> None:
        if n_players < 1:
            raise ValueError(f"a game needs at least one player, got n_players={n_players}")
        self._n_players = n_players
        self._evaluate = evaluate
        self._evaluate_many = evaluate_many
        self._cache: dict[int, int] = {}

    @property
    def n_players(self) -> int:
        """Number of players."""
        return self._n_players

    @property
    def grand_mask(self) -> int:
        """Bitmask of the grand coalition (every player)."""
        return (1 << self._n_players) - 1

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far (cache misses)."""
        return len(self._cache)

    def is_cached(self, mask: int) -> bool:
        """Whether the coalition with this bitmask has been evaluated already."""
        return mask in self._cache

    def value_of_mask(self, mask: int) -> int:
        """The utility of the coalition whose members are the set bits of `mask`.

        Parameters
        ----------
        mask
            Coalition bitmask: bit ``i`` set means player ``i`` is a member.

        Returns
        -------
        int
            The quantised utility.

        Raises
        ------
        ValueError
            If the mask names a player outside ``0..n_players-1``.
        TypeError
            If the game returns anything but an `int`.
        """
        cached = self._cache.get(mask)
        if cached is not None:
            return cached
        self._check_mask(mask)
        return self._store(mask, self._evaluate(frozenset(mask_members(mask))))

    def values_of_masks(self, masks: Iterable[int]) -> list[int]:
        """The utilities of many coalitions, evaluating the new ones together when the game can.

        The values and the evaluation count are those of `value_of_mask` called on each mask.

        Parameters
        ----------
        masks
            Coalition bitmasks (see `value_of_mask`).

        Returns
        -------
        list[int]
            The quantised utility of each mask, in order.

        Raises
        ------
        ValueError
            If a mask names a player outside ``0..n_players-1``.
        TypeError
            If the game returns anything but an `int`.
        """
        wanted = list(masks)
        new = [m for m in dict.fromkeys(wanted) if m not in self._cache]
        for mask in new:
            self._check_mask(mask)
        if self._evaluate_many is None:
            for mask in new:
                self.value_of_mask(mask)
        elif new:
            values = self._evaluate_many([frozenset(mask_members(m)) for m in new])
            if len(values) != len(new):
                raise TypeError(f"the game returned {len(values)} utilities for {len(new)}")
            for mask, value in zip(new, values, strict=True):
                self._store(mask, value)
        return [self._cache[m] for m in wanted]

    def _check_mask(self, mask: int) -> None:
        """Raise ValueError unless the mask names players of this game only."""
        if mask < 0 or mask > self.grand_mask:
            raise ValueError(
                f"coalition mask {mask:#x} names players outside 0..{self._n_players - 1}"
            )

    def _store(self, mask: int, value: object) -> int:
        """Check that a utility is an `int` and cache it."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"a utility must be a quantised int, got {type(value).__name__} {value!r} "
                "(pass the metric through incentives.quantise first)"
            )
        self._cache[mask] = value
        return value

    def __call__(self, coalition: Iterable[int]) -> int:
        """The utility of a coalition given as player indices.

        Raises
        ------
        ValueError
            If an index is outside ``0..n_players-1``.
        """
        mask = 0
        for player in coalition:
            if not 0 <= player < self._n_players:
                raise ValueError(f"player {player} is outside 0..{self._n_players - 1}")
            mask |= 1 << player
        return self.value_of_mask(mask)
