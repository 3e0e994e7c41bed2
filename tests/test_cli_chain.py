"""`swarm chain` runs a local Anvil in the foreground until it is told to stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from swarmchain.node.devtools.process import free_port

pytestmark = pytest.mark.integration

SWARM = str(Path(sys.executable).parent / "swarm")


def test_chain_serves_json_rpc_until_sigterm_and_saves_its_state(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [SWARM, "chain", "--port", str(port), "--state", str(state), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        reply = httpx.post(
            started["rpc"],
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=10,
        ).json()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)

    assert started["rpc"] == f"http://127.0.0.1:{port}"
    assert int(reply["result"], 16) == started["chain_id"] == 31337
    assert len(started["accounts"]) == 4
    assert code == 0
    assert state.is_file()
