"""Start and stop a real IPFS peer (js-ipfs) for the tests and the storage benchmark.

The Kubo binary cannot be downloaded on every machine, but js-ipfs (npm ``ipfs`` 0.66.1) serves
the same ``/api/v0`` RPC. ``tests/ipfs-peer/`` pins it with two fixes for Node 20: npm
``overrides`` for ``@libp2p/tcp`` and ``@multiformats/mafmt``, and ``with-resolvers.cjs``, a
``--require`` polyfill for ``Promise.withResolvers``. `JsIpfsPeer` runs ``npm ci`` there when
``node_modules`` is missing, starts ``jsipfs daemon --offline`` on a fresh repository (test
profile, API on a free loopback port), waits until ``/api/v0/id`` answers, and stops the daemon by
its own PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from node.devtools.anvil import free_port
from node.errors import ToolchainError
from node.paths import REPO_ROOT

PEER_DIR = REPO_ROOT / "tests" / "ipfs-peer"
_CLI = PEER_DIR / "node_modules" / "ipfs" / "src" / "cli.js"
_POLYFILL = PEER_DIR / "with-resolvers.cjs"


def install_peer() -> None:
    """Run ``npm ci`` in ``tests/ipfs-peer`` unless js-ipfs is already installed there.

    Raises
    ------
    ToolchainError
        If npm is missing or the install fails.
    """
    if _CLI.is_file():
        return
    if shutil.which("npm") is None:
        raise ToolchainError(
            "js-ipfs is not installed and npm is missing",
            hint="install Node.js 20 and npm, then run `make setup`",
        )
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PEER_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not _CLI.is_file():
        raise ToolchainError(f"npm ci in {PEER_DIR} failed: {done.stderr.strip()[-500:]}")


class JsIpfsPeer:
    """A js-ipfs daemon on 127.0.0.1, offline, started on entry and stopped on exit.

    Parameters
    ----------
    startup_timeout_s
        How long to wait for the RPC API to answer.
    """

    def __init__(self, *, startup_timeout_s: float = 60.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.repo = Path(tempfile.mkdtemp(prefix="swarm-ipfs-"))
        self._log_path = self.repo.parent / f"{self.repo.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """The RPC base URL (``/api/v0`` lives under it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def blocks_dir(self) -> Path:
        """Where the daemon keeps its blocks on disk."""
        return self.repo / "repo" / "blocks"

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs, else None."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self) -> Self:
        """Install if needed, start the daemon and wait for its API.

        Raises
        ------
        ToolchainError
            If node is missing, or the daemon exits or stays silent past the timeout.
        """
        install_peer()
        node = shutil.which("node")
        if node is None:
            raise ToolchainError("node is missing", hint="install Node.js 20")
        config = self.repo / "init-config.json"
        config.write_text(
            json.dumps(
                {
                    "Addresses": {
                        "API": f"/ip4/127.0.0.1/tcp/{self.port}",
                        "RPC": "/ip4/127.0.0.1/tcp/0",
                        "Gateway": "/ip4/127.0.0.1/tcp/0",
                        "Swarm": ["/ip4/127.0.0.1/tcp/0"],
                    }
                }
            )
        )
        command = [node, "--require", str(_POLYFILL), str(_CLI), "daemon", "--offline"]
        command += ["--init-profile", "test", "--init-config", str(config)]
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=PEER_DIR,
                env={**os.environ, "IPFS_PATH": str(self.repo / "repo")},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ToolchainError(
                    f"js-ipfs exited with code {self._process.returncode}: {self.log_tail()}"
                )
            try:
                if httpx.post(f"{self.api_url}/api/v0/id", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ToolchainError(
            f"js-ipfs did not answer at {self.api_url} within {self.startup_timeout_s}s: "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the daemon printed, for error messages."""
        if not self._log_path.exists():
            return "(no output)"
        text = self._log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        """Stop the daemon by its own PID (SIGTERM, then SIGKILL after 10 s)."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.repo, ignore_errors=True)
        self._log_path.unlink(missing_ok=True)
