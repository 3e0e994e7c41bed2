"""The `swarm` command: this module only wires commands; each lives in its own module."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from node import __version__
from node.cli import audit, chain, data, demo, deploy, node, rewards, status, store, task, token
from node.errors import SwarmchainError

app = typer.Typer(
    name="swarm",
    help="Swarmchain: train one model across organisations, coordinated by an EVM chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="demo")(demo.demo)
app.command(name="deploy")(deploy.deploy)
app.add_typer(store.app, name="store")
app.add_typer(node.app, name="node")
app.add_typer(rewards.app, name="rewards")
app.command(name="status")(status.status)
app.command(name="audit")(audit.audit)
app.command(name="chain")(chain.chain)
app.add_typer(task.app, name="task")
app.add_typer(token.app, name="token")
app.add_typer(data.app, name="data")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"swarm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Swarmchain: train one model across organisations, coordinated by an EVM chain."""


def main() -> None:
    """Entry point: run the app; a `SwarmchainError` becomes one line on stderr and exit code 1."""
    try:
        app()
    except SwarmchainError as err:
        typer.secho(f"error: {err.one_line()}", fg=typer.colors.RED, err=True)
        sys.exit(1)
