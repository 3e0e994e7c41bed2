"""A node keeps freed heap memory: reallocating a few MiB no longer page-faults it in anew."""

from __future__ import annotations

import subprocess
import sys

FAULTS = """
import resource, sys
import numpy as np
from swarmchain.node.runtime.heap import keep_freed_heap
if sys.argv[1] == "keep":
    assert keep_freed_heap()
def step() -> None:
    arrays = [np.ones(1 << 18) for _ in range(6)]  # six 2 MiB blocks alive at once, then freed
    del arrays
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_reallocated_arrays_are_not_faulted_in_again() -> None:
    # 20 rounds of six 512-page blocks: about 61,000 faults unless the memory is reused.
    assert _faults("default") > 20_000
    assert _faults("keep") < 2_000
