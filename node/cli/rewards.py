"""`swarm rewards list` and `swarm rewards claim`: what an account earned, and claiming it.

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
from eth_utils.address import is_address, to_checksum_address

from swarmchain.incentives.claims import ClaimStatus, claim_all, load_reward_tree
from swarmchain.node.audit.report import tokens
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.events import Claimed, RoundFinalized
from swarmchain.node.cli.options import DEFAULT_RPC, Json, echo_json
from swarmchain.node.errors import ConfigError

app = typer.Typer(
    name="rewards",
    help="Rewards earned by contributing to a swarm.",
    no_args_is_help=True,
)


def _journal(journal: Path | None, address: str) -> Path:
    return journal if journal is not None else Path.home() / ".swarmchain" / "nodes" / address


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
    as_json: Json = False,
) -> None:
    """Claim every unclaimed reward of an account, round by round.

    Examples:

        swarm rewards claim --deployment deployment.json --key key.txt

        swarm rewards claim --deployment deployment.json --key $KEY --journal ./journal-a --json
    """
    # Imported here, not at the top: they pull in torch, which `--help` does not need.
    from swarmchain.node.runtime.config import read_private_key
    from swarmchain.node.runtime.session import REWARDS_DIR

    private_key = read_private_key(key)
    address = str(Account.from_key(private_key).address)
    directory = _journal(journal, address)
    coordinator = Coordinator.connect(rpc, deployment, private_key)
    results = claim_all(coordinator, directory / REWARDS_DIR, account)
    claimed = [result for result in results if result.status == ClaimStatus.CLAIMED]
    total = sum(result.amount for result in claimed)
    if as_json:
        echo_json(
            {
                "rounds": [
                    {
                        "round": r.round,
                        "status": r.status.value,
                        "amount": str(r.amount),
                        "tx": r.tx_hash,
                    }
                    for r in results
                ],
                "claimed": str(total),
            }
        )
        return
    for result in results:
        if result.status == ClaimStatus.CLAIMED:
            typer.echo(f"round {result.round}: claimed {result.amount} (tx {result.tx_hash})")
        elif result.status == ClaimStatus.ALREADY_CLAIMED:
            typer.echo(f"round {result.round}: {result.amount} already claimed")
        else:
            typer.echo(f"round {result.round}: {result.status.value}")
    typer.echo(f"claimed {total} tokens over {len(claimed)} round(s)")


@app.command(name="list")
def list_rewards(
    deployment: Annotated[
        Path, typer.Option("--deployment", help="The deployment file `swarm deploy` wrote.")
    ],
    account: Annotated[
        str | None,
        typer.Option("--account", help="Whose rewards to list.", show_default=False),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="SWARM_NODE_KEY",
            help="List the rewards of this key's account (0x..., or a file).",
            show_default=False,
        ),
    ] = None,
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the chain.")] = DEFAULT_RPC,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="The node's journal directory, whose reward trees say what is owed "
            "(default ~/.swarmchain/nodes/ADDR).",
            show_default=False,
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """List an account's reward for every finalized round: owed, and whether it is claimed.

    What was claimed comes from the chain; what is owed from the reward trees the node kept
    (each checked against the round's root on chain), so a round the node did not value shows
    its claim only.

    Examples:

        swarm rewards list --deployment deployment.json --key key.txt

        swarm rewards list --deployment deployment.json --account 0x7099... --json
    """
    # Imported here, not at the top: they pull in torch, which `--help` does not need.
    from swarmchain.node.runtime.config import read_private_key
    from swarmchain.node.runtime.session import REWARDS_DIR

    if account is None:
        if key is None:
            raise ConfigError("whose rewards?", hint="pass --account ADDRESS or --key KEY")
        account = str(Account.from_key(read_private_key(key)).address)
    elif not is_address(account):
        raise ConfigError(f"--account {account!r} is not an address (0x + 40 hex digits)")
    who = str(to_checksum_address(account))
    coordinator = Coordinator.connect(rpc, deployment)
    trees = _journal(journal, who) / REWARDS_DIR
    claimed: dict[int, int] = {}
    rows: list[tuple[int, int | None]] = []  # (round, owed; None: no matching local tree)
    events = coordinator.events()
    for e in events:
        if isinstance(e, Claimed) and e.account == who:
            claimed[e.round] = claimed.get(e.round, 0) + e.amount
    for e in events:
        if not isinstance(e, RoundFinalized):
            continue
        tree = load_reward_tree(trees, e.round)
        owed = None
        if tree is not None and tree.root == e.outcome.rewards_root:
            owed = tree.amount_of(who)
        rows.append((e.round, owed))
    if as_json:
        echo_json(
            {
                "account": who,
                "rounds": [
                    {
                        "round": r,
                        "owed": None if owed is None else str(owed),
                        "claimed": str(claimed.get(r, 0)),
                    }
                    for r, owed in rows
                ],
                "claimed": str(sum(claimed.values())),
            }
        )
        return
    typer.echo(f"rewards of {who}")
    for r, owed in rows:
        text = "unknown (no local tree)" if owed is None else tokens(owed)
        typer.echo(f"  round {r}: owed {text}, claimed {tokens(claimed.get(r, 0))}")
    typer.echo(f"claimed {tokens(sum(claimed.values()))} tokens in all")
