"""Deploy compiled contracts to any EVM JSON-RPC endpoint with web3.py."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3Exception

from node.chain.solidity import load_artifact
from node.errors import ChainError


def connect(rpc_url: str, timeout_s: float = 10.0) -> Web3:
    """Open a web3 connection and check that the node answers.

    Raises
    ------
    ChainError
        If nothing answers JSON-RPC at `rpc_url`.
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
    if not w3.is_connected():
        raise ChainError(
            f"no EVM node answers at {rpc_url}", hint="check --rpc, or start one with `swarm demo`"
        )
    return w3


def deploy_contract(w3: Web3, private_key: str, name: str, *args: Any) -> str:
    """Deploy the compiled contract `name` with constructor `args`, signed by `private_key`.

    Returns
    -------
    str
        The checksummed address of the new contract.

    Raises
    ------
    ChainError
        If the deployment transaction fails or reverts.
    """
    artifact = load_artifact(name)
    account = Account.from_key(private_key)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    try:
        tx = factory.constructor(*args).build_transaction(
            {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction)
        )
    except Web3Exception as err:
        raise ChainError(f"deploying {name} failed: {err}") from err
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError(
            f"deploying {name} reverted in tx {receipt['transactionHash'].to_0x_hex()}"
        )
    return str(receipt["contractAddress"])


def deploy_token(rpc_url: str, private_key: str, holder: str, supply: int) -> str:
    """Deploy `SwarmToken`, minting the fixed `supply` to `holder`; returns its address."""
    return deploy_contract(connect(rpc_url), private_key, "SwarmToken", holder, supply)
