"""Merkle trees of ``(account, amount)`` rewards, identical to OpenZeppelin's StandardMerkleTree.

The contract checks a claim with OpenZeppelin's `MerkleProof.verify(proof, root, leaf)` where
``leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount))))``. This module builds the
same trees as the JavaScript `@openzeppelin/merkle-tree` library (`StandardMerkleTree.of(values,
["address", "uint256"])`), byte for byte:

- leaves are the double-keccak hashes above, sorted in ascending order;
- the tree is a flat array of ``2L - 1`` nodes: leaf ``i`` of the sorted list sits at index
  ``2L - 2 - i``, and node ``j`` hashes its children ``2j + 1`` and ``2j + 2`` as
  ``keccak256(min(a, b) ‖ max(a, b))`` (sorted pairs, so proofs carry no left/right flags);
- a proof lists the sibling of each node on the path from the leaf up to the root (index 0);
- `RewardTree.dump` / `RewardTree.load` read and write OpenZeppelin's ``standard-v1`` JSON format,
  so claimers can use either library.

A round in which nobody earns anything has no leaves; its root is `EMPTY_ROOT` (32 zero bytes),
which no proof can ever reach.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from swarmchain.incentives.allocation import MAX_UINT256, canonical_address
from swarmchain.node.errors import VerificationError

LEAF_ENCODING = ("address", "uint256")
EMPTY_ROOT = bytes(32)
DUMP_FORMAT = "standard-v1"


def leaf_hash(account: str, amount: int) -> bytes:
    """The leaf of ``(account, amount)``: ``keccak256(keccak256(abi.encode(account, amount)))``.

    Raises
    ------
    ValueError
        On a malformed address or an amount outside the uint256 range.
    """
    _check_amount(amount)
    return keccak(keccak(encode(list(LEAF_ENCODING), [canonical_address(account), amount])))


def node_hash(left: bytes, right: bytes) -> bytes:
    """The parent of two nodes: keccak256 of the two concatenated in ascending byte order."""
    low, high = sorted((left, right))
    return keccak(low + high)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root reached by folding a proof into a leaf (OpenZeppelin's `MerkleProof.processProof`).

    Raises
    ------
    VerificationError
        If the leaf or a proof element is not 32 bytes.
    """
    node = _check_node(leaf)
    for sibling in proof:
        node = node_hash(node, _check_node(sibling))
    return node


def verify_proof(root: bytes, account: str, amount: int, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows that ``(account, amount)`` is a leaf of the tree with `root`.

    Raises
    ------
    VerificationError
        If the root or a proof element is not 32 bytes.
    ValueError
        On a malformed address or amount.
    """
    return process_proof(leaf_hash(account, amount), proof) == _check_node(root)


@dataclass(frozen=True)
class RewardEntry:
    """One leaf's value and where its hash sits in the tree array."""

    account: str  # checksum address
    amount: int  # token units, uint256
    tree_index: int  # index of the leaf hash in `RewardTree.tree`


class RewardTree:
    """A StandardMerkleTree over ``(address, uint256)`` reward entries.

    Build one with `RewardTree.of` (any order, exactly as OpenZeppelin's `StandardMerkleTree.of`)
    or `RewardTree.from_amounts` (the round's allocation: zero amounts left out, address order).

    Parameters
    ----------
    tree
        The node array, root first.
    entries
        The leaves' values, in the order they were given.
    """

    def __init__(self, tree: Sequence[bytes], entries: Sequence[RewardEntry]) -> None:
        self._tree = tuple(tree)
        self._entries = tuple(entries)
        self._by_account = {entry.account: entry for entry in self._entries}

    @classmethod
    def of(cls, values: Sequence[tuple[str, int]]) -> RewardTree:
        """Build the tree exactly as ``StandardMerkleTree.of(values, ["address", "uint256"])``.

        Parameters
        ----------
        values
            ``(account, amount)`` pairs; the order only affects `dump`, never the root.

        Returns
        -------
        RewardTree
            The tree; with no values, the empty tree whose root is `EMPTY_ROOT`.

        Raises
        ------
        ValueError
            On a malformed address or amount, or an account listed twice.
        """
        accounts = [canonical_address(account) for account, _ in values]
        if len(set(accounts)) != len(accounts):
            raise ValueError("an account appears twice in the reward values")
        hashed = sorted(
            (leaf_hash(account, amount), position)
            for position, (account, amount) in enumerate(values)
        )
        size = 2 * len(hashed) - 1
        tree: list[bytes] = [b""] * max(size, 0)
        tree_index = [0] * len(values)
        for rank, (leaf, position) in enumerate(hashed):
            tree[size - 1 - rank] = leaf
            tree_index[position] = size - 1 - rank
        for j in range(size - 1 - len(hashed), -1, -1):
            tree[j] = node_hash(tree[2 * j + 1], tree[2 * j + 2])
        entries = [
            RewardEntry(account, amount, index)
            for account, (_, amount), index in zip(accounts, values, tree_index, strict=True)
        ]
        return cls(tree, entries)

    @classmethod
    def from_amounts(cls, amounts: Mapping[str, int]) -> RewardTree:
        """The reward tree of a round's allocation: positive amounts only, in address order.

        Parameters
        ----------
        amounts
            Token units per account, e.g. from `incentives.allocate_rewards`.

        Returns
        -------
        RewardTree
            The tree to store (its `dump`) and whose `root` goes into the attestation.
        """
        positive = [(canonical_address(account), amount) for account, amount in amounts.items()]
        for _, amount in positive:
            _check_amount(amount)
        ordered = sorted(
            ((account, amount) for account, amount in positive if amount > 0),
            key=lambda item: int(item[0], 16),
        )
        return cls.of(ordered)

    @property
    def root(self) -> bytes:
        """The 32-byte Merkle root; `EMPTY_ROOT` for a tree without leaves."""
        return self._tree[0] if self._tree else EMPTY_ROOT

    @property
    def total(self) -> int:
        """The sum of the leaves' amounts: what the tree pays in all (0 without leaves)."""
        return sum(entry.amount for entry in self._entries)

    @property
    def tree(self) -> tuple[bytes, ...]:
        """The node array, root first (OpenZeppelin's layout)."""
        return self._tree

    @property
    def entries(self) -> tuple[RewardEntry, ...]:
        """The leaves' values, in the order they were given."""
        return self._entries

    def amount_of(self, account: str) -> int:
        """The amount owed to an account in this tree; 0 if it has no leaf."""
        entry = self._by_account.get(canonical_address(account))
        return 0 if entry is None else entry.amount

    def proof(self, account: str) -> list[bytes]:
        """The proof for an account's leaf: siblings from the leaf up to the root.

        Raises
        ------
        KeyError
            If the account has no leaf in this tree.
        """
        key = canonical_address(account)
        entry = self._by_account.get(key)
        if entry is None:
            raise KeyError(f"{key} has no reward in this tree")
        index = entry.tree_index
        path: list[bytes] = []
        while index > 0:
            path.append(self._tree[index + 1 if index % 2 else index - 1])
            index = (index - 1) // 2
        return path

    def dump(self) -> dict[str, Any]:
        """The tree in OpenZeppelin's ``standard-v1`` JSON shape (hex strings, decimal amounts)."""
        return {
            "format": DUMP_FORMAT,
            "leafEncoding": list(LEAF_ENCODING),
            "tree": ["0x" + node.hex() for node in self._tree],
            "values": [
                {"value": [entry.account, str(entry.amount)], "treeIndex": entry.tree_index}
                for entry in self._entries
            ],
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> RewardTree:
        """Read a ``standard-v1`` dump (e.g. fetched from a peer) and check every node.

        Parameters
        ----------
        data
            The parsed JSON.

        Returns
        -------
        RewardTree
            The tree, rebuilt from its values and checked against the dump.

        Raises
        ------
        VerificationError
            If the dump is malformed, or its nodes or leaf positions differ from the tree its values
            produce.
        """
        try:
            if data["format"] != DUMP_FORMAT or list(data["leafEncoding"]) != list(LEAF_ENCODING):
                raise VerificationError(
                    f"reward tree dump is not {DUMP_FORMAT} over {LEAF_ENCODING}",
                    hint="produce it with RewardTree.dump or StandardMerkleTree.dump",
                )
            nodes = [bytes.fromhex(_strip_0x(node)) for node in data["tree"]]
            values = [
                (str(item["value"][0]), int(str(item["value"][1]), 10)) for item in data["values"]
            ]
            indices = [int(item["treeIndex"]) for item in data["values"]]
            rebuilt = cls.of(values)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise VerificationError(f"malformed reward tree dump: {err}") from err
        if list(rebuilt.tree) != nodes or [e.tree_index for e in rebuilt.entries] != indices:
            raise VerificationError(
                "reward tree dump does not match the tree its values produce",
                hint="the dump was altered or built with a different leaf encoding",
            )
        return rebuilt


def _strip_0x(text: str) -> str:
    """Hex digits without a leading 0x."""
    return text[2:] if text.startswith(("0x", "0X")) else text


def _check_amount(amount: int) -> None:
    """Raise unless the amount is a uint256."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_UINT256:
        raise ValueError(f"reward amount must be an integer in [0, 2**256 - 1], got {amount!r}")


def _check_node(node: bytes) -> bytes:
    """Raise unless a tree node is exactly 32 bytes."""
    if not isinstance(node, bytes) or len(node) != 32:
        raise VerificationError(f"a Merkle node must be 32 bytes, got {node!r}")
    return node
