"""A mistake on the command line is one ``error: ...`` line on stderr and exit code 2 (click's
code for usage errors), naming the help to read; `--help` and `--version` still exit 0, and
Ctrl-C leaves without a traceback.

Most cases run the real entry point (`swarmchain.node.cli.app.main`) in-process; one runs the
installed ``swarm`` executable, so the console script is held to the same rule.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run_swarm

from swarmchain.node import __version__

SWARM = Path(sys.executable).with_name("swarm")
JOIN = ["node", "join", "--deployment", "d.json", "--key", "k.txt", "--data", "a.npz"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["node", "join", "--foo"],
            "error: no such option: --foo (try 'swarm node join --help')",
        ),
        (["audit", "--zzz"], "error: no such option: --zzz (try 'swarm audit --help')"),
        (["store", "add"], "error: missing argument 'file' (try 'swarm store add --help')"),
        (["store", "cat"], "error: missing argument 'cid' (try 'swarm store cat --help')"),
        (
            ["node", "join", "--key", "k.txt"],
            "error: missing option '--deployment' (try 'swarm node join --help')",
        ),
        (
            [*JOIN, "--events", "bad"],
            "error: invalid value for '--events': Value error, 'bad' is not one of 'live', "
            "'text', 'json' (try 'swarm node join --help')",
        ),
        (
            ["audit", "--format", "pdf"],
            "error: invalid value for '--format': Value error, 'pdf' is not one of 'md', "
            "'json', 'html' (try 'swarm audit --help')",
        ),
        (["nodes"], "error: no such command 'nodes' (try 'swarm --help')"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_usage_error_is_one_line_and_exit_code_2(args: list[str], line: str) -> None:
    code, stdout, stderr = run_swarm(args)

    assert code == 2
    assert stderr.splitlines() == [line]
    assert stdout == ""


def test_hostile_text_in_a_usage_error_cannot_forge_a_second_line() -> None:
    code, _, stderr = run_swarm(["store", "add", "a", "x\nerror: forged"])

    assert code == 2
    assert stderr.splitlines() == [
        "error: got unexpected extra argument(s) (x\\x0aerror: forged) "
        "(try 'swarm store add --help')"
    ]


def test_the_swarm_executable_reports_a_usage_error_in_one_line() -> None:
    done = subprocess.run(
        [SWARM, "rewards", "claim", "--deployment"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    # The parser raises this one without its command, so there is no help to point to.
    assert done.stderr.splitlines() == ["error: option '--deployment' requires an argument"]


@pytest.mark.parametrize("args", [["--help"], ["node", "join", "--help"], ["store", "--help"]])
def test_help_still_exits_0_on_stdout(args: list[str]) -> None:
    code, stdout, stderr = run_swarm(args)

    assert code == 0
    assert "Usage:" in stdout
    assert stderr == ""


def test_version_still_exits_0() -> None:
    code, stdout, stderr = run_swarm(["--version"])

    assert (code, stdout, stderr) == (0, f"swarm {__version__}\n", "")


class _InterruptedStdin:
    """Standard input whose read is interrupted, as by Ctrl-C."""

    class buffer:  # the name `sys.stdin.buffer` has
        @staticmethod
        def read() -> bytes:
            raise KeyboardInterrupt


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _InterruptedStdin())

    code, _, stderr = run_swarm(["store", "add", "--only-hash", "-"])

    assert code == 130
    assert stderr == ""
