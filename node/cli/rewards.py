"""`swarm rewards claim`: claim every finalized round's reward an account is owed.

The key is given as for `swarm node join`: ``--key`` or ``SWARM_NODE_KEY``, inline (``0x...``) or
the path of a file holding it. Amounts and proofs come from the reward trees the node kept while
valuing each round, in ``<journal>/rewards``; each is checked against the root on chain before a
claim is sent, and rounds already claimed are skipped, so running it again is harmless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account

from incentives.claims import ClaimStatus, claim_all
from node.chain.coordinator import Coordinator
from node.runtime.config import DEFAULT_RPC, read_private_key
from node.runtime.node import REWARDS_DIR

app = typer.Typer(
    name="rewards",
    help="Rewards earned by contributing to a swarm.",
    no_args_is_help=True,
)


@app.command()
def claim(
    deployment: Annotated[
        Path, typer.Option("--deployment", help="The deployment file `swarm deploy` wrote.")
    ],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            envvar="SWARM_NODE_KEY",
            help="Private key (0x...) that sends the claims and pays their gas, or a file.",
        ),
    ],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the chain.")] = DEFAULT_RPC,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="The node's journal directory (default ~/.swarmchain/nodes/ADDR).",
            show_default=False,
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account", help="Claim for this account instead of the key's.", show_default=False
        ),
    ] = None,
) -> None:
    """Claim every unclaimed reward of an account, round by round."""
    private_key = read_private_key(key)
    address = str(Account.from_key(private_key).address)
    directory = journal if journal is not None else Path.home() / ".swarmchain" / "nodes" / address
    coordinator = Coordinator.connect(rpc, deployment, private_key)
    results = claim_all(coordinator, directory / REWARDS_DIR, account)
    for result in results:
        if result.status == ClaimStatus.CLAIMED:
            typer.echo(f"round {result.round}: claimed {result.amount} (tx {result.tx_hash})")
        elif result.status == ClaimStatus.ALREADY_CLAIMED:
            typer.echo(f"round {result.round}: {result.amount} already claimed")
        else:
            typer.echo(f"round {result.round}: {result.status.value}")
    claimed = [result for result in results if result.status == ClaimStatus.CLAIMED]
    total = sum(result.amount for result in claimed)
    typer.echo(f"claimed {total} tokens over {len(claimed)} round(s)")
