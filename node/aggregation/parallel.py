"""The aggregation room's thread pool: work split over disjoint coordinate ranges.

Used by `fixed_point` (rounded division) and `kernels` (compiled quantising and averaging).
Each range is handled by code that releases the GIL, so the threads run at once; results never
depend on how many there are, since each range is computed exactly and on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Final

MIN_PART: Final = 1 << 18  # fewest values (rows x coordinates) worth a thread of their own


def _new_pool() -> ThreadPoolExecutor:
    """One thread per core (started on first use) for work split over coordinate ranges."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="aggregation")


def _renew_pool() -> None:
    """A fresh pool in a forked child: the parent's threads do not exist there."""
    global _pool
    _pool = _new_pool()


_pool = _new_pool()
os.register_at_fork(after_in_child=_renew_pool)
_threads = os.cpu_count() or 1  # most ranges `in_parallel` splits into; see `set_threads`


def set_threads(count: int) -> None:
    """Bound the threads `in_parallel` uses, as ``torch.set_num_threads`` bounds torch's.

    A node given ``--threads`` shares the machine with others: its aggregation must not start
    a thread per core either.

    Parameters
    ----------
    count
        Most threads one call may use, at least 1.

    Raises
    ------
    ValueError
        If ``count < 1``.
    """
    global _threads
    if count < 1:
        raise ValueError(f"thread count must be at least 1, not {count}")
    _threads = count


def in_parallel(
    fn: Callable[[int, int], None], size: int, work: int, workers: int | None = None
) -> None:
    """Run ``fn(lo, hi)`` over disjoint ranges that cover ``[0, size)``, one per thread.

    Parameters
    ----------
    fn
        Handles one range; it must release the GIL to gain anything (NumPy, Numba ``nogil``).
    size
        Length of the range to cover.
    work
        Values the whole call reads: each thread gets at least ``MIN_PART`` of them.
    workers
        Most threads to use (default: the `set_threads` count, one per CPU unless set).
    """
    count = max(1, min(workers or _threads, work // MIN_PART))
    step = max(1, -(-size // count))
    parts = [(lo, min(size, lo + step)) for lo in range(0, size, step)]
    if len(parts) <= 1:
        fn(0, size)
        return
    # The calling thread takes the first range itself: it is running already, a pool thread
    # must first be woken (and on a busy machine, wait for a core).
    jobs = [_pool.submit(fn, lo, hi) for lo, hi in parts[1:]]
    try:
        fn(*parts[0])
    finally:
        # Every job ends before this returns or raises: jobs read the caller's arrays by address.
        wait(jobs)
    for job in jobs:
        job.result()
