"""`swarm chain`: run the pinned local Anvil chain in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json
from swarmchain.node.devtools.anvil import Anvil

SHOWN_ACCOUNTS = 4  # dev accounts printed (all 20 are funded)


def chain(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.", min=1)] = 8545,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Load the chain from this file and save it there on exit."),
    ] = None,
    as_json: options.Json = False,
) -> None:
    """Start a local Anvil chain (chain id 31337) and keep it running until Ctrl-C.

    Its dev accounts are funded with ether and their keys are public: for local use only.

    Examples:

        swarm chain

        swarm chain --port 8546 --state chain-state.json
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with Anvil(port=port, state_file=state) as anvil:
        accounts = anvil.accounts[:SHOWN_ACCOUNTS]
        if as_json:
            echo_json(
                {
                    "rpc": anvil.rpc_url,
                    "chain_id": anvil.settings.chain_id,
                    "accounts": [
                        {"address": a.address, "private_key": a.private_key} for a in accounts
                    ],
                }
            )
        else:
            typer.echo(f"Anvil chain {anvil.settings.chain_id} at {anvil.rpc_url}")
            for i, a in enumerate(accounts):
                typer.echo(f"  account {i}: {a.address}  key {a.private_key}")
            typer.echo("Ctrl-C stops it" + (f" and saves it to {state}" if state else ""))
        stop.wait()
