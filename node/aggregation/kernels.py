"""Compiled kernels that read float32 updates once: quantise, and quantise-and-average (FedAvg).

`fixed_point.quantise` and the mean/FedAvg fast path of `pipeline.aggregate` call these on
large inputs. Each kernel is serial Numba code that releases the GIL; `parallel.in_parallel`
runs it on disjoint coordinate ranges, one thread per core. Numba's own ``parallel=True`` is not
used: its threading layers clash with torch's OpenMP runtime and abort on concurrent launches
from several Python threads (a node aggregates on one thread while it trains on another).

The arithmetic is the NumPy path's, value for value: ``x * 2**frac_bits`` in float32 (exact, or
inf beyond float32's range), clamped to ``[-COORD_BOUND, COORD_BOUND]``, rounded half to even by
IEEE ``rint``; sums are exact (integers below ``2**53`` in float64). So the results do not depend
on the thread count or on how the coordinates are split.

The kernels take each tensor by address (an ``(n, tensors)`` int64 table) rather than as a list
of arrays, so one call reads all n updates; the table is built from checked contiguous float32
CPU tensors, which the caller keeps alive during the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt
import torch
from numba import types
from numba.extending import intrinsic

from swarmchain.node.aggregation.limits import COORD_BOUND, DIRECT_WEIGHT
from swarmchain.node.aggregation.parallel import in_parallel

CHUNK: Final = 1 << 13  # coordinates per block of sums: 64 KiB of float64 stays in L2

F32Array = npt.NDArray[np.float32]
TensorRows = Sequence[Sequence[torch.Tensor]]  # [update][tensor] contiguous float32 CPU tensors
I64Array = npt.NDArray[np.int64]
I32Array = npt.NDArray[np.int32]
F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_BOUND: Final = np.float32(COORD_BOUND)  # exact in float32


@intrinsic
def _f32_pointer(typingctx: Any, address: Any) -> Any:
    """A float32 pointer from an integer address."""
    pointer = types.CPointer(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64), codegen


@numba.njit(inline="always")
def _grid(x: np.float32, scale: np.float32, bound: np.float32) -> tuple[np.int32, bool]:
    """One coordinate on the grid (clamped, rounded half to even), and whether it is NaN."""
    v = x * scale
    nan = v != v
    v = v if v < bound else bound  # a NaN becomes `bound` here (never cast): `nan` reports it
    v = v if v > -bound else -bound
    return np.int32(np.rint(v)), nan


def _compiled(*signatures: str) -> Callable[[Callable[..., None]], Any]:
    """Compile for ``signatures`` at import: serial, GIL released, cached on disk if possible.

    Compiling (or loading the cache) at import keeps the first aggregation as fast as the next.
    Numba caches next to the source, else under the user's cache directory; where neither is
    writable (a read-only install and home) it refuses ``cache=True``, so compile per process.
    """

    def compile_(fn: Callable[..., None]) -> Any:
        try:
            return numba.njit(list(signatures), nogil=True, cache=True)(fn)
        except RuntimeError:
            return numba.njit(list(signatures), nogil=True)(fn)

    return compile_


_ARGS = "int64[:, ::1], int64[::1]"  # the address table and the tensors' offsets
_ARGS_GRID = "float32, float32, int64, int64"  # scale, bound, lo, hi


@_compiled(f"void({_ARGS}, {_ARGS_GRID}, int32[:, ::1], boolean[:, ::1])")
def _quantise_kernel(
    addresses: I64Array,
    offsets: I64Array,
    scale: np.float32,
    bound: np.float32,
    lo: int,
    hi: int,
    out: I32Array,
    nan: BoolArray,
) -> None:
    """``out[:, lo:hi]`` = every update on the grid; sets ``nan[i, s]`` where tensor s has a NaN."""
    n, tensors = addresses.shape
    for i in range(n):
        row = out[i]
        for s in range(tensors):
            base = offsets[s]
            size = offsets[s + 1] - base
            start = max(lo, base)
            stop = min(hi, base + size)
            if start >= stop:
                continue
            x = numba.carray(_f32_pointer(addresses[i, s]), (size,))
            bad = False
            for k in range(start, stop):
                q, b = _grid(x[k - base], scale, bound)
                bad |= b
                row[k] = q
            if bad:
                nan[i, s] = True


@numba.njit(inline="always")
def _grid_value(x: np.float32, scale: np.float32, bound: np.float32) -> np.float64:
    """`_grid`'s value as a float64 (an integer of at most ``2**30``), but a NaN stays NaN."""
    v = x * scale
    v = bound if v > bound else v
    v = -bound if v < -bound else v
    return np.float64(np.rint(v))


@numba.njit(inline="always")
def _finalize(
    sums: F64Array,
    total: np.float64,
    inverse: np.float64,
    unscale: np.float64,
    grid: I64Array,
    dst: F32Array,
) -> bool:
    """``grid[k] = round_half_even(sums[k] / total)`` and ``dst[k]`` = that times ``unscale``;
    whether any sum is NaN.

    For integer ``sums`` with ``|sums[k]| <= total * COORD_BOUND <= 2**53``. The estimate
    ``sums[k] * (1 / total)`` carries two roundings of at most ``2**-53`` relative each, on a
    quotient of at most ``2**30``: it is off by about ``2**-22`` at most. So its floor ``q`` is
    the floor of the quotient, or one off where the quotient lies that close to an integer, which
    is then the rounded quotient: one below it, the exact remainder is at least ``total`` and the
    test below rounds up; one above, it is negative and the test keeps ``q``. The remainder is
    exact, as ``|q * total| <= 2**53``: ``|q| <= 2**30`` but for ``q = -(2**30 + 1)``, which
    needs an inexact ``1 / total``, so ``total < 2**23``.

    ``dst`` gets ``q * unscale`` in float64 (exact: a power of two) rounded once to float32, as
    `fixed_point.dequantise` does.
    """
    poisoned = False
    for k in range(sums.size):
        t = sums[k]
        poisoned |= t != t
        t = t if t == t else 0.0  # never cast a NaN (the caller raises)
        q = np.int32(np.floor(t * inverse))
        r = t - q * total
        # For r in [0, total): round up past the half, and at the half when q is odd. A
        # negative r keeps q, and r >= total rounds up: the floor's one-off cases.
        rounded = q + np.int32(2 * r + (q & 1) > total)  # |rounded| <= 2**30
        grid[k] = rounded
        dst[k] = np.float32(np.float64(rounded) * unscale)
    return poisoned


@_compiled(
    f"void({_ARGS}, float64[::1], {_ARGS_GRID}, int64, int64[::1], int64[::1], boolean[::1])"
)
def _weighted_mean_kernel(
    addresses: I64Array,
    offsets: I64Array,
    weights: F64Array,
    scale: np.float32,
    bound: np.float32,
    lo: int,
    hi: int,
    frac_bits: int,
    targets: I64Array,
    out: I64Array,
    poisoned: BoolArray,
) -> None:
    """``out[lo:hi]`` = ``div_round(sum_i weights[i] * grid(x_i), sum(weights))``, and the same
    values as float32 into each tensor's target; sets ``poisoned[s]`` where tensor s of some
    update holds a NaN.

    Rows are added four at a time into a ``CHUNK`` of float64 sums that stays in cache, which is
    then divided and dequantised before the next chunk. The integer weights total at most
    ``DIRECT_WEIGHT = 2**23``, so every partial sum is an integer of at most ``2**23 * 2**30 =
    2**53``: exact, whatever the order. (AVX2 converts and multiplies float64 lanes, not int64
    ones.) A NaN is not flagged coordinate by coordinate: it reaches the sums, which is cheaper.
    """
    n, tensors = addresses.shape
    total = weights.sum()
    inverse = 1.0 / total
    unscale = 1.0 / np.float64(np.int64(1) << frac_bits)  # a power of two: exact
    sums = np.empty(CHUNK, dtype=np.float64)
    for s in range(tensors):
        base = offsets[s]
        size = offsets[s + 1] - base
        stop = min(hi, base + size)
        target = numba.carray(_f32_pointer(targets[s]), (size,))
        for c0 in range(max(lo, base), stop, CHUNK):
            c1 = min(stop, c0 + CHUNK)
            part = sums[: c1 - c0]
            part[:] = 0.0
            for i in range(0, n, 4):  # n is a multiple of 4
                x0 = numba.carray(_f32_pointer(addresses[i, s]), (size,))[c0 - base : c1 - base]
                x1 = numba.carray(_f32_pointer(addresses[i + 1, s]), (size,))[c0 - base : c1 - base]
                x2 = numba.carray(_f32_pointer(addresses[i + 2, s]), (size,))[c0 - base : c1 - base]
                x3 = numba.carray(_f32_pointer(addresses[i + 3, s]), (size,))[c0 - base : c1 - base]
                w0, w1, w2, w3 = weights[i], weights[i + 1], weights[i + 2], weights[i + 3]
                for k in range(c1 - c0):
                    part[k] += (
                        w0 * _grid_value(x0[k], scale, bound)
                        + w1 * _grid_value(x1[k], scale, bound)
                    ) + (
                        w2 * _grid_value(x2[k], scale, bound)
                        + w3 * _grid_value(x3[k], scale, bound)
                    )
            dst = target[c0 - base : c1 - base]
            if _finalize(part, total, inverse, unscale, out[c0:c1], dst):
                poisoned[s] = True


def quantise_rows(
    rows: TensorRows, offsets: Sequence[int], frac_bits: int, workers: int | None = None
) -> tuple[I32Array, BoolArray]:
    """Quantise n updates onto the grid ``2**-frac_bits``, as `fixed_point.quantise` does.

    Parameters
    ----------
    rows
        ``rows[i][s]``: tensor ``s`` of update ``i``, a contiguous float32 CPU tensor of
        ``offsets[s + 1] - offsets[s]`` values.
    offsets
        Start of each tensor in the flat vector, and the total length last.
    frac_bits
        The grid is ``2**-frac_bits``.
    workers
        Threads to split the coordinates over (default: one per CPU); any count gives the
        same result.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(n, d)`` int32 grid values (entries of NaN tensors unspecified), and ``(n, tensors)``
        bool, True where a tensor holds a NaN.
    """
    table, bounds, d = _tables(rows, offsets)
    out = np.empty((len(rows), d), dtype="<i4")
    nan = np.zeros(table.shape, dtype=np.bool_)
    scale = np.float32(1 << frac_bits)

    def part(lo: int, hi: int, alive: object = rows) -> None:
        """One range; ``alive`` keeps the tensors read by address until the job ends, even when
        the caller is interrupted while it waits."""
        _quantise_kernel(table, bounds, scale, _BOUND, lo, hi, out, nan)

    in_parallel(part, d, len(rows) * d, workers)
    return out, nan


def weighted_mean(
    rows: TensorRows,
    offsets: Sequence[int],
    weights: Sequence[int],
    frac_bits: int,
    workers: int | None = None,
) -> tuple[I64Array, list[F32Array], BoolArray]:
    """The weighted mean of the updates' grid values, without storing them quantised.

    ``div_round(sum_i weights[i] * q_i, sum(weights))``, and the same mean dequantised, in one
    pass over the updates.

    Parameters
    ----------
    rows, offsets, frac_bits, workers
        As for `quantise_rows`.
    weights
        Non-negative integer weights whose sum is positive and at most ``DIRECT_WEIGHT``
        (``2**23``), so that every sum is exact in float64.

    Returns
    -------
    tuple[numpy.ndarray, list[numpy.ndarray], numpy.ndarray]
        The ``(d,)`` int64 mean on the grid (unspecified where a NaN was read); each tensor's
        part of it as flat float32, as `fixed_point.dequantise` gives it; and the NaN table as
        for `quantise_rows`.
    """
    if not 0 < sum(weights) <= DIRECT_WEIGHT or min(weights) < 0:
        raise ValueError(f"weights must be >= 0 and sum to a total in [1, {DIRECT_WEIGHT}]")
    n = len(rows)
    pad = -n % 4  # the kernel adds rows four at a time: pad with copies of row 0 at weight 0
    table, bounds, d = _tables([*rows, *[rows[0]] * pad], offsets)
    w = np.array([*weights, *[0] * pad], dtype=np.float64)  # exact: integers below 2**53
    out = np.empty(d, dtype=np.int64)
    tensors = [np.empty(int(size), dtype=np.float32) for size in np.diff(bounds)]
    targets = np.array([t.ctypes.data for t in tensors], dtype=np.int64)
    poisoned = np.zeros(len(tensors), dtype=np.bool_)
    scale = np.float32(1 << frac_bits)

    def part(lo: int, hi: int, alive: object = (rows, tensors)) -> None:
        """One range; ``alive`` keeps the memory read and written by address until the job ends,
        even when the caller is interrupted while it waits."""
        _weighted_mean_kernel(
            table, bounds, w, scale, _BOUND, lo, hi, frac_bits, targets, out, poisoned
        )

    in_parallel(part, d, n * d, workers)
    # Hostile input only: find which updates put the NaN into each poisoned tensor.
    nan = np.zeros((n, len(tensors)), dtype=np.bool_)
    for s in np.flatnonzero(poisoned).tolist():
        nan[:, s] = [bool(torch.isnan(row[s]).any()) for row in rows]
    return out, tensors, nan


def _tables(rows: TensorRows, offsets: Sequence[int]) -> tuple[I64Array, I64Array, int]:
    """The ``(n, tensors)`` address table, the offsets as int64, and ``d``; checks the tensors."""
    bounds = np.array(offsets, dtype=np.int64)
    sizes = np.diff(bounds).tolist()
    table = np.empty((len(rows), len(sizes)), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row) != len(sizes):
            raise ValueError(f"update {i} has {len(row)} tensors, expected {len(sizes)}")
        for s, tensor in enumerate(row):
            if not (
                tensor.dtype == torch.float32
                and tensor.is_cpu
                and tensor.layout == torch.strided
                and tensor.is_contiguous()
                and not tensor.is_neg()  # its memory holds the values' negation
                and tensor.numel() == sizes[s]
                and (tensor.data_ptr() or not sizes[s])  # a ZeroTensor has no memory
            ):
                raise ValueError(
                    f"update {i} tensor {s} must be {sizes[s]} contiguous float32 values in "
                    "memory on CPU"
                )
            table[i, s] = tensor.data_ptr()
    return table, bounds, int(bounds[-1])
