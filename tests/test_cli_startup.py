"""`swarm --help` starts fast: it lists commands from the summaries in `node.cli.app.COMMANDS`
without importing any command's module (several import torch or web3, seconds of CPU)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from node.cli.app import COMMANDS, load_command

# Run `swarm ARGS` through the real entry point in a fresh interpreter, then report which of the
# heavy packages that run imported.
PROBE = """
import json, sys
from node.cli.app import main
sys.argv = ["swarm", *json.loads(sys.argv[1])]
try:
    main()
    code = 0
except SystemExit as exit_:
    code = exit_.code
imported = [name for name in ("torch", "web3") if name in sys.modules]
print(json.dumps({"code": code, "imported": imported}), file=sys.stderr)
"""


def _probe(args: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    report["stdout"] = done.stdout
    return report


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_summary_is_the_commands_own_first_help_paragraph(name: str) -> None:
    command = load_command(name)

    assert COMMANDS[name].summary == _first_paragraph(command.short_help or command.help or "")


def test_top_level_help_lists_every_command_without_importing_torch_or_web3() -> None:
    report = _probe(["--help"])

    assert report["code"] == 0
    assert report["imported"] == []
    listed = " ".join(str(report["stdout"]).replace("\u2502", " ").split())  # no box edges
    for name, entry in COMMANDS.items():
        assert f"{name} {entry.summary}" in listed
