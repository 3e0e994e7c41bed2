"""Spotting free-riders among a round's revealed updates, so verification can reject them.

A free-rider wants the reward without the training. It can send the base model back (a zero
delta), a copy of someone else's update, or replay a public vector: the step the swarm took last
round. Commit-reveal already stops copying a stranger's update of the same round: commitments
are fixed before any update is revealed, so a (nearly) identical pair means the two submitters
shared the update, or the data and the training, before committing, i.e. one owner behind two
identities. Each kind adds nothing of its own, so each is rejected; a rejected submitter gets no
reward and is slashable on chain (`SlashReason.Rejected`).

"Nearly" is a cosine of at least `COPY_COSINE` (0.99), decided exactly on the task's
fixed-point grid (the same integers the aggregation uses) from exact inner products, so every
node decides alike. Honest members stay far below it: over 30 rounds of 10 members and 3 seeds
of the default task, the largest cosine of an honest update with another member's update of the
round was 0.73 under Dirichlet(0.5) label skew and 0.93 with IID data, and with the previous
step 0.74 and 0.95 (`scripts/bench_farming.py`). A replay with noise added to pass the threshold
is no longer the public vector, and Shapley valuation prices what it does.

Zero deltas would earn exactly 0 anyway (see `swarmchain.incentives.game`); rejecting them also
costs the free-rider its slashed stake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Final

from swarmchain.node.aggregation.fixed_point import (
    Batch,
    I32Array,
    Update,
    exact_inner,
    exact_sq_norms,
    quantise,
)

COPY_COSINE: Final = Fraction(99, 100)  # an update this close in direction to another is a copy


def free_riders(updates: Sequence[Update], frac_bits: int) -> dict[int, str]:
    """The updates that contribute nothing of their own, with the reason.

    Parameters
    ----------
    updates
        The round's revealed updates (float32 deltas), in aggregation order.
    frac_bits
        The task's fixed-point grid, ``spec.fixed_point_bits``.

    Returns
    -------
    dict[int, str]
        Index -> reason, for every update that is all zeros on the grid ("zero update: the base
        model sent back"), byte-identical on the grid to another update ("copy of update j") or
        nearly so (a cosine of at least `COPY_COSINE`). Every member of a group of copies is
        listed. Empty when everyone did their own work.

    Raises
    ------
    ValueError
        If the updates do not share one layout (verification rejects those first).
    """
    if not updates:
        return {}
    return free_riders_in(quantise(updates, [1] * len(updates), frac_bits))


def free_riders_in(batch: Batch, step: I32Array | None = None) -> dict[int, str]:
    """`free_riders` of updates already quantised (the round's one quantisation).

    Parameters
    ----------
    batch
        The round's revealed updates on the task's grid, row ``i`` = update ``i``; the weights
        are not read.
    step
        The ``(d,)`` grid vector of the step that produced the round's base (the previous
        aggregate), if there was one.

    Returns
    -------
    dict[int, str]
        As for `free_riders`, indexed by row, and also every update whose cosine with another
        update or with ``step`` is at least `COPY_COSINE`.
    """
    reasons: dict[int, str] = {}
    first_with: dict[bytes, int] = {}
    for i in range(batch.n):
        row = batch.values[i]
        if not row.any():
            reasons[i] = "zero update: the base model sent back"
            continue
        digest = hashlib.sha256(row.tobytes()).digest()
        original = first_with.setdefault(digest, i)
        if original != i:
            reasons[i] = f"copy of update {original}"
            reasons.setdefault(original, f"copy of update {i}")
    live = [i for i in range(batch.n) if i not in reasons]
    if not live:
        return reasons
    # The batch caches its Gram matrix, and the aggregation's batch of these rows reuses it.
    gram = batch.gram
    near = f"(cosine >= {float(COPY_COSINE)})"
    for a, i in enumerate(live):
        for j in live[a + 1 :]:
            if _parallel(gram[i][j], gram[i][i], gram[j][j]):
                reasons.setdefault(i, f"nearly a copy of update {j} {near}")
                reasons.setdefault(j, f"nearly a copy of update {i} {near}")
    if step is not None and step.any():
        with_step = exact_inner(batch.values[live], step[None, :])
        (step_norm,) = exact_sq_norms(step[None, :])
        for a, i in enumerate(live):
            if _parallel(with_step[a][0], gram[i][i], step_norm):
                reasons.setdefault(i, f"replays the previous round's aggregate step {near}")
    return reasons


def _parallel(inner: int, norm_a: int, norm_b: int) -> bool:
    """``cos(a, b) >= COPY_COSINE`` from exact squared norms and inner product (integers)."""
    t = COPY_COSINE
    return inner > 0 and inner * inner * t.denominator**2 >= t.numerator**2 * norm_a * norm_b
