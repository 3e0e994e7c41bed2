"""Help starts fast. `swarm --help` lists commands from the summaries in
`swarmchain.node.cli.app.COMMANDS` without importing any command's module, and no command's `--help`
imports torch (seconds of CPU): each command imports what it runs on only when it runs."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any

import pytest
from typer.core import TyperGroup

from swarmchain.node.cli.app import COMMANDS, load_command

# Run `swarm ARGS` for each ARGS in turn through the real entry point in a fresh interpreter,
# reporting after each run which heavy packages have been imported so far.
PROBE = """
import json, sys
from swarmchain.node.cli.app import main
reports = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["swarm", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    imported = [name for name in ("torch", "web3") if name in sys.modules]
    reports.append({"args": args, "code": code, "imported": imported})
print(json.dumps(reports), file=sys.stderr)
"""


def _probe(*runs: list[str]) -> tuple[list[dict[str, Any]], str]:
    """The reports of running `swarm` with each argument list in one interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    reports: list[dict[str, Any]] = json.loads(done.stderr.strip().splitlines()[-1])
    return reports, done.stdout


def _command_paths() -> list[list[str]]:
    """Every command and group under `swarm`, as the words that name it."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    for name in COMMANDS:
        walk(load_command(name), [name])
    return paths


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_summary_is_the_commands_own_first_help_paragraph(name: str) -> None:
    command = load_command(name)

    assert COMMANDS[name].summary == _first_paragraph(command.short_help or command.help or "")


def test_top_level_help_lists_every_command_without_importing_torch_or_web3() -> None:
    [report], stdout = _probe(["--help"])

    assert report["code"] == 0
    assert report["imported"] == []
    listed = " ".join(stdout.replace("\u2502", " ").split())  # no box edges
    for name, entry in COMMANDS.items():
        assert f"{name} {entry.summary}" in listed


def test_no_command_help_imports_torch() -> None:
    paths = _command_paths()

    reports, _ = _probe(*([*path, "--help"] for path in paths))

    assert [r["args"][:-1] for r in reports] == paths
    assert all(r["code"] == 0 for r in reports), reports
    heavy = [r for r in reports if "torch" in r["imported"]]
    assert heavy == [], f"`swarm {' '.join(heavy[0]['args'])}` imports torch"
