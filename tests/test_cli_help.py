"""Every `swarm` command explains itself: `--help` with examples, and `--json` for scripts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from swarmchain.node.cli.app import app

# Commands of the three user jobs, the demo and the store this module holds to the rule
# (`swarm store cat` writes raw bytes: tests/test_cli_store.py).
COMMANDS = [
    ["demo"],
    ["chain"],
    ["task", "init"],
    ["task", "publish"],
    ["token", "send"],
    ["token", "balance"],
    ["data", "split"],
    ["node", "join"],
    ["status"],
    ["rewards", "list"],
    ["rewards", "claim"],
    ["audit"],
    ["store", "add"],
    ["store", "serve"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_help_has_examples_and_a_json_option(command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)

    assert done.exit_code == 0, done.output
    assert "Example" in done.output
    assert f"swarm {' '.join(command)}" in done.output
    assert "--json" in done.output


def test_audit_help_documents_the_mismatch_exit_status() -> None:
    done = CliRunner().invoke(app, ["audit", "--help"], terminal_width=200)

    assert "exit status 3" in done.output
