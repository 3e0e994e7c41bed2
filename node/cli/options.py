"""Options several commands share, declared once so they read the same everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

Deployment = Annotated[
    Path,
    typer.Option("--deployment", help="The deployment file `swarm deploy` wrote."),
]
Rpc = Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the swarm's chain.")]
Store = Annotated[
    Path | None,
    typer.Option("--store", help="Embedded content store directory (default ~/.swarmchain/store)."),
]
IpfsApi = Annotated[
    str | None,
    typer.Option("--ipfs-api", help="Use an IPFS (Kubo) daemon's RPC API as the store."),
]
Peers = Annotated[
    list[str] | None,
    typer.Option("--peer", help="A gateway URL to fetch missing blocks from (repeatable)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]

DEFAULT_DEPLOYMENT = Path("deployment.json")
DEFAULT_RPC = (
    "http://127.0.0.1:8545"  # the same default as a node's (swarmchain.node.runtime.config)
)


def echo_json(value: Any) -> None:
    """Print a JSON-ready value as one sorted line on stdout."""
    typer.echo(json.dumps(value, sort_keys=True))
