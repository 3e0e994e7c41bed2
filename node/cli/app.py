"""The `swarm` command: this module only wires commands; each lives in its own module.

A command's module is imported only when that command runs (or the top-level help lists it), so
a light command such as `swarm status` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from node import __version__
from node.errors import SwarmchainError

# name -> "module:attribute", a command function or a Typer app of subcommands, in the order
# `swarm --help` lists them: the deploy, join and audit jobs, then the demo and the tools.
COMMANDS = {
    "chain": "node.cli.chain:chain",
    "task": "node.cli.task:app",
    "deploy": "node.cli.deploy:deploy",
    "token": "node.cli.token:app",
    "data": "node.cli.data:app",
    "node": "node.cli.node:app",
    "status": "node.cli.status:status",
    "rewards": "node.cli.rewards:app",
    "audit": "node.cli.audit:audit",
    "demo": "node.cli.demo:demo",
    "store": "node.cli.store:app",
}


def _load(name: str) -> TyperCommand | TyperGroup:
    """Import one command's module and build its command (or group of subcommands)."""
    module, _, attribute = COMMANDS[name].partition(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer()
    single.command(name=name)(target)
    command = typer.main.get_command(single)  # one command and no callback: the command itself
    assert isinstance(command, TyperCommand)
    return command


class _LazyGroup(TyperGroup):
    """A group whose commands in `COMMANDS` are loaded on first use.

    The context and command types are click's, which typer vendors privately, hence `Any`.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.commands[cmd_name] = _load(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="swarm",
    cls=_LazyGroup,
    help="Swarmchain: train one model across organisations, coordinated by an EVM chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
