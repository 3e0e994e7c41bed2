"""`swarm token`: the swarm's ERC-20: balances, and sending tokens to members so they can stake."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from eth_utils.address import is_address, to_checksum_address

from swarmchain.node.audit.report import TOKEN_DECIMALS, tokens
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import load_deployment
from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json
from swarmchain.node.errors import ConfigError

app = typer.Typer(
    name="token",
    help="Balances of the swarm's token, and sending it to members.",
    no_args_is_help=True,
    add_completion=False,
)


def parse_amount(text: str) -> int:
    """Whole tokens (``150``, ``0.5``) as base units (18 decimals).

    Raises
    ------
    ConfigError
        If the text is not a positive number with at most 18 decimals.
    """
    try:
        value = Decimal(text) * 10**TOKEN_DECIMALS
    except InvalidOperation:
        raise ConfigError(f"--amount {text!r} is not a number of tokens") from None
    if value <= 0 or value != value.to_integral_value():
        raise ConfigError(f"--amount must be positive with at most 18 decimals, got {text!r}")
    return int(value)


def _address(text: str, option: str) -> str:
    if not is_address(text):
        raise ConfigError(f"{option} {text!r} is not an address (0x + 40 hex digits)")
    return str(to_checksum_address(text))


@app.command()
def balance(
    account: Annotated[str, typer.Argument(help="The account to look up.")],
    deployment: options.Deployment = options.DEFAULT_DEPLOYMENT,
    rpc: options.Rpc = options.DEFAULT_RPC,
    as_json: options.Json = False,
) -> None:
    """Print an account's token balance.

    Examples:

        swarm token balance 0x70997970C51812dc3A010C7d01b50e0d17dc79C8

        swarm token balance 0x7099... --deployment deployment.json --json
    """
    who = _address(account, "ACCOUNT")
    coordinator = Coordinator(connect(rpc), load_deployment(deployment))
    held = coordinator.token.balance_of(who)
    if as_json:
        echo_json({"account": who, "balance": str(held)})
    else:
        typer.echo(f"{who} holds {tokens(held)} tokens")


@app.command()
def send(
    to: Annotated[str, typer.Option("--to", help="The receiving account.")],
    amount: Annotated[str, typer.Option("--amount", help="Whole tokens to send (e.g. 150).")],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            envvar="SWARM_KEY",
            help="The sender's private key (0x...), or a file holding it.",
            show_default=False,
        ),
    ],
    deployment: options.Deployment = options.DEFAULT_DEPLOYMENT,
    rpc: options.Rpc = options.DEFAULT_RPC,
    as_json: options.Json = False,
) -> None:
    """Send tokens (e.g. from the deployer, who holds the supply, to a new member).

    Examples:

        swarm token send --to 0x7099... --amount 150 --key $DEPLOYER_KEY

        swarm token send --to 0x7099... --amount 150 --key deployer.key --json
    """
    from swarmchain.node.runtime.config import read_private_key  # here: the module pulls in torch

    receiver = _address(to, "--to")
    units = parse_amount(amount)
    coordinator = Coordinator(connect(rpc), load_deployment(deployment), read_private_key(key))
    sender = coordinator.account
    held = coordinator.token.balance_of(sender)
    if held < units:
        raise ConfigError(
            f"{sender} holds {tokens(held)} tokens, fewer than the {tokens(units)} to send"
        )
    tx = coordinator.token.transfer(receiver, units)
    if as_json:
        echo_json({"from": sender, "to": receiver, "amount": str(units), "tx": tx.tx_hash})
    else:
        typer.echo(f"sent {tokens(units)} tokens from {sender} to {receiver} (tx {tx.tx_hash})")
