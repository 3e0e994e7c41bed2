"""Deploy compiled contracts, and whole swarms, to any EVM JSON-RPC endpoint with web3.py."""

from __future__ import annotations

import os
from typing import Any

import requests
from eth_account import Account
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import RPCEndpoint

from swarmchain.node.chain.abis import contract_at
from swarmchain.node.chain.deployment import ArtifactRecord, Deployment, SwarmParams
from swarmchain.node.chain.reverts import decode_revert
from swarmchain.node.chain.solidity import load_artifact
from swarmchain.node.chain.tx import Sender, revert_data
from swarmchain.node.errors import ChainError, ConfigError


def _session(rpc_url: str) -> requests.Session:
    """An HTTP session that reads the proxy and CA-bundle environment once, not per request.

    requests scans the whole environment on every request otherwise (a third of the CPU of a
    local ``eth_call``, and a node makes about a hundred calls a round).
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(rpc_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def connect(rpc_url: str, timeout_s: float = 10.0) -> Web3:
    """Open a web3 connection and check that the node answers.

    Raises
    ------
    ChainError
        If nothing answers JSON-RPC at `rpc_url`.
    """
    # web3 asks for the chain id before nearly every call; it cannot change under one URL, so
    # it alone is cached (blocks are not: a reverted local chain reuses block numbers).
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout_s},
        session=_session(rpc_url),
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )
    w3 = Web3(provider)
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
    address, _ = _deploy(w3, private_key, name, *args)
    return address


def _deploy(w3: Web3, private_key: str, name: str, *args: Any) -> tuple[str, int]:
    """Deploy `name`; returns its address and the block it was deployed in."""
    artifact = load_artifact(name)
    account = Account.from_key(private_key)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    try:
        tx = factory.constructor(*args).build_transaction(
            {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), poll_latency=0.02
        )
    except ContractLogicError as err:
        raise decode_revert(revert_data(err), context=f"deploying {name}") from err
    except Web3Exception as err:
        raise ChainError(f"deploying {name} failed: {err}") from err
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError(
            f"deploying {name} reverted in tx {receipt['transactionHash'].to_0x_hex()}"
        )
    return str(receipt["contractAddress"]), int(receipt["blockNumber"])


def _artifact_record(name: str) -> ArtifactRecord:
    artifact = load_artifact(name)
    return ArtifactRecord(
        source_hash=artifact["sourceHash"],
        bytecode_hash="0x" + keccak(hexstr=artifact["bytecode"]).hex(),
        compiler=artifact["compiler"]["version"],
    )


def deploy_swarm(
    w3: Web3, private_key: str, params: SwarmParams, *, token: str | None = None
) -> Deployment:
    """Deploy a swarm: the token (unless given), the coordinator, and the funded reward pool.

    Parameters
    ----------
    w3
        A connection to the target chain.
    private_key
        The deployer's key; a new token's whole supply is minted to this account, and the
        reward pool is paid from it.
    params
        The task and parameters; validated before anything is sent.
    token
        An existing ERC-20 to use instead of deploying a new `SwarmToken`.

    Returns
    -------
    Deployment
        What to save with `save_deployment`.

    Raises
    ------
    ConfigError
        If a parameter is out of range, or `token` holds no contract.
    ChainError
        If a transaction fails (a named revert where the contracts give one).
    """
    params.validate()
    deployer = Account.from_key(private_key).address
    if token is None:
        new_token = deploy_contract(w3, private_key, "SwarmToken", deployer, params.token_supply)
        token_address = to_checksum_address(new_token)
    else:
        if not is_address(token) or not w3.eth.get_code(to_checksum_address(token)):
            raise ConfigError(f"no token contract at {token}")
        token_address = to_checksum_address(token)
    coordinator_address, block = _deploy(
        w3,
        private_key,
        "SwarmCoordinator",
        token_address,
        params.task_spec_cid,
        bytes.fromhex(params.task_spec_hash[2:]),
        params.coordinator_params().as_abi(),
    )
    coordinator = to_checksum_address(coordinator_address)
    if params.reward_pool > 0:
        sender = Sender(w3, private_key)
        erc20 = contract_at(w3, "SwarmToken", token_address)
        pool = contract_at(w3, "SwarmCoordinator", coordinator)
        sender.send(erc20.functions.approve(coordinator, params.reward_pool), "approve(pool)")
        sender.send(pool.functions.fundRewards(params.reward_pool), "fundRewards(pool)")
    return Deployment(
        chain_id=w3.eth.chain_id,
        token=token_address,
        coordinator=coordinator,
        deploy_block=block,
        deployer=deployer,
        params=params,
        artifacts={name: _artifact_record(name) for name in ("SwarmToken", "SwarmCoordinator")},
    )
