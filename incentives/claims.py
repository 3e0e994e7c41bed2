"""Keeping each round's reward tree, and claiming every unclaimed reward of an account.

The chain stores only a round's rewards root; the amounts and proofs live in the round's reward
tree, which every honest node computes while it values the round. A node keeps the trees it
computed in one directory, one OpenZeppelin ``standard-v1`` JSON file per round
(``round-00000042.json``), written with `save_reward_tree`. `claim_all` walks the finalized
rounds, checks each local tree against the root on chain, and claims what the account is owed
and has not claimed yet, so running it twice sends nothing the second time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from swarmchain.incentives.allocation import canonical_address
from swarmchain.incentives.merkle import EMPTY_ROOT, RewardTree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.protocol import RoundStatus
from swarmchain.node.errors import StorageError, VerificationError

MAX_TREE_BYTES = 64 << 20  # a tree of a million members is ~200 MiB; refuse anything absurd


def tree_path(directory: Path, round_id: int) -> Path:
    """Where the reward tree of `round_id` lives in `directory`."""
    return directory / f"round-{round_id:08d}.json"


def save_reward_tree(directory: Path, round_id: int, tree: RewardTree) -> Path:
    """Write a round's reward tree atomically (a crash never leaves half a file).

    Parameters
    ----------
    directory
        The node's reward-tree directory; created if missing.
    round_id
        The round the tree belongs to.
    tree
        The tree whose root the node attests.

    Returns
    -------
    Path
        The file written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = tree_path(directory, round_id)
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(tree.dump(), indent=1) + "\n")
    os.replace(scratch, path)
    return path


def load_reward_tree(directory: Path, round_id: int) -> RewardTree | None:
    """Read a round's reward tree, or None if the directory has none for it.

    Raises
    ------
    StorageError
        If the file cannot be read or is too large.
    VerificationError
        If it is not a valid tree (see `RewardTree.load`).
    """
    path = tree_path(directory, round_id)
    try:
        size = path.stat().st_size
        if size > MAX_TREE_BYTES:
            raise StorageError(f"reward tree {path} is {size} bytes, over {MAX_TREE_BYTES}")
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StorageError(f"cannot read reward tree {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise VerificationError(f"reward tree {path} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise VerificationError(f"reward tree {path} is not a JSON object")
    return RewardTree.load(data)


class ClaimStatus(Enum):
    """What happened to one finalized round."""

    CLAIMED = "claimed"  # a claim transaction was sent and mined
    ALREADY_CLAIMED = "already claimed"  # the chain shows an earlier claim
    NOTHING_OWED = "nothing owed"  # the round's tree pays this account nothing
    NO_TREE = "no local reward tree"  # this node did not keep the round's tree
    ROOT_MISMATCH = "local tree does not match the root on chain"  # a stale or foreign tree


@dataclass(frozen=True)
class ClaimResult:
    """The outcome for one finalized round."""

    round: int  # the round id
    status: ClaimStatus
    amount: int  # tokens owed by the tree (0 when unknown or nothing owed)
    tx_hash: str | None  # the claim transaction, when one was sent


def finalized_rounds(coordinator: Coordinator) -> Iterator[int]:
    """The ids of every finalized round, oldest first."""
    for round_id in range(1, coordinator.current_round()):
        if coordinator.round_info(round_id).status == RoundStatus.FINALIZED:
            yield round_id


def claim_due(tree: RewardTree, root: bytes, account: str) -> int:
    """What `account` may claim in a round by a local tree: 0 unless the tree has the root.

    Parameters
    ----------
    tree
        A reward tree this node kept or recomputed for the round.
    root
        The round's finalized rewards root.
    account
        The checksummed account.

    Returns
    -------
    int
        The amount to claim with ``tree.proof(account)``; 0 when nothing is owed.
    """
    return tree.amount_of(account) if tree.root == root else 0


def claim_all(
    coordinator: Coordinator, trees: Path, account: str | None = None
) -> list[ClaimResult]:
    """Claim every finalized round's reward that `account` is owed and has not claimed.

    Parameters
    ----------
    coordinator
        A client holding a key (it pays the gas; the tokens go to `account`).
    trees
        The directory of reward trees (see `save_reward_tree`).
    account
        Whose rewards to claim; the client's own account when None.

    Returns
    -------
    list[ClaimResult]
        One result per finalized round, oldest first.

    Raises
    ------
    ChainError
        If the chain cannot be reached or a claim reverts.
    StorageError, VerificationError
        If a stored tree cannot be read or is malformed.
    """
    who = coordinator.account if account is None else canonical_address(account)
    results = []
    for round_id in finalized_rounds(coordinator):
        root = coordinator.finalized_outcome(round_id).rewards_root
        if root == EMPTY_ROOT:
            results.append(ClaimResult(round_id, ClaimStatus.NOTHING_OWED, 0, None))
            continue
        tree = load_reward_tree(trees, round_id)
        if tree is None:
            results.append(ClaimResult(round_id, ClaimStatus.NO_TREE, 0, None))
        elif tree.root != root:
            results.append(ClaimResult(round_id, ClaimStatus.ROOT_MISMATCH, 0, None))
        elif (amount := claim_due(tree, root, who)) == 0:
            results.append(ClaimResult(round_id, ClaimStatus.NOTHING_OWED, 0, None))
        else:
            tx = coordinator.claim(round_id, who, amount, tree.proof(who))
            status = ClaimStatus.ALREADY_CLAIMED if tx is None else ClaimStatus.CLAIMED
            results.append(
                ClaimResult(round_id, status, amount, None if tx is None else tx.tx_hash)
            )
    return results
