"""One round's settlement: values, token amounts and the reward tree, from the round's game.

This is the call a node makes after aggregating (and an auditor makes to recompute a round):
value every accepted contributor with the swarm's estimator, split the round's reward over the
positive values, and build the Merkle tree whose root goes into the attestation.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

from swarmchain.incentives.allocation import allocate_rewards, canonical_address
from swarmchain.incentives.merkle import RewardTree
from swarmchain.incentives.shapley import ShapleyEstimate, ValuationConfig, estimate_shapley
from swarmchain.incentives.utility import CoalitionUtility


@dataclass(frozen=True)
class RoundRewards:
    """Everything a node needs to attest a round's rewards, and to let members claim them."""

    estimate: ShapleyEstimate  # the raw valuation, players in aggregation order
    values: dict[str, Fraction]  # account -> value (accepted contributors only)
    amounts: dict[str, int]  # account -> tokens, rejected and non-positive included at 0
    tree: RewardTree  # positive amounts only; tree.root is the attested rewards root

    @property
    def root(self) -> bytes:
        """The rewards root to attest."""
        return self.tree.root


def settle_round(
    utility: CoalitionUtility,
    accounts: Sequence[str],
    *,
    seed: bytes | int,
    reward: int,
    rejected: Collection[str] = (),
    config: ValuationConfig | None = None,
) -> RoundRewards:
    """Value the accepted contributors, split the reward, build the reward tree.

    Parameters
    ----------
    utility
        The round's game over the accepted updates (e.g.
        `swarmchain.incentives.game.round_utility`); player ``i`` is ``accounts[i]``.
    accounts
        The accepted contributors' addresses, in the game's player order.
    seed
        The round seed (`Coordinator.round_seed`).
    reward
        Tokens the round pays out.
    rejected
        Submitters whose updates were rejected; listed with 0 in `amounts`.
    config
        The swarm's valuation parameters.

    Returns
    -------
    RoundRewards
        Values, amounts and the reward tree.

    Raises
    ------
    ValueError
        If the accounts do not match the game's players, or an address is malformed.
    """
    if len(accounts) != utility.n_players:
        raise ValueError(
            f"the game has {utility.n_players} players but {len(accounts)} accounts were given"
        )
    estimate = estimate_shapley(utility, seed, config)
    values = {
        canonical_address(account): value
        for account, value in zip(accounts, estimate.values, strict=True)
    }
    if len(values) != len(accounts):
        raise ValueError("an account appears twice among the accepted contributors")
    amounts = allocate_rewards(reward, values, rejected=rejected)
    return RoundRewards(estimate, values, amounts, RewardTree.from_amounts(amounts))
