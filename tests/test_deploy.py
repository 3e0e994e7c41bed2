"""Deploying a swarm: `deploy_swarm`, the deployment file, `swarm deploy` and `scripts/deploy.py`
as real processes against the session's Anvil."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect, deploy_swarm
from swarmchain.node.chain.deployment import SwarmParams, load_deployment, save_deployment
from swarmchain.node.chain.events import RewardsFunded, RoundOpened, SwarmConfigured
from swarmchain.node.chain.solidity import load_artifact
from swarmchain.node.cli.deploy import ANVIL_DEV_KEY, deployer_key
from swarmchain.node.devtools.anvil import Anvil, DevAccount
from swarmchain.node.errors import ChainError, ConfigError
from swarmchain.node.paths import REPO_ROOT

SWARM = str(Path(sys.executable).parent / "swarm")
DEPLOY_SCRIPT = REPO_ROOT / "scripts" / "deploy.py"
PARAMS = SwarmParams(
    task_spec_cid="bafkreitaskspec",
    task_spec_hash="0x" + "ab" * 32,
    min_stake=100,
    reward_per_round=1_000,
    reward_pool=50_000,
    token_supply=10**9,
)
SPEC_ARGS = ["--task-spec-cid", "bafkreicli", "--task-spec-hash", "0x" + "cd" * 32]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


# ---- parameters and the deployment file ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task_spec_cid": ""}, "task_spec_cid"),
        ({"task_spec_hash": "0x1234"}, "task_spec_hash"),
        ({"task_spec_hash": "0x" + "00" * 32}, "task_spec_hash"),
        ({"quorum_bps": 5000}, "quorum_bps"),
        ({"slash_bps": 10_001}, "slash_bps"),
        ({"commit_duration_s": 0}, "commit_duration_s"),
        ({"min_stake": 0}, "min_stake"),
        ({"reward_pool": 10**10}, "exceeds token_supply"),
    ],
)
def test_params_are_checked_before_anything_is_sent(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(PARAMS, **change).validate()


def test_deployer_key_defaults_to_the_dev_key_on_anvil_only() -> None:
    assert deployer_key(None, 31337) == ANVIL_DEV_KEY
    with pytest.raises(ConfigError, match="no deployer key for chain 1"):
        deployer_key(None, 1)
    with pytest.raises(ConfigError, match="not a valid private key"):
        deployer_key("0x1234", 1)


@pytest.mark.integration
def test_deploy_swarm_records_everything_and_funds_the_pool(
    w3: Web3, accounts: list[DevAccount]
) -> None:
    deployment = deploy_swarm(w3, accounts[1].private_key, PARAMS)

    assert deployment.chain_id == 31337 and deployment.deployer == accounts[1].address
    assert deployment.params == PARAMS
    for address in (deployment.token, deployment.coordinator):
        assert w3.eth.get_code(Web3.to_checksum_address(address))
    record = deployment.artifacts["SwarmCoordinator"]
    artifact = load_artifact("SwarmCoordinator")
    assert record.source_hash == artifact["sourceHash"]
    assert record.bytecode_hash == "0x" + Web3.keccak(hexstr=artifact["bytecode"]).hex()
    client = Coordinator(w3, deployment, accounts[1].private_key)
    assert client.totals().reward_pool == PARAMS.reward_pool
    assert client.token.balance_of(accounts[1].address) == PARAMS.token_supply - PARAMS.reward_pool
    first = client.events(to_block=deployment.deploy_block)
    assert [type(e) for e in first] == [SwarmConfigured, RoundOpened]
    assert any(isinstance(e, RewardsFunded) for e in client.events())


@pytest.mark.integration
def test_deploy_swarm_can_reuse_an_existing_token(w3: Web3, accounts: list[DevAccount]) -> None:
    first = deploy_swarm(w3, accounts[0].private_key, PARAMS)
    second = deploy_swarm(w3, accounts[0].private_key, PARAMS, token=first.token)
    assert second.token == first.token and second.coordinator != first.coordinator
    with pytest.raises(ConfigError, match="no token contract"):
        deploy_swarm(w3, accounts[0].private_key, PARAMS, token="0x" + "34" * 20)


@pytest.mark.integration
def test_deployment_file_round_trips(w3: Web3, accounts: list[DevAccount], tmp_path: Path) -> None:
    deployment = deploy_swarm(w3, accounts[0].private_key, PARAMS)
    path = tmp_path / "nested" / "deployment.json"
    save_deployment(deployment, path)
    assert load_deployment(path) == deployment
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["params"]["quorum_bps"] == PARAMS.quorum_bps


def _valid_file() -> dict[str, Any]:
    return {
        "format": 1,
        "chain_id": 31337,
        "token": "0x" + "11" * 20,
        "coordinator": "0x" + "22" * 20,
        "deploy_block": 3,
        "deployer": "0x" + "33" * 20,
        "params": {f: getattr(PARAMS, f) for f in PARAMS.__dataclass_fields__},
        "artifacts": {
            name: {"source_hash": "0x00", "bytecode_hash": "0x00", "compiler": "0.8.37"}
            for name in ("SwarmToken", "SwarmCoordinator")
        },
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("coordinator"), "missing field 'coordinator'"),
        (lambda d: d.update(format=2), "format 2 is not supported"),
        (lambda d: d.update(chain_id=True), "'chain_id' must be int"),
        (lambda d: d.update(token="0xnothex"), "'token' is not an address"),
        (lambda d: d["params"].update(quorum_bps=4000), "quorum_bps must be in"),
        (lambda d: d["params"].pop("min_stake"), "missing field 'min_stake'"),
        (lambda d: d["artifacts"].pop("SwarmToken"), "no record for SwarmToken"),
        (lambda d: d.update(deploy_block=-1), "deploy_block"),
    ],
)
def test_a_bad_deployment_file_is_a_config_error(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = _valid_file()
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(data))
    assert load_deployment(path).deploy_block == 3
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        load_deployment(path)


def test_a_missing_or_unreadable_deployment_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_deployment(tmp_path / "absent.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_deployment(garbage)
    garbage.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_deployment(garbage)


# ---- the commands, as real processes ---------------------------------------------------------


@pytest.mark.integration
def test_swarm_deploy_uses_the_dev_key_on_anvil_and_writes_the_file(
    anvil: Anvil, w3: Web3, tmp_path: Path
) -> None:
    out = tmp_path / "deployment.json"
    done = _run(
        SWARM, "deploy", "--rpc", anvil.rpc_url, "--out", str(out), "--json",
        "--quorum-bps", "7500", "--reward-pool", "0", *SPEC_ARGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    deployment = load_deployment(out)
    assert json.loads(done.stdout)["coordinator"] == deployment.coordinator
    assert deployment.deployer == anvil.accounts[0].address
    client = Coordinator(w3, deployment)
    assert client.params().quorum_bps == 7500
    assert client.task_spec() == ("bafkreicli", bytes.fromhex("cd" * 32))


@pytest.mark.integration
def test_deploy_script_takes_the_key_from_the_environment(anvil: Anvil, tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    key = anvil.accounts[2]
    done = subprocess.run(
        [sys.executable, str(DEPLOY_SCRIPT), "--rpc", anvil.rpc_url,
         "--out", str(out), *SPEC_ARGS],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": str(Path(sys.executable).parent), "SWARM_DEPLOYER_KEY": key.private_key},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "SwarmCoordinator" in done.stdout
    assert load_deployment(out).deployer == key.address


def test_deploy_reports_a_user_error_in_one_line(tmp_path: Path) -> None:
    bad = ["--task-spec-cid", "bafk", "--task-spec-hash", "0x12"]
    done = _run(sys.executable, str(DEPLOY_SCRIPT), "--out", str(tmp_path / "d.json"), *bad)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "task_spec_hash must be" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.json").exists()


def test_an_unreachable_rpc_is_a_chain_error() -> None:
    with pytest.raises(ChainError, match=r"no EVM node answers at http://127\.0\.0\.1:9"):
        connect("http://127.0.0.1:9", timeout_s=2.0)
