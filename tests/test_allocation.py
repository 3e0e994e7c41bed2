"""Reward allocation: pro rata over positive values, integer amounts, largest-remainder rounding."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmchain.incentives import allocate_rewards

A = "0x000000000000000000000000000000000000000a"
B = "0x000000000000000000000000000000000000000b"
C = "0x000000000000000000000000000000000000000c"
D = "0x000000000000000000000000000000000000000d"


def _amounts(result: dict[str, int]) -> dict[str, int]:
    return {account.lower(): amount for account, amount in result.items()}


def test_exact_pro_rata_split_needs_no_rounding() -> None:
    result = _amounts(allocate_rewards(100, {A: 1, B: 3}))

    assert result == {A: 25, B: 75}


def test_negative_zero_and_rejected_contributors_get_nothing() -> None:
    result = _amounts(allocate_rewards(90, {A: 2, B: -5, C: 0, D: 1}, rejected=[D]))

    assert result == {A: 90, B: 0, C: 0, D: 0}


def test_remainder_goes_to_largest_fractional_parts() -> None:
    # Exact shares of 10 over 1:1:1:4 are 10/7, 10/7, 10/7, 40/7 = 1.43, 1.43, 1.43, 5.71:
    # floors 1, 1, 1, 5 leave 2 units; the largest fractional part (D, .71) gets one, then the
    # three-way tie at .43 goes to the smallest address, A.
    result = _amounts(allocate_rewards(10, {D: 4, C: 1, B: 1, A: 1}))

    assert result == {A: 2, B: 1, C: 1, D: 6}


def test_tie_break_uses_address_value_not_input_order_or_spelling() -> None:
    first = allocate_rewards(2, {C.upper().replace("0X", "0x"): 1, A: 1, B: 1})
    second = allocate_rewards(2, {B: 1, A: 1, C: 1})

    assert first == second
    assert _amounts(first) == {A: 1, B: 1, C: 0}


def test_nobody_positive_pays_nobody() -> None:
    result = allocate_rewards(1_000, {A: -1, B: 0})

    assert sum(result.values()) == 0


def test_values_may_be_exact_fractions() -> None:
    result = _amounts(allocate_rewards(7, {A: Fraction(1, 3), B: Fraction(2, 3)}))

    # Exact shares 7/3 = 2.33 and 14/3 = 4.67: floors 2 and 4, the one left over goes to B (.67).
    assert result == {A: 2, B: 5}


def test_same_account_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        allocate_rewards(10, {A: 1, A.upper().replace("0X", "0x"): 2})


@pytest.mark.parametrize("reward", [-1, 1 << 256])
def test_reward_outside_uint256_is_refused(reward: int) -> None:
    with pytest.raises(ValueError, match="reward must be"):
        allocate_rewards(reward, {A: 1})


def test_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError, match="20-byte hex"):
        allocate_rewards(10, {"alice": 1})


@given(
    reward=st.integers(min_value=0, max_value=10**30),
    values=st.lists(st.integers(min_value=-50, max_value=1_000), min_size=1, max_size=12),
)
def test_amounts_sum_to_reward_and_stay_within_one_unit_of_exact_share(
    reward: int, values: list[int]
) -> None:
    accounts = [f"0x{index + 1:040x}" for index in range(len(values))]
    result = _amounts(allocate_rewards(reward, dict(zip(accounts, values, strict=True))))

    total = sum(v for v in values if v > 0)
    assert sum(result.values()) == (reward if total > 0 else 0)
    for account, value in zip(accounts, values, strict=True):
        if value <= 0:
            assert result[account] == 0
        else:
            assert abs(result[account] - Fraction(reward * value, total)) < 1
