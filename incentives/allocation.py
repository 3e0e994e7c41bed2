"""Turn a round's contribution values into integer token amounts.

Policy
------
- Only accepted contributors with a strictly positive value share the round's reward, pro rata to
  their values. Rejected submitters, and contributors whose value is zero or negative (they did not
  improve the model), get 0.
- Amounts are whole token units (the ERC-20's smallest unit). Each positive contributor first gets
  ``floor(reward · value / total)``. The few units left over (fewer than the number of positive
  contributors) go one each to the largest fractional parts (the largest-remainder, or Hamilton,
  method); equal fractional parts are broken by the smaller account address, read as a 160-bit
  number. So the amounts always sum to exactly the reward, each is within one unit of its exact
  share, and the result does not depend on the order the inputs arrive in.
- If nobody has a positive value the round pays nobody: the reward stays unminted / in the vault.

All arithmetic is on exact rationals, so every node computes the same amounts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from fractions import Fraction

from eth_utils.address import is_hex_address, to_checksum_address

MAX_UINT256 = (1 << 256) - 1


def canonical_address(account: str) -> str:
    """The EIP-55 checksum form of an account address.

    Raises
    ------
    ValueError
        If the string is not a 20-byte hex address.
    """
    if not isinstance(account, str) or not is_hex_address(account):
        raise ValueError(f"not a 20-byte hex account address: {account!r}")
    return str(to_checksum_address(account))


def allocate_rewards(
    reward: int,
    values: Mapping[str, Fraction | int],
    *,
    rejected: Collection[str] = (),
) -> dict[str, int]:
    """Split a round's reward into integer amounts, pro rata over positive values.

    Parameters
    ----------
    reward
        Token units to distribute this round; ``0 <= reward <= 2**256 - 1``.
    values
        Each contributor's value (e.g. its Shapley value), keyed by account address.
    rejected
        Accounts whose updates were rejected; they get 0 whatever their value.

    Returns
    -------
    dict[str, int]
        An amount for every account in `values` and `rejected`, keyed by checksum address, in
        address order. The amounts sum to `reward` when any value is positive, else to 0.

    Raises
    ------
    ValueError
        On a malformed address, the same account given twice in different spellings, or a reward
        outside the uint256 range.
    """
    if isinstance(reward, bool) or not isinstance(reward, int) or not 0 <= reward <= MAX_UINT256:
        raise ValueError(f"reward must be an integer in [0, 2**256 - 1], got {reward!r}")
    shares: dict[str, Fraction] = {}
    for account, value in values.items():
        key = canonical_address(account)
        if key in shares:
            raise ValueError(f"account {key} is listed twice in the values")
        shares[key] = Fraction(value)
    excluded = {canonical_address(account) for account in rejected}
    amounts = dict.fromkeys(sorted(shares.keys() | excluded, key=_address_number), 0)
    positive = {
        account: share for account, share in shares.items() if share > 0 and account not in excluded
    }
    total = sum(positive.values(), Fraction(0))
    if total == 0:
        return amounts
    remainders: list[tuple[Fraction, str]] = []
    for account, share in positive.items():
        exact = reward * share / total
        amounts[account] = exact.numerator // exact.denominator
        remainders.append((exact - amounts[account], account))
    left_over = reward - sum(amounts.values())
    remainders.sort(key=lambda item: (-item[0], _address_number(item[1])))
    for _, account in remainders[:left_over]:
        amounts[account] += 1
    return amounts


def _address_number(account: str) -> int:
    """An address as a 160-bit integer, the tie-break order."""
    return int(account, 16)
