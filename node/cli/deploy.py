"""`swarm deploy`: deploy the token and the coordinator to an EVM chain, write the deployment file.

The deployer key comes from ``--key`` or the ``SWARM_DEPLOYER_KEY`` environment variable (which
keeps it out of shell history). With neither, and only when the chain reports Anvil's chain id
31337, Anvil's first dev account is used: its key is public, so it is refused anywhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account

from swarmchain.node.chain.deploy import connect, deploy_swarm
from swarmchain.node.chain.deployment import SwarmParams, save_deployment
from swarmchain.node.errors import ConfigError, SwarmchainError

ANVIL_CHAIN_ID = 31337
# Account 0 of the public "test test ... junk" mnemonic every Anvil and Hardhat chain funds.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
_DEFAULTS = SwarmParams(task_spec_cid="-", task_spec_hash="0x" + "00" * 32)


def deployer_key(key: str | None, chain_id: int) -> str:
    """The key to deploy with: `key` if given, else Anvil's dev key on chain 31337 only.

    Raises
    ------
    ConfigError
        If `key` is malformed, or no key is given for another chain.
    """
    if key is not None:
        try:
            Account.from_key(key)
        except (ValueError, TypeError) as err:
            raise ConfigError("--key is not a valid private key (0x + 64 hex digits)") from err
        return key
    if chain_id != ANVIL_CHAIN_ID:
        raise ConfigError(
            f"no deployer key for chain {chain_id}",
            hint="pass --key or set SWARM_DEPLOYER_KEY (the Anvil dev key is only used on 31337)",
        )
    return ANVIL_DEV_KEY


def deploy(
    task_spec_cid: Annotated[
        str, typer.Option("--task-spec-cid", help="CID of the task spec blob.")
    ],
    task_spec_hash: Annotated[
        str, typer.Option("--task-spec-hash", help="0x SHA-256 of the task spec blob.")
    ],
    rpc: Annotated[
        str, typer.Option("--rpc", help="JSON-RPC URL of the chain.")
    ] = "http://127.0.0.1:8545",
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="SWARM_DEPLOYER_KEY",
            help="Deployer private key; defaults to Anvil's dev key on chain 31337 only.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the deployment JSON.")] = Path(
        "deployment.json"
    ),
    token: Annotated[
        str | None,
        typer.Option("--token", help="Use this existing ERC-20 instead of deploying SwarmToken."),
    ] = None,
    quorum_bps: Annotated[
        int, typer.Option(help="Stake share a tuple needs, in basis points (> 5000).")
    ] = _DEFAULTS.quorum_bps,
    slash_bps: Annotated[
        int, typer.Option(help="Stake share slashed per offence, in basis points.")
    ] = _DEFAULTS.slash_bps,
    commit_duration: Annotated[
        int, typer.Option(help="Commit window, seconds.")
    ] = _DEFAULTS.commit_duration_s,
    reveal_duration: Annotated[
        int, typer.Option(help="Reveal window, seconds.")
    ] = _DEFAULTS.reveal_duration_s,
    attest_duration: Annotated[
        int, typer.Option(help="Attest window, seconds.")
    ] = _DEFAULTS.attest_duration_s,
    unbonding_delay: Annotated[
        int, typer.Option(help="Exit to earliest withdrawal, seconds.")
    ] = _DEFAULTS.unbonding_delay_s,
    min_stake: Annotated[
        int, typer.Option(help="Smallest stake, token units (18 decimals).")
    ] = _DEFAULTS.min_stake,
    reward_per_round: Annotated[
        int, typer.Option(help="Most a round pays out, token units.")
    ] = _DEFAULTS.reward_per_round,
    reward_pool: Annotated[
        int, typer.Option(help="Tokens moved into the reward pool at deployment.")
    ] = _DEFAULTS.reward_pool,
    token_supply: Annotated[
        int, typer.Option(help="Fixed supply of a new SwarmToken, minted to the deployer.")
    ] = _DEFAULTS.token_supply,
    as_json: Annotated[bool, typer.Option("--json", help="Print the deployment as JSON.")] = False,
) -> None:
    """Deploy SwarmToken and SwarmCoordinator, fund the reward pool, write the deployment file.

    Example: swarm deploy --rpc http://127.0.0.1:8545 --task-spec-cid bafk... --task-spec-hash 0x...
    """
    params = SwarmParams(
        task_spec_cid=task_spec_cid,
        task_spec_hash=task_spec_hash.lower(),
        quorum_bps=quorum_bps,
        slash_bps=slash_bps,
        commit_duration_s=commit_duration,
        reveal_duration_s=reveal_duration,
        attest_duration_s=attest_duration,
        unbonding_delay_s=unbonding_delay,
        min_stake=min_stake,
        reward_per_round=reward_per_round,
        reward_pool=reward_pool,
        token_supply=token_supply,
    )
    params.validate()
    w3 = connect(rpc)
    deployment = deploy_swarm(w3, deployer_key(key, w3.eth.chain_id), params, token=token)
    save_deployment(deployment, out)
    if as_json:
        typer.echo(json.dumps(deployment.to_json(), sort_keys=True))
    else:
        typer.echo(f"chain {deployment.chain_id}, block {deployment.deploy_block}")
        typer.echo(f"SwarmToken       {deployment.token}")
        typer.echo(f"SwarmCoordinator {deployment.coordinator}")
        typer.echo(f"deployment written to {out}")


def main() -> None:
    """Run `deploy` as a program (``scripts/deploy.py``): errors become one line and exit 1."""
    program = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    program.command()(deploy)
    try:
        program()
    except SwarmchainError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(1)
