"""The names a task spec may use for aggregation rules and pre-aggregation steps.

A thin table in the style of Flower's strategies: each entry points at a pure function and lists
the parameters it takes, with their types, defaults and lower bounds, so a task spec can be
validated before any update arrives. It also declares what each rule can do, so that callers
outside this package ask the table rather than branch on rule names. Functions are named by
import path and imported on first use, so reading the table (a task spec does) imports no
NumPy or torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from swarmchain.node.aggregation.fixed_point import Batch, IntArray, RuleOutput

ParamValue = bool | int | float | None


@dataclass(frozen=True)
class Param:
    """One parameter of a rule or step."""

    kind: type[bool] | type[int] | type[float]  # ints reject floats; floats accept ints
    default: ParamValue  # used when the spec omits it; None with required=False means "unset"
    minimum: float  # inclusive lower bound
    required: bool = False  # the spec must give a value
    strict_minimum: bool = False  # the bound is exclusive (e.g. tau > 0)
    maximum: float | None = None  # exclusive upper bound, if any


def _load(target: str) -> Callable[..., Any]:
    """The function a ``"module:name"`` target names, importing its module if needed."""
    module, _, name = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


@dataclass(frozen=True)
class Rule:
    """An aggregation rule: ``fn(batch, **params) -> RuleOutput``."""

    target: str  # "module:function" of `fn`
    params: Mapping[str, Param]
    uses_center: bool = False  # takes the caller's centre (the previous aggregate)
    # Works from the rows' pairwise inner products (`Batch.gram`) alone, so a caller that
    # aggregates many zero-filled copies of one batch can compute them once and mask them.
    reads_gram: bool = False
    # "module:function" of ``coalition_batch(batch, coalitions, **params[, center]) -> (K, d)``:
    # grid aggregates of the batch with each coalition's outsiders zero-filled, all at once;
    # None: one at a time.
    coalition_target: str | None = None
    # Given no parameters and no steps, `kernels.weighted_mean` computes the rule from the raw
    # updates in one read: weighted by sample counts (True) or by ones (False); None: no such path.
    streaming_mean: bool | None = None

    @property
    def fn(self) -> Callable[..., RuleOutput]:
        """The rule's function."""
        return _load(self.target)

    @property
    def coalition_batch(self) -> Callable[..., IntArray] | None:
        """The rule's all-coalitions-at-once function, if it has one."""
        return None if self.coalition_target is None else _load(self.coalition_target)


@dataclass(frozen=True)
class Step:
    """A pre-aggregation step: ``fn(batch, **params) -> Batch``."""

    target: str  # "module:function" of `fn`
    params: Mapping[str, Param]
    uses_seed: bool = False  # takes the round seed
    # Changes only the weights, as a function of the weights alone: it acts the same on every
    # zero-filled coalition of a batch (they keep every row's weight).
    weights_only: bool = False

    @property
    def fn(self) -> Callable[..., Batch]:
        """The step's function."""
        return _load(self.target)


_F = Param(int, None, 0, required=True)  # assumed number of Byzantine inputs

RULES: Final[Mapping[str, Rule]] = {
    "mean": Rule("swarmchain.node.aggregation.mean:mean", {}, streaming_mean=False),
    "fedavg": Rule("swarmchain.node.aggregation.mean:weighted_mean", {}, streaming_mean=True),
    "median": Rule("swarmchain.node.aggregation.median:median", {}),
    "trimmed_mean": Rule(
        "swarmchain.node.aggregation.median:trimmed_mean",
        {"beta": Param(float, 0.1, 0.0, maximum=0.5)},
    ),
    "geometric_median": Rule(
        "swarmchain.node.aggregation.geometric_median:geometric_median",
        {
            "iterations": Param(int, 8, 1),
            "nu": Param(float, 1e-6, 0.0, strict_minimum=True),
            "weighted": Param(bool, False, 0.0),
        },
    ),
    "krum": Rule("swarmchain.node.aggregation.krum:krum", {"f": _F}, reads_gram=True),
    "multi_krum": Rule(
        "swarmchain.node.aggregation.krum:multi_krum",
        {"f": _F, "m": Param(int, None, 1)},
        reads_gram=True,
    ),
    "bulyan": Rule("swarmchain.node.aggregation.bulyan:bulyan", {"f": _F}, reads_gram=True),
    "centered_clipping": Rule(
        "swarmchain.node.aggregation.centered_clipping:centered_clipping",
        {
            "tau": Param(float, None, 0.0, required=True, strict_minimum=True),
            "iterations": Param(int, 3, 1),
            "weighted": Param(bool, False, 0.0),
            "screen": Param(bool, False, 0.0),
        },
        uses_center=True,
        coalition_target="swarmchain.node.aggregation.centered_clipping:centered_clipping_coalitions",
    ),
}
DEFAULT_RULE: Final = "centered_clipping"  # what a task spec gets when it names no rule

STEPS: Final[Mapping[str, Step]] = {
    "norm_clipping": Step(
        "swarmchain.node.aggregation.norm_clipping:norm_clipping",
        {"max_norm": Param(float, None, 0.0, required=True, strict_minimum=True)},
    ),
    "bucketing": Step(
        "swarmchain.node.aggregation.bucketing:bucketing", {"s": Param(int, 2, 1)}, uses_seed=True
    ),
    "nnm": Step("swarmchain.node.aggregation.nnm:nearest_neighbour_mixing", {"f": _F}),
    "sample_cap": Step(
        "swarmchain.node.aggregation.sample_cap:sample_cap",
        {"factor": Param(float, 2.0, 1.0)},
        weights_only=True,
    ),
}


def resolve_params(
    table: Mapping[str, Param], given: Mapping[str, Any], where: str
) -> dict[str, ParamValue]:
    """Check ``given`` against a parameter table and fill in defaults.

    Parameters
    ----------
    table
        The rule's or step's parameters.
    given
        Values from the task spec.
    where
        Name used in messages, e.g. ``"rule 'krum'"``.

    Returns
    -------
    dict[str, int | float | None]
        Every parameter of the table with its value.

    Raises
    ------
    ValueError
        Unknown or missing parameter, wrong type, or out of range; the message names it.
    """
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ValueError(f"{where} has no parameter {unknown[0]!r} (known: {sorted(table)})")
    out: dict[str, ParamValue] = {}
    for name, param in table.items():
        if name not in given:
            if param.required:
                raise ValueError(f"{where} needs parameter {name!r}")
            out[name] = param.default
            continue
        value = given[name]
        if value is None and param.default is None and not param.required:
            out[name] = None  # an optional parameter left unset, written out explicitly
            continue
        if param.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where} parameter {name!r} must be bool, got {value!r}")
            out[name] = value
            continue
        ok_type = isinstance(value, int) if param.kind is int else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            raise ValueError(
                f"{where} parameter {name!r} must be {param.kind.__name__}, got {value!r}"
            )
        low_ok = value > param.minimum if param.strict_minimum else value >= param.minimum
        high_ok = param.maximum is None or value < param.maximum
        if not (math.isfinite(value) and low_ok and high_ok):
            bound = f"{'>' if param.strict_minimum else '>='} {param.minimum}"
            if param.maximum is not None:
                bound += f" and < {param.maximum}"
            raise ValueError(f"{where} parameter {name!r} must be {bound}, got {value!r}")
        out[name] = float(value) if param.kind is float else int(value)
    return out
