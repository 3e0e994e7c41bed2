"""Start and stop a local Anvil chain.

`Anvil` is a context manager around one `anvil` process listening on 127.0.0.1 on a free port, a
`swarmchain.node.devtools.process.ManagedProcess`: it waits until the node answers `eth_chainId`,
can persist chain state to a file across restarts, and stops the process by its own PID.

The binary is found in this order: the ``SWARM_ANVIL`` environment variable, ``anvil`` on PATH,
then the platform binary that npm installed under ``anvil/node_modules`` (pinned by
``anvil/package-lock.json``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from web3 import Web3

from swarmchain.node.devtools.process import ManagedProcess, free_port
from swarmchain.node.errors import ToolchainError
from swarmchain.node.paths import ANVIL_DIR

ANVIL_ENV = "SWARM_ANVIL"
SETTINGS_FILE = ANVIL_DIR / "settings.json"

_NPM_PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64",
    ("Darwin", "x86_64"): "darwin-amd64",
    ("Darwin", "arm64"): "darwin-arm64",
}


@dataclass(frozen=True)
class ChainSettings:
    """The local chain's settings, read from ``anvil/settings.json``."""

    chain_id: int  # EIP-155 chain id the node reports
    accounts: int  # number of funded dev accounts derived from the mnemonic
    balance_ether: int  # starting balance of every dev account, in ether
    mnemonic: str  # BIP-39 phrase the dev accounts are derived from (public: never use on mainnet)
    gas_limit: int  # block gas limit
    startup_timeout_s: float  # how long to wait for the node to answer eth_chainId

    @classmethod
    def load(cls, path: Path = SETTINGS_FILE) -> ChainSettings:
        """Read the settings file.

        Parameters
        ----------
        path
            A JSON file with one key per field.

        Returns
        -------
        ChainSettings
            The parsed settings.
        """
        data = json.loads(path.read_text())
        return cls(**data)


@dataclass(frozen=True)
class DevAccount:
    """A funded account of the local chain."""

    address: str  # checksummed 0x address
    private_key: str  # 0x-prefixed hex


def find_anvil() -> Path:
    """Locate the anvil binary.

    Returns
    -------
    Path
        An executable anvil.

    Raises
    ------
    ToolchainError
        When no binary is found; the message says what to install.
    """
    override = os.environ.get(ANVIL_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainError(f"{ANVIL_ENV}={override} is not an executable file")
        return path
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    suffix = _NPM_PLATFORMS.get((platform.system(), platform.machine()))
    if suffix:
        local = ANVIL_DIR / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"
        if local.is_file():
            return local
    if shutil.which("npm") is None:
        raise ToolchainError(
            "anvil not found and npm is missing",
            hint="install Node.js and npm (apt-get install nodejs npm), then run `make setup`",
        )
    raise ToolchainError(
        f"anvil not found (looked at ${ANVIL_ENV}, PATH and {ANVIL_DIR}/node_modules)",
        hint="run `npm ci --prefix anvil` or `make setup`",
    )


class Anvil(ManagedProcess):
    """A local Anvil chain on 127.0.0.1, started on entry and stopped on exit.

    Parameters
    ----------
    state_file
        Where to persist chain state. Loaded at start if it exists; dumped on a clean stop and,
        when `state_interval` is set, every `state_interval` seconds (so a SIGKILL loses little).
    port
        Port to listen on; a free one when omitted. A restart keeps the port.
    settings
        Chain settings; ``anvil/settings.json`` when omitted.
    state_interval
        Seconds between periodic state dumps, or None for dump-on-exit only.
    block_time
        Seconds between blocks for interval mining, or None to mine one block per transaction.
    """

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        port: int | None = None,
        settings: ChainSettings | None = None,
        state_interval: int | None = None,
        block_time: float | None = None,
    ) -> None:
        self.settings = settings or ChainSettings.load()
        self._workdir = Path(tempfile.mkdtemp(prefix="swarm-anvil-"))
        # A clean stop dumps the state file, which may take a while on a long chain.
        super().__init__(
            "anvil",
            self._workdir / "anvil.log",
            startup_timeout_s=self.settings.startup_timeout_s,
            stop_timeout_s=15.0,
        )
        self.state_file = state_file
        self.port = port or free_port()
        self.state_interval = state_interval
        self.block_time = block_time
        self.binary = find_anvil()
        self.accounts: list[DevAccount] = []

    @property
    def rpc_url(self) -> str:
        """The node's HTTP JSON-RPC endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """Where the chain answers: its RPC URL."""
        return self.rpc_url

    def command(self) -> list[str]:
        """The ``anvil`` command line for these settings, port and state file."""
        s = self.settings
        cmd = [
            str(self.binary),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(s.chain_id),
            "--accounts", str(s.accounts),
            "--balance", str(s.balance_ether),
            "--mnemonic", s.mnemonic,
            "--gas-limit", str(s.gas_limit),
            "--config-out", str(self._workdir / "config.json"),
        ]  # fmt: skip
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file)]
            if self.state_interval is not None:
                cmd += ["--state-interval", str(self.state_interval)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        return cmd

    def start(self) -> Self:
        """Start the chain and wait until it answers ``eth_chainId``.

        Returns
        -------
        Anvil
            This launcher, running.

        Raises
        ------
        ToolchainError
            If the process exits early or does not answer within the start-up timeout.
        """
        if self.pid is not None:
            return self
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
        super().start()
        self.accounts = self._read_accounts()
        return self

    def ready(self) -> bool:
        """Whether the chain answers ``eth_chainId``."""
        return self.rpc("eth_chainId") is not None

    def _read_accounts(self) -> list[DevAccount]:
        config = json.loads((self._workdir / "config.json").read_text())
        return [
            DevAccount(address=Web3.to_checksum_address(address), private_key=key)
            for address, key in zip(
                config["available_accounts"], config["private_keys"], strict=True
            )
        ]

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """Send one JSON-RPC request and return its result.

        Raises
        ------
        httpx.HTTPError
            If the node cannot be reached.
        ToolchainError
            If the node answers with a JSON-RPC error.
        """
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        reply = httpx.post(self.rpc_url, json=body, timeout=5.0).json()
        if "error" in reply:
            raise ToolchainError(f"anvil {method} failed: {reply['error']}")
        return reply["result"]

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """Stop the chain by its own PID.

        Parameters
        ----------
        timeout
            Seconds to wait for a clean stop before SIGKILL; 15 when None.
        kill
            Send SIGKILL (a crash: state since the last periodic dump is lost) instead of SIGTERM
            (a clean stop that dumps state).
        """
        super().stop(timeout, kill=kill)

    def restart(self) -> Self:
        """Stop cleanly and start again on the same port, from the state file if there is one."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Remove the chain's scratch directory (its log and config)."""
        shutil.rmtree(self._workdir, ignore_errors=True)
