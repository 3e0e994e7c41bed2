"""Start and stop a real IPFS peer (js-ipfs) for the tests and the storage benchmark.

The Kubo binary cannot be downloaded on every machine, but js-ipfs (npm ``ipfs`` 0.66.1) serves
the same ``/api/v0`` RPC. ``tests/ipfs-peer/`` pins it with two fixes for Node 20: npm
``overrides`` for ``@libp2p/tcp`` and ``@multiformats/mafmt``, and ``with-resolvers.cjs``, a
``--require`` polyfill for ``Promise.withResolvers``. `JsIpfsPeer` runs ``npm ci`` there when
``node_modules`` is missing, starts ``jsipfs daemon --offline`` on a fresh repository (test
profile, API on a free loopback port), waits until ``/api/v0/id`` answers, and stops the daemon by
its own PID (a `swarmchain.node.devtools.process.ManagedProcess`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import httpx

from swarmchain.node.devtools.process import ManagedProcess, free_port
from swarmchain.node.errors import ToolchainError
from swarmchain.node.paths import REPO_ROOT

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


class JsIpfsPeer(ManagedProcess):
    """A js-ipfs daemon on 127.0.0.1, offline, started on entry and stopped on exit.

    Parameters
    ----------
    startup_timeout_s
        How long to wait for the RPC API to answer.
    """

    poll_s = 0.1  # each probe may wait up to 2 s on a starting daemon anyway

    def __init__(self, *, startup_timeout_s: float = 60.0) -> None:
        self.port = free_port()
        self.repo = Path(tempfile.mkdtemp(prefix="swarm-ipfs-"))
        super().__init__(
            "js-ipfs",
            self.repo.parent / f"{self.repo.name}.log",
            startup_timeout_s=startup_timeout_s,
        )
        self._node: str | None = None
        self._config = self.repo / "init-config.json"

    @property
    def api_url(self) -> str:
        """The RPC base URL (``/api/v0`` lives under it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def blocks_dir(self) -> Path:
        """Where the daemon keeps its blocks on disk."""
        return self.repo / "repo" / "blocks"

    @property
    def address(self) -> str:
        """Where the daemon answers: its RPC base URL."""
        return self.api_url

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
        self._node = node
        self._config.write_text(
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
        self.launch(cwd=PEER_DIR, env={**os.environ, "IPFS_PATH": str(self.repo / "repo")})
        self.wait_ready()
        return self

    def command(self) -> list[str]:
        """``jsipfs daemon --offline`` on a fresh repository, run by the node found at `start`."""
        if self._node is None:
            raise ToolchainError("node is missing", hint="install Node.js 20")
        return [
            self._node, "--require", str(_POLYFILL), str(_CLI), "daemon", "--offline",
            "--init-profile", "test", "--init-config", str(self._config),
        ]  # fmt: skip

    def ready(self) -> bool:
        """Whether the RPC API answers ``/api/v0/id``."""
        return httpx.post(f"{self.api_url}/api/v0/id", timeout=2.0).status_code == 200

    def cleanup(self) -> None:
        """Remove the daemon's repository and its log."""
        shutil.rmtree(self.repo, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
