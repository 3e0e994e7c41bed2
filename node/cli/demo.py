"""`swarm demo`: a local chain with the token deployed, from nothing."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from node.chain.anvil import Anvil
from node.chain.deploy import deploy_token

DEFAULT_SUPPLY = 10**6 * 10**18


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Start a local Anvil chain, deploy the Swarm token, print its address, and stop.

    Example: swarm demo --json
    """
    with Anvil() as chain:
        deployer = chain.accounts[0]
        token = deploy_token(chain.rpc_url, deployer.private_key, deployer.address, DEFAULT_SUPPLY)
        result = {"rpc": chain.rpc_url, "chain_id": chain.settings.chain_id, "token": token}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"Anvil chain {result['chain_id']} started at {result['rpc']}")
        typer.echo(f"SwarmToken deployed at {token}")
