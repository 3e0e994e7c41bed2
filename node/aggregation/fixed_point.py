"""The fixed-point core: every aggregation rule computes on exact integers.

Floating-point sums depend on the order of their terms, and BLAS libraries pick that order by
thread count and CPU. Peers that must attest the same checkpoint therefore never aggregate in
floating point. An update (a delta of named float32 tensors) is quantised once to integers on a
grid of ``2**-frac_bits``::

    q = clamp(round_half_even(x * 2**frac_bits), -COORD_BOUND, COORD_BOUND)

The multiplication by a power of two is exact in float32 and the rounding is IEEE-754's, so every
machine gets the same integers. From then on each rule works on those integers: sums, sorts,
squared distances and weights are exact, decisions compare exact integers, and ties are broken by
the content hash of the inputs, never by their order of arrival. The result is turned back into
float32 once, again exactly reproducibly.

Overflow proof (every bound below is checked where the value enters):

* ``|q| <= COORD_BOUND = 2**30`` for every coordinate of every input and of every intermediate
  aggregate (each rule's output is a convex combination of its inputs, rounded to the nearest
  integer, so it cannot leave the integer interval ``[-2**30, 2**30]``).
* Weighted sums ``sum_j c_j * q_j`` use integer coefficients with ``sum_j |c_j| <= MAX_TOTAL_WEIGHT
  = 2**32``, so ``|sum| <= 2**32 * 2**30 = 2**62 < 2**63``: exact in int64.
* When ``sum_j |c_j| <= 2**23`` BLAS computes them in float64 directly: every partial sum is at
  most ``2**23 * 2**30 = 2**53`` in magnitude, so every float64 operation is exact whatever order
  BLAS uses. Otherwise BLAS works on split inputs ``q = hi * 2**15 + lo`` with
  ``hi in [-2**15, 2**15]`` and ``lo in [0, 2**15)``: each partial sum is at most
  ``2**32 * 2**15 = 2**47 < 2**53``, exact again.
* Inner products ``sum_k q_ik * q_jk`` (Gram matrices, squared distances) use the same split: each
  part-product is at most ``2**30`` and at most ``MAX_DIM = 2**23`` of them are added, so every
  partial sum stays below ``2**53`` and is exact in float64; the parts are then combined in Python
  integers, which do not overflow.
* Inner products of rows whose entries are small, ``max|a| * max|b| * w <= 2**53`` for column
  blocks of ``w >= MIN_DIRECT_BLOCK`` coordinates and ``max|a| * max|b| * d < 2**63``, are
  computed block by block in float64 without any split (every partial sum is an integer of at
  most ``2**53``, exact) and the blocks' sums added in int64. Most updates take this path: on the
  default ``2**-24`` grid, a million coordinates of ``|x| <= 0.18`` (``|q| < 2**21.5``) do.
* Inner products of rows whose entries are small enough, ``max|a| * max|b| * d < 2**63``, are
  computed in int64 directly: no partial sum can exceed that bound. Smaller still, when
  ``2**h * max|b| * d <= 2**53`` with ``h = ceil(bits(max|a|) / 2)``, only ``a`` is split at ``h``
  bits and BLAS multiplies in float64, exactly. Updates within a task's norm bound are usually
  far below ``2**30`` per coordinate, so this is the common case.
* Rounded division (``div_round``) takes a numerator within int64 and a positive denominator of
  at most ``2**62``; its remainder test ``2 * r + 1`` stays below ``2**63``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from swarmchain.node.aggregation.errors import AggregationBoundError
from swarmchain.node.aggregation.limits import (
    COORD_BITS,
    COORD_BOUND,
    DIRECT_WEIGHT,
    MAX_DIM,
    MAX_FRAC_BITS,
    MAX_INPUTS,
    MAX_TOTAL_WEIGHT,
    MIN_DIRECT_BLOCK,
    SPLIT_BITS,
)
from swarmchain.node.aggregation.parallel import in_parallel

_LO_MASK: Final = (1 << SPLIT_BITS) - 1
# From n * d values on, quantising runs compiled on every core (kernels.py). Below, NumPy takes
# a few ms, less than loading the kernels (0.7 s, once per process), and a node's rounds (8
# updates of 5K coordinates) never import Numba.
COMPILED_MIN: Final = 1 << 20
_DIV_BLOCK: Final = 1 << 16  # coordinates per block of div_round (512 KiB of int64)


IntArray = npt.NDArray[np.int64]
I32Array = npt.NDArray[np.int32]
F64Array = npt.NDArray[np.float64]
Update = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """How named tensors map onto one flat coordinate vector (names sorted)."""

    names: tuple[str, ...]  # parameter names, sorted
    shapes: tuple[tuple[int, ...], ...]  # shape of each named tensor

    @classmethod
    def of(cls, update: Update) -> Layout:
        """Read the layout of one update (its names, sorted, and their shapes)."""
        names = tuple(sorted(update))
        return cls(names, tuple(tuple(update[name].shape) for name in names))

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start offset of each named tensor in the flat vector, plus the total at the end."""
        out = [0]
        for shape in self.shapes:
            out.append(out[-1] + int(np.prod(shape, dtype=np.int64)))
        return tuple(out)

    @property
    def dim(self) -> int:
        """Total number of coordinates."""
        return self.offsets[-1]

    def segments(self) -> list[tuple[str, tuple[int, ...], int, int]]:
        """``(name, shape, start, stop)`` of each named tensor in the flat vector."""
        return [
            (name, shape, self.offsets[k], self.offsets[k + 1])
            for k, (name, shape) in enumerate(zip(self.names, self.shapes, strict=True))
        ]


class Batch:
    """n quantised updates of one layout, ready for the aggregation rules.

    Parameters
    ----------
    values
        ``(n, d)`` little-endian int32, row ``i`` = update ``i`` on the fixed-point grid.
    weights
        ``(n,)`` int64 sample counts (positive).
    layout
        Names and shapes that the ``d`` coordinates stand for.
    frac_bits
        The grid is ``2**-frac_bits``.
    origin
        For each row, the indices of the original inputs it was derived from (pre-aggregation
        steps such as bucketing merge rows; the first batch has ``((0,), (1,), ...)``).
    gram
        The rows' exact Gram matrix, when already known (see `subset`).
    """

    def __init__(
        self,
        values: I32Array,
        weights: IntArray,
        layout: Layout,
        frac_bits: int,
        origin: tuple[tuple[int, ...], ...],
        gram: list[list[int]] | None = None,
    ) -> None:
        n = values.shape[0]
        if values.dtype != np.dtype("<i4") or values.ndim != 2 or values.shape[1] != layout.dim:
            raise ValueError(
                f"batch values must be (n, {layout.dim}) little-endian int32, "
                f"got {values.dtype} {values.shape}"
            )
        if weights.shape != (n,) or len(origin) != n:
            raise ValueError(f"batch of {n} rows needs {n} weights and {n} origins")
        check_weights(weights)
        self.values = values
        self.weights = weights
        self.layout = layout
        self.frac_bits = frac_bits
        self.origin = origin
        self._gram = gram
        self._sq_norms: list[int] | None = None
        self._content_keys: dict[int, bytes] = {}

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        """Number of coordinates per row."""
        return int(self.values.shape[1])

    def to_grid(self, x: float) -> int:
        """A non-negative real parameter (a norm, a radius) in grid units, at least 1."""
        return max(1, round(x * (1 << self.frac_bits)))

    @property
    def gram(self) -> list[list[int]]:
        """Exact inner products ``<q_i, q_j>`` of the rows, as Python integers (cached)."""
        if self._gram is None:
            self._gram = exact_inner(self.values, self.values, (self.max_abs, self.max_abs))
        return self._gram

    @property
    def gram_known(self) -> bool:
        """Whether the exact Gram matrix is already computed (or was given)."""
        return self._gram is not None

    @cached_property
    def max_abs(self) -> int:
        """The largest absolute coordinate of any row."""
        return _max_abs(self.values)

    @property
    def sq_norms(self) -> list[int]:
        """Exact squared Euclidean norms of the rows (from the Gram matrix when it is cached)."""
        if self._gram is not None:
            return [self._gram[i][i] for i in range(self.n)]
        if self._sq_norms is None:
            self._sq_norms = exact_sq_norms(self.values)
        return self._sq_norms

    @cached_property
    def sq_dists(self) -> list[list[int]]:
        """Exact squared Euclidean distances between rows, as Python integers."""
        g = self.gram
        return [[g[i][i] + g[j][j] - 2 * g[i][j] for j in range(self.n)] for i in range(self.n)]

    def content_key(self, i: int) -> bytes:
        """SHA-256 of row ``i``'s bytes: the arrival-order-free tie-break key."""
        if i not in self._content_keys:
            row = np.ascontiguousarray(self.values[i])
            self._content_keys[i] = hashlib.sha256(row.data).digest()
        return self._content_keys[i]

    def rank(self, scores: Mapping[int, int]) -> list[int]:
        """Rows ordered by exact score, ties broken by content hash, then by row index.

        Parameters
        ----------
        scores
            Row index -> exact integer score, for the rows to rank.

        Returns
        -------
        list[int]
            The rows, lowest score first. The order does not depend on the order of arrival:
            only byte-identical rows fall back to their index.
        """
        rows = sorted(scores, key=lambda i: scores[i])
        out: list[int] = []
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and scores[rows[end]] == scores[rows[start]]:
                end += 1
            group = rows[start:end]
            if len(group) > 1:
                group.sort(key=lambda i: (self.content_key(i), i))
            out.extend(group)
            start = end
        return out

    def derive(
        self, values: I32Array, weights: IntArray, origin: tuple[tuple[int, ...], ...]
    ) -> Batch:
        """A new batch of the same layout and grid (the output of a pre-aggregation step)."""
        return Batch(values, weights, self.layout, self.frac_bits, origin)

    def as_inputs(self, rows: Sequence[int], num_samples: Sequence[int]) -> Batch:
        """Rows of this batch as the inputs of an aggregation, weighted by their sample counts.

        Lets one quantisation serve checks that ignore the weights (free riders, quantised with
        unit weights) and the aggregation: the values are the same integers either way.

        Parameters
        ----------
        rows
            Distinct row indices, in the order the new batch should hold them.
        num_samples
            Positive sample count of each of those rows.

        Returns
        -------
        Batch
            Row ``k`` is this batch's row ``rows[k]``, weighted ``num_samples[k]``, with origin
            ``((0,), (1,), ...)``, exactly as `quantise` of those rows' updates gives it.

        Raises
        ------
        ValueError
            Sample counts that are not positive integers, or not one per row.
        AggregationBoundError
            Sample counts beyond ``MAX_TOTAL_WEIGHT``.
        """
        idx = list(rows)
        if len(num_samples) != len(idx):
            raise ValueError(f"got {len(idx)} rows but {len(num_samples)} sample counts")
        _check_sample_counts(num_samples)
        weights = _sample_weights(num_samples)
        kept = self if idx == list(range(self.n)) else self.subset(idx)  # all rows: no copy
        origin = tuple((k,) for k in range(len(idx)))
        return Batch(kept.values, weights, self.layout, self.frac_bits, origin, kept._gram)

    def subset(self, rows: Sequence[int]) -> Batch:
        """The batch restricted to ``rows``, reusing any inner products already computed.

        Parameters
        ----------
        rows
            Distinct row indices, in the order the new batch should hold them.

        Returns
        -------
        Batch
            A batch whose row ``k`` is this batch's row ``rows[k]``.
        """
        idx = list(rows)
        if len(set(idx)) != len(idx) or any(not 0 <= i < self.n for i in idx):
            raise ValueError(f"subset rows must be distinct indices in [0, {self.n}), got {idx}")
        g = self._gram
        return Batch(
            np.ascontiguousarray(self.values[idx]),
            self.weights[idx].copy(),
            self.layout,
            self.frac_bits,
            tuple(self.origin[i] for i in idx),
            None if g is None else [[g[i][j] for j in idx] for i in idx],
        )


def check_weights(weights: IntArray) -> None:
    """Raise AggregationBoundError unless 1 to MAX_INPUTS weights, each >= 1, sum to <=
    MAX_TOTAL_WEIGHT."""
    n = len(weights)
    if not 1 <= n <= MAX_INPUTS:
        raise AggregationBoundError(f"aggregation needs 1 <= n <= {MAX_INPUTS} updates, got n={n}")
    if int(weights.min()) < 1 or int(weights.sum()) > MAX_TOTAL_WEIGHT:
        raise AggregationBoundError(
            f"sample counts must be >= 1 and sum to <= {MAX_TOTAL_WEIGHT}, "
            f"got min={int(weights.min())} sum={int(weights.sum())}"
        )


def check_frac_bits(frac_bits: int) -> None:
    """Raise ValueError unless ``1 <= frac_bits <= MAX_FRAC_BITS``."""
    if isinstance(frac_bits, bool) or not 1 <= frac_bits <= MAX_FRAC_BITS:
        raise ValueError(f"frac_bits must be in [1, {MAX_FRAC_BITS}], got {frac_bits}")


def quantise(updates: Sequence[Update], num_samples: Sequence[int], frac_bits: int) -> Batch:
    """Quantise float32 updates onto the fixed-point grid.

    Parameters
    ----------
    updates
        Deltas as named float32 CPU tensors; all must have the same names and shapes.
    num_samples
        Positive sample count of each update (the FedAvg weight).
    frac_bits
        Grid ``2**-frac_bits``; coordinates beyond ``COORD_BOUND * 2**-frac_bits`` are clamped.

    Returns
    -------
    Batch
        Row ``i`` holds update ``i``; ``origin`` is ``((0,), (1,), ...)``.

    Raises
    ------
    ValueError
        No updates, mismatched names/shapes/dtypes, a NaN, non-positive sample counts, too
        many coordinates, or weights beyond ``MAX_TOTAL_WEIGHT``.
    """
    layout, rows, weights = _read_updates(updates, num_samples, frac_bits)
    values = _quantise_checked(rows, layout, frac_bits)
    origin = tuple((i,) for i in range(len(updates)))
    return Batch(values, weights, layout, frac_bits, origin)


def quantised_mean(
    updates: Sequence[Update], num_samples: Sequence[int], frac_bits: int, *, weighted: bool
) -> tuple[Layout, IntArray, dict[str, torch.Tensor]]:
    """The mean of the quantised updates, without storing them quantised where that pays.

    ``div_round(exact_combine(batch.values, c[None, :])[0], c.sum())`` for ``batch =
    quantise(updates, num_samples, frac_bits)``, where ``c`` are the sample counts
    (``weighted``) or ones: the same integers, and the same errors. Large inputs whose weights
    total at most ``DIRECT_WEIGHT`` are read once, by a compiled kernel on every core that also
    divides and dequantises.

    Parameters
    ----------
    updates, num_samples, frac_bits
        As for `quantise`.
    weighted
        Weigh each update by its sample count; otherwise every weight is 1.

    Returns
    -------
    tuple[Layout, numpy.ndarray, dict[str, torch.Tensor]]
        The updates' layout, the ``(d,)`` int64 mean on the grid, and the mean as `dequantise`
        gives it.

    Raises
    ------
    ValueError
        As for `quantise`.
    """
    layout, rows, weights = _read_updates(updates, num_samples, frac_bits)
    coeffs = weights if weighted else np.ones(len(rows), dtype=np.int64)
    total_weight = int(coeffs.sum())
    if len(rows) * layout.dim >= COMPILED_MIN and total_weight <= DIRECT_WEIGHT:
        from swarmchain.node.aggregation import kernels

        grid, flat, nan = kernels.weighted_mean(rows, layout.offsets, coeffs.tolist(), frac_bits)
        _raise_on_nan(nan, layout)
        tensors = zip(layout.segments(), flat, strict=True)
        return (
            layout,
            grid,
            {name: torch.from_numpy(t.reshape(shape)) for (name, shape, _, _), t in tensors},
        )
    values = _quantise_checked(rows, layout, frac_bits)
    grid = div_round(exact_combine(values, coeffs[None, :])[0], total_weight, in_place=True)
    return layout, grid, dequantise(grid, layout, frac_bits)


def _quantise_checked(
    rows: Sequence[Sequence[torch.Tensor]], layout: Layout, frac_bits: int
) -> I32Array:
    """The ``(n, d)`` grid values of checked updates: compiled on every core for large inputs,
    NumPy for small ones; ValueError naming the first tensor that holds a NaN."""
    if len(rows) * layout.dim >= COMPILED_MIN:
        from swarmchain.node.aggregation import kernels  # Numba: imported (0.2 s) only once needed

        values, nan = kernels.quantise_rows(rows, layout.offsets, frac_bits)
    else:
        values, nan = _quantise_rows(rows, layout, frac_bits)
    _raise_on_nan(nan, layout)
    return values


def _read_updates(
    updates: Sequence[Update], num_samples: Sequence[int], frac_bits: int
) -> tuple[Layout, list[list[torch.Tensor]], IntArray]:
    """Check quantise's inputs; the layout, each update's tensors (contiguous), and the sample
    counts. Few attribute reads per tensor: 150 tensors are read in well under a millisecond."""
    check_frac_bits(frac_bits)
    if not updates:
        raise ValueError("aggregation needs at least one update, got none")
    if len(num_samples) != len(updates):
        raise ValueError(f"got {len(updates)} updates but {len(num_samples)} sample counts")
    _check_sample_counts(num_samples)
    layout = Layout.of(updates[0])
    if layout.dim > MAX_DIM:
        raise ValueError(f"updates have {layout.dim} coordinates, more than MAX_DIM={MAX_DIM}")
    weights = _sample_weights(num_samples)
    rows = []
    for i, update in enumerate(updates):
        if Layout.of(update) != layout:
            raise ValueError(
                f"update {i} has tensors {_describe(update)}, expected {_describe_layout(layout)}"
            )
        row = []
        for name in layout.names:
            tensor = update[name]
            if tensor.dtype != torch.float32 or not tensor.is_cpu:
                raise ValueError(
                    f"update {i} tensor {name!r} must be float32 on CPU, "
                    f"got {tensor.dtype} on {tensor.device}"
                )
            if tensor.layout != torch.strided or (tensor.numel() and not tensor.data_ptr()):
                raise ValueError(f"update {i} tensor {name!r} must be dense, in memory")
            if tensor.is_neg():  # a lazy negation: its memory holds the values' negatives
                tensor = tensor.resolve_neg()
            row.append(tensor if tensor.is_contiguous() else tensor.contiguous())
        rows.append(row)
    return layout, rows, weights


def _check_sample_counts(num_samples: Sequence[int]) -> None:
    """Raise ValueError unless every sample count is a positive integer."""
    if any(isinstance(s, bool) or int(s) != s or s < 1 for s in num_samples):
        raise ValueError(f"sample counts must be positive integers, got {list(num_samples)}")


def _sample_weights(num_samples: Sequence[int]) -> IntArray:
    """Checked positive integer sample counts as int64 weights (see `check_weights`)."""
    weights = np.array([int(s) for s in num_samples], dtype=np.int64)
    check_weights(weights)
    return weights


def _quantise_rows(
    rows: Sequence[Sequence[torch.Tensor]], layout: Layout, frac_bits: int
) -> tuple[I32Array, npt.NDArray[np.bool_]]:
    """NumPy quantisation of small inputs: grid values, and where a tensor holds a NaN."""
    values = np.empty((len(rows), layout.dim), dtype="<i4")
    nan = np.zeros((len(rows), len(layout.names)), dtype=np.bool_)
    longest = max((stop - start for _, _, start, stop in layout.segments()), default=0)
    scratch = np.empty(longest, dtype=np.float32)
    scale = np.float32(1 << frac_bits)
    for i, row in enumerate(rows):
        for s, (_, _, start, stop) in enumerate(layout.segments()):
            tmp = scratch[: stop - start]
            # NumPy only: mixing torch's OpenMP pool with NumPy's BLAS threads makes both spin.
            with np.errstate(over="ignore"):  # beyond float32 range: inf, clamped below
                np.multiply(row[s].detach().reshape(-1).numpy(), scale, out=tmp)
            np.rint(tmp, out=tmp)
            np.clip(tmp, -COORD_BOUND, COORD_BOUND, out=tmp)
            # Clipped values are finite and at most 2**30 each, so only a NaN makes the sum NaN.
            if np.isfinite(tmp.sum(dtype=np.float64)):
                values[i, start:stop] = tmp
            else:
                nan[i, s] = True
    return values, nan


def _raise_on_nan(nan: npt.NDArray[np.bool_], layout: Layout) -> None:
    """Raise ValueError naming the first update and tensor that hold a NaN, if any."""
    if nan.any():
        i, s = (int(k) for k in np.argwhere(nan)[0])
        raise ValueError(f"update {i} tensor {layout.names[s]!r} contains NaN")


def quantise_vector(update: Update, layout: Layout, frac_bits: int) -> IntArray:
    """Quantise one update of ``layout`` to a flat int64 grid vector (e.g. a rule's centre).

    Parameters
    ----------
    update
        Named float32 tensors matching ``layout``.
    layout
        The layout of the batch the vector will be used with.
    frac_bits
        Grid ``2**-frac_bits``.

    Returns
    -------
    numpy.ndarray
        ``(d,)`` int64 grid coordinates within ``[-COORD_BOUND, COORD_BOUND]``.
    """
    batch = quantise([update], [1], frac_bits)
    if batch.layout != layout:
        raise ValueError(
            f"vector has tensors {_describe(update)}, expected {_describe_layout(layout)}"
        )
    vector: IntArray = batch.values[0].astype(np.int64)
    return vector


def dequantise(vector: IntArray, layout: Layout, frac_bits: int) -> dict[str, torch.Tensor]:
    """Turn a flat grid vector back into named float32 tensors (sorted names).

    The conversion is exact up to float32's own rounding (IEEE round-half-even), so it is the
    same on every machine.
    """
    if vector.shape != (layout.dim,) or _max_abs(vector) > COORD_BOUND:
        raise ValueError(f"grid vector must be ({layout.dim},) within +-2**{COORD_BITS}")
    out = {}
    for name, shape, start, stop in layout.segments():
        # One pass per tensor: int64 -> float64 (exact) times 2**-frac_bits (exact), rounded once
        # to float32 as it is stored.
        tensor = np.empty(shape, dtype=np.float32)
        np.multiply(
            vector[start:stop].reshape(shape), 1.0 / (1 << frac_bits), out=tensor, casting="unsafe"
        )
        out[name] = torch.from_numpy(tensor)
    return out


def div_round(num: IntArray, den: int, *, in_place: bool = False) -> IntArray:
    """Integer division rounded to nearest, ties to even, elementwise and exact.

    Parameters
    ----------
    num
        int64 numerators.
    den
        Positive denominator, at most ``2**62``.
    in_place
        Write the result over ``num`` (C-contiguous) instead of a new array.

    Returns
    -------
    numpy.ndarray
        int64 ``round_half_even(num / den)``.
    """
    if not 0 < den <= 1 << 62:
        raise ValueError(f"denominator must be in [1, 2**62], got {den}")
    if in_place and not num.flags.c_contiguous:
        raise ValueError("div_round in place needs a C-contiguous array")
    if num.size <= _DIV_BLOCK and not in_place:
        return _div_round(num, den)
    # Block by block, so that the temporaries stay in cache, and on every core.
    flat = num.reshape(-1)
    out = flat if in_place else np.empty_like(flat)

    def blocks(lo: int, hi: int) -> None:
        for start in range(lo, hi, _DIV_BLOCK):
            stop = min(hi, start + _DIV_BLOCK)
            out[start:stop] = _div_round(flat[start:stop], den)

    in_parallel(blocks, flat.size, flat.size)
    return out.reshape(num.shape)


def _div_round(num: IntArray, den: int) -> IntArray:
    """`div_round` of one block."""
    q: IntArray
    r: IntArray
    if den & (den - 1) == 0:  # a power of two: an arithmetic shift is floor division, and faster
        q = np.right_shift(num, den.bit_length() - 1)
        r = np.bitwise_and(num, den - 1)
    else:  # floor_divide then a product: several times faster than NumPy's int64 divmod
        q = np.floor_divide(num, den)
        r = num - q * den  # exact: int64 arithmetic wraps, and the true r is in [0, den)
    # 0 <= r < den, so 2r + 1 < 2**63. Round up past the half, and at the half when q is odd.
    r <<= 1
    r += q & 1
    q += r > den
    return q


def _max_abs(a: I32Array | IntArray) -> int:
    """The largest absolute entry, exactly (0 for an empty array)."""
    if a.size == 0:
        return 0
    return max(int(a.max()), -int(a.min()))


def _block_cols(n: int) -> int:
    """Columns per block so that a block of split float64 parts stays within a few MiB."""
    return max(2048, (1 << 20) // max(1, n))


def _split(block: I32Array) -> F64Array:
    """Stack the exact float64 parts ``[hi; lo]`` of an int32 block: ``q = hi * 2**15 + lo``."""
    hi = np.right_shift(block, SPLIT_BITS).astype(np.float64)
    lo = np.bitwise_and(block, _LO_MASK).astype(np.float64)
    return np.concatenate([hi, lo], axis=0)


def direct_width(p: int, r: int, d: int, top_a: int, top_b: int) -> int:
    """Columns per block of `exact_inner`'s unsplit float64 tier; 0 where it does not apply.

    Parameters
    ----------
    p, r
        Rows of the two operands.
    d
        Coordinates per row.
    top_a, top_b
        The operands' largest absolute entries.

    Returns
    -------
    int
        ``w`` such that sums of ``w`` products stay within ``2**53`` (and every total within
        int64), at least ``min(d, MIN_DIRECT_BLOCK)``; 0 when no such blocks exist.
    """
    width = min(_block_cols(p + r), (1 << 53) // max(1, top_a * top_b))
    if width >= min(d, MIN_DIRECT_BLOCK) and top_a * top_b * d < 1 << 63:
        return max(1, width)
    return 0


def exact_inner(a: I32Array, b: I32Array, tops: tuple[int, int] | None = None) -> list[list[int]]:
    """Exact inner products of the rows of ``a`` with the rows of ``b``.

    Parameters
    ----------
    a
        ``(p, d)`` int32 with entries in ``[-2**30, 2**30]``, ``d <= MAX_DIM``.
    b
        ``(r, d)`` int32, same bounds; pass ``a`` itself for a Gram matrix.
    tops
        ``(max|a|, max|b|)`` when already known (they are computed otherwise).

    Returns
    -------
    list[list[int]]
        ``p x r`` Python integers ``<a_i, b_j>``.
    """
    p, d = a.shape
    r = b.shape[0]
    if d > MAX_DIM:
        raise ValueError(f"exact inner products need d <= MAX_DIM={MAX_DIM}, got d={d}")
    same = a is b
    if tops is None:
        top_a = _max_abs(a)
        top_b = top_a if same else _max_abs(b)
    else:
        top_a, top_b = tops
    width = direct_width(p, r, d, top_a, top_b)
    if width:
        # No split: within a block of `width` columns every partial sum of products is at most
        # width * max|a| * max|b| <= 2**53 in magnitude, so float64 is exact whatever order BLAS
        # uses; int64 adds the blocks exactly, every total being below max|a| * max|b| * d < 2**63.
        # One float64 product per block (NumPy uses a symmetric rank-k update for a Gram matrix).
        gram = np.zeros((p, r), dtype=np.int64)
        for start in range(0, d, width):
            block_a = a[:, start : start + width].astype(np.float64)
            block_b = block_a if same else b[:, start : start + width].astype(np.float64)
            gram += (block_a @ block_b.T).astype(np.int64)
        direct: list[list[int]] = gram.tolist()
        return direct
    half = (top_a.bit_length() + 1) // 2
    if (1 << half) * top_b * d <= 1 << 53 and 2 * top_a * top_b * d < 1 << 63:
        # Split only a, at `half` bits: both parts are at most 2**half in magnitude, so every
        # partial sum of part-products is at most 2**half * max|b| * d <= 2**53, exact in
        # float64; the recombined products (at most 2 * max|a| * max|b| * d) fit in int64.
        # Column blocks keep the float64 copies in cache; each block's sums are exact too.
        exact = np.zeros((p, r), dtype=np.int64)
        step = _block_cols(2 * p + r)
        for start in range(0, d, step):
            block = a[:, start : start + step]
            parts_a = np.concatenate(
                [np.right_shift(block, half), np.bitwise_and(block, (1 << half) - 1)]
            ).astype(np.float64)  # (2p, step)
            other = block if same else b[:, start : start + step]
            dots = parts_a @ other.T.astype(np.float64)  # (2p, r)
            exact += (dots[:p].astype(np.int64) << half) + dots[p:].astype(np.int64)
        small: list[list[int]] = exact.tolist()
        return small
    if top_a * top_b * d < 1 << 63:
        wide = a.astype(np.int64)
        products: list[list[int]] = (wide @ (wide if same else b.astype(np.int64)).T).tolist()
        return products
    acc = np.zeros((2 * p, 2 * r), dtype=np.float64)
    step = _block_cols(p + r)
    for start in range(0, d, step):
        ya = _split(a[:, start : start + step])
        yb = ya if same else _split(b[:, start : start + step])
        # Every part-product is <= 2**30 and d <= 2**23 of them are added: exact in float64.
        acc += ya @ (ya.T if same else yb.T)
    parts = acc.tolist()
    shift2, shift1 = 2 * SPLIT_BITS, SPLIT_BITS
    return [
        [
            (int(parts[i][j]) << shift2)
            + ((int(parts[i][r + j]) + int(parts[p + i][j])) << shift1)
            + int(parts[p + i][r + j])
            for j in range(r)
        ]
        for i in range(p)
    ]


def exact_sq_norms(a: I32Array) -> list[int]:
    """Exact squared Euclidean norms of the rows of ``a`` (bounds as in `exact_inner`)."""
    p, d = a.shape
    if d > MAX_DIM:
        raise ValueError(f"exact inner products need d <= MAX_DIM={MAX_DIM}, got d={d}")
    if _max_abs(a) ** 2 * d < 1 << 63:
        wide = a.astype(np.int64)
        small: list[int] = np.einsum("ij,ij->i", wide, wide).tolist()
        return small
    hh = np.zeros(p)
    hl = np.zeros(p)
    ll = np.zeros(p)
    step = _block_cols(p)
    for start in range(0, d, step):
        y = _split(a[:, start : start + step])
        hi, lo = y[:p], y[p:]
        # Same bounds as exact_inner: each partial sum < 2**53, so float64 is exact.
        hh += np.einsum("ij,ij->i", hi, hi)
        hl += np.einsum("ij,ij->i", hi, lo)
        ll += np.einsum("ij,ij->i", lo, lo)
    shift2, shift1 = 2 * SPLIT_BITS, SPLIT_BITS
    return [
        (int(h) << shift2) + (int(m) << (shift1 + 1)) + int(low)
        for h, m, low in zip(hh.tolist(), hl.tolist(), ll.tolist(), strict=True)
    ]


def exact_combine(values: I32Array, coeffs: IntArray) -> IntArray:
    """Exact integer linear combinations ``coeffs @ values``.

    Parameters
    ----------
    values
        ``(n, d)`` int32 grid rows.
    coeffs
        ``(k, n)`` int64 coefficients; each row's absolute sum must be at most
        ``MAX_TOTAL_WEIGHT``.

    Returns
    -------
    numpy.ndarray
        ``(k, d)`` int64, exact.
    """
    n, d = values.shape
    if coeffs.ndim != 2 or coeffs.shape[1] != n:
        raise ValueError(f"coefficients must be (k, {n}), got {coeffs.shape}")
    total = int(np.abs(coeffs).sum(axis=1).max(initial=0))
    if total > MAX_TOTAL_WEIGHT:
        raise ValueError(f"coefficient rows must sum to <= {MAX_TOTAL_WEIGHT} in absolute value")
    c = coeffs.astype(np.float64)
    out = np.empty((coeffs.shape[0], d), dtype=np.int64)
    step = _block_cols(n)
    for start in range(0, d, step):
        block = values[:, start : start + step]
        if total <= DIRECT_WEIGHT:
            # Every partial sum is at most 2**23 * 2**30 = 2**53 in magnitude: exact in float64.
            out[:, start : start + step] = c @ block.astype(np.float64)
            continue
        # |c @ hi| <= 2**32 * 2**15 = 2**47 and |c @ lo| < 2**47: exact in float64.
        hi = (c @ np.right_shift(block, SPLIT_BITS).astype(np.float64)).astype(np.int64)
        lo = (c @ np.bitwise_and(block, _LO_MASK).astype(np.float64)).astype(np.int64)
        out[:, start : start + step] = (hi << SPLIT_BITS) + lo
    return out


def coordinate_blocks(values: I32Array) -> list[tuple[int, int]]:
    """Column ranges ``[start, stop)`` that split ``values`` into cache-sized blocks."""
    n, d = values.shape
    step = max(1024, (1 << 19) // max(1, n))
    return [(start, min(d, start + step)) for start in range(0, d, step)]


def sorted_columns(values: I32Array, start: int, stop: int) -> I32Array:
    """The block ``values[:, start:stop]`` transposed to ``(stop - start, n)``, each row sorted."""
    block = np.ascontiguousarray(values[:, start:stop].T)
    block.sort(axis=1)
    return block


def _describe(update: Update) -> str:
    """A short description of an update's names and shapes."""
    return ", ".join(f"{name}{tuple(update[name].shape)}" for name in sorted(update)) or "(none)"


def _describe_layout(layout: Layout) -> str:
    """A short description of a layout's names and shapes."""
    return ", ".join(f"{n}{s}" for n, s in zip(layout.names, layout.shapes, strict=True))


@dataclass(frozen=True)
class RuleOutput:
    """What an aggregation rule returns."""

    aggregate: IntArray  # (d,) int64 grid vector within +-COORD_BOUND
    selected: tuple[int, ...] | None  # rows that passed the rule's screening; None: no screening
    set_aside: tuple[int, ...] = ()  # rows left out of the aggregate without being screened out
