"""Split a dataset among nodes: IID, Dirichlet label skew, shards, quantity skew.

Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
Classification", 2019 (Dirichlet label skew); McMahan et al., AISTATS 2017 (label-sorted shards);
Li, Diao, Chen, He, "Federated Learning on Non-IID Data Silos: An Experimental Study", ICDE 2022
(quantity skew).

Every partitioner is seeded (a NumPy PCG64 generator) and returns one sorted index array per
node; together they cover each example at most once.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from swarmchain.node.learning.data import DataError

Indices = npt.NDArray[np.int64]
_MAX_ATTEMPTS: Final = 1000


def iid_partition(num_examples: int, num_parts: int, seed: int) -> list[Indices]:
    """Shuffle and deal the examples into ``num_parts`` near-equal parts.

    Parameters
    ----------
    num_examples
        Dataset size.
    num_parts
        Number of nodes (``1 <= num_parts <= num_examples``).
    seed
        Generator seed.

    Returns
    -------
    list[numpy.ndarray]
        Sorted example indices of each part.
    """
    _check_parts(num_examples, num_parts)
    perm = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(part) for part in np.array_split(perm, num_parts)]


def dirichlet_partition(
    labels: npt.ArrayLike, num_parts: int, alpha: float, seed: int, *, min_size: int = 1
) -> list[Indices]:
    """Label skew: each class is split among the parts by proportions drawn from Dir(alpha).

    Small ``alpha`` gives each node few classes; large ``alpha`` approaches IID. Draws repeat
    until every part holds at least ``min_size`` examples.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    num_parts
        Number of nodes.
    alpha
        Dirichlet concentration (> 0).
    seed
        Generator seed.
    min_size
        Smallest acceptable part.

    Returns
    -------
    list[numpy.ndarray]
        Sorted example indices of each part.

    Raises
    ------
    DataError
        Bad arguments, or no draw met ``min_size`` within 1,000 attempts.
    """
    y = np.asarray(labels)
    _check_parts(len(y), num_parts)
    if not alpha > 0:
        raise DataError(f"Dirichlet partition needs alpha > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_ATTEMPTS):
        parts: list[list[int]] = [[] for _ in range(num_parts)]
        for cls in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == cls))
            shares = rng.dirichlet(np.full(num_parts, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for part, chunk in zip(parts, np.split(members, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise DataError(
        f"no Dirichlet(alpha={alpha}) draw gave every one of {num_parts} parts "
        f"{min_size} examples in {_MAX_ATTEMPTS} attempts",
        hint="raise alpha or lower min_size",
    )


def shard_partition(
    labels: npt.ArrayLike, num_parts: int, shards_per_part: int, seed: int
) -> list[Indices]:
    """Pathological label skew: sort by label, cut into shards, give each part a few shards.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    num_parts
        Number of nodes.
    shards_per_part
        Shards each node receives (>= 1).
    seed
        Generator seed.

    Returns
    -------
    list[numpy.ndarray]
        Sorted example indices of each part.
    """
    y = np.asarray(labels)
    if shards_per_part < 1:
        raise DataError(f"shard partition needs shards_per_part >= 1, got {shards_per_part}")
    _check_parts(len(y), num_parts * shards_per_part)
    shards = np.array_split(np.argsort(y, kind="stable"), num_parts * shards_per_part)
    order = np.random.default_rng(seed).permutation(len(shards))
    return [
        np.sort(np.concatenate([shards[s] for s in order[k::num_parts]])).astype(np.int64)
        for k in range(num_parts)
    ]


def quantity_skew_partition(
    num_examples: int, num_parts: int, alpha: float, seed: int, *, min_size: int = 1
) -> list[Indices]:
    """Quantity skew: part sizes drawn from Dir(alpha), contents IID.

    Parameters
    ----------
    num_examples
        Dataset size.
    num_parts
        Number of nodes.
    alpha
        Dirichlet concentration of the sizes (> 0).
    seed
        Generator seed.
    min_size
        Smallest acceptable part.

    Returns
    -------
    list[numpy.ndarray]
        Sorted example indices of each part.
    """
    _check_parts(num_examples, num_parts)
    if not alpha > 0:
        raise DataError(f"quantity skew needs alpha > 0, got {alpha}")
    if num_parts * min_size > num_examples:
        raise DataError(
            f"{num_parts} parts of >= {min_size} need more than {num_examples} examples"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_examples)
    spare = num_examples - num_parts * min_size
    sizes = min_size + np.floor(rng.dirichlet(np.full(num_parts, alpha)) * spare).astype(np.int64)
    sizes[: spare - int(sizes.sum() - num_parts * min_size)] += 1  # hand out the remainder
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part).astype(np.int64) for part in np.split(perm, cuts)]


SCHEMES: Final = ("iid", "dirichlet", "shards", "quantity")


def partition(
    labels: npt.ArrayLike,
    scheme: str,
    num_parts: int,
    seed: int,
    *,
    alpha: float = 0.5,
    shards_per_part: int = 2,
    min_size: int = 1,
) -> list[Indices]:
    """Partition by scheme name.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    scheme
        ``iid``, ``dirichlet`` (uses alpha, min_size), ``shards`` (shards_per_part) or
        ``quantity`` (alpha, min_size).
    num_parts
        Number of nodes.
    seed
        Generator seed.
    alpha, shards_per_part, min_size
        Scheme parameters, as in the scheme's own function.

    Returns
    -------
    list[numpy.ndarray]
        Sorted example indices of each part.

    Raises
    ------
    DataError
        Unknown scheme or bad parameters.
    """
    y = np.asarray(labels)
    if scheme == "iid":
        return iid_partition(len(y), num_parts, seed)
    if scheme == "dirichlet":
        return dirichlet_partition(y, num_parts, alpha, seed, min_size=min_size)
    if scheme == "shards":
        return shard_partition(y, num_parts, shards_per_part, seed)
    if scheme == "quantity":
        return quantity_skew_partition(len(y), num_parts, alpha, seed, min_size=min_size)
    raise DataError(f"unknown partition scheme {scheme!r} (known: {list(SCHEMES)})")


def _check_parts(num_examples: int, num_parts: int) -> None:
    """Raise DataError unless ``1 <= num_parts <= num_examples``."""
    if not 1 <= num_parts <= num_examples:
        raise DataError(f"cannot split {num_examples} examples into {num_parts} parts")
