"""The `swarm` command: this module only wires commands; each lives in its own module.

A command's module is imported only when that command runs, so a light command such as
`swarm status` does not pay for importing torch, and `swarm --help` lists every command from the
summaries kept here without importing any of them.
"""

from __future__ import annotations

import copy
import importlib
import sys
from typing import Annotated, Any, NamedTuple, NoReturn

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup

from swarmchain.node import __version__
from swarmchain.node.errors import ConfigError, SwarmchainError


class Entry(NamedTuple):
    """Where a command lives, and what `swarm --help` says of it."""

    target: str  # "module:attribute": a command function or a Typer app of subcommands
    summary: str  # the first paragraph of the command's own help (a test keeps them equal)


# In the order `swarm --help` lists them: the deploy, join and audit jobs, then the demo and tools.
COMMANDS = {
    "chain": Entry(
        "swarmchain.node.cli.chain:chain",
        "Start a local Anvil chain (chain id 31337) and keep it running until Ctrl-C.",
    ),
    "task": Entry("swarmchain.node.cli.task:app", "Write and publish the task a swarm trains."),
    "deploy": Entry(
        "swarmchain.node.cli.deploy:deploy",
        "Deploy SwarmToken and SwarmCoordinator, fund the reward pool, write the deployment file.",
    ),
    "token": Entry(
        "swarmchain.node.cli.token:app", "Balances of the swarm's token, and sending it to members."
    ),
    "data": Entry("swarmchain.node.cli.data:app", "Prepare example data for nodes."),
    "node": Entry("swarmchain.node.cli.node:app", "Run a swarm node."),
    "status": Entry(
        "swarmchain.node.cli.status:status",
        "Show the swarm's members and stakes, the current round and phase, the last checkpoint.",
    ),
    "rewards": Entry(
        "swarmchain.node.cli.rewards:app", "Rewards earned by contributing to a swarm."
    ),
    "audit": Entry(
        "swarmchain.node.cli.audit:audit",
        "Verify a checkpoint's lineage back to genesis from chain events and the content store.",
    ),
    "demo": Entry(
        "swarmchain.node.cli.demo:demo",
        "Run a complete swarm on this machine: chain, contracts, nodes (one attacking), audit.",
    ),
    "store": Entry(
        "swarmchain.node.cli.store:app",
        "Content-addressed storage: add, cat and serve blobs by CID.",
    ),
}


def load_command(name: str) -> TyperCommand | TyperGroup:
    """Import one command's module and build its command (or group of subcommands).

    Parameters
    ----------
    name
        A key of `COMMANDS`.

    Returns
    -------
    TyperCommand | TyperGroup
        The command as `swarm NAME` runs it.
    """
    module, _, attribute = COMMANDS[name].target.partition(":")
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
            self.commands[cmd_name] = load_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Help only reads a command's name and summary: a placeholder stands in for each command
        # not loaded yet, on a copy, so listing them imports none of their modules.
        listing = copy.copy(self)
        listing.commands = {
            **{name: TyperCommand(name, help=entry.summary) for name, entry in COMMANDS.items()},
            **self.commands,
        }
        super(_LazyGroup, listing).format_help(ctx, formatter)


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


def _fail(line: str, code: int) -> NoReturn:
    """Print one ``error: ...`` line on stderr and exit with `code`."""
    typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    sys.exit(code)


def _usage_line(err: UsageError) -> str:
    """Click's message for a usage error as one line, with the command whose help explains it."""
    message = err.format_message().removesuffix(".")
    hint = None
    if err.ctx is not None and err.ctx.command.get_help_option(err.ctx) is not None:
        hint = f"try '{err.ctx.command_path} {err.ctx.help_option_names[0]}'"
    return ConfigError(message[:1].lower() + message[1:], hint=hint).one_line()


def main() -> None:
    """Entry point: run the app; any mistake a user can make is one line on stderr.

    A `SwarmchainError` exits with code 1; a usage error (an unknown option, a missing argument,
    a bad value) with code 2, as click's own; Ctrl-C with 130.
    """
    try:
        # Not standalone: click's errors come here instead of being printed as a box.
        code = app(prog_name="swarm", standalone_mode=False)  # also under python -m
    except SwarmchainError as err:
        _fail(err.one_line(), 1)
    except NoArgsIsHelpError as err:
        if err.message:  # with rich, the help is printed already and the message is empty
            typer.echo(err.message)
        sys.exit(err.exit_code)
    except UsageError as err:
        _fail(_usage_line(err), err.exit_code)
    except ClickException as err:
        _fail(ConfigError(err.format_message()).one_line(), err.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    # Click returns the code of a `typer.Exit` (--help and --version: 0, Ctrl-C: 130), or else
    # what the command returned: commands return None.
    sys.exit(code if isinstance(code, int) else 0)
