"""One local process the devtools start: logged, checked for readiness, stopped by its own PID.

`ManagedProcess` is the base of Anvil, the js-ipfs peer and node processes. It starts a command
in a session of its own (so a Ctrl-C in the terminal reaches the caller, which then stops the
process itself), appends the output to a log file, waits for a readiness probe while watching for
an early exit, quotes the log's tail in its errors, and stops the process by its own PID (SIGTERM,
then SIGKILL), so tests and demos never leak processes or touch anyone else's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from swarmchain.node.errors import ToolchainError


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A local process started with its log file and stopped by its own PID; a context manager.

    Subclasses say what to run (`command`) and how to tell it is ready (`ready`); `start`
    launches it and waits, `stop` ends it, and leaving the context stops it and calls `cleanup`.

    Parameters
    ----------
    name
        What error messages call the process (``anvil``, ``js-ipfs``).
    log_path
        The file its output is appended to.
    startup_timeout_s
        Seconds `start` waits for `ready`.
    stop_timeout_s
        Seconds `stop` waits after SIGTERM before it sends SIGKILL.
    """

    tail_lines = 5  # log lines `log_tail` quotes by default
    poll_s = 0.05  # seconds between readiness probes

    def __init__(
        self,
        name: str,
        log_path: Path,
        *,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """Where the process answers, for error messages."""
        return "(no address)"

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._process.pid if self._process and self._process.poll() is None else None

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running (or before the first start)."""
        return None if self._process is None else self._process.poll()

    def command(self) -> list[str]:
        """The command line to run; subclasses build it."""
        raise NotImplementedError(f"{type(self).__name__} does not say what to run")

    def ready(self) -> bool:
        """Whether the running process answers; `start` polls it until True.

        Raises
        ------
        httpx.HTTPError
            While the process does not accept connections yet (treated as not ready).
        """
        return True

    def launch(
        self,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        pipe_stdout: bool = False,
    ) -> subprocess.Popen[str]:
        """Start `command` in its own session, its output appended to the log file.

        Parameters
        ----------
        cwd
            The working directory; the caller's when None.
        env
            The environment; the caller's when None.
        pipe_stdout
            Give stdout to the caller as a text pipe; only stderr then goes to the log.

        Returns
        -------
        subprocess.Popen
            The running process.
        """
        with self.log_path.open("a") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdout=subprocess.PIPE if pipe_stdout else log,
                stderr=log if pipe_stdout else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        return self._process

    def start(self) -> Self:
        """Start the process unless it runs, and wait until it is `ready`.

        Returns
        -------
        ManagedProcess
            This process, running and ready.

        Raises
        ------
        ToolchainError
            If the process exits early or is not ready within `startup_timeout_s`; the message
            quotes the log's tail.
        """
        if self.pid is not None:
            return self
        self.launch()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Poll `ready` until it holds; stop the process and raise if it exits or times out.

        Raises
        ------
        ToolchainError
            If the process exits first, or `ready` does not hold within `startup_timeout_s`.
        """
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            # An exit is checked first: a dead process must not pass for whatever else answers.
            if process.poll() is not None:
                raise ToolchainError(
                    f"{self.name} exited with code {process.returncode} at {self.address}: "
                    f"{self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(self.poll_s)
        self.stop()
        raise ToolchainError(
            f"{self.name} did not answer at {self.address} within {self.startup_timeout_s}s: "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int | None = None) -> str:
        """The last lines the process wrote to its log (`tail_lines` by default), for errors."""
        if not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-(lines or self.tail_lines) :]) or "(no output)"

    def signal(self, signum: int) -> None:
        """Send a signal to the running process (SIGKILL to crash it, SIGSTOP to stall it)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signum)

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """Stop the process by its own PID: SIGTERM, then SIGKILL if it outlives `timeout`.

        Parameters
        ----------
        timeout
            Seconds to wait after SIGTERM; `stop_timeout_s` when None.
        kill
            Send SIGKILL at once (a crash) instead of SIGTERM (a clean stop).
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        if kill:
            self.signal(signal.SIGKILL)
        else:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a stalled (SIGSTOPped) process acts on SIGTERM only now
        try:
            process.wait(timeout=self.stop_timeout_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        """Remove what the process left behind; called when the context exits, after `stop`."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()
