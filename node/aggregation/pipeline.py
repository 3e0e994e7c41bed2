"""Run a task's aggregation: quantise, pre-aggregation steps, robust rule, dequantise.

`aggregate` is what a node (and an auditor) calls on the accepted updates of a round; its result
is a pure function of the updates, their sample counts, the task spec, the round seed and the
optional centre, identical bit for bit on every machine. `aggregate_batch` takes an already
quantised `Batch`, so that Shapley valuation can aggregate many subsets of one batch without
quantising again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    IntArray,
    Layout,
    RuleOutput,
    Update,
    dequantise,
    quantise,
    quantise_vector,
)
from swarmchain.node.aggregation.mean import mean_of_updates
from swarmchain.node.aggregation.registry import RULES, STEPS, resolve_params

if TYPE_CHECKING:
    from swarmchain.node.protocol.task import AggregationSpec, StepSpec, TaskSpec


@dataclass(frozen=True)
class AggregationResult:
    """The outcome of one aggregation."""

    delta: dict[str, torch.Tensor]  # aggregated update, float32 CPU tensors, sorted names
    grid: IntArray  # (d,) int64 the same aggregate on the fixed-point grid
    selected: tuple[int, ...]  # input indices whose content reached the aggregate
    screened_out: tuple[int, ...]  # inputs the rule's screening rejected one by one
    set_aside: tuple[int, ...]  # inputs left out of the aggregate without being rejected

    @cached_property
    def digest(self) -> str:
        """SHA-256 hex of `grid` (little-endian int64): equal on every machine.

        Computed on first use: hashing a million coordinates costs about as much as FedAvg
        itself, and only checks that compare aggregates (tests, re-derivations) read it.
        """
        return grid_digest(self.grid)


def aggregate(
    spec: TaskSpec,
    updates: Sequence[Update],
    num_samples: Sequence[int],
    *,
    seed: int = 0,
    center: Update | None = None,
) -> AggregationResult:
    """Aggregate float32 updates with the task's rule, deterministically.

    Parameters
    ----------
    spec
        The task; its ``aggregation`` and ``fixed_point_bits`` fields are used.
    updates
        Deltas (local weights minus base weights) as named float32 CPU tensors.
    num_samples
        Positive sample count of each update.
    seed
        Non-negative round seed from chain state (used by bucketing).
    center
        Starting point for rules that take one (centered clipping), e.g. the previous round's
        aggregated delta; zero when omitted.

    Returns
    -------
    AggregationResult
        The aggregate and which inputs the rule kept or screened out (indices into ``updates``).

    Raises
    ------
    ValueError
        Bad inputs (shapes, NaN, weights) or a rule's Byzantine bound, e.g.
        "Bulyan needs n >= 4f + 3, got n=7, f=2".
    """
    config = spec.aggregation
    rule = RULES.get(config.rule)
    streaming = None if rule is None or config.pre or config.params else rule.streaming_mean
    if streaming is not None:
        # The plain means need no batch: each update is read once and summed on the grid.
        layout, out, delta = mean_of_updates(
            updates, num_samples, spec.fixed_point_bits, weighted=streaming
        )
        if center is not None:  # unused by the means, but checked as on the batch path
            quantise_vector(center, layout, spec.fixed_point_bits)
        rows = tuple((i,) for i in range(len(updates)))
        return _result(out, rows, rows, layout, spec.fixed_point_bits, delta)
    batch = quantise(updates, num_samples, spec.fixed_point_bits)
    grid_center = (
        None if center is None else quantise_vector(center, batch.layout, spec.fixed_point_bits)
    )
    return aggregate_batch(batch, config, seed=seed, center=grid_center)


def aggregate_batch(
    batch: Batch,
    config: AggregationSpec,
    *,
    seed: int = 0,
    center: IntArray | None = None,
) -> AggregationResult:
    """Aggregate an already quantised batch (see `aggregate`).

    Parameters
    ----------
    batch
        Quantised updates; ``batch.origin`` gives the input indices reported in the result.
    config
        Rule name, rule parameters and pre-aggregation steps.
    seed
        Non-negative round seed.
    center
        ``(d,)`` int64 grid centre for rules that take one.

    Returns
    -------
    AggregationResult
        As for `aggregate`.
    """
    current = apply_steps(batch, config.pre, seed=seed)
    if config.rule not in RULES:
        raise ValueError(f"unknown aggregation rule {config.rule!r} (known: {sorted(RULES)})")
    rule = RULES[config.rule]
    params = resolve_params(rule.params, config.params, f"rule {config.rule!r}")
    out = rule.fn(current, **params, **({"center": center} if rule.uses_center else {}))
    return _result(out, batch.origin, current.origin, batch.layout, batch.frac_bits)


def _result(
    out: RuleOutput,
    inputs: tuple[tuple[int, ...], ...],
    rows: tuple[tuple[int, ...], ...],
    layout: Layout,
    frac_bits: int,
    delta: dict[str, torch.Tensor] | None = None,
) -> AggregationResult:
    """The result of a rule whose row ``k`` came from the inputs ``rows[k]``; ``delta`` is its
    aggregate dequantised, where the rule gave it already."""
    everyone = sorted({o for origin in inputs for o in origin})
    one_to_one = all(len(origin) == 1 for origin in rows)
    aside = sorted({o for row in out.set_aside for o in rows[row]})
    if out.selected is None:
        selected, screened = sorted(set(everyone) - set(aside)), []
    else:
        selected = sorted({o for row in out.selected for o in rows[row]})
        screened = sorted(set(everyone) - set(selected)) if one_to_one else []
    return AggregationResult(
        delta=dequantise(out.aggregate, layout, frac_bits) if delta is None else delta,
        grid=out.aggregate,
        selected=tuple(selected),
        screened_out=tuple(screened),
        set_aside=tuple(aside),
    )


def apply_steps(batch: Batch, steps: Sequence[StepSpec], *, seed: int = 0) -> Batch:
    """Run pre-aggregation ``steps`` on ``batch``, in order.

    Parameters
    ----------
    batch
        Quantised updates.
    steps
        The steps and their parameters.
    seed
        Non-negative round seed (for steps that draw, e.g. bucketing).

    Returns
    -------
    Batch
        The batch the rule aggregates.

    Raises
    ------
    ValueError
        An unknown step or a step's bad parameters.
    """
    for step in steps:
        if step.name not in STEPS:
            raise ValueError(f"unknown pre-aggregation step {step.name!r} (known: {sorted(STEPS)})")
        entry = STEPS[step.name]
        step_params = resolve_params(entry.params, step.params, f"step {step.name!r}")
        if entry.uses_seed:
            step_params["seed"] = seed
        batch = entry.fn(batch, **step_params)
    return batch


def grid_digest(grid: IntArray) -> str:
    """SHA-256 hex of a grid vector's little-endian int64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(grid, dtype="<i8").data).hexdigest()  # no copy
