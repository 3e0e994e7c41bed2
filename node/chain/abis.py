"""The ABIs of the committed contract artifacts, and contract objects built from them, cached.

Building a web3 contract object parses its whole ABI (milliseconds each); clients of many
members on one connection share one object per (contract, address) instead.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from swarmchain.node.chain.solidity import load_artifact

_CONTRACTS: WeakKeyDictionary[Web3, dict[tuple[str, str], Contract]] = WeakKeyDictionary()


@cache
def abi_of(contract: str) -> list[dict[str, Any]]:
    """The ABI of `contract` (``SwarmCoordinator``, ``SwarmToken``) from its artifact.

    Raises
    ------
    ToolchainError
        If the artifact does not exist.
    """
    abi: list[dict[str, Any]] = load_artifact(contract)["abi"]
    return abi


def contract_at(w3: Web3, contract: str, address: ChecksumAddress) -> Contract:
    """The web3 contract object of `contract` deployed at `address`, shared per connection."""
    per_connection = _CONTRACTS.setdefault(w3, {})
    key = (contract, address)
    if key not in per_connection:
        per_connection[key] = w3.eth.contract(address=address, abi=abi_of(contract))
    return per_connection[key]
