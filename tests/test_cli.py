"""The `swarm` console script, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from swarmchain.node import __version__

SWARM = str(Path(sys.executable).parent / "swarm")


def _swarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWARM, *args], capture_output=True, text=True, timeout=120, check=False)


def test_version() -> None:
    done = _swarm("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"swarm {__version__}"


def test_help_lists_commands() -> None:
    done = _swarm("--help")
    assert done.returncode == 0
    assert "demo" in done.stdout
