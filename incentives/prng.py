"""A deterministic pseudo-random stream for valuation sampling, keyed by the round seed.

Every node and every auditor must draw the same permutations from the same round seed, on any
machine, in any Python version. Python's global `random` (Mersenne Twister, seeded per process) and
torch's generators give no such promise across versions and platforms, so the stream here is
SHAKE-256 in counter mode over `(domain, label, seed, block counter)`; integers below a bound are
drawn by rejection sampling on 64-bit words (no modulo bias), and permutations by Fisher-Yates.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

T = TypeVar("T")

_DOMAIN = b"swarmchain/incentives/prng/v1"
_BLOCK_BYTES = 1024  # bytes squeezed from SHAKE-256 per counter value
_WORD_BYTES = 8
_MAX_SEED_INT = 1 << 256


def seed_bytes(seed: bytes | int) -> bytes:
    """Canonical bytes of a round seed.

    Parameters
    ----------
    seed
        Raw bytes (used as they are), or a non-negative integer below 2**256 (encoded as 32 bytes,
        big-endian, the way a `uint256` or `bytes32` seed reads from the chain).

    Returns
    -------
    bytes
        The seed's canonical encoding.

    Raises
    ------
    ValueError
        If an integer seed is negative or does not fit in 256 bits.
    TypeError
        If the seed is neither bytes nor int.
    """
    if isinstance(seed, bool) or not isinstance(seed, (bytes, int)):
        raise TypeError(f"round seed must be bytes or int, got {type(seed).__name__}")
    if isinstance(seed, int):
        if not 0 <= seed < _MAX_SEED_INT:
            raise ValueError(f"integer round seed must be in [0, 2**256), got {seed}")
        return seed.to_bytes(32, "big")
    return bytes(seed)


class RoundRng:
    """A reproducible random stream for one purpose (`label`) in one round (`seed`).

    Two instances built from the same seed and label produce the same draws everywhere; different
    labels give independent streams, so estimators never share randomness by accident.

    Parameters
    ----------
    seed
        The round seed, as bytes or as a non-negative integer below 2**256.
    label
        What the stream is for, e.g. ``"tmc"``; it separates streams drawn from one seed.
    """

    def __init__(self, seed: bytes | int, label: str) -> None:
        raw_seed = seed_bytes(seed)
        raw_label = label.encode("utf-8")
        self._key = (
            _DOMAIN
            + len(raw_label).to_bytes(4, "big")
            + raw_label
            + len(raw_seed).to_bytes(4, "big")
            + raw_seed
        )
        self._counter = 0
        self._buffer = b""
        self._offset = 0

    def _word(self) -> int:
        """The next unsigned 64-bit word of the stream."""
        if self._offset + _WORD_BYTES > len(self._buffer):
            block = self._key + self._counter.to_bytes(8, "big")
            self._buffer = hashlib.shake_256(block).digest(_BLOCK_BYTES)
            self._counter += 1
            self._offset = 0
        word = int.from_bytes(self._buffer[self._offset : self._offset + _WORD_BYTES], "big")
        self._offset += _WORD_BYTES
        return word

    def randbelow(self, bound: int) -> int:
        """A uniform integer in ``[0, bound)``.

        Parameters
        ----------
        bound
            Exclusive upper bound, at least 1 (any size: bounds above 2**64 draw several words).

        Returns
        -------
        int
            The draw.

        Raises
        ------
        ValueError
            If the bound is below 1.
        """
        if bound < 1:
            raise ValueError(f"bound must be at least 1, got {bound}")
        words = max(1, -(-(bound - 1).bit_length() // 64))
        span = 1 << (64 * words)
        # Reject the top partial copy of [0, bound) so every residue is equally likely.
        limit = span - span % bound
        while True:
            value = 0
            for _ in range(words):
                value = (value << 64) | self._word()
            if value < limit:
                return value % bound

    def shuffle(self, items: list[T]) -> None:
        """Shuffle a list in place (Fisher-Yates, from the last position down)."""
        for i in range(len(items) - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]

    def permutation(self, n: int) -> list[int]:
        """A uniformly random permutation of ``range(n)``."""
        order = list(range(n))
        self.shuffle(order)
        return order
