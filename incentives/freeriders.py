"""Spotting free-riders among a round's revealed updates, so verification can reject them.

A free-rider wants the reward without the training. It can send the base model back (a zero
delta), or a copy of someone else's update. Commit-reveal already stops copying a stranger's
update of the same round: commitments are fixed before any update is revealed, so a byte-identical
pair means the two submitters shared the update before committing, i.e. one owner behind two
identities. Either way the update adds nothing of its own, so both kinds are rejected; a rejected
submitter gets no reward and is slashable on chain (`SlashReason.Rejected`).

Zero deltas would earn exactly 0 anyway (see `swarmchain.incentives.game`); rejecting them also
costs the free-rider its slashed stake. Updates are compared on the task's fixed-point grid, the
same integers the aggregation uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from swarmchain.node.aggregation.fixed_point import Batch, Update, quantise


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
        model sent back") or byte-identical on the grid to another update ("copy of update j").
        Every member of a group of copies is listed. Empty when everyone did their own work.

    Raises
    ------
    ValueError
        If the updates do not share one layout (verification rejects those first).
    """
    if not updates:
        return {}
    return free_riders_in(quantise(updates, [1] * len(updates), frac_bits))


def free_riders_in(batch: Batch) -> dict[int, str]:
    """`free_riders` of updates already quantised (the round's one quantisation).

    Parameters
    ----------
    batch
        The round's revealed updates on the task's grid, row ``i`` = update ``i``; the weights
        are not read.

    Returns
    -------
    dict[int, str]
        As for `free_riders`, indexed by row.
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
    return reasons
