"""The valuation PRNG: a fixed, documented stream that every machine reproduces."""

from __future__ import annotations

from collections import Counter

import pytest

from swarmchain.incentives import RoundRng


def test_stream_is_pinned() -> None:
    # Known answers: if these change, every node and auditor would sample different permutations,
    # so a change to the stream must be a deliberate, versioned protocol change. The values were
    # cross-checked against an independent Node.js implementation of the documented construction.
    rng = RoundRng(b"round-seed", "tmc")

    assert [rng.randbelow(1_000_000) for _ in range(4)] == PINNED_DRAWS
    assert RoundRng(42, "gtg").permutation(10) == PINNED_PERMUTATION


PINNED_DRAWS = [965_709, 745_735, 586_426, 860_083]
PINNED_PERMUTATION = [9, 3, 4, 7, 6, 5, 2, 1, 8, 0]


def test_labels_separate_streams() -> None:
    tmc = RoundRng(b"seed", "tmc")
    gtg = RoundRng(b"seed", "gtg")

    assert [tmc.randbelow(2**64) for _ in range(3)] != [gtg.randbelow(2**64) for _ in range(3)]


def test_permutation_is_a_permutation_across_buffer_refills() -> None:
    rng = RoundRng(b"seed", "perm")

    for _ in range(50):
        assert sorted(rng.permutation(300)) == list(range(300))


def test_draws_are_roughly_uniform() -> None:
    rng = RoundRng(b"seed", "uniform")

    counts = Counter(rng.randbelow(6) for _ in range(6_000))

    assert set(counts) == set(range(6))
    assert all(850 <= count <= 1_150 for count in counts.values())


@pytest.mark.parametrize("seed", [-1, 1 << 256])
def test_integer_seed_must_fit_256_bits(seed: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*256"):
        RoundRng(seed, "x")


@pytest.mark.parametrize("bound", [0, -5])
def test_bound_must_be_positive(bound: int) -> None:
    with pytest.raises(ValueError, match="bound"):
        RoundRng(b"s", "x").randbelow(bound)


def test_bounds_beyond_64_bits_reach_the_whole_range() -> None:
    rng = RoundRng(b"seed", "big")
    bound = 3 << 100

    draws = [rng.randbelow(bound) for _ in range(200)]

    assert all(0 <= d < bound for d in draws)
    assert max(draws) > 2 << 100
    assert min(draws) < 1 << 100


def test_seed_of_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="bytes or int"):
        RoundRng("seed", "x")  # type: ignore[arg-type]
