"""The fixed-point room's bounds, in a module that imports nothing from the room.

`fixed_point` proves its overflow bounds from these, and the compiled kernels clamp and sum
within them; keeping them here lets both import them without importing each other.
"""

from __future__ import annotations

from typing import Final

COORD_BITS: Final = 30
COORD_BOUND: Final = 1 << COORD_BITS  # |q| <= 2**30 for every quantised coordinate
MAX_TOTAL_WEIGHT: Final = 1 << 32  # bound on the sum of |coefficients| of any weighted sum
MAX_DIM: Final = 1 << 23  # most coordinates for which exact float64 inner products are proven
MAX_INPUTS: Final = 1 << 11  # most updates one aggregation accepts
# Most samples one update may claim: MAX_INPUTS of them still sum to MAX_TOTAL_WEIGHT, so no
# single member can push a round past the weight bound and leave it unaggregated.
MAX_SAMPLES: Final = MAX_TOTAL_WEIGHT // MAX_INPUTS
MAX_FRAC_BITS: Final = 30  # finest grid: 2**-30
SPLIT_BITS: Final = 15  # q = hi * 2**15 + lo for exact float64 products
DIRECT_WEIGHT: Final = 1 << 23  # weighted sums with sum |c| <= 2**23 need no split
MIN_DIRECT_BLOCK: Final = 256  # fewest columns per block worth an unsplit float64 product
