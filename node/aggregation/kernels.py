"""Compiled kernels that read float32 updates once: quantise, and quantise-and-sum for FedAvg.

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
of arrays, so one call reads all n updates; the caller has checked every tensor's
dtype, device and shape, and keeps the arrays alive during the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt
from numba import types
from numba.extending import intrinsic

from node.aggregation.fixed_point import COORD_BOUND, MAX_TOTAL_WEIGHT, in_parallel

CHUNK: Final = 1 << 14  # coordinates per accumulator block: 128 KiB of int64 stays in L2

F32Rows = Sequence[Sequence[npt.NDArray[np.float32]]]  # [update][tensor] flat float32 arrays
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


@_compiled(
    *(
        f"void({_ARGS}, {w}[::1], {_ARGS_GRID}, int64[::1], boolean[:, ::1])"
        for w in ("int32", "int64")
    )
)
def _weighted_sum_kernel(
    addresses: I64Array,
    offsets: I64Array,
    weights: npt.NDArray[np.integer[Any]],
    scale: np.float32,
    bound: np.float32,
    lo: int,
    hi: int,
    out: I64Array,
    nan: BoolArray,
) -> None:
    """``out[lo:hi]`` = ``sum_i weights[i] * grid(x_i)``; sets ``nan[i, s]`` as above.

    Rows are added two at a time into a ``CHUNK`` of int64 sums that stays in cache. With int32
    weights LLVM multiplies with one signed 32 x 32 -> 64-bit instruction per lane.
    """
    n, tensors = addresses.shape
    for s in range(tensors):
        base = offsets[s]
        size = offsets[s + 1] - base
        stop = min(hi, base + size)
        for c0 in range(max(lo, base), stop, CHUNK):
            c1 = min(stop, c0 + CHUNK)
            acc = out[c0:c1]
            acc[:] = 0
            for i in range(0, n, 2):  # n is even
                x = numba.carray(_f32_pointer(addresses[i, s]), (size,))[c0 - base : c1 - base]
                y = numba.carray(_f32_pointer(addresses[i + 1, s]), (size,))[c0 - base : c1 - base]
                wx = weights[i]
                wy = weights[i + 1]
                bad_x = False
                bad_y = False
                for k in range(c1 - c0):
                    qx, bx = _grid(x[k], scale, bound)
                    qy, by = _grid(y[k], scale, bound)
                    bad_x |= bx
                    bad_y |= by
                    acc[k] += np.int64(wx) * np.int64(qx) + np.int64(wy) * np.int64(qy)
                if bad_x:
                    nan[i, s] = True
                if bad_y:
                    nan[i + 1, s] = True


def quantise_rows(
    rows: F32Rows, offsets: Sequence[int], frac_bits: int, workers: int | None = None
) -> tuple[I32Array, BoolArray]:
    """Quantise n updates onto the grid ``2**-frac_bits``, as `fixed_point.quantise` does.

    Parameters
    ----------
    rows
        ``rows[i][s]``: tensor ``s`` of update ``i``, flat C-contiguous float32, of length
        ``offsets[s + 1] - offsets[s]``.
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


def weighted_sum(
    rows: F32Rows,
    offsets: Sequence[int],
    weights: Sequence[int],
    frac_bits: int,
    workers: int | None = None,
) -> tuple[I64Array, BoolArray]:
    """``sum_i weights[i] * q_i`` of the updates' grid values, without storing the ``q_i``.

    Parameters
    ----------
    rows, offsets, frac_bits, workers
        As for `quantise_rows`.
    weights
        Non-negative integer weights whose sum is at most ``MAX_TOTAL_WEIGHT``, so that every
        sum is exact in int64.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(d,)`` int64 sums (unspecified where a NaN was read), and the NaN table as for
        `quantise_rows`.
    """
    if sum(weights) > MAX_TOTAL_WEIGHT or min(weights) < 0:
        raise ValueError(f"weights must be >= 0 and sum to <= {MAX_TOTAL_WEIGHT}")
    n = len(rows)
    if n % 2:  # the kernel adds rows in pairs: pair the last with a copy of row 0 at weight 0
        rows = [*rows, rows[0]]
        weights = [*weights, 0]
    table, bounds, d = _tables(rows, offsets)
    small = max(weights) < 1 << 31  # int32 weights: one 32 x 32 -> 64-bit product per lane
    w = np.array(weights, dtype=np.int32 if small else np.int64)
    out = np.empty(d, dtype=np.int64)
    nan = np.zeros(table.shape, dtype=np.bool_)
    scale = np.float32(1 << frac_bits)

    def part(lo: int, hi: int) -> None:
        _weighted_sum_kernel(table, bounds, w, scale, _BOUND, lo, hi, out, nan)

    in_parallel(part, d, n * d, workers)
    return out, nan[:n]


def _tables(rows: F32Rows, offsets: Sequence[int]) -> tuple[I64Array, I64Array, int]:
    """The ``(n, tensors)`` address table, the offsets as int64, and ``d``; checks the arrays."""
    bounds = np.array(offsets, dtype=np.int64)
    sizes = np.diff(bounds)
    table = np.empty((len(rows), len(sizes)), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row) != len(sizes):
            raise ValueError(f"update {i} has {len(row)} tensors, expected {len(sizes)}")
        for s, array in enumerate(row):
            if array.dtype != np.float32 or not array.flags.c_contiguous or array.size != sizes[s]:
                raise ValueError(
                    f"update {i} tensor {s} must be {sizes[s]} C-contiguous float32 values"
                )
            table[i, s] = array.ctypes.data
    return table, bounds, int(bounds[-1])
