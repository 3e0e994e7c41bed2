"""Compiled kernels that read float32 updates once: quantise, and quantise-and-average (FedAvg).

`fixed_point.quantise` and the mean/FedAvg fast path of `pipeline.aggregate` call these on
large inputs. Each kernel is serial Numba code that releases the GIL; `fixed_point.in_parallel`
runs it on disjoint coordinate ranges, one thread per core. Numba's own ``parallel=True`` is not
used: its threading layers clash with torch's OpenMP runtime and abort on concurrent launches
from several Python threads (a node aggregates on one thread while it trains on another).

The arithmetic is the NumPy path's, value for value: ``x * 2**frac_bits`` in float32 (exact, or
inf beyond float32's range), clamped to ``[-COORD_BOUND, COORD_BOUND]``, rounded half to even by
IEEE ``rint``; sums are exact in int64. So the results do not depend on the thread count or on
how the coordinates are split.

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

from node.aggregation.fixed_point import COORD_BOUND, MAX_TOTAL_WEIGHT, in_parallel

CHUNK: Final = 1 << 13  # coordinates per accumulator block: 64 KiB of int64 stays in L2

F32Array = npt.NDArray[np.float32]
TensorRows = Sequence[Sequence[torch.Tensor]]  # [update][tensor] contiguous float32 CPU tensors
I64Array = npt.NDArray[np.int64]
I32Array = npt.NDArray[np.int32]
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
def _finalize(
    sums: I64Array, total: Any, inverse: np.float64, unscale: np.float64, dst: F32Array
) -> None:
    """``sums[k] = round_half_even(sums[k] / total)`` and ``dst[k]`` = that times ``unscale``.

    For ``|sums[k]| <= total * COORD_BOUND`` and ``total <= 2**32``. The float64 estimate
    ``sums[k] * (1 / total)`` carries three roundings of at most ``2**-53`` relative each, on a
    quotient of at most ``2**30``: it is off by less than ``2**-21``. So its floor ``q`` is the
    floor of the quotient, or one off where the quotient lies within ``2**-21`` of an integer,
    which is then the rounded quotient: one below it (``q + 1`` needed), the exact remainder is
    at least ``total`` and the test below rounds up; one above, it is negative and the test keeps
    ``q``. ``q`` fits int32, so with an int32 ``total`` the remainder takes one signed 32 x 32 ->
    64-bit product per lane; ``2 * r`` stays far below ``2**63``.

    ``dst`` gets ``q * unscale`` in float64 (exact: a power of two) rounded once to float32, as
    `fixed_point.dequantise` does.
    """
    wide = np.int64(total)
    for k in range(sums.size):
        t = sums[k]
        # float64(t), rounded once, from its int32 halves (AVX2 has no vector int64 -> float64):
        # high * 2**32 and the low half are exact, and so is (low - 2**31) + 2**31.
        high = np.float64(np.int32(t >> 32)) * 4294967296.0
        low = np.float64(np.int32((t & 0xFFFFFFFF) - 2147483648)) + 2147483648.0
        q = np.int32(np.floor((high + low) * inverse))
        r = t - np.int64(q) * wide
        # Where 0 <= r < total: round up past the half, and at the half when q is odd.
        rounded = q + np.int32(2 * r + (q & 1) > wide)  # |rounded| <= 2**30
        sums[k] = rounded
        dst[k] = np.float32(np.float64(rounded) * unscale)


@_compiled(
    *(
        f"void({_ARGS}, {w}[::1], {_ARGS_GRID}, int64, int64[::1], int64[::1], boolean[:, ::1])"
        for w in ("int32", "int64")
    )
)
def _weighted_mean_kernel(
    addresses: I64Array,
    offsets: I64Array,
    weights: npt.NDArray[np.integer[Any]],
    scale: np.float32,
    bound: np.float32,
    lo: int,
    hi: int,
    frac_bits: int,
    targets: I64Array,
    out: I64Array,
    nan: BoolArray,
) -> None:
    """``out[lo:hi]`` = ``div_round(sum_i weights[i] * grid(x_i), sum(weights))``, and the same
    values as float32 into each tensor's target; sets ``nan[i, s]`` as above.

    Rows are added four at a time into a ``CHUNK`` of int64 sums that stays in cache, which is
    then divided and dequantised before the next chunk. With int32 weights LLVM multiplies with
    one signed 32 x 32 -> 64-bit instruction per lane.
    """
    n, tensors = addresses.shape
    total = np.int64(0)
    for i in range(n):
        total += np.int64(weights[i])
    inverse = 1.0 / np.float64(total)
    unscale = 1.0 / np.float64(np.int64(1) << frac_bits)  # a power of two: exact
    for s in range(tensors):
        base = offsets[s]
        size = offsets[s + 1] - base
        stop = min(hi, base + size)
        target = numba.carray(_f32_pointer(targets[s]), (size,))
        for c0 in range(max(lo, base), stop, CHUNK):
            c1 = min(stop, c0 + CHUNK)
            acc = out[c0:c1]
            acc[:] = 0
            for i in range(0, n, 4):  # n is a multiple of 4
                x0 = numba.carray(_f32_pointer(addresses[i, s]), (size,))[c0 - base : c1 - base]
                x1 = numba.carray(_f32_pointer(addresses[i + 1, s]), (size,))[c0 - base : c1 - base]
                x2 = numba.carray(_f32_pointer(addresses[i + 2, s]), (size,))[c0 - base : c1 - base]
                x3 = numba.carray(_f32_pointer(addresses[i + 3, s]), (size,))[c0 - base : c1 - base]
                w0, w1, w2, w3 = weights[i], weights[i + 1], weights[i + 2], weights[i + 3]
                bad0 = bad1 = bad2 = bad3 = False
                for k in range(c1 - c0):
                    q0, b0 = _grid(x0[k], scale, bound)
                    q1, b1 = _grid(x1[k], scale, bound)
                    q2, b2 = _grid(x2[k], scale, bound)
                    q3, b3 = _grid(x3[k], scale, bound)
                    bad0 |= b0
                    bad1 |= b1
                    bad2 |= b2
                    bad3 |= b3
                    acc[k] += (np.int64(w0) * np.int64(q0) + np.int64(w1) * np.int64(q1)) + (
                        np.int64(w2) * np.int64(q2) + np.int64(w3) * np.int64(q3)
                    )
                for j, bad in enumerate((bad0, bad1, bad2, bad3)):
                    if bad:
                        nan[i + j, s] = True
            dst = target[c0 - base : c1 - base]
            if total < 1 << 31:
                _finalize(acc, np.int32(total), inverse, unscale, dst)
            else:
                _finalize(acc, total, inverse, unscale, dst)


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

    def part(lo: int, hi: int) -> None:
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
        Non-negative integer weights whose sum is positive and at most ``MAX_TOTAL_WEIGHT``, so
        that every sum is exact in int64.

    Returns
    -------
    tuple[numpy.ndarray, list[numpy.ndarray], numpy.ndarray]
        The ``(d,)`` int64 mean on the grid (unspecified where a NaN was read); each tensor's
        part of it as flat float32, as `fixed_point.dequantise` gives it; and the NaN table as
        for `quantise_rows`.
    """
    if not 0 < sum(weights) <= MAX_TOTAL_WEIGHT or min(weights) < 0:
        raise ValueError(f"weights must be >= 0 and sum to a total in [1, {MAX_TOTAL_WEIGHT}]")
    n = len(rows)
    pad = -n % 4  # the kernel adds rows four at a time: pad with copies of row 0 at weight 0
    rows = [*rows, *[rows[0]] * pad]
    weights = [*weights, *[0] * pad]
    table, bounds, d = _tables(rows, offsets)
    small = max(weights) < 1 << 31  # int32 weights: one 32 x 32 -> 64-bit product per lane
    w = np.array(weights, dtype=np.int32 if small else np.int64)
    out = np.empty(d, dtype=np.int64)
    tensors = [np.empty(int(size), dtype=np.float32) for size in np.diff(bounds)]
    targets = np.array([t.ctypes.data for t in tensors], dtype=np.int64)
    nan = np.zeros(table.shape, dtype=np.bool_)
    scale = np.float32(1 << frac_bits)

    def part(lo: int, hi: int) -> None:
        _weighted_mean_kernel(table, bounds, w, scale, _BOUND, lo, hi, frac_bits, targets, out, nan)

    in_parallel(part, d, n * d, workers)
    return out, tensors, nan[:n]


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
                and tensor.is_contiguous()
                and tensor.numel() == sizes[s]
            ):
                raise ValueError(
                    f"update {i} tensor {s} must be {sizes[s]} contiguous float32 values on CPU"
                )
            table[i, s] = tensor.data_ptr()
    return table, bounds, int(bounds[-1])
