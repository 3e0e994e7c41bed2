"""The Anvil launcher against the real binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from web3 import Web3

from swarmchain.node.devtools import anvil as anvil_module
from swarmchain.node.devtools.anvil import Anvil, DevAccount, find_anvil
from swarmchain.node.errors import ToolchainError

pytestmark = pytest.mark.integration


def test_session_chain_answers_on_loopback(anvil: Anvil, w3: Web3) -> None:
    assert anvil.rpc_url.startswith("http://127.0.0.1:")
    assert w3.eth.chain_id == anvil.settings.chain_id
    assert len(anvil.accounts) == anvil.settings.accounts


def test_accounts_are_funded(w3: Web3, accounts: list[DevAccount]) -> None:
    for account in accounts:
        assert w3.eth.get_balance(account.address) == Web3.to_wei(10_000, "ether")


def _send_one_ether(w3: Web3, sender: DevAccount, to: str) -> None:
    tx = {
        "to": to,
        "value": Web3.to_wei(1, "ether"),
        "gas": 21_000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(sender.address),
        "chainId": w3.eth.chain_id,
    }
    signed = w3.eth.account.sign_transaction(tx, sender.private_key)
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))


def test_snapshot_isolation_part_one_spends(w3: Web3, accounts: list[DevAccount]) -> None:
    _send_one_ether(w3, accounts[1], accounts[2].address)
    assert w3.eth.get_balance(accounts[2].address) == Web3.to_wei(10_001, "ether")


def test_snapshot_isolation_part_two_sees_no_spend(w3: Web3, accounts: list[DevAccount]) -> None:
    assert w3.eth.get_balance(accounts[2].address) == Web3.to_wei(10_000, "ether")


def test_stop_ends_the_process_by_its_pid(tmp_path: Path) -> None:
    chain = Anvil().start()
    pid = chain.pid
    assert pid is not None
    chain.stop()
    assert chain.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_state_persists_across_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with Anvil(state_file=state) as chain:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        _send_one_ether(w3, chain.accounts[0], chain.accounts[1].address)
        block = w3.eth.block_number
        chain.restart()
        assert w3.eth.block_number == block
        assert w3.eth.get_balance(chain.accounts[1].address) == Web3.to_wei(10_001, "ether")
    assert state.is_file()


def test_override_that_is_not_executable_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWARM_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(ToolchainError, match=r"SWARM_ANVIL=.*nope is not an executable"):
        find_anvil()


def test_missing_binary_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWARM_ANVIL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(anvil_module, "ANVIL_DIR", tmp_path)
    with pytest.raises(ToolchainError, match=r"npm is missing.*apt-get install nodejs npm"):
        find_anvil()
    (tmp_path / "npm").write_text("#!/bin/sh\n")
    (tmp_path / "npm").chmod(0o755)
    with pytest.raises(ToolchainError, match=r"anvil not found.*npm ci --prefix anvil"):
        find_anvil()
