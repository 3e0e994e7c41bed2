"""The round's valuation game: what a coalition of contributors is worth on the reference set.

``v(S)`` is the task's utility (accuracy or negative loss, quantised to the task's quantum) of the
checkpoint ``base + aggregate(S)`` on the reference set, where ``aggregate(S)`` runs the swarm's own
pre-aggregation steps and robust rule, in fixed point, over the round's accepted updates **with
every contributor outside S replaced by a zero delta** (as if it had sent back the base model),
keeping its sample count. Everything is a pure function of public inputs, so every peer and every
auditor computes the same integers.

Why absent members count as zero deltas, rather than being dropped from the aggregation:

- Free-riders get exactly 0. A node that submits the base model has a zero delta, so adding it to
  any coalition leaves the aggregation input bit for bit unchanged: it is a dummy player, whose
  Shapley value is 0 under every rule, not merely about 0.
- Splitting does not pay. With FedAvg the coalition's step is ``Σ_{i∈S} n_i Δ_i / Σ_all n_j``; a
  node that splits its data over two identities contributes the same sum either way, and for a
  utility that is quadratic in the step the two identities' Shapley values add up exactly to the
  single node's value (the interaction between the halves is shared between them). Dropping
  absent members instead renormalises every small coalition to a full-size step, which rewards
  identities for merely existing.
- Byzantine bounds hold for every coalition. Rules such as Krum and Bulyan need ``n >= 2f + 3``
  or ``n >= 4f + 3`` inputs; the zero-filled batch always has the round's full n.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import torch

from swarmchain.incentives.utility import CoalitionUtility
from swarmchain.node.aggregation.fixed_point import (
    Batch,
    IntArray,
    Layout,
    Update,
    quantise,
    quantise_vector,
)
from swarmchain.node.aggregation.pipeline import aggregate_batch, apply_steps
from swarmchain.node.aggregation.registry import RULES, STEPS, resolve_params
from swarmchain.node.learning.data import Dataset
from swarmchain.node.learning.training import apply_delta
from swarmchain.node.protocol.evaluation import exact_metrics, quantised_utility
from swarmchain.node.protocol.task import TaskSpec


def round_utility(
    spec: TaskSpec,
    base: Mapping[str, torch.Tensor],
    updates: Sequence[Update],
    num_samples: Sequence[int],
    reference: Dataset,
    *,
    seed: int,
    center: Update | None = None,
    device: torch.device | None = None,
) -> CoalitionUtility:
    """The round's game over its accepted updates, cached and counted.

    Parameters
    ----------
    spec
        The task: aggregation rule and steps, fixed-point grid, model, and valuation utility.
    base
        The round's base checkpoint (weights the updates are deltas from).
    updates
        The accepted updates (float32 deltas), in the order the round aggregates them; player
        ``i`` is ``updates[i]``.
    num_samples
        Each update's revealed sample count.
    reference
        The task's reference set.
    seed
        The round seed, exactly as passed to `swarmchain.node.aggregation.pipeline.aggregate`.
    center
        The centre passed to that aggregation (centered clipping), if any.
    device
        Where the exact evaluation's integer products run (CPU or CUDA: the same bytes).

    Returns
    -------
    CoalitionUtility
        ``v(S)`` for coalitions of ``range(len(updates))``.

    Raises
    ------
    ValueError
        If there are no updates, or the updates, sample counts and base do not fit together.
    """
    batch = quantise(updates, num_samples, spec.fixed_point_bits)
    grid_center = (
        None if center is None else quantise_vector(center, batch.layout, spec.fixed_point_bits)
    )
    return batch_utility(spec, base, batch, reference, seed=seed, center=grid_center, device=device)


def batch_utility(
    spec: TaskSpec,
    base: Mapping[str, torch.Tensor],
    batch: Batch,
    reference: Dataset,
    *,
    seed: int,
    center: IntArray | None = None,
    device: torch.device | None = None,
) -> CoalitionUtility:
    """`round_utility` of updates already quantised: the batch the round aggregated.

    Parameters
    ----------
    spec, base, reference, seed, device
        As for `round_utility`.
    batch
        The accepted updates on the task's grid, weighted by their sample counts, as passed to
        `swarmchain.node.aggregation.pipeline.aggregate_batch`; player ``i`` is row ``i``.
    center
        The ``(d,)`` int64 grid centre passed to that aggregation, if any.

    Returns
    -------
    CoalitionUtility
        ``v(S)`` for coalitions of ``range(batch.n)``.

    Raises
    ------
    ValueError
        If the batch is on another grid than the task's, or the base does not fit its layout.
    """
    if batch.frac_bits != spec.fixed_point_bits:
        raise ValueError(
            f"the batch is on a 2**-{batch.frac_bits} grid, the task's is "
            f"2**-{spec.fixed_point_bits}"
        )
    gram = batch.gram if _rule_reads_gram(spec) else None
    base_state = {name: tensor.detach().cpu().float() for name, tensor in base.items()}
    if Layout.of(base_state) != batch.layout:
        raise ValueError("the base checkpoint's tensors differ from the updates' names or shapes")

    def utility_of(delta: Mapping[str, torch.Tensor]) -> int:
        state = apply_delta(base_state, delta)
        metrics = exact_metrics(spec, [state], reference, device=device)[0]
        return quantised_utility(metrics, spec.valuation)

    def evaluate_coalition(coalition: frozenset[int]) -> int:
        masked = _zero_filled(batch, coalition, gram)
        result = aggregate_batch(masked, spec.aggregation, seed=seed, center=center)
        return utility_of(result.delta)

    together = _coalition_batch(spec)
    if together is None:
        return CoalitionUtility(batch.n, evaluate_coalition)

    def evaluate_coalitions(coalitions: Sequence[frozenset[int]]) -> list[int]:
        values: list[int] = []
        step = max(1, _CELLS_AT_ONCE // batch.dim)
        weighed = apply_steps(batch, spec.aggregation.pre, seed=seed)
        flat_base = np.concatenate([base_state[n].reshape(-1).numpy() for n in batch.layout.names])
        for first in range(0, len(coalitions), step):
            grids = _together(spec, together, weighed, coalitions[first : first + step], center)
            # base + dequantise(grid) for every coalition at once: the same float32 operations,
            # element by element, as `utility_of(dequantise(...))`, so the same bits.
            states = flat_base + (grids * (1.0 / (1 << batch.frac_bits))).astype(np.float32)
            metrics = exact_metrics(spec, _stacked(states, batch.layout), reference, device=device)
            values.extend(quantised_utility(m, spec.valuation) for m in metrics)
        return values

    return CoalitionUtility(batch.n, evaluate_coalition, evaluate_coalitions)


def _coalition_batch(spec: TaskSpec) -> Callable[..., IntArray] | None:
    """The rule's `coalition_batch`, where many coalitions can be aggregated at once: after
    steps that only reweigh (they act the same on every zero-filled coalition); else None."""
    config = spec.aggregation
    if all(STEPS[p.name].weights_only for p in config.pre):
        return RULES[config.rule].coalition_batch
    return None


def _together(
    spec: TaskSpec,
    together: Callable[..., IntArray],
    batch: Batch,
    coalitions: Sequence[frozenset[int]],
    center: IntArray | None,
) -> IntArray:
    """``(len(coalitions), d)`` aggregates of the zero-filled coalitions, by ``together``."""
    config = spec.aggregation
    rule = RULES[config.rule]
    params = resolve_params(rule.params, config.params, f"rule {config.rule!r}")
    return together(batch, coalitions, **params, **({"center": center} if rule.uses_center else {}))


def _stacked(states: npt.NDArray[np.float32], layout: Layout) -> dict[str, npt.NDArray[np.float32]]:
    """The rows of ``states`` ``(K, d)`` as ``(K, *shape)`` arrays by name (views, not copies)."""
    k = states.shape[0]
    return {
        name: states[:, start:stop].reshape(k, *shape)
        for name, shape, start, stop in layout.segments()
    }


_CELLS_AT_ONCE = 1 << 18  # coalitions aggregated together hold about this many coordinates


def _zero_filled(batch: Batch, coalition: frozenset[int], gram: list[list[int]] | None) -> Batch:
    """The batch with every row outside the coalition set to zero (weights and order kept)."""
    values = np.zeros_like(batch.values)
    members = sorted(coalition)
    values[members] = batch.values[members]
    masked_gram = (
        None
        if gram is None
        else [
            [gram[i][j] if i in coalition and j in coalition else 0 for j in range(batch.n)]
            for i in range(batch.n)
        ]
    )
    return Batch(
        values, batch.weights.copy(), batch.layout, batch.frac_bits, batch.origin, masked_gram
    )


def _rule_reads_gram(spec: TaskSpec) -> bool:
    """Whether the rule works from pairwise inner products (then compute them once per round).

    Without pre-aggregation steps the rule sees the zero-filled rows themselves, whose inner
    products are the round's with the absent rows and columns zeroed, so they can be reused.
    """
    return not spec.aggregation.pre and RULES[spec.aggregation.rule].reads_gram
