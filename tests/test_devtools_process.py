"""`ManagedProcess`: start with a log, wait for readiness, stop by its own PID."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from swarmchain.node.devtools.process import ManagedProcess
from swarmchain.node.errors import ToolchainError


class _Script(ManagedProcess):
    """Runs a Python snippet; ready once it has written its marker file."""

    def __init__(self, code: str, tmp_path: Path, *, startup_timeout_s: float = 10.0) -> None:
        super().__init__("script", tmp_path / "script.log", startup_timeout_s=startup_timeout_s)
        self.code = code
        self.marker = tmp_path / "ready"
        self.cleaned = False

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.code.replace("MARKER", str(self.marker))]

    def ready(self) -> bool:
        return self.marker.exists()

    def cleanup(self) -> None:
        self.cleaned = True


_SERVE = "import pathlib, time; pathlib.Path('MARKER').touch(); time.sleep(60)"


def test_context_starts_waits_and_stops_by_pid(tmp_path: Path) -> None:
    script = _Script(_SERVE, tmp_path)

    with script:
        pid = script.pid
        assert pid is not None and script.marker.exists()

    assert script.pid is None and script.cleaned
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_early_exit_is_an_error_quoting_the_log(tmp_path: Path) -> None:
    script = _Script("import sys; print('bad flag --x'); sys.exit(3)", tmp_path)

    with pytest.raises(ToolchainError, match=r"script exited with code 3 .*bad flag --x"):
        script.start()


def test_silent_process_is_stopped_after_the_startup_timeout(tmp_path: Path) -> None:
    script = _Script("import time; time.sleep(60)", tmp_path, startup_timeout_s=0.3)

    with pytest.raises(ToolchainError, match="did not answer"):
        script.start()

    assert script.pid is None


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path('MARKER').touch(); time.sleep(60)"
    )
    script = _Script(code, tmp_path).start()

    script.stop(timeout=0.5)

    assert script.pid is None and script.returncode == -9
