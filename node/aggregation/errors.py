"""Why a round's inputs cannot be aggregated, when nobody's code is at fault.

A round whose accepted updates miss a bound of the task's rule (too few of them for the assumed
number of Byzantine inputs, or sample counts too heavy to sum exactly) keeps its base and pays
nothing. Every other exception from a rule is a bug and must surface, not become such a round.
"""

from __future__ import annotations


class AggregationBoundError(ValueError):
    """The round's inputs exceed a bound that exact aggregation needs (e.g. total weight)."""


class ByzantineBoundError(AggregationBoundError):
    """Too few inputs for a rule's assumed number of Byzantine inputs.

    Parameters
    ----------
    rule
        The rule or step as its paper names it, e.g. ``"Bulyan"``.
    bound
        The bound it needs, e.g. ``"n >= 4f + 3"``.
    n
        Inputs it got.
    f
        Byzantine inputs it assumes.
    **more
        Further parameters the bound involves (Multi-Krum's ``m``).
    """

    def __init__(self, rule: str, bound: str, n: int, f: int, **more: int) -> None:
        self.rule = rule
        self.bound = bound
        self.n = n
        self.f = f
        self.more = dict(more)
        got = ", ".join(f"{name}={value}" for name, value in {"n": n, "f": f, **more}.items())
        super().__init__(f"{rule} needs {bound}, got {got}")
