"""Reward Merkle trees: byte-identical to OpenZeppelin's StandardMerkleTree, proofs verify.

`test_merkle_oz_vectors.json` was produced by `@openzeppelin/merkle-tree` 1.0.8 (the JavaScript
library) with ``StandardMerkleTree.of(values, ["address", "uint256"])`` for trees of 1 to 13
leaves, amounts including 0 and 2**256 - 1; it holds each tree's root, every proof, and the dump.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmchain.incentives import EMPTY_ROOT, RewardTree, leaf_hash, process_proof, verify_proof
from swarmchain.node.errors import VerificationError

VECTORS = json.loads((Path(__file__).parent / "test_merkle_oz_vectors.json").read_text())
CASES: list[dict[str, Any]] = VECTORS["cases"]

ALICE = "0x1111111111111111111111111111111111111111"
BOB = "0x2222222222222222222222222222222222222222"
CAROL = "0x3333333333333333333333333333333333333333"


def _values(case: dict[str, Any]) -> list[tuple[str, int]]:
    return [(account, int(amount)) for account, amount in case["values"]]


@pytest.mark.parametrize("case", CASES, ids=[f"{len(c['values'])}-leaves" for c in CASES])
def test_tree_matches_openzeppelin_root_proofs_and_dump(case: dict[str, Any]) -> None:
    tree = RewardTree.of(_values(case))

    assert "0x" + tree.root.hex() == case["root"]
    for (account, _), expected in zip(case["values"], case["proofs"], strict=True):
        assert ["0x" + node.hex() for node in tree.proof(account)] == expected
    dump = tree.dump()
    for item in dump["values"]:
        item["value"][0] = item["value"][0].lower()
    assert dump == case["dump"]


@pytest.mark.parametrize("case", CASES, ids=[f"{len(c['values'])}-leaves" for c in CASES])
def test_every_openzeppelin_proof_verifies_and_a_wrong_amount_does_not(
    case: dict[str, Any],
) -> None:
    root = bytes.fromhex(case["root"][2:])
    for (account, amount), proof_hex in zip(_values(case), case["proofs"], strict=True):
        proof = [bytes.fromhex(node[2:]) for node in proof_hex]
        assert verify_proof(root, account, amount, proof)
        assert not verify_proof(root, account, amount + 1 if amount == 0 else amount - 1, proof)


def test_leaf_is_double_keccak_of_abi_encoded_pair() -> None:
    from eth_abi.abi import encode
    from eth_utils.crypto import keccak

    expected = keccak(keccak(encode(["address", "uint256"], [ALICE, 5])))

    assert leaf_hash(ALICE, 5) == expected
    assert leaf_hash(ALICE.upper().replace("0X", "0x"), 5) == expected


def test_from_amounts_drops_zero_amounts_and_orders_by_address() -> None:
    tree = RewardTree.from_amounts({CAROL: 3, ALICE: 0, BOB: 7})

    assert [(e.account.lower(), e.amount) for e in tree.entries] == [(BOB, 7), (CAROL, 3)]
    assert tree.amount_of(ALICE) == 0
    assert tree.amount_of(BOB) == 7
    assert tree.total == 10
    assert verify_proof(tree.root, CAROL, 3, tree.proof(CAROL))
    with pytest.raises(KeyError, match="has no reward"):
        tree.proof(ALICE)


def test_root_does_not_depend_on_input_order() -> None:
    forward = RewardTree.of([(ALICE, 1), (BOB, 2), (CAROL, 3)])
    backward = RewardTree.of([(CAROL, 3), (BOB, 2), (ALICE, 1)])

    assert forward.root == backward.root


def test_round_without_rewards_has_the_empty_root() -> None:
    tree = RewardTree.from_amounts({ALICE: 0})

    assert tree.root == EMPTY_ROOT and tree.total == 0
    assert RewardTree.load(tree.dump()).root == EMPTY_ROOT
    assert not verify_proof(EMPTY_ROOT, ALICE, 0, [])


def test_duplicate_account_is_refused() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        RewardTree.of([(ALICE, 1), (ALICE.upper().replace("0X", "0x"), 2)])


@pytest.mark.parametrize("amount", [-1, 1 << 256])
def test_amount_outside_uint256_is_refused(amount: int) -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\*\*256 - 1\]"):
        RewardTree.of([(ALICE, amount)])


def test_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError, match="20-byte hex"):
        leaf_hash("0x1234", 1)


def test_dump_round_trips() -> None:
    tree = RewardTree.of([(ALICE, 10), (BOB, 20), (CAROL, 30)])

    loaded = RewardTree.load(json.loads(json.dumps(tree.dump())))

    assert loaded.root == tree.root
    assert loaded.entries == tree.entries


def test_load_rejects_a_dump_whose_amount_was_altered() -> None:
    dump = RewardTree.of([(ALICE, 10), (BOB, 20)]).dump()
    dump["values"][0]["value"][1] = "11"

    with pytest.raises(VerificationError, match="does not match"):
        RewardTree.load(dump)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="v2"),
        lambda d: d.pop("tree"),
        lambda d: d["values"][0].update(value=["nonsense", "1"]),
        lambda d: d["tree"].__setitem__(0, "0xzz"),
    ],
    ids=["format", "missing-tree", "bad-address", "bad-hex"],
)
def test_load_rejects_malformed_dumps(mutate: Any) -> None:
    dump = RewardTree.of([(ALICE, 10), (BOB, 20)]).dump()
    mutate(dump)

    with pytest.raises(VerificationError):
        RewardTree.load(dump)


def test_proof_element_of_wrong_length_is_a_verification_error() -> None:
    with pytest.raises(VerificationError, match="32 bytes"):
        process_proof(leaf_hash(ALICE, 1), [b"\x00" * 31])
