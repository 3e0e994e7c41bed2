"""Run the `swarm` entry point in-process, as the console script does."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

from swarmchain.node.cli.app import main


def run_swarm(args: list[str]) -> tuple[int, str, str]:
    """Run `swarm ARGS` through the real entry point: exit code, stdout, stderr.

    Anything but a `SystemExit` (an uncaught exception: a traceback for the user) propagates
    and fails the test.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["swarm", *args]
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return code, stdout.getvalue(), stderr.getvalue()
